"""Running the suite inside a kernel booted under QEMU.

The guest: `qemu-system-x86_64 -M microvm` (amd64) or `qemu-system-aarch64
-M virt -cpu cortex-a57` (arm64, always TCG on an x86_64 host), no disk,
booted with the initramfs guest_image.py makes (base, modules, plan).
This module probes the accelerator, boots QEMU, reads its two channels and
supervises the run.

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

from __future__ import annotations

import ctypes
import dataclasses
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
import typing

from . import kernels, launch, paths, targets
from .guest_image import HOST_ARCH, GuestError, base_image, run_initrd

CACHE = paths.CACHE
QEMU = "qemu-system-x86_64"
# What differs per guest architecture (Debian's names). arm64: cortex-a57,
# not plain "max" (emulating pointer authentication with QARMA made it 4-5x
# slower; "max,pauth-impdef=on" is as fast); virtio over virtio-mmio as on
# microvm; PSCI reset ends QEMU (-no-reboot) without x86's reboot=t.
ARCH = {
    "amd64": {"qemu": QEMU, "machine": ["-M", "microvm"], "console": "ttyS0", "cmdline": " reboot=t"},
    "arm64": {"qemu": "qemu-system-aarch64", "machine": ["-M", "virt", "-cpu", "cortex-a57"],
              "console": "ttyAMA0", "cmdline": ""},
}
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

    def complaint(self, line: str) -> bool:
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


# TCG's vCPU threading, "single" or "multi": see Guest.argv (bench/tcg_boots.py
# compares the two).
TCG_THREAD = "single"


# ------------------------------------------------------------ accelerator

class Accel(typing.NamedTuple):
    """The accelerator a guest boots with, and why that one."""
    name: str          # kvm or tcg
    why: str


_ACCEL = {}


def accelerator(kernel_image: str, boot_image: str, arch: str = "amd64") -> Accel:
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
        return Accel("tcg", f"an {arch} guest on an {os.uname().machine} host (emulated)")
    if forced:
        return Accel(forced, f"KPC_ACCEL={forced}")
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
            _ACCEL["accel"] = Accel(saved["accel"], saved["why"])
            return _ACCEL["accel"]
    except (OSError, ValueError, KeyError):
        pass
    result = Accel("tcg", "no /dev/kvm")
    if os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
        t0 = time.monotonic()
        ok, said = _probe_kvm(kernel_image, boot_image)
        dt = time.monotonic() - t0
        result = Accel("kvm", f"KVM booted a kernel in {dt:.1f} s") if ok else Accel(
            "tcg", f"KVM did not boot a kernel ({dt:.1f} s; qemu said: {said or 'nothing'})")
    _ACCEL["accel"] = result
    try:
        os.makedirs(CACHE, exist_ok=True)
        with open(memo, "w") as f:
            json.dump({"boot_id": boot_id, "accel": result.name, "why": result.why}, f)
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


def host_tsc_khz() -> int:
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

class ConsoleLine(typing.NamedTuple):
    at: float          # when the host read it (time.monotonic())
    text: str


@dataclasses.dataclass
class GuestRun:
    kernel: object
    accel: str = ""
    accel_why: str = ""
    info: dict | None = None            # the guest's own report: release, flavors, caps
    boot_s: float | None = None         # QEMU start -> first frame
    suite_s: float | None = None        # first frame -> guest-done
    wall_s: float = 0.0
    console: list = dataclasses.field(default_factory=list)   # [ConsoleLine]
    crashes: list = dataclasses.field(default_factory=list)   # [ConsoleLine]: the kernel complaining
    failure: str | None = None          # the guest as a whole went wrong
    launcher_rc: int | None = None


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

    def argv(self, initrd: str, accel: str) -> list[str]:
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

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._proc:
                _kill(self._proc)

    def execute(self) -> GuestRun:
        """Blocking: boot, stream, supervise, clean up. Returns GuestRun."""
        r = self.run
        t0 = time.monotonic()
        initrd = None
        tmpdir = tempfile.mkdtemp(prefix=f"kpc-guest-{os.getpid()}-")
        try:
            r.accel, r.accel_why = accelerator(self.kernel.image, base_image(self.arch), self.arch)
            plan = launch.for_emulated_target(self.plan) if r.accel == "tcg" else self.plan
            initrd = run_initrd(self.kernel, self.arch, plan, self.jobs)
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
                r.console.append(ConsoleLine(now, line))
                if len(r.console) > 4000:
                    del r.console[:1000]
                if self._console_watch.complaint(line):
                    r.crashes.append(ConsoleLine(now, line))
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
                    tail = " | ".join(line.text for line in r.console[-6:])
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
                        r.failure += f"; the kernel crashed {when}: {r.crashes[0].text.strip()}"
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
        tail = [line.text for line in r.console[-25:]]
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
