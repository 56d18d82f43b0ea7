"""One suite run: what to run (case x variant x flavor), the launcher batch
that runs it, and the verdicts. The pytest plugin turns each item into a
test; this module knows nothing about pytest."""

import dataclasses
import sys
import threading
import time

from . import evaluate, launch, requirements


@dataclasses.dataclass(eq=False)
class Item:
    case: object
    variant: str
    flavor: str
    runtime: object = None    # runtimes.Runtime, or None: kpc's launcher starts the probe itself
    skip: str = None          # decided before running: a requirement is missing
    result: dict = None
    verdict: evaluate.Verdict = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def run_id(self):
        v = f":{self.variant}" if self.variant else ""
        r = f"+{self.runtime.name}" if self.runtime else ""
        return f"{self.case.id}{v}@{self.flavor}{r}"

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

    def clear(self):
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Session:
    def __init__(self, cases, tables, env, selected, flavors, jobs=2, slow=False, runtimes=()):
        self.cases, self.tables, self.env = cases, tables, env
        self.jobs = jobs
        self.items = []
        # Under --runtime: the cases meant for it, each as each runtime's
        # child, in the host flavor (the runtime brings its own namespaces).
        for case in (selected if runtimes else []):
            if not case.under_runtimes:
                continue
            for variant in case.variants or [""]:
                for rt in runtimes:
                    item = Item(case, variant, "host", runtime=rt)
                    item.skip = requirements.skip_reason(case, "host", env) or (
                        f"{rt.name}: {rt.unavailable}" if rt.unavailable else None)
                    self.items.append(item)
        for case in (selected if not runtimes else []):
            for variant in case.variants or [""]:
                for flavor in case.flavors:
                    if flavor not in flavors:
                        continue
                    item = Item(case, variant, flavor)
                    item.skip = requirements.skip_reason(case, flavor, env)
                    if case.slow and not slow and not item.skip:
                        item.skip = f"slow case ({case.slow}): run with --slow"
                    self.items.append(item)
        self.by_run = {i.run_id: i for i in self.items}
        self.progress = Progress(len(self.items))
        self.launcher_failure = None
        self.started = self.finished = None
        self._batch = None

    def start(self):
        self.started = time.monotonic()
        plan = []
        for item in self.items:
            if item.skip:
                item.done.set()
                self.progress.step(f"{item.run_id}: skip")
            else:
                plan.append(launch.plan_entry(item.run_id, item.case, item.variant, item.flavor, runtime=item.runtime))
        if plan:
            self._batch = launch.Batch(plan, self.jobs, self._on_event, self._on_exit)

    def _on_event(self, event):
        if event.get("event") != "result":
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
            if not item.done.is_set():
                item.result = {"outcome": "launch-error", "records": [],
                               "error": self.launcher_failure or "the launcher ended before running this case"}
                item.done.set()

    def verdict(self, item):
        if item.verdict is None:
            item.done.wait()
            if item.skip:
                item.verdict = evaluate.Verdict("skip", item.skip)
            else:
                rt = item.runtime
                ctx = self.env.context(item.flavor, item.variant, rt.profile if rt else "none",
                                       rt.name if rt else "none")
                item.verdict = evaluate.evaluate(item.case, item.result, self.tables, ctx)
        return item.verdict

    def stop(self):
        if self._batch:
            self._batch.stop()
        self.finished = time.monotonic()
        self.progress.clear()

    @property
    def wall_s(self):
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started
