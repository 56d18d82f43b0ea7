"""./kpc end to end on this host: the suite runs, verdicts and exit codes
are right, results files have the documented schema, bad input exits 2,
an unprivileged user gets skips (never a crash), nothing is left behind."""

import json
import os
import pathlib
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET

import pytest

from conftest import run, needs_root
from kpc import paths

KPC = os.path.join(paths.ROOT, "kpc")


def kpc(*args, env=None, user=None):
    cmd = [KPC, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = dict(os.environ)
    full_env.pop("KPC_EXPECTED_DIR", None)
    full_env.update(env or {})
    return run(cmd, env=full_env, cwd=paths.ROOT)


def test_suite_runs_on_the_host_and_writes_results(tmp_path, built, scope):
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    p = kpc("run", "--no-build", "--json", str(out_json), "--junit", str(out_xml), env={"TMPDIR": scope.tmp})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CASE" in p.stdout and "totals:" in p.stdout

    doc = json.loads(out_json.read_text())
    env = doc["environment"]
    for key in ("kernel", "machine", "distro", "libc", "root", "capabilities", "runtime"):
        assert key in env
    assert env["kernel"] == os.uname().release
    results = doc["results"]
    assert results
    for r in results:
        for key in ("case", "flavor", "kernel", "runtime", "verdict", "observations", "expected", "reason",
                    "duration_ms"):
            assert key in r, key
        assert r["verdict"] in ("pass", "skip", "xfail")
    passed = [r for r in results if r["verdict"] == "pass"]
    assert passed and all(r["observations"] and r["expected"] for r in passed)
    assert doc["totals"]["pass"] == len(passed)

    suite = ET.parse(out_xml).getroot()
    assert int(suite.get("tests")) == len(results)
    assert int(suite.get("failures")) == 0

    # Nothing left behind: no run directory, no process of the run.
    assert not scope.settle(), scope.leftovers()


def test_case_and_flavor_selection(tmp_path, built):
    p = kpc("run", "--no-build", "--case", "sigmask_*", "--flavor", "host", "--json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [(r["case"], r["flavor"]) for r in doc["results"]] == [("sigmask_survives_execve", "host")]


def test_a_wrong_expectation_fails_with_expected_and_observed(tmp_path, built):
    table = tmp_path / "signals" / "sigmask_survives_execve.exp"   # the case's own rows, alone
    table.parent.mkdir()
    text = open(os.path.join(paths.EXPECTED, "signals", "sigmask_survives_execve.exp")).read()
    table.write_text(text.replace("exec.blocked = SIGUSR1|SIGTERM", "exec.blocked = none"))
    p = kpc("run", "--no-build", "--case", "sigmask_survives_execve", "--flavor", "host",
            "--json", str(tmp_path / "r.json"), env={"KPC_EXPECTED_DIR": str(tmp_path)})
    assert p.returncode == 1
    assert "FAIL sigmask_survives_execve@host: exec.blocked: expected none" in p.stdout
    assert "observed SIGUSR1|SIGTERM" in p.stdout
    assert "man: sigprocmask(2)" in p.stdout            # provenance printed with a failure


def test_a_malformed_table_exits_2_with_file_and_line(tmp_path, built):
    (tmp_path / "signals").mkdir()
    (tmp_path / "signals" / "sigmask_survives_execve.exp").write_text(
        "[sigmask_survives_execve]\nexec.blocked = SIGUSR1 if flavor=host\n")
    p = kpc("run", "--no-build", "--json", str(tmp_path / "r.json"), env={"KPC_EXPECTED_DIR": str(tmp_path)})
    assert p.returncode == 2
    assert "sigmask_survives_execve.exp:2: a row with a condition or xfail needs a reason" in p.stderr


def test_unknown_key_in_a_table_is_an_error_verdict(tmp_path, built):
    shutil.copytree(os.path.join(paths.EXPECTED, "signals"), tmp_path / "signals",
                    ignore=lambda d, names: [n for n in names if not n.endswith(".exp")])
    table = tmp_path / "signals" / "handler_reset_by_execve.exp"
    text = table.read_text()
    # A misspelt key in the case's section.
    assert "[handler_reset_by_execve]\n" in text
    table.write_text(text.replace("[handler_reset_by_execve]\n", "[handler_reset_by_execve]\nexec.blockd = none\n"))
    p = kpc("run", "--no-build", "--case", "handler_reset_by_execve", "--flavor", "host",
            "--json", str(tmp_path / "r.json"), env={"KPC_EXPECTED_DIR": str(tmp_path)})
    assert p.returncode == 1
    assert "did not record 'exec.blockd'" in p.stdout


def _tables_copy(tmp_path):
    d = tmp_path / "tables"
    shutil.copytree(paths.EXPECTED, d, ignore=lambda where, names: [
        n for n in names if not n.endswith(".exp") and not os.path.isdir(os.path.join(where, n))])
    return d


@pytest.mark.parametrize("how", ["emptied", "removed"])
def test_check_names_a_case_without_rows_and_its_file(tmp_path, how):
    """A case whose .exp has no section, or is missing: `kpc check` lists
    it, naming the file the rows belong in (exit 2), as before the move."""
    d = _tables_copy(tmp_path)
    table = d / "signals" / "sigmask_survives_execve.exp"
    table.write_text("# rows to come\n") if how == "emptied" else table.unlink()
    p = kpc("check", env={"KPC_EXPECTED_DIR": str(d)})
    assert p.returncode == 2, p.stdout + p.stderr
    rel = os.path.relpath(table, paths.ROOT)
    assert f"sigmask_survives_execve: no [sigmask_survives_execve] section in {rel}\n" in p.stdout, p.stdout
    assert p.stderr.startswith("kpc: ") and "problems (listed above)" in p.stderr, p.stderr


@pytest.mark.parametrize("text, message", [
    ("[no_such_case]\n", "sigmask_survives_execve.exp:1: unknown case id 'no_such_case'"),
    ("[handler_reset_by_execve]\na = 1\n", "sigmask_survives_execve.exp:1: [handler_reset_by_execve] in "
     "sigmask_survives_execve.exp: a file holds the rows of the case it is named after; put the rows of "
     "'handler_reset_by_execve' in cases/signals/handler_reset_by_execve.exp"),
])
def test_check_refuses_rows_in_the_wrong_file_in_one_line(tmp_path, text, message):
    d = _tables_copy(tmp_path)
    (d / "signals" / "sigmask_survives_execve.exp").write_text(text)
    p = kpc("check", env={"KPC_EXPECTED_DIR": str(d)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["run", "--case", "no_such_case*"], ["explain", "no_such_case"],
                                  ["run", "--flavor", "vm"], ["run", "--jobs", "0"], ["frobnicate"]])
def test_bad_usage_exits_2(args, built):
    p = kpc(*args, "--no-build") if args[0] == "run" and "--flavor" not in args else kpc(*args)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip()


def test_list_and_explain(built):
    p = kpc("list")
    assert p.returncode == 0 and "sigmask_survives_execve" in p.stdout and "signals" in p.stdout
    p = kpc("explain", "sigmask_survives_execve")
    assert p.returncode == 0
    for needle in ("cases/signals/sigmask_survives_execve.cc", "cases/signals/sigmask_survives_execve.toml",
                   "cases/signals/sigmask_survives_execve.exp", "cases/signals/sigmask_survives_execve.md",
                   'story 000: Jan Veen, "A Little Bug Hunt"'):
        assert needle in p.stdout


@pytest.mark.parametrize("cmd", [[], ["run"], ["list"], ["explain"], ["check"], ["selftest"]])
def test_help_for_every_command(cmd):
    p = kpc(*cmd, "--help")
    assert p.returncode == 0 and "usage: kpc" in p.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to switch users")
def test_unprivileged_user_gets_skips_with_reasons_not_a_crash(built):
    shared = tempfile.mkdtemp(prefix="kpc-selftest-")
    os.chmod(shared, 0o777)
    out = pathlib.Path(shared) / "nobody.json"
    try:
        # Without --no-build: the root-owned build is found and reused.
        p = kpc("run", "--json", str(out), user=65534)
        doc = json.loads(out.read_text()) if out.exists() else None
    finally:
        shutil.rmtree(shared)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert doc["environment"]["root"] is False
    skipped = [r for r in doc["results"] if r["verdict"] == "skip"]
    # Every skip names the privilege that is missing: the pidns flavor, a
    # case that needs root, or a probe that creates a PID namespace itself.
    # (FUSE cases: the device's permissions, or a deadlock only root could
    # undo here; slow cases: not asked for; cases for a newer kernel than
    # the host's: the version they need; an optional package not installed
    # (musl-tools, or a command a case needs: fuse3's fusermount3 on Debian 11);
    # a feature the installed libfuse lacks: Debian 11's 3.10 has no noflush.)
    unexplained = sorted({r["reason"] for r in skipped
                          if not ("CAP_SYS_ADMIN" in r["reason"] or r["reason"] == "needs root"
                                  or r["reason"].startswith(("/dev/fuse: Permission denied", "slow case",
                                                             "runs only under --runtime", "needs Linux >= ",
                                                             "without root (and with no fusectl mounted)",
                                                             "needs the command "))
                                  or re.fullmatch(r"libfuse [\d.]+ cannot send \w+ .*", r["reason"])
                                  or "musl-tools" in r["reason"])})
    assert skipped and not unexplained, unexplained
    assert all(r["flavor"] == "pidns" for r in skipped if "flavor unavailable" in r["reason"])
    assert any(r["flavor"] == "userns" and r["verdict"] == "pass" for r in doc["results"])
    assert {r["verdict"] for r in doc["results"]} <= {"pass", "skip", "xfail"}


@needs_root
def test_results_to_a_device_write_through_it_and_keep_the_device(tmp_path, built):
    """--json /dev/null once replaced /dev/null with a regular file (the
    atomic rename landed on the device node). Checked on a private null
    device, so a regression cannot break the machine's /dev/null."""
    import stat
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    try:
        open(dev, "w").close()
    except OSError as e:
        pytest.skip(f"cannot open a device node in {tmp_path} ({e}): nodev mount")
    r = kpc("run", "--case", "sigmask_survives_execve", "--flavor", "host", "--no-build", "--json", str(dev))
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(os.stat(dev).st_mode), "the device node was replaced by a file"
    assert not os.path.exists(f"{dev}.tmp")


def _into_closed_pipe(*args):
    """./kpc ARGS with stdout a pipe nobody reads any more: the first write
    fails (EPIPE), as in `./kpc explain X | head` once head has its lines."""
    import subprocess
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([KPC, *args], stdout=w, stderr=subprocess.PIPE, text=True, cwd=paths.ROOT, timeout=120)
    finally:
        os.close(w)


def _commands():
    import argparse
    from kpc import cli
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("args", [["--help"]] + [[c, "--help"] for c in _commands()] + [
    ["explain", "sig_ign_survives_execve"], ["list"], ["decode", "0x4200"], ["check"]])
def test_a_reader_that_left_ends_any_command_quietly(args):
    """SIGPIPE handled for every command: 128+SIGPIPE and nothing on stderr,
    not a BrokenPipeError traceback (argparse's --help included)."""
    p = _into_closed_pipe(*args)
    assert p.returncode == 141 and p.stderr == "", (p.returncode, p.stderr[-2000:])
