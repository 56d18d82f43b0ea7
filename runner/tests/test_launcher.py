"""kpc-launch end to end with the probes in runner/launcher/testprobes/:
hang detection and recovery, deadlines, orphans, leftover mounts, protocol
errors, and nothing surviving a killed launcher."""

import glob
import json
import os
import pathlib
import signal
import stat
import subprocess
import time

import pytest

from conftest import run, helper_probe, needs_root
from kpc import paths

# A PID namespace of the launcher's own needs CAP_SYS_ADMIN: without root
# the pidns flavor's tests skip (the userns flavor is the unprivileged one).
ALL_FLAVORS = ["host", "pidns", "userns"]
FLAVORS = ["host", pytest.param("pidns", marks=needs_root), "userns"]
SCOPE = None  # this test's own processes and $TMPDIR (conftest.Scope), set by no_leftovers


def launch(probe, *opts, flavor="host"):
    proc = run([paths.launcher(), "run", "--json", "--flavor", flavor, *opts, "--", helper_probe(probe)],
               env=SCOPE.env())
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def wait_until(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def probe_pids(name):
    """This test's processes named `name` (never another run's)."""
    return [pid for pid, (_, _, comm) in SCOPE.processes().items() if comm == name[:15]]


@pytest.fixture(autouse=True)
def no_leftovers(built, scope):
    global SCOPE
    SCOPE = scope
    yield
    # Every test: nothing it started survives it.
    assert not scope.settle(3), scope.leftovers()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_completed_run_reports_records_in_order(flavor):
    r = launch("noop", flavor=flavor)
    assert r["outcome"] == "completed"
    assert r["exit"]["text"] == "exited 0"
    assert r["records"][0] == {"obs": "noop", "type": "bool", "value": True} and r["records"][-1] == {"end": "ok"}
    cwd = r["records"][1]
    assert cwd["obs"] == "cwd" and os.path.dirname(cwd["value"]) == SCOPE.tmp
    assert os.path.basename(cwd["value"]).startswith("kpc-run.")


def default_run_dir_base():
    """Where run directories go without $TMPDIR (spawn.cc default_base):
    /dev/shm when it is a sticky tmpfs mounted without noexec, nosuid, nodev
    or ro; else /tmp."""
    shm = "/dev/shm"
    try:
        st, vfs = os.lstat(shm), os.statvfs(shm)
    except OSError:
        return "/tmp"
    with open("/proc/self/mountinfo") as f:
        fstype = [ln.split(" - ", 1)[1].split()[0] for ln in f if ln.split()[4] == shm]
    flags = os.ST_NOEXEC | os.ST_NOSUID | os.ST_NODEV | os.ST_RDONLY
    ok = (stat.S_ISDIR(st.st_mode) and fstype[-1:] == ["tmpfs"] and not vfs.f_flag & flags
          and st.st_uid in (0, os.geteuid()) and (st.st_mode & stat.S_ISVTX or not st.st_mode & 0o022))
    return shm if ok else "/tmp"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_without_tmpdir_runs_are_in_a_tmpfs_when_one_behaves_as_a_plain_directory(flavor):
    """No $TMPDIR: the run directory is in /dev/shm where that is a tmpfs a
    probe cannot tell from a plain directory (faster than a disk's /tmp),
    else in /tmp; either way removed at the end."""
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    proc = run([paths.launcher(), "run", "--json", "--flavor", flavor, "--", helper_probe("noop")], env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    cwd = [x["value"] for x in r["records"] if x.get("obs") == "cwd"]
    assert len(cwd) == 1 and os.path.dirname(cwd[0]) == default_run_dir_base(), cwd
    assert not os.path.exists(cwd[0])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_task_stuck_in_d_state_is_a_hang_with_its_kernel_stack(flavor):
    r = launch("stuck_in_vfork", "--hang-ms", "300", "--timeout-ms", "5000", flavor=flavor)
    assert r["outcome"] == "hang"
    hang = r["hang"]
    stuck = [t for t in hang["tasks"] if t["stuck"]]
    assert len(stuck) == 1 and stuck[0]["state"] == "D" and stuck[0]["comm"] == "stuck_in_vfork"
    if os.geteuid() == 0:   # /proc/PID/stack is root-only
        assert any("vfork" in frame for frame in stuck[0]["stack"]), stuck[0]["stack"]
    assert hang["recovered"] is True
    assert 300 <= hang["detected_ms"] < 4000
    assert r["exit"]["text"] == "killed SIGKILL"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_deadline_kills_an_ordinary_sleeper(flavor):
    r = launch("sleep_forever", "--timeout-ms", "400", flavor=flavor)
    assert r["outcome"] == "timeout"
    assert r["trouble"]["recovered"] is True
    assert 400 <= r["duration_ms"] < 3000


@pytest.mark.parametrize("flavor", FLAVORS)
def test_double_forked_daemon_does_not_outlive_the_run(flavor):
    r = launch("orphan_daemon", flavor=flavor)
    assert r["outcome"] == "completed"
    # The no_leftovers fixture checks the grandchild ("orphan_daemon") is gone.


@pytest.mark.parametrize("flavor", FLAVORS)
def test_garbage_on_the_channel_is_reported_not_dropped(flavor):
    r = launch("garbage_records", flavor=flavor)
    assert r["protocol_errors"] == ["this is not json"]
    assert {"obs": "after_garbage", "type": "bool", "value": True} in r["records"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) in the host flavor needs root")
def test_host_flavor_mount_left_behind_is_detached_and_reported():
    r = launch("leaves_mount", flavor="host")
    assert r["outcome"] == "completed"
    assert [m["result"] for m in r["leftover_mounts"]] == ["unmounted"]
    with open("/proc/self/mountinfo") as f:
        assert SCOPE.tmp not in f.read()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_killing_the_launcher_kills_the_probe_tree(flavor):
    launcher = subprocess.Popen([paths.launcher(), "run", "--json", "--flavor", flavor, "--timeout-ms", "60000",
                                 "--", helper_probe("sleep_forever")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=SCOPE.env())
    try:
        assert wait_until(lambda: probe_pids("sleep_forever")), "the probe never started"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(5)
        assert wait_until(lambda: not probe_pids("sleep_forever"), 3), "probe survived its launcher"
        # The killed launcher could not remove its run directory: its shim,
        # orphaned, did.
        assert wait_until(lambda: not glob.glob(os.path.join(SCOPE.tmp, f"kpc-run.{launcher.pid}.*")), 3)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_a_dead_launchers_run_directory_is_swept_without_following_links(tmp_path):
    """A launcher and its shims all SIGKILLed leave the run directory: the
    next launcher removes it -- by descriptor, never through a link in it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read()) + 1  # a PID nobody can have
    stale = pathlib.Path(SCOPE.tmp) / f"kpc-run.{dead}.testXY"
    (stale / "a" / "b").mkdir(parents=True)
    (stale / "a" / "b" / "f").write_text("x")
    (stale / "a" / "link").symlink_to(victim)
    launch("noop")
    assert not stale.exists()
    assert (victim / "keep").exists()


@needs_root
def test_batch_runs_a_plan_and_reports_every_run():
    plan = [{"run": f"r{i}", "case": "noop", "variant": "", "flavor": f, "argv": [helper_probe("noop")],
             "timeout_ms": 5000, "hang_ms": 1000} for i, f in enumerate(ALL_FLAVORS * 3)]
    proc = run([paths.launcher(), "batch", "--jobs", "2"], input="".join(json.dumps(p) + "\n" for p in plan),
               env=SCOPE.env())
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line]
    assert sorted(r["run"] for r in results) == sorted(p["run"] for p in plan)
    assert {r["outcome"] for r in results} == {"completed"}


@pytest.mark.parametrize("line, message", [
    ("not json", "-:1: "),
    ('{"run": "x", "flavor": "host", "argv": ["relative/path"]}', "absolute"),
    ('{"run": "x", "flavor": "vm", "argv": ["/bin/true"]}', "flavor"),
    ('{"run": "x", "flavor": "host", "argv": ["/bin/true"], "hang_grace_ms": -1}', "hang_grace_ms"),
    ('{"run": "x", "flavor": "host", "argv": ["/bin/true"], "hang_grace_ms": 120001}', "hang_grace_ms"),
])
def test_batch_rejects_a_bad_plan_clearly(line, message):
    proc = run([paths.launcher(), "batch"], input=line + "\n", env=SCOPE.env())
    assert proc.returncode == 2
    assert message in proc.stderr


def test_flavors_reports_each_flavor():
    proc = run([paths.launcher(), "flavors"], env=SCOPE.env())
    status = json.loads(proc.stdout)
    assert set(status) == set(ALL_FLAVORS)
    assert status["host"] == "ok"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_scratch_cgroups_of_a_killed_probe_are_removed(flavor):
    """A probe killed at its deadline (or a hang) never runs the destructor
    of its scratch cgroup: the shim removes kpc-<what>.<letters> cgroups
    whose letters are those of the probe's cgroup2 mount in the run
    directory (seven were left by loaded host suites before)."""
    if os.geteuid() != 0:
        pytest.skip("scratch cgroups need root here")
    r = launch("scratch_cgroup_forever", "--timeout-ms", "1500", flavor=flavor)
    names = [rec["value"] for rec in r["records"] if rec.get("obs") == "name"]
    if not names:
        skipped = [rec for rec in r["records"] if "skip" in rec]
        pytest.skip(f"no scratch cgroup here: {skipped}")
    assert r["outcome"] == "timeout", r
    left = []
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[f.index("-") + 1] == "cgroup2":
            left += glob.glob(os.path.join(f[4], "**", names[0]), recursive=True)
    assert not left, f"left behind: {left}"
