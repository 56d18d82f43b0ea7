"""--arch arm64: Debian's arm64 kernels under qemu-system-aarch64, the suite
cross-built (cross.py, cmake/aarch64-linux-gnu.cmake).

The unit tests need nothing. The boot test needs qemu-system-aarch64
(qemu-system-arm) and g++-aarch64-linux-gnu, and fetches one arm64 kernel
(KPC_TEST_KERNEL, default 6.1) and the arm64 .debs the cross build links;
without them it skips with the reason.
"""

import json
import os
import shutil

import pytest

from conftest import needs_root
from kpc import columns, cross, guest, guest_image, kernels, paths
from test_cli import kpc
from test_guest import _read_newc, qemu_pids

TEST_KERNEL = os.environ.get("KPC_TEST_KERNEL", "6.1")


# ------------------------------------------------------------ units

@needs_root
@pytest.mark.parametrize("args, message", [
    (["--kernels", "6.1", "--arch", "sparc"], "kpc: --arch sparc: give amd64 or arm64 (comma-separated)"),
    (["--kernels", "6.1", "--arch", "arm64,"], "kpc: --arch '': give amd64 or arm64"),
    (["--kernels", "6.1", "--arch", "arm64,arm64"], "kpc: --arch: arm64 given twice"),
    (["--kernels", "6.1", "--arch", "x86_64"], "kpc: --arch x86_64: give amd64 or arm64"),
    (["--arch", "arm64"], "kpc: --arch needs --kernels"),
    (["--kernels", "6.1", "--arch", "arm64", "--kernel", "/nonexistent/bzImage"], "kpc: --kernel boots an x86_64"),
])
def test_bad_arch_values_are_one_line_and_exit_2(args, message):
    r = kpc("run", *args, "--case", "sigmask_survives_execve", "--no-build")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_arm64_kernels_have_their_own_cache_names_and_columns():
    assert kernels.cache_name("bookworm", "6.1.176-1") == "bookworm-6.1.176-1"   # as older kpcs made it
    assert kernels.cache_name("bookworm", "6.1.176-1", "arm64") == "arm64-bookworm-6.1.176-1"
    assert kernels.meta("arm64") == "linux-image-cloud-arm64"
    assert columns.kernel_label("6.1", "amd64", ["amd64"]) == "6.1"
    assert columns.kernel_label("6.1", "arm64", ["arm64"]) == "6.1-arm64"
    both = ["amd64", "arm64"]
    assert [columns.kernel_label("6.1", a, both) for a in both] == ["6.1-amd64", "6.1-arm64"]


def _kernel(arch, tmp_path):
    return kernels.Kernel(label=f"6.1-{arch}", release=f"6.1.0-50-cloud-{arch}", image=str(tmp_path / "Image"),
                          modules=None, config=None, config_source="", origin="test", arch=arch)


def test_an_arm64_guest_boots_virt_with_its_own_console_and_no_x86_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(guest, "host_tsc_khz", lambda: 1234567)
    arm = guest.Guest(_kernel("arm64", tmp_path), [], 1, None).argv("initrd", "tcg")
    x86 = guest.Guest(_kernel("amd64", tmp_path), [], 1, None).argv("initrd", "tcg")
    cmdline = arm[arm.index("-append") + 1]
    assert arm[0] == "qemu-system-aarch64" and arm[1:5] == ["-M", "virt", "-cpu", "cortex-a57"]
    assert "console=ttyAMA0" in cmdline and "tsc_early_khz" not in cmdline and "reboot=t" not in cmdline
    assert "virtio-serial-device" in arm    # virtio-mmio, as on microvm
    assert x86[0] == "qemu-system-x86_64" and "microvm" in x86
    assert "console=ttyS0" in x86[x86.index("-append") + 1] and "tsc_early_khz=1234567" in " ".join(x86)
    # never KVM for another architecture's guest
    monkeypatch.setenv("KPC_ACCEL", "kvm")
    with pytest.raises(guest.GuestError, match="cannot use KVM"):
        guest.accelerator("Image", "base", "arm64")
    monkeypatch.delenv("KPC_ACCEL")
    assert guest.accelerator("Image", "base", "arm64")[0] == "tcg"


def test_the_arm64_image_holds_the_cross_build_at_the_host_build_paths(tmp_path, monkeypatch):
    """The plan names the host build's paths: an arm64 guest must find the
    arm64 binaries there, with the arm64 busybox; the amd64 image of the
    same cache is kept (it used to delete every other base-*)."""
    cache = tmp_path / "cache"
    (cache / "initramfs").mkdir(parents=True)
    bdir, root = tmp_path / "build-arm64", tmp_path / "sysroot"
    for sub, name in (("probes", "sigmask_survives_execve"), ("bin", "kpc-launch"), ("testprobes", "noop")):
        (bdir / sub).mkdir(parents=True)
        (bdir / sub / name).write_bytes(b"arm64 " + name.encode())
        (bdir / sub / name).chmod(0o755)
    (bdir / "probes" / "not-executable").write_bytes(b"x")
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"arm64 busybox")
    (cache / "initramfs" / "base-amd64-0123456789abcdef.cpio").write_bytes(b"amd64")
    (cache / "initramfs" / "base-arm64-0123456789abcdef.cpio").write_bytes(b"old arm64")
    monkeypatch.setattr(guest_image, "CACHE", str(cache))
    monkeypatch.setitem(guest_image.CROSS, "arm64", cross.Build(str(bdir), str(root)))
    out = guest_image.base_image("arm64")
    assert os.path.basename(out).startswith("base-arm64-")
    assert sorted(os.listdir(cache / "initramfs")) == sorted(["base-amd64-0123456789abcdef.cpio",
                                                              os.path.basename(out)])
    files = {name: data for name, _, data in _read_newc(open(out, "rb").read())}
    host_probe = os.path.join(paths.probe_dir(), "sigmask_survives_execve").lstrip("/")
    assert files[host_probe] == b"arm64 sigmask_survives_execve"
    assert files[paths.launcher().lstrip("/")] == b"arm64 kpc-launch"
    assert files[os.path.join(paths.build_dir(), "testprobes", "noop").lstrip("/")] == b"arm64 noop"
    assert files["bin/busybox"] == b"arm64 busybox"
    assert not any(n.endswith("not-executable") for n in files)
    assert not any(str(bdir).lstrip("/") in n for n in files)   # nothing at the cross build's own paths


# ------------------------------------------------------------ a boot

needs_arm64 = pytest.mark.skipif(
    shutil.which("qemu-system-aarch64") is None or shutil.which("aarch64-linux-gnu-g++") is None,
    reason="qemu-system-arm and g++-aarch64-linux-gnu are not installed (./kpc run --arch arm64 installs them)")


@pytest.fixture(scope="module")
def arm64_ready(built):
    """The arm64 kernel and the sysroot, fetched as `--arch arm64` does (no
    archive: skip), and the cross build, made here as `--arch arm64` makes
    it (a failure fails: the test's kpc run has only 120 s, and a first
    cross build on a loaded 2-core machine took 4 min)."""
    try:
        kernels.fetch_debian([TEST_KERNEL], arch="arm64")
        cross.sysroot("arm64")
    except (kernels.KernelError, cross.CrossError) as e:
        pytest.skip(f"cannot fetch the arm64 kernel {TEST_KERNEL} or the arm64 .debs: {e}")
    cross.ensure("arm64")


@needs_root
@needs_arm64
def test_the_suite_runs_inside_an_arm64_kernel_next_to_amd64(tmp_path, arm64_ready):
    out = tmp_path / "r.json"
    arm, x86 = f"{TEST_KERNEL}-arm64", f"{TEST_KERNEL}-amd64"
    r = kpc("run", "--kernels", TEST_KERNEL, "--arch", "amd64,arm64", "--no-host",
            "--case", "tracer_sees_creation_path", "--case", "fuse_flush_on_every_close", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.splitlines()[0].split()[1:] == [x86, arm]      # one matrix, the columns name the arch
    doc = json.loads(out.read_text())
    results = doc["results"]
    by = {(x["target"], x["case"], x["variant"], x["flavor"]): x for x in results}
    assert {x["target"] for x in results} == {arm, x86}
    assert {x["verdict"] for x in results} == {"pass", "skip"}, \
        [x for x in results if x["verdict"] not in ("pass", "skip")]
    # FUSE was loaded in the arm64 guest and its cases ran
    fuse = [x for x in results if x["target"] == arm and x["case"] == "fuse_flush_on_every_close"]
    assert len(fuse) == 12 and {x["verdict"] for x in fuse} == {"pass"}
    # what differs by arch was observed, not assumed: arm64 has no vfork syscall
    # (the probe read NT_ARM_SYSTEM_CALL), musl's aarch64 vfork is a fork
    assert by[(x86, "tracer_sees_creation_path", "vfork", "host")]["observations"]["syscall"] == "vfork"
    assert by[(arm, "tracer_sees_creation_path", "vfork", "host")]["observations"]["syscall"] == "clone"
    assert by[(arm, "tracer_sees_creation_path", "musl_vfork", "host")]["observations"]["event"] == "fork"
    assert by[(arm, "tracer_sees_creation_path", "sys_fork", "host")]["verdict"] == "skip"
    assert "no fork system call" in by[(arm, "tracer_sees_creation_path", "sys_fork", "host")]["reason"]
    k = doc["kernels"][arm]
    assert k["arch"] == "arm64" and k["machine"] == "aarch64" and k["kernel"].endswith("-cloud-arm64")
    assert k["guest"]["channel"] == "/dev/hvc0"
    assert k["boot"]["accel"] == "tcg" and k["boot"]["failure"] is None
    assert doc["kernels"][x86]["arch"] == "amd64" and doc["kernels"][x86]["machine"] == "x86_64"
    assert not qemu_pids()


# ------------------------------------------------------------ hvc0 on every kernel

@pytest.mark.skipif(shutil.which(guest.QEMU) is None or not os.path.exists(guest_image.BUSYBOX),
                    reason="qemu-system-x86 and busybox-static are not installed")
@pytest.mark.parametrize("label", os.environ.get("KPC_TEST_HVC_KERNELS", "6.1,7.2").split(","))
def test_events_use_the_virtio_console_on_every_kernel(label, built):
    """6.12 and 7.2 build virtio_console in: /sys/module/virtio_console does
    not exist there, and the init used to give up on hvc0 at once."""
    try:
        k = kernels.fetch_debian([label])[0]
    except kernels.KernelError as e:
        pytest.skip(f"cannot fetch Debian kernel {label}: {e}")
    events = []
    plan = [{"run": "t", "case": "t", "variant": "", "flavor": "host", "argv": ["/bin/true"],
             "timeout_ms": 5000, "hang_ms": 1000, "exclusive": False}]
    r = guest.Guest(k, plan, 1, events.append).execute()
    assert r.failure is None, r.failure
    assert r.info["channel"] == "/dev/hvc0", (label, r.info)
