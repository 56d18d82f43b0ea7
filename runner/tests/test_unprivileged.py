"""Without root, with /dev/fuse open to everyone (what Debian's fuse3 package
does on a machine with udev): the whole suite as an ordinary user must leave
nothing behind -- no process, no FUSE mount or connection, no run directory
-- and every FUSE verdict is a real result or a skip that says why.

Before this was fixed, the userns flavor's deadlock cases deadlocked for
real with nobody able to undo them (issue 25), and a FUSE case mounted in
the machine's mount namespace through libfuse's set-user-ID fusermount3
(found while fixing it)."""

import json
import os
import shutil
import stat

import pytest

from test_cli import kpc

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


def test_the_whole_suite_as_an_ordinary_user_leaves_nothing_behind(fuse_open_to_all, built, scope):
    out = os.path.join(scope.tmp, "nobody.json")
    p = kpc("run", "--no-build", "--json", out, user=NOBODY, env={"TMPDIR": scope.tmp})
    with open(out) as f:
        doc = json.load(f)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr

    # Nothing of the run is left: no task (so no FUSE connection: one lives
    # only while a mount or a task holds it), no FUSE mount under its
    # directories -- in any mount namespace -- and no run directory.
    assert not scope.settle(), scope.leftovers()

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


def test_selftest_on_a_checkout_this_user_cannot_write_says_so_in_one_line(built):
    """ctest writes its logs and the test list into the build directory: as
    an ordinary user on root's checkout it failed with CMake errors."""
    p = kpc("selftest", "--no-build", user=NOBODY, env={"HOME": "/tmp"})
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert p.stderr.startswith("kpc: ") and len(p.stderr.splitlines()) == 1, p.stderr
    assert "cannot write" in p.stderr and "clone of your own" in p.stderr
