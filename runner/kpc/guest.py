"""Running the suite inside a kernel booted under QEMU.

The guest: `qemu-system-x86_64 -M microvm` (amd64) or `qemu-system-aarch64
-M virt -cpu cortex-a57` (arm64, always TCG on an x86_64 host), no disk, an
initramfs made of concatenated newc archives (the kernel unpacks them in
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

Channels: the kernel's console is the serial port (ttyS0; ttyAMA0 on arm64), read into the
console log; the launcher's events go over a virtio console (hvc0) as
`@@KPC <len> <json>` frames — a separate channel, so kernel messages
cannot corrupt them, and framed, so a torn line is detected rather than
misread. Without a virtio console (a user's kernel lacking it) events go to
the serial console, framed, mixed with the kernel's messages.

Supervision, on the host: a deadline for the boot (first frame), one per
case (its timeout plus the launcher's recovery allowance, from its start
event), and one for the whole guest. A guest that stops answering is
killed; the runs it did not finish are reported with the last console
lines. An oops, panic, BUG or taint message on the console while a run was
in flight is attached to that run (outcome `kernel-crash`). QEMU gets
PR_SET_PDEATHSIG(SIGKILL) from the thread that waits for it, and is killed
on every exit path, so no QEMU outlives kpc.
"""

import ctypes
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from . import kernels, paths, targets

CACHE = paths.CACHE
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
# What differs per guest architecture (Debian's names). arm64: cortex-a57,
# not plain "max" (emulating pointer authentication with QARMA made it 4-5x
# slower; "max,pauth-impdef=on" is as fast); virtio over virtio-mmio as on
# microvm; PSCI reset ends QEMU (-no-reboot) without x86's reboot=t.
ARCH = {
    "amd64": {"qemu": QEMU, "machine": ["-M", "microvm"], "console": "ttyS0", "cmdline": " reboot=t",
              "strip": "strip"},
    "arm64": {"qemu": "qemu-system-aarch64", "machine": ["-M", "virt", "-cpu", "cortex-a57"],
              "console": "ttyAMA0", "cmdline": "", "strip": "aarch64-linux-gnu-strip"},
}
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
# arch -> (cross build directory, sysroot), set by the runner after
# cross.ensure(): the arm64 guests' binaries and busybox come from there.
CROSS = {}
GUEST_MODULES = ("fuse", "virtio_mmio", "virtio_console")
BOOT_DEADLINE_S = 60.0        # first frame from the guest's init (TCG, slow hosts)
RECOVERY_ALLOWANCE_S = targets.RECOVERY_ALLOWANCE_S   # per case, on top of its timeout
FRAME = re.compile(r"@@KPC (\d+) (.*)$")
CRASH = re.compile(r"(Oops|BUG:|Kernel panic|general protection fault|WARNING: CPU|Call Trace:|"
                   r"kernel BUG at|unable to handle|Tainted: )")
OOM_REPORT_START = re.compile(r"invoked oom-killer: ")
OOM_REPORT_END = re.compile(r"(Out of memory: |Memory cgroup out of memory: |oom_reaper: )")


class ConsoleWatch:
    """Which console lines are the kernel complaining (CRASH). The OOM
    killer's report prints the allocating task's stack as a matter of course
    (dump_header -> dump_stack): inside such a report "Call Trace:" is not a
    complaint -- an Oops, BUG or WARNING there still is. Without this an OOM
    case (oom_group_kill) failed itself and every run in flight with it."""

    REPORT_LINES = 400  # a report longer than this is not an OOM report any more

    def __init__(self):
        self._in_oom_report = 0

    def complaint(self, line):
        if OOM_REPORT_START.search(line):
            self._in_oom_report = self.REPORT_LINES
            return False
        m = CRASH.search(line)
        if self._in_oom_report:
            self._in_oom_report -= 1
            if OOM_REPORT_END.search(line):
                self._in_oom_report = 0
            return bool(m) and m.group(1) != "Call Trace:"
        return bool(m)


class GuestError(Exception):
    pass


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

    def dir(self, path, mode=0o755):
        path = path.rstrip("/")
        if not path or path in self.dirs:
            return
        self.dir(os.path.dirname(path))
        self.dirs.add(path)
        self._entry(path, 0o040000 | mode, nlink=2)

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path))
        self._entry(path, 0o100000 | mode, data)

    def symlink(self, path, target):
        self.dir(os.path.dirname(path))
        self._entry(path, 0o120000 | 0o777, target.encode())

    def bytes(self):
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


# TCG's vCPU threading, "single" or "multi": see Guest.argv (bench/tcg_boots.py
# compares the two).
TCG_THREAD = "single"


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
        return cross.binaries(CROSS[arch][0])
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


def busybox(arch="amd64"):
    if arch == HOST_ARCH:
        return BUSYBOX
    from . import cross
    if arch not in CROSS:
        raise GuestError(f"no {arch} busybox: the runner fetches busybox-static:{arch} with --arch {arch}")
    return cross.busybox(CROSS[arch][1])


def base_image(arch="amd64"):
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
    strip = ARCH[arch]["strip"] if arch in ARCH and arch != HOST_ARCH else "strip"
    for p, f in bins.items():
        c.file(p, _stripped(f, strip), 0o755)
    _write_atomic(out, c.bytes())
    return out


def sweep_stale():
    """Per-run initrds and socket directories of kpc processes that no
    longer exist (killed with SIGKILL: nothing else leaves them)."""
    for old in glob.glob(os.path.join(tempfile.gettempdir(), "kpc-guest-*-*")):
        pid = os.path.basename(old).split("-")[2]
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


def modules_image(kernel):
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


# ------------------------------------------------------------ accelerator

_ACCEL = {}


def accelerator(kernel_image, boot_image, arch="amd64"):
    """'kvm' when KVM boots a kernel to its first frame quickly, else 'tcg'.
    Nested KVM can exist and hang: the probe boots for real with a short
    deadline. KPC_ACCEL=kvm|tcg skips the probe. Remembered per boot of
    this host (images/cache/accel.json). Another architecture's guest is
    always TCG."""
    forced = os.environ.get("KPC_ACCEL")
    if forced and forced not in ("kvm", "tcg"):
        raise GuestError(f"KPC_ACCEL={forced}: use kvm or tcg")
    if arch != HOST_ARCH:
        if forced == "kvm":
            raise GuestError(f"KPC_ACCEL=kvm: an {arch} guest cannot use KVM on this {os.uname().machine} host")
        return "tcg", f"an {arch} guest on an {os.uname().machine} host (emulated)"
    if forced:
        return forced, f"KPC_ACCEL={forced}"
    if "accel" in _ACCEL:
        return _ACCEL["accel"]
    try:
        boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
    except OSError:
        boot_id = "?"
    memo = os.path.join(CACHE, "accel.json")
    try:
        with open(memo) as f:
            saved = json.load(f)
        if saved.get("boot_id") == boot_id:
            _ACCEL["accel"] = (saved["accel"], saved["why"])
            return _ACCEL["accel"]
    except (OSError, ValueError, KeyError):
        pass
    result = ("tcg", "no /dev/kvm")
    if os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
        t0 = time.monotonic()
        ok, said = _probe_kvm(kernel_image, boot_image)
        dt = time.monotonic() - t0
        result = ("kvm", f"KVM booted a kernel in {dt:.1f} s") if ok else (
            "tcg", f"KVM did not boot a kernel ({dt:.1f} s; qemu said: {said or 'nothing'})")
    _ACCEL["accel"] = result
    try:
        os.makedirs(CACHE, exist_ok=True)
        with open(memo, "w") as f:
            json.dump({"boot_id": boot_id, "accel": result[0], "why": result[1]}, f)
    except OSError:
        pass
    return result


def _probe_kvm(kernel_image, boot_image, deadline_s=8.0):
    """Boot with KVM to a userspace line on the serial console."""
    argv = [QEMU, "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel_image, "-initrd", boot_image,
            "-append", "console=ttyS0 quiet panic=-1 rdinit=/kpc/probe-init"]
    proc = _popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=deadline_s)
        lines = [ln for ln in out.decode("utf-8", "replace").splitlines() if ln.startswith("qemu")]
        return b"kpc-accel-ok" in out, "; ".join(lines)[-300:]
    except subprocess.TimeoutExpired:
        return False, f"no answer within {deadline_s:g} s (hangs: nested KVM?)"
    finally:
        _kill(proc)


_TSC = {}


def host_tsc_khz():
    if "khz" not in _TSC:
        out = subprocess.run([paths.launcher(), "tsc-khz"], capture_output=True, text=True, timeout=10)
        try:
            _TSC["khz"] = int(json.loads(out.stdout)["tsc_khz"])
        except (ValueError, KeyError) as e:
            raise GuestError(f"kpc-launch tsc-khz failed: {out.stderr.strip() or e}") from None
    return _TSC["khz"]


def _set_pdeathsig():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:                     # the parent already died
        os._exit(1)


def _popen(argv, **kw):
    # PDEATHSIG fires when the *thread* that forked exits: callers keep that
    # thread alive until QEMU is gone (Guest.run waits in it).
    return subprocess.Popen(argv, preexec_fn=_set_pdeathsig, **kw)


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ------------------------------------------------------------ one guest

@dataclasses.dataclass
class GuestRun:
    kernel: object
    accel: str = ""
    accel_why: str = ""
    info: dict = None            # the guest's own report: release, flavors, caps
    boot_s: float = None         # QEMU start -> first frame
    suite_s: float = None        # first frame -> guest-done
    wall_s: float = 0.0
    console: list = dataclasses.field(default_factory=list)   # (host_mono, line)
    crashes: list = dataclasses.field(default_factory=list)   # (host_mono, line)
    failure: str = None          # the guest as a whole went wrong
    launcher_rc: int = None


class Guest:
    """Boots one kernel, runs a plan inside, streams events to `on_event`
    (the launcher's, unchanged) until every run reported or a deadline."""

    def __init__(self, kernel, plan, jobs, on_event, memory_mb=1024, cpus=2, append=""):
        self.kernel, self.plan, self.jobs = kernel, plan, jobs
        self._timeout_s = {p["run"]: p.get("timeout_ms", 30000) / 1000.0 for p in plan}
        self.append = append     # the user's extra kernel parameters (--kernel-append)
        self.on_event = on_event
        self.memory_mb, self.cpus = memory_mb, cpus
        self.run = GuestRun(kernel)
        self.arch = getattr(kernel, "arch", "amd64")
        self._proc = None
        self._lock = threading.Lock()
        self._inflight = {}      # run id -> (host start time, deadline_s)
        self._reported = set()
        self._stop = threading.Event()

    def _initrd(self):
        base = base_image(self.arch)
        mods = modules_image(self.kernel)
        c = Cpio()
        c.file("kpc/plan.jsonl", "".join(json.dumps(p) + "\n" for p in self.plan).encode())
        c.file("kpc/jobs", f"{self.jobs}\n".encode())
        sweep_stale()
        fd, path = tempfile.mkstemp(prefix=f"initrd-{os.getpid()}-{self.kernel.release}-", suffix=".cpio",
                                    dir=os.path.join(CACHE, "initramfs"))
        with os.fdopen(fd, "wb") as out:
            for part in (base, mods):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            out.write(c.bytes())
        return base, path

    def argv(self, initrd, accel):
        a = ARCH[self.arch]
        cmdline = (f"console={a['console']} loglevel=5 panic=-1 oops=panic rdinit=/init "
                   f"hung_task_timeout_secs=0 nokaslr{a['cmdline']}")
        if accel == "tcg" and self.arch == "amd64":
            # Under TCG, calibrating the TSC against the emulated PIT fails
            # often (more so with parallel guests) and the boot then hangs:
            # tell the kernel the frequency (TCG's TSC is the host's).
            cmdline += f" tsc_early_khz={host_tsc_khz()}"
        if self.append:
            cmdline += " " + self.append
        # TCG: one host thread for all vCPUs (thread=single). With
        # multi-threaded TCG, Debian 7.2.13 oopsed while booting in 5 of 45
        # boots ("Oops: int3" in sched_clock_cpu while a static key was being
        # patched: cross-vCPU self-modifying code); single-threaded, 0 of 40.
        # 5.10/6.1/6.12 never failed either way (25 boots each). Measured
        # 2026-11-24, QEMU 7.2 on Debian 12; see images/README.md.
        accel_arg = f"tcg,thread={TCG_THREAD}" if accel == "tcg" else accel
        argv = [a["qemu"], *a["machine"], "-accel", accel_arg, "-m", str(self.memory_mb), "-smp", str(self.cpus),
                "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-serial", "stdio",
                "-device", "virtio-serial-device", "-chardev", "socket,id=kpc,path=@SOCK@,server=on,wait=off",
                "-device", "virtconsole,chardev=kpc",
                "-kernel", self.kernel.image, "-initrd", initrd, "-append", cmdline]
        if accel == "kvm":
            argv[argv.index("-m"):argv.index("-m")] = ["-cpu", "host"]
        return argv

    def stop(self):
        self._stop.set()
        with self._lock:
            if self._proc:
                _kill(self._proc)

    def execute(self):
        """Blocking: boot, stream, supervise, clean up. Returns GuestRun."""
        r = self.run
        t0 = time.monotonic()
        initrd = None
        tmpdir = tempfile.mkdtemp(prefix=f"kpc-guest-{os.getpid()}-")
        try:
            base, initrd = self._initrd()
            r.accel, r.accel_why = accelerator(self.kernel.image, base, self.arch)
            sock = os.path.join(tmpdir, "events.sock")
            argv = [a.replace("@SOCK@", sock) for a in self.argv(initrd, r.accel)]
            with self._lock:
                if self._stop.is_set():
                    r.failure = "interrupted before boot"
                    return r
                self._proc = _popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            self._supervise(sock, t0)
        except (GuestError, kernels.KernelError, OSError) as e:
            r.failure = r.failure or str(e)
        finally:
            if self._proc:
                _kill(self._proc)
            if initrd and os.path.exists(initrd):
                os.unlink(initrd)
            shutil.rmtree(tmpdir, ignore_errors=True)
            r.wall_s = time.monotonic() - t0
            self._finish_unreported()
        return r

    # -- streams

    def _read_console(self):
        r = self.run
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            now = time.monotonic()
            with self._lock:
                r.console.append((now, line))
                if len(r.console) > 4000:
                    del r.console[:1000]
                if self._console_watch.complaint(line):
                    r.crashes.append((now, line))
                    for run_id in self._inflight:
                        self._crash_lines.setdefault(run_id, []).append(line)
            m = FRAME.search(line)
            if m:  # no virtio console: events share the serial line
                self._frame(m, now)

    def _frame(self, m, now):
        length, text = int(m.group(1)), m.group(2)
        if len(text.encode()) != length:
            self._garbled.append(text[:200])
            return
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self._garbled.append(text[:200])
            return
        self._on_guest_event(event, now)

    def _on_guest_event(self, event, now):
        r = self.run
        kind = event.get("event")
        self._last_event = now
        if kind == "guest":
            r.info = event
            r.boot_s = now - self._t_start
            self._t_first = now
            self.on_event(event)
        elif kind == "guest-done":
            r.launcher_rc = event.get("launcher_rc")
            r.suite_s = now - (self._t_first or self._t_start)
            if r.launcher_rc not in (0, None):
                time.sleep(0.2)  # the guest prints the launcher's stderr on the console next
                with self._lock:
                    tail = " | ".join(line for _, line in r.console[-6:])
                r.failure = f"kpc-launch in the guest exited {r.launcher_rc}; console: {tail}"
            elif r.info is None:
                r.failure = "the guest's report of itself was unreadable: " + "; ".join(self._garbled[:3])
            self._done.set()
        elif kind == "start":
            with self._lock:
                self._inflight[event.get("run")] = (now, self._deadline_of(event.get("run")))
        elif kind == "result":
            run_id = event.get("run")
            with self._lock:
                self._inflight.pop(run_id, None)
                self._reported.add(run_id)
                crash = self._crash_lines.pop(run_id, None)
            if crash:
                event = dict(event, kernel_messages=crash, outcome_before_crash=event.get("outcome"),
                             outcome="kernel-crash")
            self.on_event(event)
        else:
            self.on_event(event)

    def _deadline_of(self, run_id):
        return self._timeout_s.get(run_id, 60.0) + RECOVERY_ALLOWANCE_S

    def _read_events(self, sock):
        buf = b""
        s = None
        deadline = time.monotonic() + 10
        while s is None and time.monotonic() < deadline and not self._stop.is_set():
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sock)
            except OSError:
                s.close()
                s = None
                time.sleep(0.02)
        if s is None:
            return
        with s:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    m = FRAME.search(line.decode("utf-8", "replace").rstrip("\r"))
                    if m:
                        self._frame(m, time.monotonic())
                    elif line.strip():
                        self._garbled.append(line[:200].decode("utf-8", "replace"))

    def _supervise(self, sock, t0):
        r = self.run
        self._t_start, self._t_first, self._last_event = t0, None, t0
        self._done, self._garbled, self._crash_lines = threading.Event(), [], {}
        self._console_watch = ConsoleWatch()
        readers = [threading.Thread(target=self._read_console, daemon=True),
                   threading.Thread(target=self._read_events, args=(sock,), daemon=True)]
        for t in readers:
            t.start()
        total = BOOT_DEADLINE_S + sum(p.get("timeout_ms", 30000) / 1000.0 + 5 for p in self.plan)
        while not self._done.is_set() and not self._stop.is_set():
            self._done.wait(0.2)
            now = time.monotonic()
            if self._proc.poll() is not None:
                time.sleep(0.3)  # let the readers drain
                if not self._done.is_set():
                    r.failure = f"the guest ended (qemu exit {self._proc.returncode}) before finishing the plan"
                    if r.crashes:
                        when = "while booting" if r.info is None else "while running the plan"
                        r.failure += f"; the kernel crashed {when}: {r.crashes[0][1].strip()}"
                break
            if r.info is None and now - t0 > BOOT_DEADLINE_S:
                r.failure = f"the guest did not start kpc within {BOOT_DEADLINE_S:g} s of booting"
                break
            with self._lock:
                why = targets.overdue("the guest", now, t0, total, self._inflight)
            if why:
                r.failure = why
                break
        if self._done.is_set():
            # the guest reboots itself; give it a moment, then kill
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _kill(self._proc)
        for t in readers:
            t.join(timeout=5)

    def _finish_unreported(self):
        r = self.run
        tail = [line for _, line in r.console[-25:]]
        for p in self.plan:
            rid = p["run"]
            if rid in self._reported:
                continue
            inflight = rid in self._inflight
            crash = getattr(self, "_crash_lines", {}).get(rid)
            why = r.failure or "the guest ended without reporting this run"
            self.on_event({"event": "result", "run": rid, "case": p["case"], "variant": p["variant"],
                           "flavor": p["flavor"], "records": [],
                           "outcome": "guest-lost" if inflight else "launch-error",
                           "error": (f"kernel {self.kernel.label}: {why}" if inflight else
                                     f"kernel {self.kernel.label}: not run: {why}"),
                           "console_tail": tail, "kernel_messages": crash or []})
