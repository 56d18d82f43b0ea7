"""--runtime: the runtime-capable cases run as a runtime's child, started
by a dirty caller, and are judged by the runtime's profile."""

import json
import os
import shutil
import tempfile

import pytest

from conftest import processes
from kpc import runtimes
from test_cli import kpc


def test_known_runtimes_resolve_with_profile_and_source():
    rt = runtimes.resolve("dumb-init")
    assert rt.profile == "clean" and "sigprocmask(SIG_UNBLOCK" in rt.source
    if shutil.which("dumb-init"):
        assert rt.prefix[0].startswith("/") and rt.prefix[-1] == "--" and not rt.unavailable
    else:
        assert "not installed" in rt.unavailable
    runc = runtimes.resolve("runc")
    if runc.unavailable:
        assert "not installed" in runc.unavailable
    else:  # kpc builds the OCI bundle: its wrapper is the prefix
        assert runc.prefix[1].endswith("oci_run.py") and runc.prefix[-1] == "--" and runc.profile == "mask-through"


def test_a_command_prefix_is_a_runtime_with_the_asserted_profile():
    rt = runtimes.resolve("env --", profile="pass-through")
    assert rt.name == "env --" and rt.prefix == [shutil.which("env"), "--"] and rt.profile == "pass-through"
    assert runtimes.resolve("env --").profile == "clean"


@pytest.mark.parametrize("spec", ["{tini} -s --", "{tini}", "tini -s --", "{tini} -s -g --"])
def test_a_prefix_running_a_known_runtime_is_not_that_runtime(spec, monkeypatch):
    """'/usr/bin/tini -s --' was reported as column tini, judged clean: a
    false FAIL beside the real tini's column in a merged matrix."""
    monkeypatch.setattr(runtimes.shutil, "which", lambda name, path=None: "/usr/bin/tini" if "tini" in name else None)
    spec = spec.format(tini="/usr/bin/tini")
    rt = runtimes.resolve(spec)
    assert rt.name == spec and rt.name not in runtimes.KNOWN and rt.profile == "clean"
    assert rt.prefix[0] == "/usr/bin/tini" and "prefix" in rt.source
    assert [r.name for r in runtimes.parse_list(f"tini,{spec}")] == ["tini", spec]    # two columns


def test_a_quoted_known_name_is_the_known_runtime():
    assert runtimes.resolve("'dumb-init'").source == runtimes.resolve("dumb-init").source


@pytest.mark.parametrize("binary", ["runc", "crun"])
def test_an_oci_runtime_as_a_plain_prefix_is_refused(binary, monkeypatch):
    """`runc PROBE` cannot start anything (runc wants a bundle): it was an
    'error' under column runc, as if kpc's OCI mode had failed."""
    monkeypatch.setattr(runtimes.shutil, "which", lambda name, path=None: f"/usr/sbin/{binary}")
    with pytest.raises(ValueError, match=f"use --runtime {binary}"):
        runtimes.resolve(f"/usr/sbin/{binary}")
    assert runtimes.resolve(f"/usr/sbin/{binary} exec ctr").name == f"/usr/sbin/{binary} exec ctr"


@pytest.mark.parametrize("spec,profile,message", [
    ("no-such-init-binary --", None, "not found"),
    ("tini,tini", None, "twice"),
    ("tini", "sloppy", "unknown profile"),
    ('"unclosed', None, "--runtime .*No closing quotation"),
    ("/usr/bin/env\x1b[2J --", None, "control characters"),
    ("env\n--", None, "control characters"),
    ("", None, "empty --runtime"),
])
def test_bad_runtime_specs_are_refused(spec, profile, message):
    with pytest.raises(ValueError, match=message):
        runtimes.parse_list(spec, profile)


def test_profile_decides_the_verdict_and_names_the_leaked_signals(tmp_path, built):
    before = set(processes())
    out = tmp_path / "rt.json"
    # env passes the dirty caller's state through: right for pass-through...
    p = kpc("run", "--no-build", "--runtime", "/usr/bin/env --", "--profile", "pass-through", "--json", str(out),
            "--case", "inherited_signal_state")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert (r["case"], r["runtime"], r["profile"], r["verdict"]) == ("inherited_signal_state", "/usr/bin/env --",
                                                                     "pass-through", "pass")
    assert r["observations"]["self.blocked"] == "SIGUSR1|SIGALRM"
    assert doc["environment"]["runtimes"]["/usr/bin/env --"]["prefix"][-1] == "--"
    # ...and a fail that names the signals when it promises clean.
    p = kpc("run", "--no-build", "--runtime", "/usr/bin/env --", "--profile", "clean", "--json", str(out),
            "--case", "inherited_signal_state")
    assert p.returncode == 1
    assert "extra SIGUSR1|SIGALRM" in p.stdout and "extra SIGHUP|SIGUSR2" in p.stdout
    assert not [pid for pid, info in processes().items() if pid not in before and info[1] == "Z"]


def test_profile_without_runtime_is_bad_usage(built):
    p = kpc("run", "--no-build", "--profile", "clean")
    assert p.returncode == 2 and "--runtime" in p.stderr


@pytest.mark.skipif(shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin") is None, reason="runc is not installed")
def test_oci_runtimes_run_from_a_bundle_kpc_builds_and_leave_nothing(tmp_path, built):
    import glob
    import subprocess
    from kpc import oci_run
    out = tmp_path / "r.json"
    r = kpc("run", "--no-build", "--runtime", "runc,crun", "--json", str(out))
    doc = json.loads(out.read_text())
    by = {x["runtime"]: x for x in doc["results"] if x["case"] == "inherited_signal_state"}
    duties = {x["runtime"]: x for x in doc["results"] if x["case"] == "runtime_pid1_duties"}
    assert by["runc"]["verdict"] == "pass", by["runc"]["reason"]
    # no init in the container: the workload is PID 1 and leaves its orphans as zombies
    assert duties["runc"]["verdict"] == "xfail", duties["runc"]["reason"]
    assert duties["runc"]["observations"]["orphan.after_exit"] == "zombie"
    assert by["runc"]["profile"] == "mask-through"
    assert by["runc"]["observations"]["self.blocked"] == "SIGUSR1|SIGALRM"   # the caller's mask leaks in
    if shutil.which("crun"):
        # crun runs, or says in its own words why it cannot (a skip, never a fail)
        assert by["crun"]["verdict"] in ("pass", "skip"), by["crun"]
        if by["crun"]["verdict"] == "skip":
            assert by["crun"]["reason"].startswith("crun cannot run a container here: ")
    assert r.returncode in (0, 1)
    left = subprocess.run([shutil.which("runc", path="/usr/sbin:/usr/bin"), "--root", oci_run.STATE_ROOT, "list",
                           "-q"], capture_output=True, text=True).stdout.split()
    assert left == []
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "kpc-oci-*"))


@pytest.mark.skipif(shutil.which("tini") is None, reason="tini is not installed")
def test_pid1_duties_are_judged_from_outside_and_leave_no_workload(tmp_path, built):
    out = tmp_path / "r.json"
    r = kpc("run", "--no-build", "--runtime", "tini", "--case", "runtime_pid1_duties", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    res = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert set(res) == {"child", "pid1"} and all(r["verdict"] == "pass" for r in res.values())
    for r in res.values():
        obs = r["observations"]
        assert obs["killed_by_sigusr2.runtime_status"] == "exited 140" and obs["orphan.adopted_by"] == "the runtime"
    # tini as the engine's child leaves the workload running when SIGKILLed;
    # as PID 1 its death ends the namespace and the workload with it
    assert res["child"]["observations"]["sigkill_of_runtime.workload_survives"] == "true"
    assert res["pid1"]["observations"]["sigkill_of_runtime.workload_survives"] == "false"
    # ... and the probe killed the survivor: no workload is left anywhere
    assert not [p for p, (_, _, comm) in processes().items() if comm == "pid1_workload"]
    # without --runtime it has nothing to test: a skip that says so
    r = kpc("run", "--no-build", "--case", "runtime_pid1_duties", "-v")
    assert r.returncode == 0 and "runs only under --runtime" in r.stdout


def test_a_command_that_is_no_init_fails_the_pid1_duties(built):
    """env execs the workload: no 128+N, no subreaper, dies with... itself."""
    p = kpc("run", "--no-build", "--runtime", "/usr/bin/env --", "--case", "runtime_pid1_duties")
    assert p.returncode == 1
    assert "killed_by_sigusr2.runtime_status: expected exited 140" in p.stdout and "observed killed SIGUSR2" in p.stdout


def test_a_profile_is_tied_to_the_versions_it_was_measured_on():
    rt = runtimes.Runtime("tini", ["/usr/bin/tini"], "pass-through", version="0.19.0-1+b3", measured=("0.19.0-1+b3",))
    assert rt.profile_note == "" and "profile_note" not in rt.describe()
    rt.version = "0.20.0-1"
    assert "measured on 0.19.0-1+b3" in rt.profile_note and "unverified" in rt.describe()["profile_note"]
