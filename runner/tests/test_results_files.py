"""The files kpc writes (security audit §9, §10): writers never follow a
planted symbolic link, JUnit is XML whatever the probes said, two runs in
one checkout never lose results, two builds take turns."""

import fcntl
import json
import os
import stat
import subprocess
import threading
import time
import types
import xml.etree.ElementTree as ET

import pytest

from kpc import evaluate, paths, render, report, safefile
from test_cli import KPC, kpc


def _r(case="sigmask_survives_execve", verdict="pass", **kw):
    r = {"case": case, "area": "signals", "variant": "", "flavor": "host", "kernel": "6.1.0", "target": "host",
         "runtime": "none", "profile": "none", "verdict": verdict, "observations": {"exec.blocked": "SIGUSR1"},
         "expected": {"exec.blocked": {"value": "SIGUSR1", "where": "signals.exp:3", "xfail": False, "reason": ""}},
         "reason": "", "duration_ms": 1.5}
    r.update(kw)
    return r


def _doc(results=None, **top):
    doc = {"schema": 1, "created": "2026-12-01T00:00:00+00:00", "environment": {"kernel": "6.1.0", "distro": "X"},
           "results": [_r()] if results is None else results}
    doc.update(top)
    return doc



def test_junit_is_xml_even_with_control_characters(tmp_path):
    """A reason or observation with an escape character (probe output)
    made an XML file no parser reads."""
    case = types.SimpleNamespace(id="c", area="signals", provenance_lines=lambda: ["man 2 \x07bell"])
    v = evaluate.Verdict("fail", reason="boom\x1b[31m <b>&", details=["\x00nul"],
                         observations={"k\x01": "v\x0b"})
    item = types.SimpleNamespace(verdict=v, run_id="c@host#host", case=case)
    env = types.SimpleNamespace(to_json=lambda: {"kernel": "6.1\x1b"})
    out = tmp_path / "j.xml"
    report.write_junit(str(out), [item], env, 1.0)
    root = ET.parse(out).getroot()                              # parses: no raw control character
    failure = root.find("testcase/failure")
    assert failure.get("message") == "boom\\x1b[31m <b>&"
    assert "\\x00nul" in failure.text and "man 2 \\x07bell" in failure.text
    assert root.find("testcase/system-out").text == "k\\x01 = v\\x0b"

# ---------------------------------------------------------------- writers

def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "target").write_text("ROOT-ONLY CONFIG\n")
    return victim / "target"


def test_writers_never_follow_a_symlink_at_a_predictable_name(tmp_path):
    """§9: render.write used PATH.<pid>.tmp, write_json PATH.tmp; a link
    planted there made root overwrite its target."""
    target = _victim(tmp_path)
    out = tmp_path / "r.html"
    for name in (f"{out}.tmp", f"{out}.{os.getpid()}.tmp", f"{tmp_path}/.r.html.tmp"):
        os.symlink(target, name)
    render.write(str(out), "<p>report</p>")
    assert out.read_text() == "<p>report</p>" and not out.is_symlink()
    assert target.read_text() == "ROOT-ONLY CONFIG\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim", "r.html", "r.html.tmp", f"r.html.{os.getpid()}.tmp", ".r.html.tmp"])


@pytest.mark.parametrize("argv", [("report", "{good}", "--html", "{link}"), ("report", "{good}", "--tap", "{link}"),
                                  ("report", "{good}", "--markdown", "{link}"), ("merge", "{good}", "-o", "{link}")])
def test_a_symlink_at_the_output_is_refused(tmp_path, argv):
    target = _victim(tmp_path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc()))
    link = tmp_path / "out"
    os.symlink(target, link)
    r = kpc(*[a.format(good=good, link=link) for a in argv])
    assert r.returncode == 2 and r.stderr.startswith("kpc: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "symbolic link" in r.stderr
    assert target.read_text() == "ROOT-ONLY CONFIG\n" and link.is_symlink()


def test_run_writes_no_result_through_a_planted_symlink(tmp_path, built):
    """The audit's reproduction: --json F with a link at F.tmp, --junit G a
    link. Both targets must stay as they were."""
    t1, t2 = tmp_path / "t1", tmp_path / "t2"
    t1.write_text("ROOT-ONLY 1\n")
    t2.write_text("ROOT-ONLY 2\n")
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    os.symlink(t1, f"{out_json}.tmp")
    os.symlink(t2, out_xml)
    r = kpc("run", "--no-build", "--case", "sigmask_survives_execve", "--flavor", "host",
            "--json", str(out_json), "--junit", str(out_xml))
    assert t1.read_text() == "ROOT-ONLY 1\n" and t2.read_text() == "ROOT-ONLY 2\n"
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("kpc: cannot write results: refusing"), r.stderr
    assert json.loads(out_json.read_text())["results"][0]["verdict"] == "pass"


def test_a_fifo_of_another_user_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    with pytest.raises(safefile.UnsafePath, match="not yours"):
        safefile.write(str(fifo), "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ---------------------------------------------------------------- concurrency

@pytest.mark.parametrize("case", ["sigmask_survives_execve", "inherited_state_by_creation_path"])
def test_two_runs_in_one_checkout_never_lose_or_corrupt_results(built, case):
    """§10: both runs wrote results/runs/last.json.tmp; a pair lost a run
    (exit 2) or left half a file while the other said success. The second
    case writes 450 KB of JSON, a wide enough window that the old code
    failed in about 2 of 5 pairs here (the first, 2 KB, in none of 10)."""
    last = os.path.join(paths.ROOT, "results", "runs", "last.json")
    cmd = [KPC, "run", "--no-build", "--case", case, "--flavor", "host"]
    for i in range(5):
        procs = [subprocess.Popen(cmd, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], (i, [err[-300:] for _, err in outs])
        with open(last) as f:
            doc = json.load(f)
        assert {r["case"] for r in doc["results"]} == {case}, i
    leftovers = [n for n in os.listdir(os.path.dirname(last)) if n.endswith(".tmp")]
    assert not leftovers, leftovers


def test_concurrent_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """The same race without timing luck: two threads (one pid, so the old
    PATH.<pid>.tmp was shared too) replace one file 50 times each."""
    path = tmp_path / "last.json"
    payloads = [json.dumps({"writer": w, "pad": str(w) * 300_000}) for w in range(2)]
    errors = []

    def writer(w):
        try:
            for _ in range(50):
                render.write(str(path), payloads[w])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert path.read_text() in payloads
    assert os.listdir(tmp_path) == ["last.json"]


def test_a_build_waits_for_another_build_of_the_same_directory(tmp_path, built):
    """§10: two builds at once linked a half-written libkpcprobe.a. Holding
    the build lock here, `./kpc run` (which builds first) must wait."""
    err = tmp_path / "stderr"
    fd = os.open(os.path.join(paths.build_dir(), ".kpc-build.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(err, "w") as f:
            p = subprocess.Popen([KPC, "run", "--case", "sigmask_survives_execve", "--flavor", "host", "--json",
                                  os.devnull], cwd=paths.ROOT, stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 60
        while "waiting for another kpc building" not in err.read_text() and time.monotonic() < deadline \
                and p.poll() is None:
            time.sleep(0.1)
        assert "waiting for another kpc building" in err.read_text(), err.read_text()
        time.sleep(1)
        assert p.poll() is None, "the run went on while another build held the lock"
    finally:
        os.close(fd)
    assert p.wait(timeout=300) == 0, err.read_text()
