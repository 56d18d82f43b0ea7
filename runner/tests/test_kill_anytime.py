"""kill -9 of the runner, of kpc-launch, or of both, at random moments of
real runs -- the whole suite, the FUSE deadlock cases, runs under runc:
afterwards no process of the run, no FUSE mount, no run directory and no
OCI container, bundle or cgroup remains, and a runner that was not killed
ends on its own (it watches the launcher, with deadlines) instead of
hanging.

KPC_KILL_TRIALS (default 20) and KPC_KILL_SEED (printed) repeat a series."""

import glob
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import processes
from kpc import paths
from test_fuse_hangs import fuse_mounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the FUSE and OCI cases run as root)")

KPC = os.path.join(paths.ROOT, "kpc")
TRIALS = int(os.environ.get("KPC_KILL_TRIALS", "20"))
SEED = int(os.environ.get("KPC_KILL_SEED", str(time.time_ns() % 1_000_000)))


def runc_works():
    return shutil.which("runc") is not None


CONFIGS = [  # (name, run arguments, kill after U(lo, hi) seconds of the launcher's life)
    ("suite", [], (0.2, 9.0)),
    ("fuse", ["--area", "fuse"], (0.3, 5.0)),
    ("runc", ["--runtime", "runc"], (0.3, 4.0)),
]
WHATS = ["runner", "launcher", "both"]


def session_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[4])
    except (OSError, ValueError, IndexError):
        return None


def leftovers(sid, launcher):
    """Processes of one trial: in the runner's session (shims move to their
    own process group, not session), or carrying a probe environment that
    names the trial launcher's run directory."""
    mark = f"KPC_TMPDIR={os.environ.get('TMPDIR', '/tmp')}/kpc-run.{launcher}.".encode()
    out = {}
    for pid, info in processes().items():
        mine = session_of(pid) == sid
        if not mine:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    mine = mark in f.read()
            except OSError:
                pass
        if mine:
            out[pid] = info
    return out


def oci_state():
    """Containers (the runtimes' state), bundles, locks and container cgroups
    that kpc's OCI wrapper made (runner/kpc/oci_run.py's layout)."""
    found = set(glob.glob("/run/kpc-oci/state/*/*")) | set(glob.glob("/run/kpc-oci/bundles/*"))
    found |= set(glob.glob("/run/kpc-oci/locks/*"))
    found |= {d for d in glob.glob("/sys/fs/cgroup/*/kpc-*") + glob.glob("/sys/fs/cgroup/*/*/kpc-*")}
    return found


def wait_for(check, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()


def launcher_of(runner, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and runner.poll() is None:
        for pid, (ppid, _, comm) in processes().items():
            if ppid == runner.pid and comm == "kpc-launch":
                return pid
        time.sleep(0.01)
    return None


def test_kill_9_at_random_moments_leaves_nothing_behind(tmp_path, built):
    rng = random.Random(SEED)
    configs = [c for c in CONFIGS if c[0] != "runc" or runc_works()]
    log = []
    print(f"\nKPC_KILL_SEED={SEED}")
    for i in range(TRIALS):
        name, args, (lo, hi) = configs[i % len(configs)]
        what = WHATS[(i // len(configs)) % len(WHATS)]
        delay = rng.uniform(lo, hi)
        mounts, oci = fuse_mounts(), oci_state()
        runner = subprocess.Popen([KPC, "run", "--no-build", *args, "--json", str(tmp_path / f"r{i}.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=paths.ROOT,
                                  start_new_session=True)
        launcher = launcher_of(runner)
        trial = f"trial {i} (seed {SEED}): {name}, kill -9 {what} after {delay:.2f} s"
        assert launcher, f"{trial}: no launcher appeared ({runner.poll()})"
        time.sleep(delay)
        if what in ("runner", "both"):
            os.kill(runner.pid, signal.SIGKILL)
        if what in ("launcher", "both"):
            try:
                os.kill(launcher, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it had finished
        try:
            _, err = runner.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            runner.kill()
            pytest.fail(f"{trial}: the runner hung after the kill")
        if what == "launcher":
            assert runner.returncode in (0, 1), f"{trial}: runner exit {runner.returncode}: {err[-2000:]}"
            assert "Traceback" not in err, f"{trial}: {err[-2000:]}"
        # The shims finish their recovery and cleanup by themselves.
        clean = wait_for(lambda: not leftovers(runner.pid, launcher) and fuse_mounts() == mounts
                         and not glob.glob(f"/tmp/kpc-run.{launcher}.*") and oci_state() <= oci, 30)
        log.append(f"{trial}: runner exit {runner.returncode}, clean={clean}")
        assert clean, (f"{trial}: left behind: processes {leftovers(runner.pid, launcher)}, "
                       f"FUSE mounts {fuse_mounts() - mounts}, run dirs {glob.glob(f'/tmp/kpc-run.{launcher}.*')}, "
                       f"OCI {oci_state() - oci}")
    print("\n".join(log))
