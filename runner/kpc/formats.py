"""The result formats of kernel CI, made from a results document (one run,
a merged matrix, an evaluated events file): KTAP as kselftest's runner
prints it, a KCIDB v5.3 document, LAVA test cases, kirk's (LTP's) exit
codes and runtest file. README "Running in kernel CI" has the verdict
mapping of each.

The document comes from report.write_json or render.load (validated); every
string from it is escaped for the format it goes into: results can come
from another machine, and a reason is whatever a probe or a kernel said.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import render

if TYPE_CHECKING:
    from . import cases

# ------------------------------------------------------------ verdict maps

KTAP = {"pass": ("ok", ""), "xfail": ("ok", "XFAIL"), "skip": ("ok", "SKIP"), "fail": ("not ok", ""),
        "hang": ("not ok", "TIMEOUT"), "error": ("not ok", "ERROR")}
KCIDB = {"pass": "PASS", "xfail": "PASS", "skip": "SKIP", "fail": "FAIL", "hang": "FAIL", "error": "ERROR"}
LAVA = {"pass": "pass", "xfail": "pass", "skip": "skip", "fail": "fail", "hang": "fail", "error": "fail"}
LTP_EXIT = {"pass": 0, "xfail": 0, "skip": 32, "error": 2, "fail": 1, "hang": 1}
LTP_COUNT = {"pass": "passed", "xfail": "passed", "skip": "skipped", "error": "broken", "fail": "failed",
             "hang": "failed"}

# Skip reasons, short and stable: Linaro's kselftest parser appends a SKIP
# directive's text to the test's name, so "needs Linux >= 5.7 (running
# 5.10.223)" would make a new test name per kernel. The whole reason goes
# in a diagnostic line.
_SKIP_KINDS = (("needs root", "needs_root"), ("needs capability", "needs_capability"),
               ("needs Linux", "kernel_too_old"), ("needs CONFIG_", "kconfig_missing"),
               ("needs the command", "command_missing"), ("needs /", "file_missing"),
               ("flavor unavailable", "flavor_unavailable"), ("slow case", "slow"))


def skip_kind(reason: str) -> str:
    for prefix, kind in _SKIP_KINDS:
        if prefix in (reason or ""):
            return kind
    return "not_supported"


def _name(text):
    """A run's part as a name every format takes: letters, digits, '_', '-'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_") or "_"


def columns(doc: dict) -> list[str]:
    cols = []
    for r in doc["results"]:
        c = render.column(r)
        if c not in cols:
            cols.append(c)
    return cols


def run_parts(r: dict, with_column: bool) -> list:
    """[column,] [variant,] flavor [,runtime] of a run, as names."""
    parts = [render.column(r)] if with_column else []
    if r.get("variant"):
        parts.append(r["variant"])
    parts.append(r["flavor"])
    if r.get("runtime", "none") != "none" and not with_column:
        parts.append(r["runtime"])
    return [_name(p) for p in parts]


# ------------------------------------------------------------ KTAP

def _ktap_text(text, limit=300):
    """One diagnostic's text: no newline (a second line would be a line of
    its own kind), no '#' (a directive), and never starting like a result
    (the nesting parsers strip '#'s and whitespace, then read 'ok 1 x')."""
    return render.visible(str(text)[:limit]).replace("#", "\\#")


def ktap(doc: dict) -> str:
    """KTAP v1 the way kselftest's runner (run_kselftest.sh) prints a
    collection: one top-level test per case ("selftests: kpc: CASE"), its
    runs as a nested KTAP document whose every line is prefixed with '# '
    -- the form Linaro's parse-output.py (python3-tap) reads nested results
    from. Plain two-space nesting collapses to the top-level result there."""
    with_col = len(columns(doc)) > 1
    by_case = {}
    for r in doc["results"]:
        by_case.setdefault(r["case"], []).append(r)
    out = ["KTAP version 1", f"1..{len(by_case)}"]
    for n, (case_id, runs) in enumerate(by_case.items(), 1):
        header = f"selftests: kpc: {_name(case_id)}"
        out.append(f"# {header}")
        out += ["# KTAP version 1", f"# 1..{len(runs)}"]
        for i, r in enumerate(runs, 1):
            v = r["verdict"]
            ok, directive = KTAP[v]
            if v != "pass" and r.get("reason"):
                out.append(f"# # {v}: {_ktap_text(r['reason'])}")
            for line in (r.get("details") or [])[:8] if v in render.BAD else []:
                out.append(f"# # detail: {_ktap_text(line)}")
            name = ".".join(run_parts(r, with_col))
            if directive == "SKIP":
                directive += " " + skip_kind(r.get("reason"))
            out.append(f"# {ok} {i} {name}" + (f" # {directive}" if directive else ""))
        counts = {k: sum(r["verdict"] == k for r in runs) for k in KTAP}
        out.append("# # Totals: " + " ".join(f"{k}:{c}" for k, c in counts.items()))
        verdicts = {r["verdict"] for r in runs}
        if verdicts & set(render.BAD):
            out.append(f"not ok {n} {header}")
        elif verdicts == {"skip"}:
            out.append(f"ok {n} {header} # SKIP")
        else:
            out.append(f"ok {n} {header}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ KCIDB v5.3

ORIGIN = re.compile(r"^[a-z0-9_]+$")
LOG_EXCERPT_MAX = 16384


def _stamp(doc):
    digits = re.sub(r"[^0-9]", "", str(doc.get("created", "")))[:14]
    return (digits[:8] + "T" + digits[8:] + "Z") if len(digits) == 14 else "undated"


def _log_excerpt(r):
    lines = [f"kpc verdict: {r['verdict']}", *([r["reason"]] if r.get("reason") else []), *(r.get("details") or [])]
    hang = r.get("hang") or {}
    for line in hang.get("kernel_messages", [])[:20]:
        lines.append(f"kernel: {line}")
    for t in hang.get("tasks", [])[:16]:
        lines.append(f"task {t.get('tid')} ({t.get('comm')}) state {t.get('state')} wchan {t.get('wchan') or '-'}")
        lines += [f"    {frame}" for frame in (t.get("stack") or [])[:16]]
    text = render.visible("\n".join(str(x) for x in lines), newlines=True)
    return text[-LOG_EXCERPT_MAX:]


def kcidb(doc: dict, origin: str = "kpc") -> dict:
    """A KCIDB v5.3 document: one checkout and one build per kernel (the
    run's column: a distro kernel has no commit of its own, so its release
    names both), one test per run. ids are origin-prefixed; paths are
    kpc.<area>.<case>.<variant>.<flavor>; statuses from KCIDB above. xfail
    (PASS) and hang (FAIL) carry kpc's verdict and reason in misc, and a
    hang's stacks in log_excerpt."""
    if not ORIGIN.match(origin or ""):
        raise ValueError(f"KCIDB origin must be lower-case letters, digits and '_', not {render.visible(origin)!r}")
    stamp = _stamp(doc)
    kernels = doc.get("kernels") or {}
    env = doc.get("environment") or {}
    checkouts, builds, tests, seen = [], [], [], set()
    for r in doc["results"]:
        col = render.column(r)
        release = r.get("kernel") or env.get("kernel") or col
        bid = f"{origin}:{_name(release)}"
        if bid not in seen:
            seen.add(bid)
            kinfo = kernels.get(r.get("target", "")) or (env if r.get("target", "host") == "host" else {})
            checkouts.append({"id": bid, "origin": origin, "comment": f"kernel {render.visible(release)}",
                              "misc": {"kernel_release": render.visible(release)}})
            build = {"id": bid, "origin": origin, "checkout_id": bid,
                     "comment": f"kernel {render.visible(release)} as kpc found it (not built by kpc)",
                     "misc": {"kernel_release": render.visible(release)}}
            machine = re.sub(r"[^a-z0-9_]", "_", str(kinfo.get("machine", "")).lower())
            if machine:
                build["architecture"] = machine
            builds.append(build)
        area = _name(r.get("area") or "unknown")
        path = ".".join(["kpc", area, _name(r["case"]), *run_parts(r, False)])
        rid = f"{origin}:{stamp}-" + "-".join([_name(col), _name(r["case"]), *run_parts(r, False)])
        test = {"id": rid, "origin": origin, "build_id": bid, "path": path, "status": KCIDB[r["verdict"]],
                "environment": {"comment": render.visible(f"kpc {col}, flavor {r['flavor']}"
                                                          + (f", runtime {r['runtime']}"
                                                             if r.get("runtime", "none") != "none" else "")),
                                "misc": {"target": render.visible(str(r.get("target", "host"))),
                                         "flavor": r["flavor"], "variant": r.get("variant", ""),
                                         "runtime": render.visible(str(r.get("runtime", "none")))}},
                "misc": {"kpc_verdict": r["verdict"]}}
        if doc.get("created") and stamp != "undated":
            test["start_time"] = stamp[:4] + "-" + stamp[4:6] + "-" + stamp[6:8] + "T" + stamp[9:11] + ":" + \
                stamp[11:13] + ":" + stamp[13:15] + "+00:00"
        if isinstance(r.get("duration_ms"), (int, float)) and r["duration_ms"] >= 0:
            test["duration"] = round(r["duration_ms"] / 1000.0, 6)
        if r.get("reason"):
            test["misc"]["reason"] = render.visible(r["reason"])[:2000]
            test["comment"] = render.visible(r["reason"])[:500]
        if r["verdict"] != "pass":
            test["log_excerpt"] = _log_excerpt(r)
        if r.get("observations"):
            test["misc"]["observed"] = {render.visible(k): render.visible(str(v)) for k, v in r["observations"].items()}
        tests.append(test)
    return {"version": {"major": 5, "minor": 3}, "checkouts": checkouts, "builds": builds, "tests": tests}


# ------------------------------------------------------------ LAVA

def lava_results(doc: dict) -> list[tuple[str, str]]:
    """[(test case name, result)]: one per run, names without whitespace
    (case.variant.flavor; the kernel too when the document has several)."""
    with_col = len(columns(doc)) > 1
    out = []
    for r in doc["results"]:
        name = ".".join([_name(r["case"]), *run_parts(r, with_col)])
        out.append((name, LAVA[r["verdict"]]))
    return out


# ------------------------------------------------------------ kirk / LTP

def ltp_safe(text: str) -> str:
    """A line for kirk: one line, and not a phrase kirk acts on -- it takes
    'Kernel panic' in a test's output for a panic of the machine (and
    reboots it), and counts TPASS/TFAIL/... when no Summary block follows."""
    text = render.visible(str(text))
    text = text.replace("Kernel panic", "kernel-panic")
    return re.sub(r"T(PASS|FAIL|BROK|SKIP|WARN|CONF|INFO)", r"T_\1", text)


def kirk_runtest(all_cases: dict[str, cases.Case]) -> str:
    """LTP's runtest/kpc: one line per case x variant x flavor,
    'NAME kpc-ltp CASE[:VARIANT]@FLAVOR'."""
    lines = ["# kpc for kirk (LTP's runner): one test per case x variant x flavor.",
             "# kpc-ltp (testcases/bin) runs it with the bundle and exits with LTP's codes:",
             "# 0 pass (and xfail), 32 skip, 2 error (broken), 1 fail or hang."]
    for case in all_cases.values():
        for variant in case.variants or [""]:
            for flavor in case.flavors:
                name = "_".join(_name(p) for p in ("kpc", case.id, variant, flavor) if p)
                run = case.id + (f":{variant}" if variant else "") + f"@{flavor}"
                lines.append(f"{name} kpc-ltp {run}")
    return "\n".join(lines) + "\n"
