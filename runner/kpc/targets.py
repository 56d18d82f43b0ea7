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

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, TYPE_CHECKING

from . import launch, paths

if TYPE_CHECKING:
    from . import envinfo


class Target:
    label = "host"
    kind = "host"
    env = None
    failure = None

    @property
    def probe_dir(self) -> str:
        return paths.probe_dir()

    def prepare(self) -> None:
        """Make `env` true of the machine (connect, copy, ask). Raises
        TargetError with one line for the user."""

    def start(self, plan: list[dict], jobs: int, on_event: Callable[[dict], None]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop early (interrupted): recover what runs, report the rest."""

    def join(self, timeout: float | None = None) -> None:
        """Wait until the target has ended (its QEMU, SSH, launcher)."""

    def report(self) -> dict | None:
        return None

    def on_target_event(self, event: dict) -> bool:
        """A target's own facts in its event stream ("batch", "guest"):
        True when the event was consumed here."""
        if event.get("event") == "batch":
            self.env.fuse_recovery = self.env.fuse_recovery or event.get("fuse_recovery")
            return True
        return False


class TargetError(Exception):
    """A target that cannot be used: one line, exit 2 before anything runs."""


# Per case, on top of its timeout: the launcher's own recovery (a guest's or
# a remote machine's runs are given up on only after that).
RECOVERY_ALLOWANCE_S = 20.0


def overdue(who: str, now: float, t0: float, total: float, inflight: dict[str, tuple[float, float]]) -> str | None:
    """Why a target whose runs stream back must be given up now, or None:
    a run past its deadline (INFLIGHT: run id -> (start, seconds it may
    take)), or the whole plan past TOTAL seconds since T0."""
    late = [(rid, now - st) for rid, (st, allowed) in inflight.items() if now - st > allowed]
    if late:
        rid, dt = late[0]
        return (f"{who} stopped answering: {rid} ran {dt:.0f} s, past its deadline "
                f"(its timeout + {RECOVERY_ALLOWANCE_S:g} s of recovery)")
    if now - t0 > total:
        return f"{who} exceeded its whole-plan deadline of {total:.0f} s"
    return None


def unreported(plan: list[dict], reported: set[str], outcome: str, error: str, **extra: object) -> Iterator[dict]:
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

    def start(self, plan: list[dict], jobs: int, on_event: Callable[[dict], None]) -> None:
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

    def stop(self) -> None:
        if self._batch:
            self._batch.stop()

    def join(self, timeout: float | None = None) -> None:
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
    def probe_dir(self) -> str:
        return paths.probe_dir()  # the initramfs holds the build at the host's paths

    @property
    def failure(self) -> str | None:
        return self.run.failure if self.run is not None else None

    def start(self, plan: list[dict], jobs: int, on_event: Callable[[dict], None]) -> None:
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

    def on_target_event(self, event: dict) -> bool:
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

    def stop(self) -> None:
        self._stopping.set()
        if self.guest:
            self.guest.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def report(self, append: str = "") -> dict:
        doc = self.env.to_json()
        doc["arch"] = getattr(self.kernel, "arch", "amd64")
        r = self.run
        if r is not None:
            doc["boot"] = {"accel": r.accel, "accel_why": r.accel_why,
                           "boot_s": round(r.boot_s, 3) if r.boot_s is not None else None,
                           "suite_s": round(r.suite_s, 3) if r.suite_s is not None else None,
                           "wall_s": round(r.wall_s, 3), "failure": r.failure,
                           "cmdline_append": self.append,
                           "kernel_messages": [line.text for line in r.crashes][:50]}
        return doc


# ------------------------------------------------------------ another machine's words

# What a machine kpc does not control (a device over SSH, an events file from
# one) may say. Its facts and events are checked here, field by field, before
# the session plans or judges anything with them: a malformed or hostile
# stream is a TargetError (facts) or an error verdict (a run), never a
# traceback and never a verdict it chose.
LAUNCHER_OUTCOMES = ("completed", "hang", "timeout", "interrupted", "launch-error")
MAX_LINE = 4 << 20           # one event (a hang's stacks are the largest)
MAX_EVENTS_BYTES = 256 << 20
_PLAIN = __import__("re").compile(r"^[A-Za-z0-9._+~-]{1,100}$")


def _want(cond, what):
    if not cond:
        raise TargetError(what)


def _str_list(value, what, limit=200):
    _want(isinstance(value, list) and len(value) <= limit and all(isinstance(x, str) and len(x) < 4096
                                                                  for x in value), f"{what}: not a list of strings")
    return value


def env_from_facts(facts: dict, label: str, origin: str) -> envinfo.Environment:
    """envinfo.Environment of a machine from its bundle's facts line (what
    kpc/run --facts prints): the same facts envinfo.detect() reads, so the
    requirement checks decide the same skips as on the machine itself. The
    libc is the bundle's (the probes are static)."""
    from . import envinfo, kver
    _want(isinstance(facts, dict) and facts.get("event") == "facts", "the first line is not a kpc facts line")
    rel, mach = facts.get("release"), facts.get("machine")
    _want(isinstance(rel, str) and _PLAIN.match(rel), "facts: no kernel release")
    try:
        kver.parse(rel)
    except ValueError:
        raise TargetError(f"facts: kernel release {rel!r} does not start with a version") from None
    _want(isinstance(mach, str) and _PLAIN.match(mach), "facts: no machine")
    caps, flavors, bundle = facts.get("caps"), facts.get("flavors"), facts.get("bundle")
    _want(isinstance(caps, dict) and isinstance(caps.get("text"), str), "facts: caps is not kpc-launch's")
    _str_list(caps.get("effective"), "facts: caps.effective", 64)
    _want(isinstance(flavors, dict) and all(isinstance(flavors.get(f), str) for f in ("host", "pidns", "userns")),
          "facts: flavors is not kpc-launch's")
    _want(isinstance(bundle, dict) and isinstance(bundle.get("libc"), str), "facts: no bundle manifest")
    kconfig = facts.get("kconfig")
    _want(kconfig is None or (isinstance(kconfig, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                for k, v in kconfig.items())), "facts: kconfig")
    for key in ("root", "slow"):
        _want(isinstance(facts.get(key), bool), f"facts: {key} is not true or false")
    for key in ("distro", "kconfig_source", "boot_id"):
        _want(isinstance(facts.get(key), str) and len(facts[key]) <= 300, f"facts: {key} is not a short string")
    return envinfo.Environment(
        kernel=rel, machine=mach, distro=facts["distro"] or "unknown", libc=bundle["libc"], root=facts["root"],
        capabilities=caps["text"][:300], effective_caps=frozenset(caps["effective"]), kconfig=kconfig,
        kconfig_source=facts["kconfig_source"], flavors={f: flavors[f][:500] for f in ("host", "pidns", "userns")},
        target=label,
        guest={"files": set(_str_list(facts.get("files"), "facts: files")),
               "commands": set(_str_list(facts.get("commands"), "facts: commands")),
               "origin": origin, "bundle": {k: str(v)[:100] for k, v in bundle.items()},
               "boot_id": facts["boot_id"], "slow": facts["slow"]})


def _scalar(v):
    return v is None or isinstance(v, (str, int, float, bool))


def _flat(v):
    """A scalar or a list of scalars."""
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def _task_ok(t):
    return isinstance(t, dict) and all(_flat(v) for v in t.values()) and \
        all(isinstance(x, str) for x in (t.get("stack") if isinstance(t.get("stack"), list) else []))


def _trouble_ok(t):
    """kpc-launch's hang/trouble object: flat values, and task lists."""
    if not isinstance(t, dict):
        return False
    for k, v in t.items():
        if k in ("tasks", "left_running"):
            if not (isinstance(v, list) and all(_task_ok(x) for x in v)):
                return False
        elif not _flat(v):
            return False
    return True


def checked_result(event: dict, run_id: str) -> dict:
    """A launcher result event from another machine, with only the fields
    the evaluator reads, each of the type it expects; anything else makes
    the run an error naming what was wrong (a machine cannot pick its
    verdict by sending a shape the evaluator misreads)."""
    out = {"event": "result", "run": run_id}
    problems = []
    for key in ("case", "variant", "flavor"):
        if isinstance(event.get(key), str):
            out[key] = event[key]
    outcome = event.get("outcome")
    if outcome not in LAUNCHER_OUTCOMES:
        problems.append(f"outcome {render_safe(outcome)} is not one kpc-launch reports")
    out["outcome"] = outcome if outcome in LAUNCHER_OUTCOMES else "launch-error"
    recs = event.get("records", [])
    if isinstance(recs, list) and all(isinstance(r, dict) and all(isinstance(k, str) and _scalar(v)
                                                                  for k, v in r.items()) for r in recs):
        out["records"] = recs
    else:
        out["records"] = []
        problems.append("records are not a list of flat objects")
    for key, kind in (("exit", dict), ("marks", dict), ("error", str), ("stderr", str), ("stdout", str)):
        if key in event:
            if isinstance(event[key], kind):
                out[key] = event[key]
            else:
                problems.append(f"{key} has the wrong type")
    if "exit" in out and not isinstance(out["exit"].get("text", ""), str):
        problems.append("exit.text is not a string")
        del out["exit"]
    if isinstance(event.get("duration_ms"), (int, float)) and not isinstance(event["duration_ms"], bool):
        out["duration_ms"] = float(event["duration_ms"])
    for key in ("hang", "trouble"):
        if key in event:
            t = event[key]
            if _trouble_ok(t):
                out[key] = t
            else:
                problems.append(f"{key} is not kpc-launch's")
    pe = event.get("protocol_errors", [])
    out["protocol_errors"] = [str(x)[:300] for x in pe] if isinstance(pe, list) else ["protocol_errors malformed"]
    if problems:
        out["outcome"] = "launch-error"
        out["error"] = "the target sent a malformed result: " + "; ".join(problems)
    return out


def render_safe(value: object) -> str:
    from . import render
    return repr(render.visible(str(value))[:60])


def read_event_lines(stream_lines: Iterable[bytes], on_line: Callable[[dict], None],
                     on_garbage: Callable[[str], None]) -> None:
    """JSON objects from lines; a line that is not one goes to on_garbage."""
    import json
    for raw in stream_lines:
        if len(raw) > MAX_LINE:
            on_garbage(f"a line of {len(raw)} bytes")
            continue
        line = raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else raw.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            on_garbage(line[:200])
            continue
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            on_garbage(line[:200])
            continue
        on_line(event)


class ReplayTarget(Target):
    """Events a bundle recorded on a machine without Python (kpc/run
    --events FILE): its facts make the environment, its results are judged
    as if they were streaming now. Runs the file does not have are errors
    (the recording ended early), runs it has that the controller would skip
    are not judged."""

    kind = "events"

    def __init__(self, path, label=None):
        import json
        self.path = path
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_EVENTS_BYTES + 1)
        except OSError as e:
            raise TargetError(f"{path}: {e.strerror}") from None
        if len(data) > MAX_EVENTS_BYTES:
            raise TargetError(f"{path}: more than {MAX_EVENTS_BYTES >> 20} MiB: not a kpc events file")
        lines = data.split(b"\n")
        try:
            facts = json.loads(lines[0].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise TargetError(f"{path}: the first line is not a kpc facts line (kpc/run --events FILE writes one)") \
                from None
        try:
            self.env = env_from_facts(facts, "?", f"events file {path}")
        except TargetError as e:
            raise TargetError(f"{path}: {e}") from None
        self.label = label or self.env.kernel
        self.env.target = self.label
        self.slow = facts["slow"]
        self._lines = lines[1:]
        self.garbage = []

    def start(self, plan: list[dict], jobs: int, on_event: Callable[[dict], None]) -> None:
        suffix = f"#{self.label}" if self.label != "host" else ""
        wanted = {p["run"]: p for p in plan}
        reported = set()

        def line(event):
            kind = event["event"]
            if kind == "result" and isinstance(event.get("run"), str):
                rid = event["run"] + suffix
                if rid in wanted and rid not in reported:
                    reported.add(rid)
                    on_event(checked_result(event, rid))
            elif kind == "batch" and isinstance(event.get("fuse_recovery"), (str, type(None))):
                on_event({"event": "batch", "fuse_recovery": event.get("fuse_recovery")})
            # "unrecovered" is not passed on: it names tasks on that machine, and
            # the results of those runs say so themselves (an error verdict)
        read_event_lines(self._lines, line, self.garbage.append)
        if self.garbage:
            self.failure = f"{len(self.garbage)} unreadable lines in {self.path}, e.g. {self.garbage[0][:100]!r}"
        for e in unreported(plan, reported, "launch-error",
                            f"not in {self.path}: the recording ended before this run reported"):
            on_event(e)

    def report(self) -> dict:
        doc = self.env.to_json()
        doc["events_file"] = self.path
        return doc
