"""The guest's initramfs: what `guest.py` boots a kernel with.

An initramfs made of concatenated newc archives (the kernel unpacks them in
order):

  base      busybox, /init, kpc-launch and the probes, stripped, at the
            same absolute paths as in the host's build directory (so a plan
            made on the host runs unchanged). Cached by content hash, one
            per architecture: an arm64 guest gets the cross build
            (build-arm64/, cross.py) and busybox-static:arm64 at those paths.
  modules   this kernel's modules the cases need (fuse on 5.10/6.1) and the
            virtio console's, decompressed (.ko.xz/.zst) and in dependency
            order. Cached by kernel release.
  plan      the plan (JSON lines) and how many jobs. Made per run.

The guest's /init (INIT) mounts, loads the modules, reports the guest in a
frame, runs the plan with the same launcher as the host and powers off;
PROBE_INIT is the accelerator probe's (guest.accelerator). Booting,
reading and supervising the guest is guest.py's.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading

from . import kernels, paths

CACHE = paths.CACHE
BUSYBOX = "/bin/busybox"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
# arch -> cross.Build(build directory, sysroot), set by the runner after
# cross.ensure(): the arm64 guests' binaries and busybox come from there.
CROSS = {}
# The architecture's strip (the host's strip cannot read an aarch64 binary
# and would leave it whole: 119 MB of probes).
STRIP = {"amd64": "strip", "arm64": "aarch64-linux-gnu-strip"}
GUEST_MODULES = ("fuse", "virtio_mmio", "virtio_console")


class GuestError(Exception):
    """A guest that cannot be made or run: one line for the user."""


# ------------------------------------------------------------ newc archives

class Cpio:
    """A newc (SVR4, no CRC) archive, what the kernel's initramfs reads."""

    def __init__(self):
        self.parts, self.ino = [], 1000
        self.dirs = set()

    def _entry(self, name, mode, data=b"", nlink=1):
        name = name.lstrip("/")
        self.ino += 1
        hdr = "070701" + "".join(f"{x:08x}" for x in (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0,
                                                      len(name) + 1, 0))
        blob = hdr.encode() + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.parts.append(blob)

    def dir(self, path: str, mode: int = 0o755) -> None:
        path = path.rstrip("/")
        if not path or path in self.dirs:
            return
        self.dir(os.path.dirname(path))
        self.dirs.add(path)
        self._entry(path, 0o040000 | mode, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dir(os.path.dirname(path))
        self._entry(path, 0o100000 | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self.dir(os.path.dirname(path))
        self._entry(path, 0o120000 | 0o777, target.encode())

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        out = b"".join(self.parts)
        return out + b"\0" * (-len(out) % 512)


INIT = r"""#!/bin/sh
# kpc guest init (PID 1). Mounts, loads modules, reports the guest, runs the
# plan with the same launcher as the host, powers off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
# no tmpfs on /tmp: the build directory may live under /tmp (a CI clone),
# and the initramfs root is already a writable tmpfs
/bin/busybox mount -t tmpfs run /run
/bin/busybox --install -s /bin
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
# what udev/systemd create on a normal system (devtmpfs does not)
ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr
hostname kpc-guest
echo 0 > /proc/sys/kernel/printk_ratelimit 2>/dev/null
for m in $(cat /kpc/modules 2>/dev/null); do
  insmod "$m" || echo "kpc-guest: insmod $m failed"
done
out=/dev/console
# hvc0: registered (/sys/class/tty/hvc0) before devtmpfs shows it. A built-in
# virtio_console (6.12, 7.2) has no /sys/module/virtio_console: waiting only
# while that exists gave up at once there, and events went to the serial line.
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  [ -e /dev/hvc0 ] && { out=/dev/hvc0; break; }
  [ -e /sys/module/virtio_console ] || [ -e /sys/class/tty/hvc0 ] || [ $i -le 3 ] || break
  sleep 0.1
done
frame() { printf '@@KPC %d %s\n' "${#1}" "$1" > $out; }
L=@LAUNCHER@
frame "{\"event\":\"guest\",\"release\":\"$(uname -r)\",\"channel\":\"$out\",\"flavors\":$($L flavors),\"caps\":$($L caps),\"tainted\":$(cat /proc/sys/kernel/tainted)}"
$L batch --frame --jobs $(cat /kpc/jobs) --plan /kpc/plan.jsonl > $out 2>/tmp/launcher.err
rc=$?
[ -s /tmp/launcher.err ] && tail -c 2000 /tmp/launcher.err > /dev/console
frame "{\"event\":\"guest-done\",\"launcher_rc\":$rc,\"tainted\":$(cat /proc/sys/kernel/tainted),\"stderr_bytes\":$(wc -c < /tmp/launcher.err)}"
sync
reboot -f
"""

# rdinit for the accelerator probe: a line on the serial console, power off.
PROBE_INIT = """#!/bin/busybox sh
/bin/busybox echo kpc-accel-ok
/bin/busybox reboot -f
"""


def _sha(*chunks):
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else str(c).encode())
    return h.hexdigest()[:16]


def _stripped(path, strip="strip"):
    """The binary without symbols and debug info (a third of the size);
    the binary itself when strip is missing or fails. `strip`: the
    architecture's (the host's strip cannot read an aarch64 binary and
    would leave it whole: 119 MB of probes)."""
    with tempfile.TemporaryDirectory(prefix="kpc-strip-") as d:
        out = os.path.join(d, "x")
        proc = subprocess.run([strip, "-o", out, path], capture_output=True) if shutil.which(strip) else None
        with open(out if proc and proc.returncode == 0 else path, "rb") as f:
            return f.read()


def _binaries(arch="amd64"):
    """{path in the guest: file} for every executable in the build
    directory a plan can name (the launcher's test probes too: the guest
    tests run some). A foreign architecture's come from its cross build,
    at the host build's paths."""
    if arch != HOST_ARCH:
        from . import cross
        if arch not in CROSS:
            raise GuestError(f"no {arch} build: the runner makes one with --arch {arch}")
        return cross.binaries(CROSS[arch].build_dir)
    out = {}
    testprobes = os.path.join(paths.build_dir(), "testprobes")
    for d in (paths.probe_dir(), os.path.dirname(paths.launcher()), testprobes):
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                out[p] = p
    return out


_IMAGE_LOCK = threading.Lock()   # guests boot in parallel threads: one builder at a time


def busybox(arch: str = "amd64") -> str:
    if arch == HOST_ARCH:
        return BUSYBOX
    from . import cross
    if arch not in CROSS:
        raise GuestError(f"no {arch} busybox: the runner fetches busybox-static:{arch} with --arch {arch}")
    return cross.busybox(CROSS[arch].sysroot)


def base_image(arch: str = "amd64") -> str:
    """images/cache/initramfs/base-<arch>-<hash>.cpio; rebuilt only when
    busybox, /init or a binary changed. One per architecture is kept."""
    with _IMAGE_LOCK:
        return _base_image(arch)


def _base_image(arch="amd64"):
    bb = busybox(arch)
    if not os.path.exists(bb):
        raise GuestError(f"{bb} is missing: install busybox-static")
    bins = _binaries(arch)
    init = INIT.replace("@LAUNCHER@", paths.launcher())
    key = _sha(init, PROBE_INIT, bb, os.stat(bb).st_mtime_ns,
               *[f"{p}:{f}:{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}" for p, f in bins.items()])
    out = os.path.join(CACHE, "initramfs", f"base-{arch}-{key}.cpio")
    if os.path.exists(out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    for old in os.listdir(os.path.dirname(out)):
        # this architecture's older images (and those from before the arch was in the name)
        if old.startswith(f"base-{arch}-") or re.fullmatch(r"base-[0-9a-f]{16}\.cpio", old):
            os.unlink(os.path.join(os.path.dirname(out), old))
    c = Cpio()
    for d in ("proc", "sys", "dev", "tmp", "run", "mnt", "root", "etc", "kpc"):
        c.dir(d)
    with open(bb, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", init.encode(), 0o755)
    c.file("kpc/probe-init", PROBE_INIT.encode(), 0o755)
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    c.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    strip = STRIP.get(arch, "strip") if arch != HOST_ARCH else "strip"
    for p, f in bins.items():
        c.file(p, _stripped(f, strip), 0o755)
    _write_atomic(out, c.bytes())
    return out


def sweep_stale() -> None:
    """Per-run initrds and socket directories of kpc processes that no
    longer exist (killed with SIGKILL: nothing else leaves them)."""
    for old in glob.glob(os.path.join(tempfile.gettempdir(), "kpc-guest-*-*")):
        pid = os.path.basename(old).split("-")[2]
        try:
            st = os.lstat(old)
        except OSError:
            continue
        # Only a directory of ours: /tmp is everyone's, and a name is no proof.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(old, ignore_errors=True)
    d = os.path.join(CACHE, "initramfs")
    for name in os.listdir(d) if os.path.isdir(d) else []:
        parts = name.split("-")
        if name.startswith("initrd-") and len(parts) > 2 and parts[1].isdigit():
            if not os.path.exists(f"/proc/{parts[1]}"):
                try:
                    os.unlink(os.path.join(d, name))
                except OSError:
                    pass


def modules_image(kernel: kernels.Kernel) -> str:
    """The modules the guest loads, dependencies first."""
    with _IMAGE_LOCK:
        return _modules_image(kernel)


def _modules_image(kernel):
    files = kernel.module_closure(GUEST_MODULES)
    key = _sha(kernel.release, *[f"{p}:{os.stat(p).st_size}" for p in files])
    out = os.path.join(CACHE, "initramfs", f"modules-{kernel.release}-{key}.cpio")
    if os.path.exists(out):
        return out
    c = Cpio()
    names = []
    for i, p in enumerate(files):
        name = f"lib/kpc-modules/{i:02d}-{os.path.basename(p).split('.ko')[0]}.ko"
        c.file(name, kernels.module_bytes(p))
        names.append("/" + name)
    c.file("kpc/modules", ("\n".join(names) + "\n").encode())
    os.makedirs(os.path.dirname(out), exist_ok=True)
    _write_atomic(out, c.bytes())
    return out


def _write_atomic(path, data):
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def run_initrd(kernel: kernels.Kernel, arch: str, plan: list[dict], jobs: int) -> str:
    """This run's initrd: the base and modules images and a
    plan archive concatenated into a new file in the cache (removed by the
    caller; sweep_stale removes those of a kpc that was killed)."""
    base = base_image(arch)
    mods = modules_image(kernel)
    c = Cpio()
    c.file("kpc/plan.jsonl", "".join(json.dumps(p) + "\n" for p in plan).encode())
    c.file("kpc/jobs", f"{jobs}\n".encode())
    sweep_stale()
    fd, path = tempfile.mkstemp(prefix=f"initrd-{os.getpid()}-{kernel.release}-", suffix=".cpio",
                                dir=os.path.join(CACHE, "initramfs"))
    with os.fdopen(fd, "wb") as out:
        for part in (base, mods):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        out.write(c.bytes())
    return path
