"""kpc bundle: a device with only the tarball runs the suite and judges it
(python3 >= 3.9, no pytest, no tomllib, no compiler), or records it with a
POSIX shell and busybox for `./kpc evaluate` elsewhere -- with the verdicts
`./kpc run` gives on the same machine."""

import ast
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from conftest import run
from kpc import bundle, cases, paths

KPC = os.path.join(paths.ROOT, "kpc")
PY = "/usr/bin/python3"


def verdicts(path):
    with open(path) as f:
        return {(r["case"], r["variant"], r["flavor"]): r["verdict"] for r in json.load(f)["results"]}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory, built):
    out = tmp_path_factory.mktemp("bundle") / "kpc-x86_64.tar.xz"
    r = run([PY, KPC, "bundle", "--no-build", "-o", str(out)], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "bundle:" in r.stdout and out.stat().st_size < 30e6
    return out


@pytest.fixture(scope="module")
def host_verdicts(tmp_path_factory, built):
    out = tmp_path_factory.mktemp("host") / "host.json"
    r = run([PY, KPC, "run", "--no-build", "--json", str(out)], timeout=600)
    assert r.returncode in (0, 1), r.stderr
    return verdicts(out)


def unpack(tarball, where):
    os.makedirs(where, exist_ok=True)
    os.chmod(where, 0o700)
    with tarfile.open(tarball) as tar:
        # the 'tar' filter (Python 3.12, and Debian's 3.11 security updates):
        # no absolute names, no way out of WHERE, no set-user-ID bits; the
        # default from 3.14 on, and what a device's tar should be able to do
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(where, filter="tar")
        else:
            tar.extractall(where)
    return os.path.join(where, "kpc")


def test_bundle_is_one_relocatable_directory(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert all(n == "kpc" or n.startswith("kpc/") for n in names)
    assert all(m.uid == 0 and not (m.mode & 0o022) for m in members)
    for need in ("kpc/run", "kpc/build/bin/kpc-launch", "kpc/cases/cases.json", "kpc/plan.jsonl",
                 "kpc/lava/kpc.yaml", "kpc/kirk/runtest/kpc", "kpc/runner/kpc/dut.py"):
        assert need in names
    assert not [n for n in names if n.endswith((".toml", ".cc"))]


def test_device_runner_judges_like_kpc_run(tarball, host_verdicts, tmp_path):
    """No pytest, no tomllib: the runner's imports are the standard library's."""
    kpc = unpack(tarball, tmp_path / "dut")
    out = tmp_path / "dut.json"
    r = run([PY, "-X", "importtime", "-I", os.path.join(kpc, "runner", "kpc-dut"), "--json", str(out),
             "--ktap", str(tmp_path / "k.tap"), "--kcidb", str(tmp_path / "k.json")], timeout=600)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    imported = {ln.split("|")[-1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("pytest", "_pytest", "tomllib", "yaml", "tap")}
    assert verdicts(out) == host_verdicts
    # and through the entry point
    r = run([os.path.join(kpc, "run"), "--case", "sigmask_survives_execve", "--json", str(tmp_path / "e.json")])
    assert r.returncode == 0, r.stderr
    assert "3 pass" in r.stdout
    # --case ID:VARIANT selects as ./kpc run does (a lab's KPC_ARGS); a variant that is not there is one line, exit 2
    r = run([os.path.join(kpc, "run"), "--case", "sigchld_ignored_no_zombies:sig_ign", "--flavor", "host",
             "--json", str(tmp_path / "v.json")])
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "v.json") as f:
        assert [(x["case"], x["variant"], x["flavor"]) for x in json.load(f)["results"]] == [
            ("sigchld_ignored_no_zombies", "sig_ign", "host")]
    r = run([os.path.join(kpc, "run"), "--case", "sigchld_ignored_no_zombies:ign"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no variant matches" in r.stderr, r.stderr


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox: install Debian's busybox-static")
def test_events_without_python_judged_elsewhere(tarball, host_verdicts, tmp_path):
    """kpc/run --events with busybox as the only tools on PATH (no python3),
    then ./kpc evaluate: the same verdicts."""
    kpc = unpack(tarball, tmp_path / "dut")
    tools = tmp_path / "bin"
    tools.mkdir()
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        os.symlink("/bin/busybox", tools / applet)
    assert not (tools / "python3").exists()
    # The commands cases require ([requires] commands): the device has them, as this host does.
    for command in {cmd for c in cases.load_all().values() for cmd in c.requires.commands}:
        if not (tools / command).exists() and shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            os.symlink(shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin"), tools / command)
    events = tmp_path / "events.jsonl"
    r = run(["/bin/busybox", "sh", os.path.join(kpc, "run"), "--events", str(events)],
            env={"PATH": str(tools), "TMPDIR": "/tmp"}, timeout=600)
    assert r.returncode == 0, r.stderr
    r2 = run(["/bin/busybox", "sh", os.path.join(kpc, "run"), "--events", str(events)], env={"PATH": str(tools)})
    assert r2.returncode == 2 and "must not exist" in r2.stderr     # never written through
    out = tmp_path / "eval.json"
    r = run([PY, KPC, "evaluate", str(events), "--json", str(out)])
    assert r.returncode in (0, 1), r.stderr
    assert verdicts(out) == host_verdicts


def test_evaluate_refuses_or_errors_hostile_events(tarball, tmp_path):
    kpc = unpack(tarball, tmp_path / "dut")
    events = tmp_path / "ev.jsonl"
    r = run([os.path.join(kpc, "run"), "--events", str(events), "--jobs", "4"])
    assert r.returncode == 0, r.stderr
    lines = events.read_text().splitlines()
    facts = json.loads(lines[0])
    bad_facts = tmp_path / "bad-facts.jsonl"
    for broken in ({"release": "6.1\n\x1b[2J"}, {"caps": "all"}, {"root": "yes"}, {"flavors": None}):
        bad_facts.write_text(json.dumps(dict(facts, **broken)) + "\n" + "\n".join(lines[1:]) + "\n")
        r = run([PY, KPC, "evaluate", str(bad_facts)])
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    # results of the wrong shape, garbage lines, a chosen outcome: error verdicts, never a traceback
    hostile = []
    for ln in lines[1:]:
        e = json.loads(ln)
        if e.get("event") == "result" and e["run"].startswith("sigmask_survives_execve@"):
            e = dict(e, records="pass", hang=[1], outcome="kernel-crash", exit={"text": ["exited 0"]})
        hostile.append(json.dumps(e))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + "\n".join(hostile) + "\nnot json\n")
    out = tmp_path / "bad.json"
    r = run([PY, KPC, "evaluate", str(bad), "--case", "sig*", "--json", str(out)])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    res = {(x["case"], x["flavor"]): x for x in json.load(open(out))["results"]}
    assert res[("sigmask_survives_execve", "host")]["verdict"] == "error"
    assert "malformed" in res[("sigmask_survives_execve", "host")]["reason"]
    assert res[("sig_ign_survives_execve", "host")]["verdict"] == "pass"
    assert "unreadable lines" in r.stderr


def test_entry_point_refuses_a_bundle_others_can_change(tarball, tmp_path):
    kpc = unpack(tarball, tmp_path / "dut")
    os.chmod(os.path.join(kpc, "build", "probes", "exec_report"), 0o777)
    r = run([os.path.join(kpc, "run"), "--facts"])
    assert r.returncode == 2 and "writable by others" in r.stderr and r.stderr.count("\n") == 1
    odd = unpack(tarball, tmp_path / "with space")
    r = run([os.path.join(odd, "run"), "--facts"])
    assert r.returncode == 2 and "characters" in r.stderr


def test_bundle_refuses_a_symlink_output(tmp_path, built):
    link = tmp_path / "kpc.tar.xz"
    link.symlink_to(tmp_path / "elsewhere")
    r = run([PY, KPC, "bundle", "--no-build", "-o", str(link)], timeout=600)
    assert r.returncode == 2 and "symbolic link" in r.stderr and not (tmp_path / "elsewhere").exists()


def test_runner_modules_are_python_3_9():
    """The device may have Python 3.9: no syntax or module of a later one in
    what the bundle carries (tomllib is only imported where it may be missing)."""
    later_apis = (".bit_count(", "itertools.pairwise", "zip(strict", "datetime.UTC",
                  "ExceptionGroup", "StrEnum", "hashlib.file_digest", "kw_only=", "slots=True")
    for m in bundle.MODULES:
        path = os.path.join(paths.RUNNER, "kpc", f"{m}.py")
        with open(path) as f:
            src = f.read()
        ast.parse(src, path, feature_version=(3, 9))
        for api in later_apis:
            assert api not in src, f"{m}.py uses {api}"
        tree = ast.parse(src)
        for node in tree.body:   # tomllib only where it may be missing (inside a function)
            assert not (isinstance(node, ast.Import) and any(a.name == "tomllib" for a in node.names)), m
        # Type hints are never evaluated under `from __future__ import
        # annotations` (PEP 563, Python 3.7): there `str | None` is text.
        postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                        any(a.name == "annotations" for a in n.names) for n in tree.body)
        hints = set()
        if postponed:
            for node in ast.walk(tree):
                if isinstance(node, ast.arg) and node.annotation is not None:
                    hints |= {id(x) for x in ast.walk(node.annotation)}
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                    hints |= {id(x) for x in ast.walk(node.returns)}
                elif isinstance(node, ast.AnnAssign):
                    hints |= {id(x) for x in ast.walk(node.annotation)}
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in hints and \
                    any(isinstance(x, ast.Constant) and x.value is None for x in (node.left, node.right)):
                pytest.fail(f"{m}.py: 'X | None' at line {node.lineno} (Python 3.10)")


def test_kirk_ltp_exit_codes_and_summary(tarball, host_verdicts, tmp_path):
    """kpc-ltp as kirk runs it (cwd testcases/bin, LTPROOT, PATH): LTP's exit
    code and Summary block per verdict; a table edited to disagree gives a
    fail (1), a case without rows an error (broken, 2)."""
    import re
    kpc = unpack(tarball, tmp_path / "dut")
    ltproot = os.path.join(kpc, "kirk")
    tc = os.path.join(ltproot, "testcases", "bin")
    env = {"LTPROOT": ltproot, "PATH": f"/usr/bin:/bin:{tc}", "TMPDIR": "/tmp"}
    with open(os.path.join(ltproot, "runtest", "kpc")) as f:
        lines = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    assert len(lines) == len(host_verdicts) and all(len(ln) == 3 and ln[1] == "kpc-ltp" for ln in lines)
    slow = {c.id for c in cases.load_all().values() if c.slow}  # kirk runs them; `./kpc run` skips them
    skipped = next(f"{c}{':' + v if v else ''}@{fl}" for (c, v, fl), verdict in host_verdicts.items()
                   if verdict == "skip" and c not in slow)
    table = os.path.join(kpc, "cases", "signals", "sigmask_survives_execve.exp")
    with open(table) as f:
        text = f.read()
    assert "[sigmask_survives_execve]\nchild.blocked = SIGUSR1|SIGTERM" in text
    edits = {table: text.replace("[sigmask_survives_execve]\nchild.blocked = SIGUSR1|SIGTERM",
                                 "[sigmask_survives_execve]\nchild.blocked = SIGUSR2"),
             os.path.join(kpc, "cases", "signals", "sig_ign_survives_execve.exp"): "# no rows yet\n"}
    expect = {"exit_status_low_8_bits@host": (0, "passed"), skipped: (32, "skipped"),
              "sigmask_survives_execve@host": (1, "failed"), "sig_ign_survives_execve@host": (2, "broken")}
    for run_name, (code, counted) in expect.items():
        if code in (1, 2):
            for path, new in edits.items():
                with open(path, "w") as f:
                    f.write(new)
        r = run(["kpc-ltp", run_name], cwd=tc, env=env, timeout=300)
        assert r.returncode == code, (run_name, r.stdout, r.stderr)
        m = re.search(r"Summary:\npassed\s*(\d+)\nfailed\s*(\d+)\nbroken\s*(\d+)\nskipped\s*(\d+)\nwarnings\s*(\d+)\n",
                      r.stdout)
        assert m, r.stdout
        counts = dict(zip(("passed", "failed", "broken", "skipped", "warnings"), map(int, m.groups())))
        assert counts == {k: int(k == counted) for k in counts}, (run_name, counts)
    r = run(["kpc-ltp", "no_such_case@host"], cwd=tc, env=env)
    assert r.returncode == 2 and r.stderr.startswith("kpc: ")
