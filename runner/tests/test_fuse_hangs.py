"""The FUSE deadlock cases, end to end: each one deadlocks on purpose; kpc
must report it (xfail where the table expects it) with the stuck tasks'
stacks within 2 s, recover, and leave nothing behind: no FUSE mount, no
FUSE connection, no fusectl mount, no zombie or D-state task."""

import glob
import json
import os
import subprocess

import pytest

from conftest import processes
from test_cli import kpc

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse")

DEADLOCKING = ("fuse_self_served_exit", "fuse_pidns_teardown_deadlock")


def fuse_mounts():
    """Every FUSE mount any process can see: (mountinfo line) set."""
    out = set()
    for path in glob.glob("/proc/[0-9]*/mountinfo"):
        try:
            with open(path) as f:
                for line in f:
                    fstype = line.split(" - ", 1)[1].split()[0] if " - " in line else ""
                    if fstype == "fuse" or fstype.startswith("fuse."):
                        out.add(line.split()[4] + " " + fstype)
        except OSError:
            continue
    return out


def fuse_connections():
    """The kernel's live FUSE connections, listed through fusectl mounted in a
    throwaway mount namespace (so this test does not mount it either)."""
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        "mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null; ls /sys/fs/fuse/connections"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return set(p.stdout.split())


def fusectl_mounted():
    with open("/proc/self/mountinfo") as f:
        return any(" - fusectl " in line for line in f)


def test_deadlocks_are_reported_with_stacks_and_leave_nothing_behind(tmp_path, built):
    mounts, conns, ctl = fuse_mounts(), fuse_connections(), fusectl_mounted()
    before = processes()
    out = tmp_path / "fuse.json"
    p = kpc("run", "--no-build", "--area", "fuse", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads(out.read_text())["results"]

    hung = [r for r in results if r["case"] in DEADLOCKING]
    assert hung and all(r["verdict"] == "xfail" for r in hung), [(r["case"], r["verdict"], r["reason"]) for r in hung]
    for r in hung:
        h = r["hang"]
        assert h["recovered"] and h["aborted_fuse_connections"], h
        assert h["detection_latency_ms"] < 2000 and h["stuck_since_ms"] < 2000, h
        stuck = [t for t in h["tasks"] if t["stuck"]]
        assert any("fuse_flush" in " ".join(t["stack"]) for t in stuck), stuck
        assert all(t["wchan"] for t in stuck)
    teardown = [r for r in hung if r["case"] == "fuse_pidns_teardown_deadlock"]
    assert teardown and len(teardown) < len(hung)  # both deadlocking cases ran
    assert all(any("zap_pid_ns_processes" in " ".join(t["stack"]) for t in r["hang"]["tasks"]) for r in teardown)
    # Observations made before the hang were compared, not dropped.
    assert all(r["observations"].get("during_teardown.fork") == "ENOMEM" for r in teardown)

    # Nothing left: mounts, connections, fusectl, tasks.
    assert fuse_mounts() == mounts
    assert fuse_connections() == conns
    assert fusectl_mounted() == ctl
    leftover = {pid: info for pid, info in processes().items()
                if pid not in before and (info[1] in "ZD" or info[2].startswith(("fuse_", "kpc")))}
    assert not leftover, leftover
