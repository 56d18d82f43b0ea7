"""Without root, with /dev/fuse open to everyone (what Debian's fuse3 package
does on a machine with udev): the whole suite as an ordinary user must leave
nothing behind -- no process, no FUSE mount or connection, no run directory
-- and every FUSE verdict is a real result or a skip that says why.

Before this was fixed, the userns flavor's deadlock cases deadlocked for
real with nobody able to undo them (issue 25), and a FUSE case mounted in
the machine's mount namespace through libfuse's set-user-ID fusermount3
(found while fixing it)."""

import glob
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import processes
from kpc import cases, paths
from test_cli import kpc
from test_fuse_hangs import fuse_connections, fuse_mounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None
                                or not os.path.exists("/dev/fuse"),
                                reason="needs root (to switch users and open /dev/fuse) and /dev/fuse")

NOBODY = 65534


@pytest.fixture
def fuse_open_to_all():
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


def ours(before):
    """Processes that appeared since `before` and belong to kpc or a probe."""
    names = {c[:15] for c in cases.load_all()} | {"kpc-shim", "kpc-launch"}
    return {pid: info for pid, info in processes().items()
            if pid not in before and (info[2] in names or info[2].startswith("kpc-") or info[1].startswith(("Z", "D")))}


def run_dirs():
    return set(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "kpc-run.*")))


def settle(check, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not check():
        time.sleep(0.1)
    return check()


def test_the_whole_suite_as_an_ordinary_user_leaves_nothing_behind(fuse_open_to_all, built):
    before, mounts, conns, dirs = set(processes()), fuse_mounts(), fuse_connections(), run_dirs()
    shared = tempfile.mkdtemp(prefix="kpc-unpriv-")
    os.chmod(shared, 0o777)
    out = os.path.join(shared, "nobody.json")
    try:
        p = kpc("run", "--no-build", "--json", out, user=NOBODY)
        with open(out) as f:
            doc = json.load(f)
    finally:
        shutil.rmtree(shared)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr

    # Nothing of the run is left: processes, FUSE mounts and connections, run directories.
    assert settle(lambda: not ours(before)), ours(before)
    assert fuse_mounts() == mounts
    assert fuse_connections() == conns
    assert run_dirs() <= dirs

    results = doc["results"]
    fuse = [r for r in results if r["case"].startswith("fuse_")]
    assert fuse and all(r["verdict"] in ("pass", "xfail", "fail", "skip") for r in fuse), \
        [(r["case"], r["flavor"], r["verdict"], r["reason"]) for r in fuse]
    assert all(r["reason"] for r in fuse if r["verdict"] == "skip")
    for r in results:  # a stuck task is never left behind quietly
        assert (r.get("hang") or {}).get("recovered", True), r

    # The userns flavor really exercises FUSE: the device-deposit recovery
    # lets the self-served deadlock run without root ...
    recovery = doc["environment"].get("fuse_recovery")
    assert recovery in ("fusectl", "device"), doc["environment"]
    below = [r for r in fuse if r["case"] == "fuse_self_served_exit" and r["variant"] == "file_fd_below_devfuse"
             and r["flavor"] == "userns"]
    assert len(below) == 1 and below[0]["verdict"] == "xfail", below
    assert below[0]["hang"]["recovered"] is True
    if recovery == "device":
        # ... and the cases whose outcome a held device would decide skip, saying so.
        decided = [r for r in fuse if r["flavor"] == "userns" and (
            r["case"] == "fuse_pidns_teardown_deadlock" or r["variant"] == "file_fd_above_devfuse")]
        assert decided and all(r["verdict"] == "skip" and "would decide the outcome" in r["reason"]
                               for r in decided), decided
    assert any(r["verdict"] == "pass" and r["flavor"] == "userns" for r in fuse)
