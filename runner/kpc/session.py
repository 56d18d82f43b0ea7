"""One suite run: what to run (case x variant x flavor), the launcher batch
that runs it, and the verdicts. The pytest plugin turns each item into a
test (`./kpc run` and `python3 -m pytest runner/suite` both go through it);
this module knows nothing about pytest."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from . import evaluate, launch, requirements
from . import targets as targets_mod

if TYPE_CHECKING:
    from . import cases, envinfo, runtimes


@dataclasses.dataclass(eq=False)
class Item:
    case: cases.Case
    variant: str
    flavor: str
    runtime: runtimes.Runtime | None = None    # runtimes.Runtime, or None: kpc's launcher starts the probe itself
    target: str = "host"      # "host", or a --kernels label: the guest it runs in
    env: envinfo.Environment | None = None   # envinfo.Environment of the target
    skip: str | None = None          # decided before running: a requirement is missing
    result: dict | None = None
    verdict: evaluate.Verdict | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def run_id(self) -> str:
        return evaluate.run_id(self.case.id, self.variant, self.flavor,
                               self.runtime.name if self.runtime else None, self.target)

    @property
    def column(self) -> str:
        """The report's column: the flavor, or the runtime under test."""
        return self.runtime.name if self.runtime else self.flavor


class Progress:
    """One status line on a terminal; silent otherwise (CI logs)."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty()
        self.lock = threading.Lock()

    def step(self, label: str) -> None:
        with self.lock:
            self.done += 1
            if self.enabled:
                self.stream.write(f"\r\033[K[{self.done}/{self.total}] {label}")
                self.stream.flush()

    def note(self, text: str) -> None:
        """A phase (a kernel booting): on the status line of a terminal."""
        with self.lock:
            if self.enabled:
                self.stream.write(f"\r\033[K[{self.done}/{self.total}] {text}")
                self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Session:
    """Runs the selected cases on every target (targets.py: this machine,
    QEMU guests, SSH machines, a recorded events file) and judges each run
    with the controller's tables. `kernels` and `host` build the host and
    guest targets; `targets` adds prepared ones (their env known)."""

    def __init__(self, cases, tables, env, selected, flavors, jobs=2, slow=False, runtimes=(), kernels=(),
                 host=True, guest_parallel=None, kernel_append="", targets=()):
        self.cases, self.tables, self.env = cases, tables, env
        self.kernel_append = kernel_append  # extra parameters for every guest kernel
        self.jobs = jobs
        self.items = []
        self.kernels = list(kernels)
        self.guest_parallel = guest_parallel or max(1, (os.cpu_count() or 2))
        self.progress = None
        slots = threading.Semaphore(self.guest_parallel)
        # Where runs happen: this machine, one QEMU guest per kernel, then
        # the targets given (SSH machines, a replayed events file).
        self.targets = {}         # label -> targets.Target
        if host:
            self.targets["host"] = targets_mod.HostTarget(env)
        for k in self.kernels:
            self.targets[k.label] = targets_mod.GuestTarget(k, env, append=kernel_append, slots=slots,
                                                            progress=self)
        for t in targets:
            self.targets[t.label] = t
        for label, t in self.targets.items():
            self.items += self._items_for(label, t.env, selected, flavors, slow, runtimes)
        self.by_run = {i.run_id: i for i in self.items}
        self.progress = Progress(len(self.items))
        self._stopping = threading.Event()
        self.unrecovered = []     # runs whose stuck tasks kpc-launch could not free (its "unrecovered" event)
        self.started = self.finished = None

    def note(self, text: str) -> None:
        """A target's phase (a kernel booting) on the status line."""
        if self.progress:
            self.progress.note(text)

    @property
    def launcher_failure(self) -> str | None:
        host = self.targets.get("host")
        return host.failure if host is not None else None

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

    def start(self, items: list[Item] | None = None) -> None:
        """Launch ITEMS (default: every item; pytest passes the ones its
        selection kept), once: later calls do nothing (`./kpc run` starts
        every item before pytest collects). An item not started is never
        done: ask no verdict of it."""
        if self.started is not None:
            return
        items = self.items if items is None else items
        self.started = time.monotonic()
        self.progress.total = len(items)
        plans = {}
        for item in items:
            if item.skip:
                item.done.set()
                self.progress.step(f"{item.run_id}: skip")
            else:
                t = self.targets[item.target]
                plans.setdefault(item.target, []).append(
                    launch.plan_entry(item.run_id, item.case, item.variant, item.flavor, runtime=item.runtime,
                                      probe_dir=t.probe_dir))
        # Remote machines and guests first (they take longest), the host meanwhile.
        for label, t in sorted(self.targets.items(), key=lambda kv: kv[0] == "host"):
            if plans.get(label):
                t.start(plans[label], self.jobs, self._handler(t))

    def _handler(self, target):
        def handler(event):
            if target.on_target_event(event):
                return
            self._on_event(event)
        return handler

    def _on_event(self, event):
        kind = event.get("event")
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

    def verdict(self, item: Item) -> evaluate.Verdict:
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

    def kernel_report(self) -> dict:
        """label -> each target's environment and how it went (not the host's)."""
        return {label: t.report() for label, t in self.targets.items() if label != "host"}

    @property
    def guest_failures(self) -> dict[str, str]:
        return {label: t.failure for label, t in self.targets.items() if label != "host" and t.failure}

    def run_all(self, items: list[Item] | None = None) -> list[evaluate.Verdict]:
        """start(), a verdict for each of ITEMS (default: every item),
        stop() however that ends: a whole run. Returns the verdicts."""
        self.start()
        try:
            return [self.verdict(i) for i in (self.items if items is None else items)]
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for label, t in self.targets.items():
            if label == "host" or not all(i.done.is_set() for i in self.items if i.target == label):
                t.stop()
        for label, t in self.targets.items():
            t.join(timeout=60 if label != "host" else 30)
        # Second line behind each run's cleanup entry (the launcher runs
        # it): containers of dead wrappers and runtimes are deleted now,
        # not at some later run.
        if any(i.runtime for i in self.items):
            from . import oci_run
            for rt in {i.runtime.name: i.runtime for i in self.items if i.runtime}.values():
                if rt.oci and not rt.unavailable:
                    try:
                        oci_run.sweep(rt.oci)
                    except (OSError, oci_run.OciError) as e:
                        sys.stderr.write(f"kpc: sweeping {rt.name} containers: {e}\n")
            if any(i.runtime.engine and not i.runtime.unavailable for i in self.items if i.runtime):
                from . import engine_run
                try:
                    engine_run.sweep()
                except (OSError, engine_run.EngineError, oci_run.OciError) as e:
                    sys.stderr.write(f"kpc: sweeping engine runs: {e}\n")
            # what is left of kpc's layout in /run, when empty and no kpc uses it
            if any(i.runtime.oci or i.runtime.engine for i in self.items if i.runtime):
                try:
                    oci_run.remove_empty_layout()
                except OSError as e:
                    sys.stderr.write(f"kpc: removing the empty {oci_run.KPC_OCI}: {e}\n")
        self.finished = time.monotonic()
        self.progress.clear()

    @property
    def wall_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started
