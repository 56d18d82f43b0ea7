"""Turning one launcher result into a verdict against the expected tables.

Verdicts: pass, fail (an observation differs from its row), xfail (every
observation matched, at least one through a known-divergence row), skip
(requirement missing, or the probe said the feature is absent), hang (a task
stuck, not expected by the table), error (the probe or the tables are
broken: never a silent pass).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, TYPE_CHECKING

from . import kver, paths, tables, values

if TYPE_CHECKING:
    from . import cases

# The verdict vocabulary: every module that names, counts or colours
# verdicts takes these (report, render, formats, cli, dut).
VERDICTS = ("pass", "fail", "xfail", "skip", "hang", "error")
BAD = ("fail", "hang", "error")   # a run that needs a look: exit 1, "not ok", REGRESSION
FAILURES = ("fail", "hang")       # JUnit <failure>; "error" is a JUnit <error>


def totals(verdicts: Iterable[str]) -> dict[str, int]:
    """{verdict: count} over an iterable of verdict names, every verdict
    present (0 when none)."""
    counts = {v: 0 for v in VERDICTS}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    return counts


def run_id(case: str, variant: str | None = "", flavor: str = "host", runtime: str | None = None,
           where: str = "host") -> str:
    """The one name of a run: case:variant@flavor+runtime#where, the variant,
    runtime and where (a --kernels label, or a merged machine's kernel) left
    out when there are none / it is "host". The launcher's plan ids, the
    progress line, JUnit names and the results file's keys (kpc diff, merge,
    TAP, Markdown) are all this."""
    v = f":{variant}" if variant else ""
    r = f"+{runtime}" if runtime and runtime != "none" else ""
    w = f"#{where}" if where and where != "host" else ""
    return f"{case}{v}@{flavor}{r}{w}"


@dataclasses.dataclass
class Verdict:
    verdict: str
    reason: str = ""
    details: list = dataclasses.field(default_factory=list)
    observations: dict = dataclasses.field(default_factory=dict)  # key -> canonical text
    expected: dict = dataclasses.field(default_factory=dict)      # key -> {value, where, xfail, reason}
    notes: dict = dataclasses.field(default_factory=dict)
    hang: dict | None = None
    marks: dict = dataclasses.field(default_factory=dict)  # name -> {probe_mono_ns, launcher_ms, ...}
    duration_ms: float = 0.0
    stderr: str = ""


def _records(result):
    obs, notes, problems = {}, {}, []
    skip = broken = None
    end = False
    for rec in result.get("records", []):
        if "obs" in rec:
            key = rec["obs"]
            if key in obs:
                problems.append(f"observation '{key}' recorded twice")
            if rec.get("type") not in values.TYPES:
                problems.append(f"observation '{key}' has unknown type {rec.get('type')!r}")
                continue
            obs[key] = (rec["type"], rec["value"])
        elif "note" in rec:
            notes[rec["note"]] = rec.get("value")
        elif "skip" in rec:
            skip = skip or rec["skip"]  # the first reason: a parent may repeat a child's skip
        elif "broken" in rec:
            broken = rec["broken"]
        elif "end" in rec:
            end = True
    for line in result.get("protocol_errors", []):
        problems.append(f"unreadable record from the probe: {line}")
    return obs, notes, skip, broken, end, problems


def is_number(x: object) -> bool:
    """An int or float from JSON (a bool is not one), e.g. from a remote target."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _hang_evidence(result: dict, key: str = "hang") -> dict:
    """The launcher's hang (or timeout) record, with how the probe itself
    ended (its wait status and last stderr lines) when the launcher got it:
    killed by the recovery (SIGKILL) is the usual story; a probe already
    gone before the hang was detected is the evidence of why observations
    it should have made are missing."""
    hang = dict(result.get(key) or {})
    exit_ = result.get("exit") or {}
    if isinstance(exit_.get("text"), str) and exit_["text"]:
        hang["probe_exit"] = exit_["text"]
        ms = exit_.get("launcher_ms")
        if is_number(ms):
            hang["probe_exit_ms"] = ms  # as detected_ms: from the run's start
    tail = (result.get("stderr") or "").strip().splitlines()[-10:]
    if tail:
        hang["probe_stderr_tail"] = tail
    return hang


def summarize_tasks(trouble: dict) -> str:
    """'pid 12 (probe) D in fuse_flush' for the stuck (or all) tasks."""
    tasks = trouble.get("tasks", [])
    stuck = [t for t in tasks if t.get("stuck")] or tasks
    parts = []
    for t in stuck[:6]:
        where = t.get("wchan") or (t.get("stack") or ["?"])[0]
        parts.append(f"{t.get('tid')} ({t.get('comm')}) {t.get('state')} in {where}")
    return "; ".join(parts) or "no tasks seen"


def unrecovered(result: dict) -> list[str]:
    """The stuck tasks kpc could not free, as 'pid 12 (comm)' strings, or []
    when every task of the run died. Such a run is kpc's failure to clean
    up, whatever the table expects: it is an error, never hidden."""
    trouble = result.get("hang") or result.get("trouble") or {}
    if trouble.get("recovered", True) is not False:
        return []
    left = trouble.get("left_running") or trouble.get("tasks") or []
    return [f"{t.get('tid')} ({t.get('comm')}, {t.get('state')} in {t.get('wchan') or '?'})" for t in left][:8] \
        or ["(tasks not listed)"]


def unrecovered_advice(result: dict) -> str:
    trouble = result.get("hang") or result.get("trouble") or {}
    conns = trouble.get("aborted_fuse_connections") or []
    how = (f"as root, abort FUSE connection(s) {', '.join(map(str, conns))}: "
           f"echo 1 > /sys/fs/fuse/connections/N/abort (mount -t fusectl none /sys/fs/fuse/connections first "
           f"if it is empty)") if conns else \
        "as root, abort the FUSE connections they wait on (echo 1 > /sys/fs/fuse/connections/N/abort), then kill them"
    return how


def _context_text(ctx):
    return " ".join(f"{k}={kver.show(v) if k in ('kernel', 'glibc') else v}" for k, v in ctx.items()
                    if v not in ("", None))


def evaluate(case: cases.Case, result: dict, tbl: tables.Tables, ctx: dict) -> Verdict:
    """`result`: the launcher's result object. `ctx`: the context the table
    conditions see (kernel tuple, flavor, variant, profile, runtime, libc,
    arch, root)."""
    obs, notes, skip, broken, end, problems = _records(result)
    v = Verdict("error", notes=notes, marks=result.get("marks") or {}, duration_ms=result.get("duration_ms", 0.0),
                stderr=result.get("stderr", ""))
    v.observations = {}
    for key, (vtype, value) in obs.items():
        try:
            v.observations[key] = values.canonical(vtype, value)
        except values.ValueError_ as e:
            problems.append(f"observation '{key}': {e}")

    outcome = result.get("outcome")
    stuck_left = unrecovered(result)
    if stuck_left:
        inner = evaluate(case, dict(result, hang=dict(result.get("hang") or {}, recovered=True),
                                    trouble=dict(result.get("trouble") or {}, recovered=True)), tbl, ctx) \
            if outcome in ("hang", "timeout") else v
        v.verdict = "error"
        v.reason = (f"kpc could not free this run's stuck tasks: {'; '.join(stuck_left)} -- "
                    f"{unrecovered_advice(result)}")
        v.hang = result.get("hang") or result.get("trouble")
        v.details = [f"the run itself: {inner.verdict} ({inner.reason})"] if inner is not v else []
        return v
    if outcome == "guest-lost":
        # The QEMU guest stopped answering while this ran (a kernel deadlock,
        # a panic): not the launcher's recoverable hang, so no table row
        # can expect it.
        v.verdict, v.reason = "hang", result.get("error", "the guest stopped answering")
        v.hang = {"guest_console_tail": result.get("console_tail", []),
                  "kernel_messages": result.get("kernel_messages", []), "tasks": []}
        return v
    if outcome in ("target-lost", "target-rebooted"):
        # An SSH target's connection died while this ran (sshtarget.py):
        # kpc lost it (error) or the machine rebooted under it (fail).
        v.verdict = "fail" if outcome == "target-rebooted" else "error"
        v.reason = result.get("error") or outcome
        return v
    if outcome == "kernel-crash":
        # An oops/BUG/WARNING/panic on the guest's console while this ran:
        # judge the run as it was, then a kernel complaint makes it a fail.
        inner = evaluate(case, dict(result, outcome=result.get("outcome_before_crash")), tbl, ctx)
        msgs = result.get("kernel_messages", [])
        if inner.verdict not in ("error",):
            inner.verdict = "fail"
            inner.reason = f"the kernel complained while this ran: {msgs[0] if msgs else '?'}" + (
                f" (the run itself: {inner.reason})" if inner.reason else "")
        inner.details = [*msgs[1:12], *inner.details]
        inner.notes = dict(inner.notes, kernel_messages=msgs)
        return inner
    if outcome in ("launch-error", "interrupted"):
        v.reason = result.get("error") or outcome
        # a guest that ended before running this: its last console lines are
        # the only evidence of why (a panic, a reboot), so they are kept
        tail = result.get("console_tail") or []
        if tail:
            v.details = ["last guest console lines:", *tail[-25:]]
        return v
    if outcome == "timeout":
        trouble = result.get("trouble", {})
        v.reason = f"deadline of {case.timeout_s:g} s exceeded: {summarize_tasks(trouble)}"
        if broken:
            v.details = [f"the probe had recorded: broken: {broken}"]
        v.hang = _hang_evidence(result, "trouble")
        return v
    if outcome == "hang":
        v.hang = _hang_evidence(result)
        v.verdict = "hang"
        v.reason = f"stuck: {summarize_tasks(v.hang)}"
        try:
            row = tbl.match(case.id, "hang", ctx)
        except tables.TableError as e:
            v.verdict, v.reason = "error", str(e)
            return v
        if row is not None:
            v.expected["hang"] = _expected(row)
            if row.value == "yes":
                v.verdict = "xfail"
                v.reason = f"{row.reason} [{v.reason}]"
        v.observations["hang"] = "yes"
        # What the probe recorded before it got stuck is still checked: a
        # known deadlock must not hide a wrong observation made on the way.
        if problems:
            v.verdict, v.reason, v.details = "error", problems[0] + f" (before the hang: {v.reason})", problems[1:]
            return v
        # Nor a probe that broke on the way (kpc's own fault: its record
        # was dropped here once, and the run read as the expected xfail).
        # One that broke once the recovery had begun -- a call on a mount
        # whose connection kpc had just aborted -- broke of the recovery:
        # said, not judged.
        broke = [rec for rec in result.get("records", []) if "broken" in rec]
        before = [rec["broken"] for rec in broke if not rec.get("read_during_recovery")]
        if before:
            v.verdict, v.reason = "error", f"probe broken: {before[0]} (before the hang: {v.reason})"
            return v
        v.details += [f"during kpc's recovery the probe recorded: broken: {rec['broken']}" for rec in broke]
        if case.id not in tbl.sections:
            return v
        mismatches, _, error = _compare(case, {k: o for k, o in obs.items() if k != "hang"}, v, tbl, ctx)
        if error:
            v.verdict, v.reason = "error", error
        elif mismatches:
            v.verdict, v.reason = "fail", mismatches[0] + f" (before the hang: {v.reason})"
            v.details = mismatches[1:] + v.details
        return v

    if problems:
        v.reason = problems[0]
        v.details = problems[1:]
        return v
    if broken:
        v.reason = f"probe broken: {broken}"
        return v
    if skip:
        v.verdict, v.reason = "skip", skip
        return v
    exit_text = result.get("exit", {}).get("text", "no exit status")
    ended = exit_text == "exited 0" and end
    if case.id not in tbl.sections:
        v.reason = f"no expected rows: add a [{case.id}] section to {os.path.relpath(case.table_path, paths.ROOT)}"
        return v

    if ended and tbl.rows_for(case.id, "hang"):
        v.observations["hang"] = "no"
        obs["hang"] = ("str", "no")

    # What was recorded is judged first. A contradicted row is a defect of
    # the system under test -- a fail -- even when the probe or a helper it
    # exec'd then died (often of that very defect: a signal that should
    # have stayed ignored) before recording the rest; the missing keys are
    # its consequences, not kpc's fault.
    mismatches, divergences, error = _compare(case, obs, v, tbl, ctx)
    if error:
        v.reason = error
        return v
    missing = _missing_rows(case, obs, tbl, ctx, ended)
    if mismatches:
        v.verdict = "fail"
        v.reason = mismatches[0]
        consequences = []
        if missing:
            consequences.append("not recorded (a consequence): " + ", ".join(row.key for row in missing))
        if not ended:
            consequences.append(f"the probe {exit_text} before recording its end")
        v.details = mismatches[1:] + consequences
        return v
    if not ended:
        v.reason = f"probe {exit_text} before recording its end"
        return v
    if missing:
        v.reason = (f"{missing[0].where}: the probe did not record '{missing[0].key}' "
                    f"(a misspelt key, or a row for an observation that no longer exists)")
        return v

    if divergences:
        v.verdict = "xfail"
        v.reason = divergences[0]
        v.details = divergences[1:]
    else:
        v.verdict = "pass"
    return v


def _missing_rows(case, obs, tbl, ctx, ended):
    """Rows that apply here whose key was not recorded (one per key; the
    'hang' row only speaks when the probe ended)."""
    out, seen = [], set()
    for row in tbl.rows_for(case.id):
        if row.key in obs or row.key in seen or not row.matches(ctx) or (row.key == "hang" and not ended):
            continue
        seen.add(row.key)
        out.append(row)
    return out


def _compare(case, obs, v, tbl, ctx):
    """Compares observations with their rows, filling v.expected. Returns
    (mismatches, divergences, error)."""
    mismatches, divergences = [], []
    for key in obs:
        try:
            row = tbl.match(case.id, key, ctx)
        except tables.TableError as e:
            return [], [], str(e)
        if row is None:
            return [], [], (f"no row for observation '{key}' matches {_context_text(ctx)} "
                            f"(in {os.path.relpath(case.table_path, paths.ROOT)} [{case.id}])")
        v.expected[key] = _expected(row)
        if row.value == tables.REPORTED:  # reported, not judged
            continue
        try:
            want = values.canonical(obs[key][0], row.value)
        except values.ValueError_ as e:
            return [], [], f"{row.where}: {e}"
        if want != v.observations[key]:
            mismatches.append(f"{key}: expected {want} ({row.where}), observed {v.observations[key]}"
                              + (_sigset_difference(want, v.observations[key]) if obs[key][0] == "sigset" else ""))
        elif row.xfail:
            divergences.append(f"{key}: {row.reason} ({row.where})")
    return mismatches, divergences, ""


def _sigset_difference(want, got):
    """'; extra SIGTSTP|SIGTTIN; missing SIGUSR1' for two canonical sets."""
    w = [x for x in want.split("|") if x != "none"]
    g = [x for x in got.split("|") if x != "none"]
    extra, missing = [x for x in g if x not in w], [x for x in w if x not in g]
    return (f"; extra {'|'.join(extra)}" if extra else "") + (f"; missing {'|'.join(missing)}" if missing else "")


def _expected(row):
    return {"value": row.value, "where": row.where, "xfail": row.xfail, "reason": row.reason}
