"""Labs for a course (issue 23): the notes' demos run as written, quotes are
verbatim, answers are read the way students write them, a scripted
student goes through five labs with piped answers and gets the right
score, `kpc grade` scores a class, the course path, handouts without
answers, the init exercise, `kpc inspect --signal`."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import needs_root

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


# A student's shell on Debian: the distribution's PATH (this machine's root
# may have a pyenv shim first, whose python3 forks helpers before it execs).
DEMO_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "HOME": os.environ.get("HOME", "/root"), "TERM": "dumb"}


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
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=DEMO_ENV)
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


# Commands the demos use beyond a minimal Debian (Essential packages, python3),
# and their packages: ./kpc selftest installs the small ones as root
# (build.TEST_EXTRAS); a demo whose command is missing skips naming it.
DEMO_PACKAGES = {"strace": "strace", "capsh": "libcap2-bin", "getcap": "libcap2-bin", "setcap": "libcap2-bin",
                 "ps": "procps", "pgrep": "procps", "tini": "tini", "dumb-init": "dumb-init",
                 "catatonit": "catatonit", "bwrap": "bubblewrap", "busybox": "busybox-static"}


def missing_demo_command(block):
    """(command, package) of the first command a demo needs and this machine
    lacks, or None."""
    for d in block:
        for cmd, pkg in DEMO_PACKAGES.items():
            if re.search(rf"(?<![\w/.-]){re.escape(cmd)}(?![\w.-])", d.command) and \
                    shutil.which(cmd, path=DEMO_ENV["PATH"]) is None:
                return cmd, pkg
    return None


# Demos that show what a newer userland does, and the reason they skip on an
# older one (the command is there, its behaviour is not).
DEMO_NEEDS = {
    # CPython 3.9's subprocess closes the child's descriptors without
    # close_range (fresh Debian 11, 3.9.2 on glibc 2.31: strace shows none).
    "close_range_flags": (lambda: sys.version_info >= (3, 10),
                          "the demo shows Python >= 3.10's subprocess calling close_range; this is Python "
                          f"{sys.version_info[0]}.{sys.version_info[1]}"),
}


@pytest.mark.parametrize("case_id,block", _blocks())
def test_note_demos_run_as_written(case_id, block):
    """Every `$ command` of a note's See-it-yourself block runs here and
    prints the lines the note shows under it ('...' = anything; a comment
    after two spaces is not output). A command the note shows no output
    for must succeed. `# command` lines need root."""
    if any(d.root for d in block) and os.geteuid() != 0:
        pytest.skip("the block has '# ' (root) commands and this test is not root")
    missing = missing_demo_command(block)
    if missing:
        pytest.skip(f"the demo runs {missing[0]}: install Debian's {missing[1]}")
    if case_id in DEMO_NEEDS and not DEMO_NEEDS[case_id][0]():
        pytest.skip(DEMO_NEEDS[case_id][1])
    # A demo that boots kernels fetches and boots them first on a fresh
    # machine (a fresh Debian 13 rootfs took over 60 s): give it the time.
    boots = any("--kernels" in d.command for d in block)
    if boots and shutil.which("qemu-system-x86_64", path=DEMO_ENV["PATH"]) is None:
        pytest.skip("the demo boots kernels: install Debian's qemu-system-x86 (selftest does not install it)")
    for d, rc, lines in run_demo(block, timeout=900 if boots else 60):
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


def test_a_demo_needing_a_missing_tool_is_named(monkeypatch):
    monkeypatch.setitem(DEMO_PACKAGES, "kpc-no-such-tool", "kpc-pkg")
    block = lab.demo_blocks("**See it yourself.**\n\n    $ kpc-no-such-tool -f x | grep y\n\n")[0]
    assert missing_demo_command(block) == ("kpc-no-such-tool", "kpc-pkg")
    block = lab.demo_blocks("**See it yourself.**\n\n    $ ls /usr/bin/kpc-no-such-tool.d xkpc-no-such-tool\n\n")[0]
    assert missing_demo_command(block) is None


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


# ---------------------------------------------------------------- answers as students write them

@pytest.mark.parametrize("form,written,read", [
    ("state", "Z (zombie)", "Z"), ("state", "zombie", "Z"), ("state", "z", "Z"),
    ("result", "0", "ok"), ("result", "success", "ok"), ("result", "esrch", "ESRCH"), ("result", "-1 ESRCH", "ESRCH"),
    ("status", "7", "exited 7"), ("status", "exited 7", "exited 7"), ("status", "exit status 0", "exited 0"),
    ("status", "killed by SIGKILL", "killed SIGKILL"), ("status", "SIGTERM", "killed SIGTERM"),
    ("sigset", "SIGTERM,SIGUSR1", "SIGUSR1|SIGTERM"), ("sigset", "sigterm usr1", "SIGUSR1|SIGTERM"),
    ("sigset", "0x4200", "SIGUSR1|SIGTERM"), ("sigset", "0000000000004200", "SIGUSR1|SIGTERM"),
    ("sigset", "SigBlk:\t0000000000004200", "SIGUSR1|SIGTERM"), ("sigset", "15 10", "SIGUSR1|SIGTERM"),
    ("sigset", "SIGRTMIN+2", "SIG36"), ("sigset", "none", "none"), ("sigset", "empty", "none"),
    ("sigset", "all but KILL STOP 32 33", values.format_sigset(0xfffffffe7ffbfeff)),
    ("signal", "17", "SIGCHLD"), ("signal", "chld", "SIGCHLD"),
    ("disposition", "SIG_IGN", "ignore"), ("disposition", "SIG_DFL", "default"),
    ("saflags", "restart", "SA_RESTART"), ("saflags", "SA_RESTART|SA_ONSTACK", "SA_ONSTACK|SA_RESTART"),
    ("bool", "yes", "true"), ("yesno", "it hangs", "yes"), ("int", "0x10", "16"),
    ("siglist", "USR1, USR2, RTMIN+2:3, RTMIN+6:1, RTMIN+6:2", "SIGUSR1,SIGUSR2,SIG36:3,SIG40:1,SIG40:2"),
])
def test_natural_answers_are_read_in_their_form(form, written, read):
    """The review's table of answers marked WRONG (F2): each is read as the
    value it means. On the old code `values.canonical('str', 'Z (zombie)')`
    was 'Z (zombie)' and never equal to Z."""
    assert values.FORMS[form].read(written) == read


@pytest.mark.parametrize("form,written,says", [
    ("status", "exited", "exited N"), ("result", "-1", "name the errno"), ("sigset", "SIGFOO", "unknown signal"),
    ("state", "q", "process state"), ("result", "ESRHC", "not an errno name"), ("int", "yes", "not a number"),
])
def test_unreadable_answers_say_what_is_expected(form, written, says):
    with pytest.raises(values.ValueError_, match=says):
        values.FORMS[form].read(written)


def test_prompts_never_show_the_answer_or_the_summary():
    """F5: the setup used to be the case summary, i.e. the answer; now the
    setup is the metadata's steps, and no prompt's example is a value the
    table expects (so it cannot give the answer away)."""
    tbl = tables.load(ALL)
    for cid, case in ALL.items():
        ex = lab.prepare(case, tbl)
        assert case.lab.setup and case.summary not in " ".join(lab.setup_steps(case, ex.params)), cid
        for k in ex.keys:
            example = ex.forms[k].example(ex.avoid[k])
            assert example.lower() not in [v.lower() for v in ex.avoid[k]], (cid, k, example)


# ---------------------------------------------------------------- a scripted student session

def lab_run(*args, answers=None, user=None):
    cmd = ["lab", *args, "--no-build"]
    if user is None:
        return subprocess.run([os.path.join(paths.ROOT, "kpc"), *cmd], input=answers, capture_output=True,
                              text=True, timeout=120, cwd=paths.ROOT)
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                           os.path.join(paths.ROOT, "kpc"), *cmd], input=answers, capture_output=True, text=True,
                          timeout=120, cwd=paths.ROOT)


def test_a_student_goes_through_five_labs_with_piped_natural_answers(built):
    """The issue's scripted session: five labs, answers piped as a here-doc
    would pipe them, written as people write them (a bad one re-asked, a
    `key = value` line out of turn), one deliberate mistake; each lab
    reports the right score and exit code. On the old code piped answers
    were ignored ('no predictions'), exit 0."""
    tbl = tables.load(ALL)
    block = lab.params_for(ALL["sigmask_survives_execve"], "dana")["block"]
    code = lab.params_for(ALL["zombie_until_waited"], "dana")["code"]
    sessions = [
        (["zombie_until_waited", "--seed", "dana"], f"Z (zombie)\n0\n{code}\nesrch\n", 4, 4, 0),
        (["sigmask_survives_execve", "--seed", "dana"],
         "SIGFOO\n" + block.lower().replace("|", ", ") + "\n" + hex(values.parse_sigset(block)) + "\n0\n", 3, 3, 0),
        (["exit_status_low_8_bits"], "7\n-1\n", 1, 2, 1),          # -1: the mistake (the kernel says 255)
        (["sig_ign_through_shell"], "worker.status = 0\nsigterm\nSIG_IGN\nalive\n", 4, 4, 0),
        (["fork_child_pending_empty"], "usr1\nSIGUSR2\nnone\nempty\n0xa00\nexited 0\n", 6, 6, 0),
    ]
    for args, answers, right, out_of, rc in sessions:
        r = lab_run(*args, answers=answers)
        assert r.returncode == rc, r.stdout + r.stderr
        assert f"{right} of {out_of} predictions right" in r.stdout, r.stdout
        assert "WRONG" in r.stdout if right < out_of else "WRONG" not in r.stdout
    assert "not read: unknown signal 'SIGFOO'" in lab_run(*sessions[1][0], answers=sessions[1][1]).stdout
    assert tbl  # the tables the session was graded against loaded


def test_the_lab_shows_setup_forms_and_reveals_only_after(built):
    r = lab_run("sigmask_survives_execve", "--predict", "exec.blocked=SIGTERM,SIGUSR1")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "1. Block SIGUSR1|SIGTERM in the probe" in out and "you: SIGUSR1|SIGTERM  RIGHT" in out
    summary = ALL["sigmask_survives_execve"].summary
    assert out.index("The setup") < out.index("Running it") < out.index(summary)   # the rule after the run
    assert "**" not in out                                                          # no raw Markdown (F4)
    r = lab_run("sigmask_survives_execve", "--predict", "exec.blocked=none", "--no-reveal")
    assert r.returncode == 1 and "WRONG" in r.stdout and summary not in r.stdout and "(table:" not in r.stdout
    for bad, says in ((["--predict", "no.such.key=1"], "it records:"),
                      (["--predict", "exec.status=exited"], "exited N"),
                      (["--variant", "x"], "has no variants")):
        r = lab_run("sigmask_survives_execve", *bad)
        assert r.returncode == 2 and r.stderr.startswith("kpc: ") and r.stderr.count("\n") == 1, r.stderr


def test_seeds_give_students_different_values_and_the_kernel_grades_them(built):
    a, b = (lab.params_for(ALL["zombie_until_waited"], s)["code"] for s in ("alice", "bob"))
    assert a != b
    r = lab_run("zombie_until_waited", "--seed", "bob", "--predict", f"status={b}", "--no-reveal")
    assert r.returncode == 0 and f"status with status {b}" not in r.stdout and f"exited {b}" in r.stdout
    assert "verdict against the expected table: pass" in r.stdout          # the table follows the parameter
    r = lab_run("zombie_until_waited", "--seed", "bob", "--predict", "status=7", "--no-reveal")
    assert r.returncode == 1 and "WRONG" in r.stdout


@needs_root
def test_a_hang_is_predictable_and_a_skip_is_never_wrong(built):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    from kpc import kver
    ctx = {"kernel": kver.parse(os.uname().release), "flavor": "host", "variant": "file_fd_below_devfuse"}
    expected = tables.load(ALL).match("fuse_self_served_exit", "hang", dict.fromkeys(tables.DIMENSIONS, "")
                                      | ctx).value
    r = lab_run("fuse_self_served_exit", "--predict", "hang=it hangs")
    assert r.returncode == (0 if expected == "yes" else 1), r.stdout + r.stderr
    assert ("you: yes  RIGHT" if expected == "yes" else "you: yes  WRONG") in r.stdout, r.stdout
    if os.geteuid() != 0:
        pytest.skip("the skip half needs root to run as another user")
    # As nobody, pdeathsig_cleared_by_setuid_exec needs root: skipped, not graded.
    r = lab_run("pdeathsig_cleared_by_setuid_exec", "--predict", "exec.pdeathsig=none", user=65534)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not gradable here" in r.stdout and "WRONG" not in r.stdout and "could not run here" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_without_root_the_pidns_lab_picks_userns(built):
    """F9: as nobody, the host flavor of pidns_init_signal_rules skips (the
    probe needs CAP_SYS_ADMIN for its namespace); the lab runs it in userns
    by itself."""
    r = lab_run("pidns_init_signal_rules", "--predict", "member.kill_sigterm=0", user=65534)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "flavor userns" in r.stdout and "RIGHT" in r.stdout and "not gradable" not in r.stdout


# ---------------------------------------------------------------- grading a class

def _answers(tmp_path, name, text):
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return str(p)


def test_grade_scores_a_class_of_three(tmp_path, built):
    """Three answer files, seeded parameters, one run per distinct lab and
    parameters; scores per student and per key in the JSON."""
    code = {s: lab.params_for(ALL["zombie_until_waited"], s)["code"] for s in ("alice", "bob", "carol")}
    block = {s: lab.params_for(ALL["sigmask_survives_execve"], s)["block"] for s in ("alice", "bob", "carol")}
    files = [
        _answers(tmp_path, "alice", f'student = "alice"\n[zombie_until_waited]\nbefore_wait.state = "Z (zombie)"\n'
                 f'before_wait.kill0 = "0"\nstatus = {code["alice"]}\n"after_wait.kill0" = "esrch"\n'
                 f'[sigmask_survives_execve]\n"exec.blocked" = "{block["alice"].replace("|", ",")}"\n'),
        _answers(tmp_path, "bob", f'student = "bob"\n[zombie_until_waited]\nbefore_wait.state = "S"\n'
                 f'status = "{code["alice"] if code["alice"] != code["bob"] else 0}"\n'
                 f'[exit_status_low_8_bits]\n"exit_263.waitpid" = "263"\n"exit_minus1.waitid_status" = "255"\n'),
        _answers(tmp_path, "carol", 'student = "carol"\n[sigmask_survives_execve]\n"exec.blocked" = "banana"\n'
                 '"no.such" = "1"\n"exec.status" = "exited 0"\n'),
    ]
    out = tmp_path / "grades.json"
    r = kpc("grade", *files, "--json", str(out), "--no-build")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    score = {s["student"]: (s["right"], s["graded"]) for s in doc["students"]}
    # A blank that the kernel recorded counts 0: alice left two sigmask keys blank.
    assert score == {"alice": (5, 7), "bob": (1, 6), "carol": (1, 4)}, score
    bob = next(s for s in doc["students"] if s["student"] == "bob")
    assert bob["labs"]["zombie_until_waited"]["params"] == {"code": code["bob"]}
    assert bob["labs"]["zombie_until_waited"]["keys"]["before_wait.state"]["result"] == "wrong"
    carol = next(s for s in doc["students"] if s["student"] == "carol")
    assert carol["labs"]["sigmask_survives_execve"]["keys"]["exec.blocked"]["result"] == "unreadable"
    assert "no.such: no such observation" in carol["labs"]["sigmask_survives_execve"]["problems"][0]
    assert doc["keys"]["zombie_until_waited before_wait.state"] == {"right": 1, "wrong": 1, "ungraded": 0,
                                                                    "unanswered": 0}
    assert doc["keys"]["sigmask_survives_execve child.blocked"]["unanswered"] == 2
    assert "alice" in r.stdout and "5/7" in r.stdout
    assert bob["labs"]["zombie_until_waited"]["keys"]["after_wait.kill0"]["result"] == "unanswered"


def test_answer_files_are_untrusted_input(tmp_path, built):
    real = _answers(tmp_path, "real", 'student = "x"\n[zombie_until_waited]\nstatus = "7"\n')
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    big = tmp_path / "big.toml"
    big.write_text("x = 1\n" * 300000)
    os.mkfifo(tmp_path / "fifo.toml")
    bad = _answers(tmp_path, "bad", "[zombie_until_waited\n")
    esc = _answers(tmp_path, "esc", '[zombie_until_waited]\n"\\u001b[31mx" = "1"\n[no_such_lab]\nk = "v"\n')
    for path, says in ((str(link), "symbolic link"), (str(big), "larger than"), (str(tmp_path / "fifo.toml"),
                       "not a regular file"), (bad, "not an answer file"), (esc, "unknown lab [no_such_lab]")):
        r = kpc("grade", path, "--no-build")
        assert r.returncode == 2 and r.stderr.startswith("kpc: ") and says in r.stderr, (path, r.stderr)
        assert r.stderr.count("\n") == 1 and "\x1b" not in r.stderr and "Traceback" not in r.stderr
    # the grades are not written through a planted link
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "out.json").symlink_to(victim)
    r = kpc("grade", real, "--json", str(tmp_path / "out.json"), "--no-build")
    assert r.returncode == 2 and "symbolic link" in r.stderr and victim.read_text() == "keep"


def test_lab_save_writes_an_answer_file_grade_reads(tmp_path, built):
    path = tmp_path / "answers.toml"
    r = lab_run("exit_status_low_8_bits", "--seed", "erin", "--save", str(path), answers="7\n255\n")
    assert r.returncode == 0, r.stdout + r.stderr
    r = lab_run("zombie_until_waited", "--seed", "erin", "--save", str(path), answers="Z\nok\n3\nESRCH\n")
    text = path.read_text()
    assert 'student = "erin"' in text and "[exit_status_low_8_bits]" in text and "[zombie_until_waited]" in text
    r = kpc("grade", str(path), "--no-build")
    code = lab.params_for(ALL["zombie_until_waited"], "erin")["code"]
    assert r.returncode == 0 and (f"{6 if code == '3' else 5}/6" in r.stdout), r.stdout


# ---------------------------------------------------------------- the course, handouts

def test_the_course_path_runs_easy_to_hard_with_prerequisites_first():
    order = [cid for _, ids in lab.course(ALL) for cid in ids]
    cases_in = [c for c in order if not c.startswith("labs/")]
    assert sorted(cases_in) == sorted(ALL) and len(cases_in) == len(set(cases_in))   # every case, once
    assert order[0] == "exit_status_low_8_bits" and "labs/init-exercise" in order
    units = [u for u, _ in lab.course(ALL)]
    assert units.index("basics") < units.index("pidns") < units.index("fuse") < units.index("project")
    for cid in cases_in:
        for p in ALL[cid].lab.prerequisites:
            assert order.index(p) < order.index(cid), (p, cid)
    r = kpc("list", "--course")
    assert r.returncode == 0 and "1.1   exit_status_low_8_bits" in r.stdout
    assert ALL["zombie_until_waited"].summary not in r.stdout      # questions, not answers
    assert r.stdout.index("zombie_until_waited") < r.stdout.index("fuse_pidns_teardown_deadlock")


def test_lint_finds_broken_course_metadata():
    import dataclasses
    tbl = tables.load(ALL)
    assert lab.lint(ALL, tbl) == []
    broken = dict(ALL)
    z = ALL["zombie_until_waited"]
    broken["zombie_until_waited"] = dataclasses.replace(z, lab=dataclasses.replace(
        z.lab, unit="nowhere", prerequisites=["fork_child_pending_empty", "no_such"], ask=["nope"], setup=["{x}"]))
    problems = "\n".join(lab.lint(broken, tbl))
    for says in ("lab.unit must be one of", "unknown case 'no_such'", "observation 'nope'", "placeholder",
                 "lead back to it"):
        assert says in problems, says


def test_handout_has_the_exercise_and_no_answer(tmp_path):
    case = ALL["zombie_until_waited"]
    r = kpc("handout", "zombie_until_waited", "--seed", "bob")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    code = lab.params_for(case, "bob")["code"]
    assert "## Question" in text and "## Setup" in text and f"exits at once with status {code}" in text
    assert "`before_wait.state`" in text and "./kpc lab zombie_until_waited --seed bob --save answers.toml" in text
    assert case.summary not in text and "zombie_until_waited — lab note" not in text
    assert "minimal set of information" not in text and "Story " not in text     # no note body, no story
    assert "$ sh -c 'sleep 0 & exec sleep 3'" in text and "Z (zombie)" not in text       # commands, not outputs
    out = tmp_path / "h.md"
    r = kpc("handout", "sigmask_survives_execve", "exit_status_low_8_bits", "-o", str(out))
    assert r.returncode == 0 and out.read_text().count("## Question") == 2
    r = kpc("handout", "no_such_case")
    assert r.returncode == 2 and r.stderr.startswith("kpc: unknown lab")


@pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")),
                    reason="no chromium for --pdf")
def test_handout_pdf(tmp_path):
    out = tmp_path / "h.pdf"
    r = kpc("handout", "zombie_until_waited", "--pdf", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------- quotes

def test_every_man_page_quote_is_verbatim():
    why = manpages.available()
    if why:
        pytest.skip(why)
    problems, note = lab.check_quotes(ALL)
    assert problems == [] and "checked against" in note


def test_a_paraphrase_is_caught_and_missing_pages_skip_with_one_line(monkeypatch, tmp_path):
    if manpages.available():
        pytest.skip(manpages.available())
    # C6: the old signalfd(2) 'quote' was not in signalfd(2)
    old = ("signalfd(2): the signal mask is preserved across execve(2) ... a program that uses signalfd should "
           "normally block the signals, and a child that execs inherits the block.")
    assert "not in signalfd(2)" in manpages.check_quote(old)
    assert manpages.check_quote("sigprocmask(2): It is not possible to block SIGKILL or SIGSTOP.") is None
    assert "before the previous fragment" in manpages.check_quote(
        "fork(2): The child does not inherit timers from its parent ... The child's set of pending signals")
    monkeypatch.setattr(manpages, "MAN_DIR", str(tmp_path))
    problems, note = lab.check_quotes(ALL)
    assert problems == [] and note.startswith("quotes not checked: Debian's man pages are not installed")
    assert manpages.split_quote("Documentation/filesystems/fuse.rst: x") is None


# ---------------------------------------------------------------- the init exercise

def test_init_exercise_stages(built):
    r = kpc("lab", "init-exercise", "--no-build", "--init", os.path.join(paths.ROOT, "labs", "init-exercise",
                                                                         "init.py"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stage 1: runs the workload and exits with its exit code  ... PASS" in r.stdout
    assert "stage 2: a workload killed by signal N" in r.stdout and "Next: a workload killed by signal N" in r.stdout
    assert "self.ignored: expected none, your init gave SIGHUP|SIGUSR2|SIGPIPE|SIGXFSZ" in r.stdout
    r = kpc("lab", "init-exercise", "--no-build", "--init", os.path.join(paths.RUNNER, "tests", "data",
                                                                         "init_reference.py"))
    if os.geteuid() == 0:
        assert r.returncode == 0 and "10 of 10 stages pass" in r.stdout, r.stdout + r.stderr
    else:
        assert "9 of 10 stages pass" in r.stdout, r.stdout
    r = kpc("lab", "init-exercise", "--no-build")
    assert r.returncode == 2 and "--init FILE" in r.stderr and "labs/init-exercise/init.py" in r.stderr


def test_init_exercise_checks_name_a_variant_and_a_key_it_records(monkeypatch):
    """runtime_pid1_duties has one variant per duty: a check still naming
    the old variant (child), a variant of another duty, or a variant on a
    case without any is unknown; the exercise runs just the variants its
    checks name."""
    tbl = tables.load(ALL)
    spec = lab.load_exercise("init-exercise")
    assert [(c.id, c.variants) for c in lab.checked_runs(spec, ALL)] == [
        ("inherited_signal_state", []), ("runtime_pid1_duties", ALL["runtime_pid1_duties"].variants)]
    bad = ["runtime_pid1_duties:child:exit7.runtime_status",                 # a variant that is gone
           "runtime_pid1_duties:pid1_exit_status:forwards.sigint",           # not that variant's key
           "runtime_pid1_duties:orphan.after_exit",                          # no variant
           "inherited_signal_state:child_forwarding:self.blocked"]           # a case without variants
    good = ["runtime_pid1_duties:child_signal_death:killed_by_sigusr2.runtime_status",
            "runtime_pid1_duties:pid1_orphan_reaping:startup"]
    monkeypatch.setattr(lab, "exercise_names", lambda: ["x"])
    monkeypatch.setattr(lab, "load_exercise", lambda name: {"stage": [{"title": "t", "checks": bad + good}]})
    problems = lab.lint(ALL, tbl)
    assert problems == [f"labs/x/checks.toml: stage 't' checks unknown {c}" for c in bad], problems
    assert [(c.id, c.variants) for c in lab.checked_runs({"stage": [{"checks": good}]}, ALL)] == [
        ("runtime_pid1_duties", ["child_signal_death", "pid1_orphan_reaping"])]


def test_init_exercise_compiles_the_c_starter(built):
    if not any(os.path.exists(p) for p in ("/usr/bin/cc", "/usr/bin/gcc")):
        pytest.skip("no C compiler")
    r = kpc("lab", "init-exercise", "--no-build", "--init", os.path.join(paths.ROOT, "labs", "init-exercise", "init.c"))
    assert r.returncode == 1 and "stage 1: runs the workload and exits with its exit code  ... PASS" in r.stdout


# ---------------------------------------------------------------- inspect --signal, decode

def _spawn(code, *extra):
    p = subprocess.Popen(["/usr/bin/python3", "-c", code, *extra])
    time.sleep(0.5)
    return p


def test_inspect_signal_says_what_would_happen():
    procs = {
        "blocked": _spawn("import signal,time; "
                          "signal.pthread_sigmask(signal.SIG_BLOCK,{signal.SIGTERM}); time.sleep(20)"),
        "ignored": _spawn("import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(20)"),
        "caught": _spawn("import signal,time; signal.signal(signal.SIGTERM, lambda *a: 0); time.sleep(20)"),
        "default": _spawn("import time; time.sleep(20)"),
    }
    zombie = subprocess.Popen(["sh", "-c", "exec sleep 0"])
    time.sleep(0.3)
    try:
        want = {"blocked": "stays pending; then terminates the process", "ignored": "discarded",
                "caught": "runs the process's handler", "default": "terminates the process"}
        for what, p in procs.items():
            r = kpc("inspect", "--signal", "TERM", str(p.pid))
            assert r.returncode == 0 and f"now: {want[what]}" in r.stdout, (what, r.stdout)
        r = kpc("inspect", "--signal", "chld", str(procs["default"].pid))
        assert "now: discarded" in r.stdout and "default action is to ignore" in r.stdout
        r = kpc("inspect", "--signal", "9", str(procs["blocked"].pid))
        assert "now: kills the process" in r.stdout
        r = kpc("inspect", "--signal", "TERM", str(zombie.pid))
        assert "nothing: it is a zombie" in r.stdout
        info = sigstate.inspect(procs["blocked"].pid)
        assert sigstate.what_if(dict(info, nspid=f"{info['pid']} 1"), 15)["outcome"] == "dropped"  # a namespace's init
        r = kpc("inspect", "--signal", "TERM", "--json", str(procs["caught"].pid))
        assert json.loads(r.stdout)["outcome"] == "runs the process's handler"
        r = kpc("inspect", "--signal", "SIGFOO", str(procs["caught"].pid))
        assert r.returncode == 2 and r.stderr.startswith("kpc: --signal: unknown signal")
    finally:
        for p in [*procs.values(), zombie]:
            p.kill()
            p.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare needs root")
def test_inspect_signal_knows_the_namespace_init_rule():
    # util-linux < 2.38's unshare -f set SIGINT and SIGTERM to SIG_IGN before
    # it forked (f2f980177 made the child inherit the caller's dispositions):
    # on Debian 11 the init ignored SIGTERM and kpc said so. Reset it here.
    p = subprocess.Popen(["unshare", "-pf", "--mount-proc", "env", "--default-signal=TERM", "sleep", "20"])
    try:
        time.sleep(0.5)
        init = int(subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()[0])
        r = kpc("inspect", "--signal", "TERM", str(init))
        assert "now: dropped" in r.stdout and "PID 1 of its PID namespace" in r.stdout
        r = kpc("inspect", "--signal", "KILL", str(init))
        assert "from inside its namespace: dropped; from outside: kills it" in r.stdout
    finally:
        p.kill()
        p.wait()


def test_decode_takes_pasted_lines_and_status_files():
    r = kpc("decode", "SigBlk:", "0000000000004200")
    assert r.returncode == 0 and r.stdout.strip() == "SIGUSR1|SIGTERM"
    r = kpc("decode", "SigBlk:\t0000000000004200")
    assert r.returncode == 0 and r.stdout.strip() == "SIGUSR1|SIGTERM"
    status = open("/proc/self/status").read()
    r = subprocess.run([os.path.join(paths.ROOT, "kpc"), "decode", "-"], input=status, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and [ln.split(":")[0] for ln in r.stdout.splitlines()] == list(sigstate.FIELDS)
    r = subprocess.run([os.path.join(paths.ROOT, "kpc"), "decode", "-"], input="Name: x\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no SigPnd" in r.stderr
    r = kpc("decode", "SIG36")
    assert r.returncode == 2 and "not a signal mask" in r.stderr
    r = kpc("decode", "0000000800000000")
    assert "SIG36 = glibc SIGRTMIN+2" in r.stdout
