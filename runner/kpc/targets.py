"""Where a suite runs: one interface, several machines (kirk's SUT idea).

A Target is a place that runs a plan (launcher plan entries) and streams the
launcher's events back. The session plans per target and judges every event
with the controller's tables; it never asks which kind of target it talks
to. The implementations:

  HostTarget     this machine: kpc-launch as a child (launch.Batch)
  GuestTarget    a Debian or user kernel booted under QEMU (guest.Guest)
  SshTarget      another machine over SSH, running a kpc bundle (sshtarget.py)
  ReplayTarget   events a bundle recorded on a machine without Python
                 (`kpc/run --events FILE`, judged by `kpc evaluate FILE`)

The contract, which makes every verdict come out of the same code:
  * `env` (envinfo.Environment) is known before the session plans: the
    requirement checks (skips) use it. A target that must ask the machine
    first does so in prepare().
  * start(plan, jobs, on_event) returns at once; every plan entry then gets
    exactly one "result" event, however the target ends: a run the machine
    never reported gets a result saying why (launch-error, guest-lost, ...).
  * probe_dir is where the probes are on the target: plan entries name it.
  * failure: why the target as a whole went wrong (None when it did not);
    report(): the results' `kernels` block entry (None for the host).
"""

import threading

from . import launch, paths


class Target:
    label = "host"
    kind = "host"
    env = None
    failure = None

    @property
    def probe_dir(self):
        return paths.probe_dir()

    def prepare(self):
        """Make `env` true of the machine (connect, copy, ask). Raises
        TargetError with one line for the user."""

    def start(self, plan, jobs, on_event):
        raise NotImplementedError

    def stop(self):
        """Stop early (interrupted): recover what runs, report the rest."""

    def join(self, timeout=None):
        """Wait until the target has ended (its QEMU, SSH, launcher)."""

    def report(self):
        return None

    def on_target_event(self, event):
        """A target's own facts in its event stream ("batch", "guest"):
        True when the event was consumed here."""
        if event.get("event") == "batch":
            self.env.fuse_recovery = self.env.fuse_recovery or event.get("fuse_recovery")
            return True
        return False


class TargetError(Exception):
    """A target that cannot be used: one line, exit 2 before anything runs."""


def unreported(plan, reported, outcome, error, **extra):
    """Result events for the plan entries never reported."""
    for p in plan:
        if p["run"] in reported:
            continue
        yield {"event": "result", "run": p["run"], "case": p["case"], "variant": p["variant"],
               "flavor": p["flavor"], "records": [], "outcome": outcome, "error": error, **extra}


class HostTarget(Target):
    """This machine: kpc-launch batch as the runner's child."""

    def __init__(self, env):
        self.env = env
        self._batch = None
        self._done = threading.Event()

    def start(self, plan, jobs, on_event):
        reported = set()

        def event(e):
            if e.get("event") == "result":
                reported.add(e.get("run"))
            on_event(e)

        def exited(rc, stderr):
            if rc not in (0, 130):
                self.failure = f"kpc-launch exited {rc}: {stderr.strip()[-2000:]}"
            why = self.failure or "the launcher ended before running this case"
            for e in unreported(plan, reported, "launch-error", why):
                on_event(e)
            self._done.set()

        self._batch = launch.Batch(plan, jobs, event, exited)

    def stop(self):
        if self._batch:
            self._batch.stop()

    def join(self, timeout=None):
        if self._batch:
            self._done.wait(timeout)


class GuestTarget(Target):
    """A kernel booted under QEMU with the plan in its initramfs. `slots`
    (a semaphore shared by the session's guests) bounds how many boot at
    once."""

    kind = "qemu"

    def __init__(self, kernel, host_env, append="", slots=None, progress=None):
        from . import envinfo
        self.kernel, self.label = kernel, kernel.label
        self.env = envinfo.for_kernel(kernel, host_env)
        self.append = append
        self.slots = slots or threading.Semaphore(1)
        self.progress = progress
        self.guest = None
        self.run = None           # guest.GuestRun once it ended
        self._thread = None
        self._stopping = threading.Event()

    @property
    def probe_dir(self):
        return paths.probe_dir()  # the initramfs holds the build at the host's paths

    @property
    def failure(self):
        return self.run.failure if self.run is not None else None

    def start(self, plan, jobs, on_event):
        from . import guest

        def one():
            with self.slots:
                g = guest.Guest(self.kernel, plan, jobs, on_event, append=self.append)
                self.guest = g
                if self._stopping.is_set():
                    g.stop()
                elif self.progress:
                    self.progress.note(f"booting {self.kernel.label} ({self.kernel.release})")
                # the thread that starts QEMU waits for it: QEMU's
                # PDEATHSIG follows this thread.
                self.run = g.execute()
        self._thread = threading.Thread(target=one, daemon=True)
        self._thread.start()

    def on_target_event(self, event):
        kind = event.get("event")
        if kind == "guest":
            self._reported_itself(event)
            return False   # the session sees it too (nothing to judge)
        if kind == "batch":  # the guest's launcher: its facts, not the host's
            self.env.fuse_recovery = event.get("fuse_recovery")
            return True
        return False

    def _reported_itself(self, info):
        """The guest's own facts replace what the host assumed."""
        tenv = self.env
        tenv.kernel = info.get("release", tenv.kernel)
        tenv.flavors = info.get("flavors", tenv.flavors)
        caps = info.get("caps") or {}
        if caps.get("text"):
            tenv.capabilities = caps["text"]
            tenv.effective_caps = frozenset(caps.get("effective", []))
        tenv.guest["channel"] = info.get("channel")
        tenv.guest["tainted_at_boot"] = info.get("tainted")

    def stop(self):
        self._stopping.set()
        if self.guest:
            self.guest.stop()

    def join(self, timeout=None):
        if self._thread:
            self._thread.join(timeout)

    def report(self, append=""):
        doc = self.env.to_json()
        r = self.run
        if r is not None:
            doc["boot"] = {"accel": r.accel, "accel_why": r.accel_why,
                           "boot_s": round(r.boot_s, 3) if r.boot_s is not None else None,
                           "suite_s": round(r.suite_s, 3) if r.suite_s is not None else None,
                           "wall_s": round(r.wall_s, 3), "failure": r.failure,
                           "cmdline_append": self.append,
                           "kernel_messages": [line for _, line in r.crashes][:50]}
        return doc
