"""Labs for a course (issue 23): the notes' demos run as written, quotes are
verbatim, answers are read the way students write them, a scripted
student goes through five labs with piped answers and gets the right
score, `kpc grade` scores a class, the course path, handouts without
answers, the init exercise, `kpc inspect --signal`."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import run
from kpc import cases, lab, manpages, paths, sigstate, tables, values
from test_cli import kpc

ALL = cases.load_all()


# ---------------------------------------------------------------- the notes' demos

def _blocks():
    out = []
    for cid, case in ALL.items():
        for i, block in enumerate(lab.demo_blocks(lab.read_note(case))):
            out.append(pytest.param(cid, block, id=f"{cid}-{i}"))
    return out


def _matches(expected, line):
    pattern = ".*".join(re.escape(part) for part in re.split(r"\.\.\.|…", " ".join(expected.split())))
    return re.fullmatch(pattern, " ".join(line.split())) is not None


def run_demo(block, timeout=60):
    """Run one See-it-yourself block as a student would type it, in one
    bash session (so $! and variables carry over), from the checkout.
    Returns [(demo, rc, output lines)]. Whatever it left running is
    killed with its session."""
    script = ["exec 2>&1"]
    for i, d in enumerate(block):
        script += [f"printf '\\n@@kpc-demo {i}\\n'", d.command, f"printf '\\n@@kpc-rc {i} %s\\n' $?"]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=paths.ROOT, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    results = []
    for i, d in enumerate(block):
        m = re.search(rf"@@kpc-demo {i}\n(.*?)\n@@kpc-rc {i} (\d+)", text, re.S)
        assert m, f"demo {i} did not finish: {d.command!r}\n{text[-2000:]}"
        results.append((d, int(m.group(2)), [ln for ln in m.group(1).split("\n") if ln.strip()]))
    return results


@pytest.mark.parametrize("case_id,block", _blocks())
def test_note_demos_run_as_written(case_id, block):
    """Every `$ command` of a note's See-it-yourself block runs here and
    prints the lines the note shows under it ('...' = anything; a comment
    after two spaces is not output). A command the note shows no output
    for must succeed. `# command` lines need root."""
    if any(d.root for d in block) and os.geteuid() != 0:
        pytest.skip("the block has '# ' (root) commands and this test is not root")
    for d, rc, lines in run_demo(block):
        want = [lab.strip_comment(e) for e in d.expected]
        if not want:
            assert rc == 0, f"{case_id}: `{d.command}` exited {rc}:\n" + "\n".join(lines)
            continue
        at = 0
        for e in want:
            hit = next((j for j in range(at, len(lines)) if _matches(e, lines[j])), None)
            assert hit is not None, (f"{case_id}: `{d.command}` should print {e!r}; it printed:\n"
                                     + "\n".join(lines))
            at = hit + 1


def test_demo_blocks_are_found_and_checked():
    """The harness itself: the runnable blocks are recognised (with their
    continuation lines), a wrong expectation fails, comments are not
    output."""
    note = ("# x\n\n**Predict.** ?\n\n**See it yourself.**\n\n    $ echo 'a\n    b'\n    a\n    b\n"
            "    $ echo hi   # a comment\n    hi              # shown\n\n**Fix.** no\n\n    $ not run\n")
    blocks = lab.demo_blocks(note)
    assert len(blocks) == 1 and [d.command for d in blocks[0]] == ["echo 'a\nb'", "echo hi   # a comment"]
    assert blocks[0][0].expected == ["a", "b"] and blocks[0][1].expected == ["hi              # shown"]
    (d1, rc1, out1), (d2, rc2, out2) = run_demo(blocks[0])
    assert out1 == ["a", "b"] and out2 == ["hi"] and rc1 == rc2 == 0
    assert _matches("SigQ: .../...", "SigQ:\t2/96365") and not _matches("SigQ: 3/95424", "SigQ:\t2/96365")


def test_every_case_has_a_demo_block_or_says_how_to_look():
    """Notes keep a See-it-yourself paragraph (kpc check), and the basic
    labs' ones are runnable blocks."""
    for cid in ("sigmask_survives_execve", "fork_child_pending_empty", "handler_reset_by_execve",
                "sig_ign_survives_execve", "sigkill_sigstop_cannot_be_changed", "standard_vs_realtime_queueing",
                "zombie_until_waited", "exit_status_low_8_bits", "sigchld_ignored_no_zombies",
                "pidns_init_signal_rules", "sig_ign_through_shell"):
        assert lab.demo_blocks(lab.read_note(ALL[cid])), f"{cid}: no runnable See-it-yourself block"
