"""One suite run: what to run (case x variant x flavor), the launcher batch
that runs it, and the verdicts. The pytest plugin turns each item into a
test; this module knows nothing about pytest."""

import dataclasses
import os
import sys
import threading
import time

from . import envinfo, evaluate, launch, requirements


@dataclasses.dataclass(eq=False)
class Item:
    case: object
    variant: str
    flavor: str
    runtime: object = None    # runtimes.Runtime, or None: kpc's launcher starts the probe itself
    target: str = "host"      # "host", or a --kernels label: the guest it runs in
    env: object = None        # envinfo.Environment of the target
    skip: str = None          # decided before running: a requirement is missing
    result: dict = None
    verdict: evaluate.Verdict = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def run_id(self):
        v = f":{self.variant}" if self.variant else ""
        r = f"+{self.runtime.name}" if self.runtime else ""
        k = f"#{self.target}" if self.target != "host" else ""
        return f"{self.case.id}{v}@{self.flavor}{r}{k}"

    @property
    def column(self):
        """The report's column: the flavor, or the runtime under test."""
        return self.runtime.name if self.runtime else self.flavor


class Progress:
    """One status line on a terminal; silent otherwise (CI logs)."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty()
        self.lock = threading.Lock()

    def step(self, label):
        with self.lock:
            self.done += 1
            if self.enabled:
                self.stream.write(f"\r\033[K[{self.done}/{self.total}] {label}")
                self.stream.flush()

    def note(self, text):
        """A phase (a kernel booting): on the status line of a terminal."""
        with self.lock:
            if self.enabled:
                self.stream.write(f"\r\033[K[{self.done}/{self.total}] {text}")
                self.stream.flush()

    def clear(self):
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Session:
    def __init__(self, cases, tables, env, selected, flavors, jobs=2, slow=False, runtimes=(), kernels=(),
                 host=True, guest_parallel=None, kernel_append=""):
        self.cases, self.tables, self.env = cases, tables, env
        self.kernel_append = kernel_append  # extra parameters for every guest kernel
        self.jobs = jobs
        self.items = []
        self.kernels = list(kernels)
        # Where runs happen: this machine, then one QEMU guest per kernel.
        self.targets = {"host": env} if host else {}
        for k in self.kernels:
            self.targets[k.label] = envinfo.for_kernel(k, env)
        for target, tenv in self.targets.items():
            self.items += self._items_for(target, tenv, selected, flavors, slow, runtimes)
        self.by_run = {i.run_id: i for i in self.items}
        self.guest_parallel = guest_parallel or max(1, (os.cpu_count() or 2))
        self.guests = {}          # label -> guest.Guest
        self.guest_runs = {}      # label -> guest.GuestRun
        self._guest_threads = []
        self.progress = Progress(len(self.items))
        self._stopping = threading.Event()
        self.launcher_failure = None
        self.unrecovered = []     # runs whose stuck tasks kpc-launch could not free (its "unrecovered" event)
        self.started = self.finished = None
        self._batch = None

    @staticmethod
    def _items_for(target, env, selected, flavors, slow, runtimes):
        items = []
        # Under --runtime: the cases meant for it, each as each runtime's
        # child, in the host flavor (the runtime brings its own namespaces).
        # Runtimes run on this machine only (guests have no runtimes).
        for case in (selected if runtimes and target == "host" else []):
            if not case.under_runtimes:
                continue
            for variant in case.variants or [""]:
                for rt in runtimes:
                    item = Item(case, variant, "host", runtime=rt, target=target, env=env)
                    item.skip = requirements.skip_reason(case, "host", env) or (
                        f"{rt.name}: {rt.unavailable}" if rt.unavailable else None)
                    items.append(item)
        for case in (selected if not runtimes or target != "host" else []):
            for variant in case.variants or [""]:
                for flavor in case.flavors:
                    if flavor not in flavors:
                        continue
                    item = Item(case, variant, flavor, target=target, env=env)
                    item.skip = requirements.skip_reason(case, flavor, env)
                    if case.slow and not slow and not item.skip:
                        item.skip = f"slow case ({case.slow}): run with --slow"
                    items.append(item)
        return items

    def start(self):
        self.started = time.monotonic()
        plans = {}
        for item in self.items:
            if item.skip:
                item.done.set()
                self.progress.step(f"{item.run_id}: skip")
            else:
                plans.setdefault(item.target, []).append(
                    launch.plan_entry(item.run_id, item.case, item.variant, item.flavor, runtime=item.runtime))
        # Guests first (they take longest), the host suite meanwhile.
        guest_plans = [(k, plans[k.label]) for k in self.kernels if k.label in plans]
        if guest_plans:
            t = threading.Thread(target=self._run_guests, args=(guest_plans,), daemon=True)
            t.start()
            self._guest_threads.append(t)
        if plans.get("host"):
            self._batch = launch.Batch(plans["host"], self.jobs, self._on_event, self._on_exit)

    def _run_guests(self, guest_plans):
        from . import guest
        sem = threading.Semaphore(self.guest_parallel)

        def one(kernel, plan):
            with sem:
                if self._stopping.is_set():
                    g = guest.Guest(kernel, plan, self.jobs, self._on_event, append=self.kernel_append)
                    g.stop()
                else:
                    self.progress.note(f"booting {kernel.label} ({kernel.release})")
                    g = guest.Guest(kernel, plan, self.jobs, self._on_guest_event(kernel.label),
                                    append=self.kernel_append)
                    self.guests[kernel.label] = g
                # the thread that starts QEMU waits for it: QEMU's
                # PDEATHSIG follows this thread.
                self.guest_runs[kernel.label] = g.execute()
        threads = [threading.Thread(target=one, args=kp, daemon=True) for kp in guest_plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _on_guest_event(self, label):
        def handler(event):
            if event.get("event") == "guest":
                self._guest_reported(label, event)
            if event.get("event") == "batch":  # the guest's launcher: its facts, not the host's
                self.targets[label].fuse_recovery = event.get("fuse_recovery")
                return
            self._on_event(event)
        return handler

    def _guest_reported(self, label, info):
        """The guest's own facts replace what the host assumed."""
        tenv = self.targets[label]
        tenv.kernel = info.get("release", tenv.kernel)
        tenv.flavors = info.get("flavors", tenv.flavors)
        caps = info.get("caps") or {}
        if caps.get("text"):
            tenv.capabilities = caps["text"]
            tenv.effective_caps = frozenset(caps.get("effective", []))
        tenv.guest["channel"] = info.get("channel")
        tenv.guest["tainted_at_boot"] = info.get("tainted")

    def _on_event(self, event):
        kind = event.get("event")
        if kind == "batch" and self.env is not None:
            self.env.fuse_recovery = self.env.fuse_recovery or event.get("fuse_recovery")
        if kind == "unrecovered":
            self.unrecovered += event.get("runs", [])
        if kind != "result":
            return
        item = self.by_run.get(event.get("run"))
        if item is None or item.done.is_set():
            return
        item.result = event
        self.progress.step(f"{item.run_id}: {event.get('outcome')}")
        item.done.set()

    def _on_exit(self, rc, stderr):
        if rc not in (0, 130):
            self.launcher_failure = f"kpc-launch exited {rc}: {stderr.strip()[-2000:]}"
        for item in self.items:
            if item.target == "host" and not item.done.is_set():
                item.result = {"outcome": "launch-error", "records": [],
                               "error": self.launcher_failure or "the launcher ended before running this case"}
                item.done.set()

    def verdict(self, item):
        if item.verdict is None:
            item.done.wait()
            env = item.env or self.env
            flavor_status = env.flavors.get(item.flavor, "not checked")
            if item.skip:
                item.verdict = evaluate.Verdict("skip", item.skip)
            elif flavor_status != "ok":
                # a guest's own report said the flavor does not work there
                item.verdict = evaluate.Verdict("skip", f"{item.flavor} flavor unavailable on {item.target}: "
                                                        f"{flavor_status}")
            else:
                rt = item.runtime
                ctx = env.context(item.flavor, item.variant, rt.profile if rt else "none",
                                  rt.name if rt else "none")
                item.verdict = evaluate.evaluate(item.case, item.result, self.tables, ctx)
        return item.verdict

    def kernel_report(self):
        """label -> the guest's environment, and how its boot went."""
        out = {}
        for k in self.kernels:
            tenv = self.targets[k.label]
            r = self.guest_runs.get(k.label)
            doc = tenv.to_json()
            if r is not None:
                doc["boot"] = {"accel": r.accel, "accel_why": r.accel_why,
                               "boot_s": round(r.boot_s, 3) if r.boot_s is not None else None,
                               "suite_s": round(r.suite_s, 3) if r.suite_s is not None else None,
                               "wall_s": round(r.wall_s, 3), "failure": r.failure,
                               "cmdline_append": self.kernel_append,
                               "kernel_messages": [line for _, line in r.crashes][:50]}
            out[k.label] = doc
        return out

    @property
    def guest_failures(self):
        return {label: r.failure for label, r in self.guest_runs.items() if r.failure}

    def stop(self):
        self._stopping.set()
        for g in list(self.guests.values()):
            if not all(i.done.is_set() for i in self.items if i.target == g.kernel.label):
                g.stop()
        for t in self._guest_threads:
            t.join(timeout=60)
        if self._batch:
            self._batch.stop()
        # Second line behind each run's cleanup entry (the launcher runs
        # it): containers of dead wrappers and runtimes are deleted now,
        # not at some later run.
        from . import oci_run
        for rt in {i.runtime.name: i.runtime for i in self.items if i.runtime}.values():
            if rt.oci and not rt.unavailable:
                try:
                    oci_run.sweep(rt.oci)
                except (OSError, oci_run.OciError) as e:
                    sys.stderr.write(f"kpc: sweeping {rt.name} containers: {e}\n")
        self.finished = time.monotonic()
        self.progress.clear()

    @property
    def wall_s(self):
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started
