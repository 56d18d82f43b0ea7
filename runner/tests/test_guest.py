"""--kernels: Debian kernels fetched with apt, booted under QEMU, the suite
run inside, supervised from the host.

The unit tests need nothing. The boot tests need qemu-system-x86_64 and one
Debian kernel (KPC_TEST_KERNEL, default 6.1: fetched and cached on first
use, as `./kpc run --kernels` does); without qemu they skip with the reason.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import types

import pytest

from conftest import processes, needs_root
from kpc import guest, guest_image, kernels, paths
from test_cli import kpc

TEST_KERNEL = os.environ.get("KPC_TEST_KERNEL", "6.1")


# ------------------------------------------------------------ units

def _read_newc(blob):
    """[(name, mode, data)] from a newc archive, up to the trailer."""
    out, off = [], 0
    while True:
        assert blob[off:off + 6] == b"070701", f"bad magic at {off}"
        fields = [int(blob[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        off += 110
        name = blob[off:off + namesize - 1].decode()
        off += namesize
        off += -off % 4
        data = blob[off:off + size]
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, data))


def test_newc_archive_is_what_the_kernel_reads():
    c = guest_image.Cpio()
    c.file("a/b/c.txt", b"hello", 0o644)
    c.symlink("bin/sh", "busybox")
    c.file("init", b"#!/bin/sh\n", 0o755)
    blob = c.bytes()
    assert len(blob) % 512 == 0
    entries = {name: (mode, data) for name, mode, data in _read_newc(blob)}
    # parents first, each once
    names = [n for n, _, _ in _read_newc(blob)]
    assert names.index("a") < names.index("a/b") < names.index("a/b/c.txt")
    assert entries["a/b/c.txt"] == (0o100644, b"hello")
    assert entries["bin/sh"] == (0o120777, b"busybox")
    assert entries["init"][0] == 0o100755
    assert entries["a"][0] & 0o170000 == 0o040000


def test_the_mirror_comes_from_this_machines_apt_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv("KPC_DEBIAN_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert kernels.debian_uri(str(tmp_path)) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian trixie main\n")
    assert kernels.debian_uri(str(tmp_path)) == "http://other.example/debian"
    (tmp_path / "sources.list").write_text("deb http://archive.example/ubuntu noble main\n")
    with pytest.raises(kernels.KernelError, match="KPC_DEBIAN_MIRROR"):
        kernels.debian_uri(str(tmp_path))
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", "http://mine.example/debian/")
    assert kernels.debian_uri(str(tmp_path)) == "http://mine.example/debian"


def test_only_pinned_kernel_packages_are_followed():
    fields = {"Depends": "dracut | initramfs-tools (>= 0.120), linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), "
                         "linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), kmod"}
    assert kernels._pinned_deps(fields) == [("linux-base-7.2.13+deb14-cloud-amd64", "7.2.13-1"),
                                            ("linux-binary-7.2.13+deb14-cloud-amd64", "7.2.13-1")]
    assert kernels._matches("6.1", "6.1.176-1", "bookworm")
    assert not kernels._matches("6.1", "6.12.117-1", "trixie")
    assert kernels._matches("sid", "7.2.13-1", "sid") and kernels._matches("7", "7.2.13-1", "sid")


def test_a_user_kernel_is_checked_before_booting(tmp_path):
    with pytest.raises(kernels.KernelError, match="no file"):
        kernels.from_path(str(tmp_path / "bzImage"))
    junk = tmp_path / "bzImage"      # a bzImage header without a version string
    junk.write_bytes(bytes(0x1fe) + b"\x55\xaa\0\0HdrS" + bytes(8192 - 0x206))
    with pytest.raises(kernels.KernelError, match="cannot tell the kernel release"):
        kernels.from_path(str(junk))
    with pytest.raises(kernels.KernelError, match="does not exist"):
        kernels.from_path(f"{junk}:{tmp_path}/nope")
    mods = tmp_path / "lib" / "modules" / "6.99.0-mine"
    mods.mkdir(parents=True)
    k = kernels.from_path(f"{junk}:{mods}")
    assert k.release == "6.99.0-mine" and k.version == (6, 99, 0) and k.module_closure(["fuse"]) == []


@needs_root
def test_bad_kernel_options_are_input_errors():
    r = kpc("run", "--no-host", "--case", "sigmask_survives_execve", "--no-build")
    assert r.returncode == 2 and "--no-host needs --kernels" in r.stderr
    r = kpc("run", "--kernel", "/nonexistent/bzImage", "--case", "sigmask_survives_execve", "--no-build")
    assert r.returncode == 2 and "no file /nonexistent/bzImage" in r.stderr
    r = kpc("run", "--kernel-append", "lsm=yama", "--case", "sigmask_survives_execve", "--no-build")
    assert r.returncode == 2 and "--kernel-append needs --kernels" in r.stderr
    r = kpc("run", "--kernels", "6.1", "--kernel-append", "a\nb", "--case", "sigmask_survives_execve", "--no-build")
    assert r.returncode == 2 and "on one line" in r.stderr


# ------------------------------------------------------------ boots

needs_qemu = pytest.mark.skipif(shutil.which(guest.QEMU) is None or not os.path.exists(guest_image.BUSYBOX),
                                reason="qemu-system-x86 and busybox-static are not installed "
                                       "(./kpc run --kernels installs them)")


@pytest.fixture(scope="module")
def kernel(built):
    try:
        return kernels.fetch_debian([TEST_KERNEL])[0]
    except kernels.KernelError as e:
        pytest.skip(f"cannot fetch Debian kernel {TEST_KERNEL}: {e}")


def qemu_pids(parent=None):
    """QEMU processes whose parent is `parent` (default: this test process,
    which runs the in-process guests): never another run's QEMU."""
    parent = os.getpid() if parent is None else parent
    return {pid for pid, (ppid, _, comm) in processes().items() if comm.startswith("qemu-system") and ppid == parent}


def _plan(run, argv, timeout_ms=10000):
    return {"run": run, "case": run, "variant": "", "flavor": "host", "argv": argv,
            "timeout_ms": timeout_ms, "hang_ms": 1000, "exclusive": False}


@needs_qemu
def test_the_suite_runs_inside_a_debian_kernel(tmp_path, kernel):
    out = tmp_path / "r.json"
    r = kpc("run", "--kernels", TEST_KERNEL, "--no-host", "--case", "sigmask_survives_execve",
            "--case", "fuse_flush_on_every_close", "--json", str(out), "--no-build")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    results = doc["results"]
    assert {x["target"] for x in results} == {TEST_KERNEL}
    assert all(x["kernel"] == kernel.release for x in results)
    assert {x["verdict"] for x in results} == {"pass"}, [x for x in results if x["verdict"] != "pass"]
    # FUSE is a module on 5.10/6.1: it was loaded in the guest, the cases ran
    assert sum(x["case"] == "fuse_flush_on_every_close" for x in results) == 12
    k = doc["kernels"][TEST_KERNEL]
    assert k["guest"]["channel"] == "/dev/hvc0"   # events on the virtio console, not the kernel's
    assert k["flavors"] == {"host": "ok", "pidns": "ok", "userns": "ok"}
    assert k["boot"]["boot_s"] > 0 and k["boot"]["failure"] is None and k["boot"]["accel"] in ("kvm", "tcg")
    assert k["boot"]["cmdline_append"] == ""
    assert f"#{TEST_KERNEL}" in r.stdout or TEST_KERNEL in r.stdout.splitlines()[0]


@needs_qemu
def test_kernel_append_reaches_the_guests_command_line(kernel):
    plan = [_plan("marked", ["/bin/sh", "-c", "grep -q kpc_marker=42 /proc/cmdline"]),
            _plan("unmarked", ["/bin/sh", "-c", "grep -q kpc_absent=1 /proc/cmdline"])]
    events = []
    guest.Guest(kernel, plan, 1, events.append, append="kpc_marker=42").execute()
    codes = {e["run"]: e["exit"]["code"] for e in events if e.get("event") == "result"}
    assert codes == {"marked": 0, "unmarked": 1}


@needs_qemu
def test_an_autoreaped_orphan_does_not_stall_the_run():
    """On 7.1+ an orphan created with CLONE_AUTOREAP dies without sending its
    new parent (the shim) SIGCHLD; the shim must still notice it is gone."""
    label = os.environ.get("KPC_TEST_KERNEL_AUTOREAP", "7.2")
    try:
        k = kernels.fetch_debian([label])[0]
    except kernels.KernelError as e:
        pytest.skip(f"cannot fetch Debian kernel {label}: {e}")
    probe = os.path.join(paths.build_dir(), "testprobes", "autoreap_orphan_daemon")
    events = []
    guest.Guest(k, [_plan("orphan", [probe], timeout_ms=8000)], 1, events.append).execute()
    res = [e for e in events if e.get("event") == "result"]
    assert len(res) == 1 and res[0]["outcome"] == "completed", res
    skips = [r["skip"] for r in res[0]["records"] if "skip" in r]
    if skips:
        pytest.skip(f"kernel {label}: {skips[0]}")
    records = {r.get("obs") or r.get("note"): r for r in res[0]["records"]}
    assert "grandchild" in records and "child.status" in records, res[0]["records"]
    assert res[0]["duration_ms"] < 3000


@needs_qemu
def test_a_kernel_crash_is_reported_with_the_run_and_the_console(kernel):
    events = []
    plan = [_plan("crash", ["/bin/sh", "-c", "echo c > /proc/sysrq-trigger; sleep 30"]),
            _plan("after", ["/bin/true"])]
    g = guest.Guest(kernel, plan, 1, events.append)
    r = g.execute()
    results = {e["run"]: e for e in events if e.get("event") == "result"}
    assert set(results) == {"crash", "after"}
    assert results["crash"]["outcome"] == "guest-lost"
    assert "ended" in results["crash"]["error"]
    text = "\n".join(results["crash"]["console_tail"] + results["crash"]["kernel_messages"])
    assert "sysrq" in text.lower() or "Kernel panic" in text
    # the run that never started says so and carries the same evidence
    assert results["after"]["outcome"] == "launch-error" and "not run" in results["after"]["error"]
    assert results["after"]["console_tail"] == results["crash"]["console_tail"]
    assert r.failure and r.crashes and "the kernel crashed while running the plan" in r.failure
    assert not qemu_pids()


@needs_qemu
def test_a_guest_that_stops_answering_is_killed_at_the_deadline(kernel, monkeypatch):
    # The launcher inside would wait 60 s; the host's deadline for the run
    # (timeout + allowance) is made 3 s: the host must give up on the guest.
    monkeypatch.setattr(guest, "RECOVERY_ALLOWANCE_S", -57.0)
    events = []
    g = guest.Guest(kernel, [_plan("sleeper", ["/bin/sleep", "120"], timeout_ms=60000)], 1, events.append)
    t0 = time.monotonic()
    r = g.execute()
    assert time.monotonic() - t0 < 45
    assert "stopped answering" in r.failure and "sleeper" in r.failure
    res = [e for e in events if e.get("event") == "result"]
    assert res and res[0]["outcome"] == "guest-lost" and res[0]["console_tail"]
    assert not qemu_pids()


@needs_qemu
def test_no_qemu_outlives_a_killed_kpc(kernel, tmp_path):
    """SIGKILL to kpc itself: QEMU must die with it (PR_SET_PDEATHSIG)."""
    proc = subprocess.Popen([os.path.join(paths.ROOT, "kpc"), "run", "--kernels", TEST_KERNEL, "--no-host",
                             "--no-build", "--case", "fuse_*", "--json", str(tmp_path / "r.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=paths.ROOT)
    deadline = time.monotonic() + 60
    mine = set()
    while time.monotonic() < deadline and not mine:
        mine = qemu_pids(parent=proc.pid)
        time.sleep(0.1)
    assert mine, "no QEMU started"
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    alive = lambda: {p for p in mine if os.path.exists(f"/proc/{p}")}  # noqa: E731
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    assert not alive(), "QEMU survived kpc"
    # what the killed kpc could not remove is swept by the next one
    guest_image.sweep_stale()
    assert not [p for p in os.listdir(os.path.join(guest_image.CACHE, "initramfs"))
                if p.startswith(f"initrd-{proc.pid}-")]


def test_the_matrix_lists_observations_that_differ_between_kernels():
    import io
    from conftest import make_case
    from kpc import evaluate, report, session
    case = make_case("demo")
    items = []
    for target, val in (("host", "POLLIN|POLLHUP"), ("5.10", "POLLIN"), ("6.12", "POLLIN|POLLHUP")):
        it = session.Item(case, "", "host", target=target)
        it.verdict = evaluate.Verdict("pass", observations={"poll_after_reap": val, "same": "ok"})
        items.append(it)
    out = io.StringIO()
    report.print_table(items, ["host"], stream=out)
    text = out.getvalue()
    assert text.splitlines()[0].split()[1:] == ["host", "5.10", "6.12"]   # a column per kernel
    assert "demo@host poll_after_reap: host=POLLIN|POLLHUP, 5.10=POLLIN, 6.12=POLLIN|POLLHUP" in text
    assert " same:" not in text


@needs_qemu
def test_parallel_guests_share_one_image_build(kernel, tmp_path, monkeypatch):
    """Four guests booting at once used to build the base image four times
    in one directory and trip over each other's rename."""
    import threading
    monkeypatch.setattr(guest_image, "CACHE", str(tmp_path))
    results, errors = [], []

    def build():
        try:
            results.append((guest_image.base_image(), guest_image.modules_image(kernel)))
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            errors.append(e)
    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert sorted(os.listdir(tmp_path / "initramfs")) == sorted(os.path.basename(p) for p in results[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to make a directory another user owns)")
def test_stale_sweep_removes_only_directories_of_its_own_user(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = 4194303  # above any pid this machine hands out by default
    assert not os.path.exists(f"/proc/{dead}")
    mine = tmp_path / f"kpc-guest-{dead}-a"
    theirs = tmp_path / f"kpc-guest-{dead}-b"
    link = tmp_path / f"kpc-guest-{dead}-c"
    target = tmp_path / "target"
    for d in (mine, theirs, target):
        d.mkdir()
    (target / "keep").write_text("")
    os.chown(theirs, 65534, 65534)
    link.symlink_to(target)
    guest_image.sweep_stale()
    assert not mine.exists()
    assert theirs.is_dir() and link.is_symlink() and (target / "keep").exists()


def test_an_emulated_guest_waits_longer_before_calling_no_progress_a_hang(monkeypatch):
    """Under TCG the plan baked into the guest carries stretched no-progress
    thresholds (never below the case's, at most half the timeout); under
    KVM the case's own."""
    from kpc import guest, launch
    plan = [{"run": r, "case": r, "variant": "", "flavor": "host", "hang_ms": h, "timeout_ms": t}
            for r, h, t in (("a", 1000, 10000), ("b", 12000, 20000), ("c", 1000, 4000))]
    assert [e["hang_ms"] for e in launch.for_emulated_target(plan)] == [5000, 12000, 2000]
    baked = {}

    def fake_initrd(kernel, arch, plan_, jobs):
        baked["plan"] = plan_
        raise guest.GuestError("stop here: no boot needed")

    monkeypatch.setattr(guest, "run_initrd", fake_initrd)
    monkeypatch.setattr(guest, "base_image", lambda arch: "base.cpio")
    k = types.SimpleNamespace(image="vmlinuz", label="6.1", release="6.1.0", arch="amd64")
    for accel, want in (("tcg", [5000, 12000, 2000]), ("kvm", [1000, 12000, 1000])):
        monkeypatch.setattr(guest, "accelerator", lambda *a, accel=accel: guest.Accel(accel, "test"))
        g = guest.Guest(k, plan, 1, lambda e: None)
        r = g.execute()
        assert r.failure == "stop here: no boot needed"
        assert [e["hang_ms"] for e in baked["plan"]] == want
