"""Reports made from results JSON (one run, or `kpc merge` of many):
Markdown (a CI job summary, a PR comment), TAP 13, a self-contained HTML
matrix, and `kpc diff` between two results files.

Everything here reads the results document only, so it works the same on
a file from another machine, a merged matrix, or the run that just ended.
"""

from __future__ import annotations

import datetime
import gzip
import html
import json
import math
import os
import re
import typing
import zlib
from typing import TYPE_CHECKING

from . import evaluate, safefile

if TYPE_CHECKING:
    from . import cases as cases_mod

VERDICTS = evaluate.VERDICTS
BAD = evaluate.BAD
# A results file is read whole, so its size bounds kpc's memory: a .json.gz
# of 300 KB held 300 MB of JSON (kpc report used 640 MB on it). Both limits
# leave room for ~18 000 runs (the full matrix, 1180 runs, is 3.7 MiB and
# 120 000 values). Bytes alone are not enough: 16 MiB of '[],' parse into
# 400 MB of empty lists, so the values (counted by their separators) are
# bounded too: at most ~72 bytes each, with the text, under 300 MB.
MAX_BYTES = 64 << 20
MAX_VALUES = 2_000_000
# Results nest 5 levels (results[].hang.tasks[].stack[]); merged files and
# environments a few more. Deeper is not a results file, and it would make
# every recursive reader (json, the renderers, json.dumps) hit Python's
# recursion limit.
MAX_DEPTH = 32


class RenderError(Exception):
    """A results file kpc will not read (exit 2): one line, 'FILE: what is wrong'."""


# ------------------------------------------------------------ loading

def load(path: str) -> dict:
    """The results document in PATH (.json or .json.gz), validated: every
    field a renderer, merge or diff touches has the type they expect, so a
    malformed or hostile file is one RenderError, never a traceback, a
    silently wrong diff or a script in the HTML page."""
    name = visible(path)
    raw = _read(path, name)
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_int=_bounded_int)
    except UnicodeDecodeError as e:
        raise RenderError(f"{name}: not JSON: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise RenderError(f"{name}: nested deeper than {MAX_DEPTH} levels: not a kpc results file") from None
    except _Constant as e:
        raise RenderError(f"{name}: {e}") from None
    except ValueError as e:   # json.JSONDecodeError, an integer of more than 4300 digits
        why = str(e).split(";")[0] if "integer string conversion" in str(e) else str(e)
        raise RenderError(f"{name}: not JSON: {visible(why)}") from None
    validate(doc, name)
    return doc


def _read(path, name):
    try:
        with open(path, "rb") as f:
            if path.endswith(".gz"):
                with gzip.GzipFile(fileobj=f) as z:
                    raw = z.read(MAX_BYTES + 1)
            else:
                raw = f.read(MAX_BYTES + 1)
    except gzip.BadGzipFile as e:
        raise RenderError(f"{name}: not gzip-compressed: {visible(str(e))}") from None
    except (EOFError, zlib.error) as e:
        raise RenderError(f"{name}: a damaged gzip file: {visible(str(e))}") from None
    except OSError as e:
        raise RenderError(f"{name}: cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise RenderError(f"{name}: more than {MAX_BYTES >> 20} MiB of JSON"
                          + (" once decompressed" if path.endswith(".gz") else "") + ": not a kpc results file")
    # every value but the first in a list or object follows a ',', every
    # container opens with '[' or '{' (separators inside strings count too:
    # an overestimate, which the limit allows for)
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if values > MAX_VALUES:
        raise RenderError(f"{name}: more than {MAX_VALUES} JSON values: not a kpc results file")
    return raw


class _Constant(ValueError):
    pass


# Python 3.11's limit on int/str conversion (3.9 and 3.10 of Debian 11 and
# Ubuntu 22.04 have none, and a 5000-digit integer was read there).
MAX_INT_DIGITS = 4300


def _bounded_int(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Constant(f"an integer of {digits} digits (more than {MAX_INT_DIGITS}): not a kpc results file")
    return int(text)


def _no_constant(word):
    """NaN and Infinity: Python's json reads them, no other JSON parser does
    (the HTML page's JSON.parse threw, `kpc merge` wrote them on)."""
    raise _Constant(f"{word} is not a JSON number")


# What the renderers, merge and diff read. A field is (required, type);
# a type is "str", "num", "int", "bool", "scalar" (str/num/bool/null),
# "verdict", "name" (an identifier: case ids, variants, flavors and areas
# are file and table names, so 'x # TODO' or a backtick is not one),
# "any", ("list", type), ("map", type) for an object with any keys,
# ("or-null", type), or a dict of fields. Fields not listed are carried
# along (merge writes them out, the HTML page embeds them) and only checked
# for depth and finite numbers.
_ENVIRONMENT = {"kernel": (False, "str"), "distro": (False, "str")}
_EXPECTED_ROW = {"value": (False, "scalar"), "where": (False, "str"), "xfail": (False, "bool"),
                 "reason": (False, "str")}
_TASK = {"tid": (False, "scalar"), "comm": (False, "scalar"), "state": (False, "scalar"),
         "wchan": (False, "scalar"), "stuck": (False, "bool"), "stack": (False, ("list", "str"))}
_HANG = {"tasks": (False, ("list", _TASK)), "guest_console_tail": (False, ("list", "str")),
         "kernel_messages": (False, ("list", "str"))}
_RESULT = {
    "case": (True, "name"), "flavor": (True, "name"), "verdict": (True, "verdict"),
    "area": (False, "name"), "variant": (False, "name or empty"),
    **{k: (False, "str") for k in ("kernel", "target", "runtime", "profile", "column", "source", "reason")},
    "duration_ms": (False, "num"),
    "observations": (False, ("map", "scalar")),
    "expected": (False, ("map", _EXPECTED_ROW)),
    "details": (False, ("list", "str")),
    "provenance": (False, ("list", "str")),
    "notes": (False, ("map", "any")),
    "marks": (False, ("map", "any")),
    "hang": (False, _HANG),
}
_DOCUMENT = {
    "schema": (False, "int"), "created": (False, "str"),
    "environment": (False, _ENVIRONMENT),
    "kernels": (False, ("map", _ENVIRONMENT)),
    "merged_from": (False, ("list", {"file": (True, "str"), "environment": (True, _ENVIRONMENT),
                                     "created": (False, ("or-null", "str"))})),
    "results": (True, ("list", _RESULT)),
}
_SAYS = {"str": "a string", "num": "a number", "int": "an integer", "bool": "true or false",
         "scalar": "a string, number, true, false or null", "verdict": "one of " + ", ".join(VERDICTS),
         "name": "a name (letters, digits, '_', '.', '+', '-')",
         "name or empty": "empty or a name (letters, digits, '_', '.', '+', '-')"}
_NAME = re.compile("[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# Lone surrogates ("\ud800") are valid JSON but not text: writing one as
# UTF-8 (a report, the terminal) raises.
_SURROGATE = re.compile("[\ud800-\udfff]")


def validate(doc: dict, name: str = "results") -> None:
    """Raise RenderError('NAME: where: what is wrong') for the first problem
    in a results document: a structure deeper than MAX_DEPTH, a number that
    is not finite, a string that is not Unicode text, a field of the wrong
    type, a verdict that is not one of the six, or a run id (case, variant,
    flavor, column) that appears twice (kpc diff would keep only one)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise RenderError(f"{name}: not a kpc results file (no 'results' list)")
    problem = _walk(doc) or _check(doc, _DOCUMENT, "")
    if problem:
        raise RenderError(f"{name}: {visible(problem)}")
    dup = duplicate_run(doc["results"])
    if dup:
        rid, first, second = dup
        raise RenderError(f"{name}: run {_show(rid)} appears twice (results[{first}] and results[{second}])")


def _walk(doc):
    """The whole document, iteratively (no recursion to exhaust): depth,
    finite numbers, strings (values and keys) without lone surrogates."""
    stack = [(doc, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels at {_at(where)}: not a kpc results file"
        if isinstance(value, dict):
            for k, v in value.items():
                if _SURROGATE.search(k):
                    return f"{_at(where) or 'the document'} has a key that is not Unicode text ({_show(k)})"
                stack.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{_at(where)} is {value}: not a finite number"
        elif isinstance(value, str) and _SURROGATE.search(value):
            return f"{_at(where)} is not Unicode text (an unpaired surrogate: {_show(value)})"
    return None


def _check(value, kind, where):
    """None, or 'WHERE is VALUE, not WHAT' for the first mismatch."""
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return f"{_at(where) or 'the document'} is {_show(value)}, not an object"
        for field, (required, sub) in kind.items():
            at = f"{where}.{field}" if where else field
            if field not in value:
                if required:
                    return f"{_at(where) or 'the document'} has no '{field}'"
                continue
            problem = _check(value[field], sub, at)
            if problem:
                return problem
        return None
    if isinstance(kind, tuple):
        shape, sub = kind
        if shape == "or-null":
            return None if value is None else _check(value, sub, where)
        if shape == "list" and not isinstance(value, list):
            return f"{_at(where)} is {_show(value)}, not a list"
        if shape == "map" and not isinstance(value, dict):
            return f"{_at(where)} is {_show(value)}, not an object"
        items = enumerate(value) if shape == "list" else value.items()
        for k, v in items:
            problem = _check(v, sub, f"{where}[{k}]" if shape == "list" else f"{where}.{k}")
            if problem:
                return problem
        return None
    if _fits(value, kind):
        return None
    return f"{_at(where)} is {_show(value)}, not {_SAYS[kind]}"


def _at(where):
    """A place in the document for a message: keys are file data, so shown
    and clipped."""
    where = visible(where)
    return where if len(where) <= 80 else where[:77] + "..."


def _fits(value, kind):
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"any": True, "str": isinstance(value, str), "num": number,
            "int": isinstance(value, int) and not isinstance(value, bool), "bool": isinstance(value, bool),
            "scalar": value is None or number or isinstance(value, (str, bool)),
            "verdict": isinstance(value, str) and value in VERDICTS,
            "name": isinstance(value, str) and _NAME.fullmatch(value) is not None,
            "name or empty": isinstance(value, str) and (value == "" or _NAME.fullmatch(value) is not None)}[kind]


def _show(value):
    """A value in an error message: one line, short, no control characters."""
    if isinstance(value, str):
        text = visible(value)
        return repr(text if len(text) <= 60 else text[:57] + "...")
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)[:40]
    return "a list" if isinstance(value, list) else "an object"


def duplicate_run(results: list[dict]) -> tuple[str, int, int] | None:
    """(run id, first index, second index) for the first run that lands in
    a matrix cell (row, column) another run took, else None. A cell is
    finer than nothing and coarser than a run id: runs under a runtime are
    one column per runtime, whatever machine ran them."""
    seen = {}
    for i, r in enumerate(results):
        cell = (row_label(r), column(r))
        if cell in seen:
            return run_id(r), seen[cell], i
        seen[cell] = i
    return None


# C0 and C1 control characters, DEL, line/paragraph separators and the
# bidirectional overrides and isolates: a reason with "\r\e[2K" rewrote
# kpc diff's line on a terminal; a bidi override reorders what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object, newlines: bool = False) -> str:
    """TEXT with every control character shown as an escape (\\x1b, \\n):
    strings from a results file go to terminals and into reports, and none
    of them may move the cursor, recolour, or start a new line unless
    NEWLINES (a multi-line block: newline and tab kept)."""
    return (_CONTROL_BUT_NEWLINE if newlines else _CONTROL).sub(_escape, str(text))


def _escape(m):
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def column(r: dict) -> str:
    """Where a run happened: the runtime under test, else the kernel (the
    target label: host or a --kernels label, or a merged machine name)."""
    if r.get("runtime", "none") != "none":
        return r["runtime"]
    return r.get("column") or r.get("target") or "host"


def row_label(r: dict) -> str:
    v = f":{r['variant']}" if r.get("variant") else ""
    return f"{r['case']}{v}@{r['flavor']}"


def run_id(r: dict) -> str:
    """A result's run id, as the launcher named the run (evaluate.run_id);
    a merged file's host runs are named after their machine's kernel."""
    where = r.get("column") or r.get("target") or "host"
    return evaluate.run_id(r["case"], r.get("variant"), r["flavor"], r.get("runtime"), where)


def matrices(doc: dict) -> dict:
    """{'kernels': (cols, {row: {col: result}}), 'runtimes': (...)}: one
    matrix for runs without a runtime (columns: kernels/machines), one for
    runs under runtimes (columns: runtimes)."""
    out = {}
    for name, pick in (("kernels", lambda r: r.get("runtime", "none") == "none"),
                       ("runtimes", lambda r: r.get("runtime", "none") != "none")):
        cols, rows = {}, {}   # cols: a dict as an ordered set (a list's `in` made 20 000 columns quadratic)
        for r in doc["results"]:
            if not pick(r):
                continue
            c = column(r)
            cols.setdefault(c, None)
            rows.setdefault(row_label(r), {})[c] = r
        if rows:
            out[name] = (list(cols), rows)
    return out


def totals(results: list[dict]) -> dict[str, int]:
    return evaluate.totals(r["verdict"] for r in results)


# ------------------------------------------------------------ Markdown

def _libc(env):
    """', glibc 2.36' from an environment block: which C library the
    probes ran with (expected rows depend on its version)."""
    libc = env.get("libc")
    return f", {libc}" if isinstance(libc, str) and libc else ""


def markdown(doc: dict, max_details: int = 40) -> str:
    res = doc["results"]
    t = totals(res)
    lines = ["## kpc results", "",
             " · ".join(f"**{t[v]}** {v}" for v in VERDICTS if t.get(v)) + f" — {len(res)} runs", ""]
    env = doc.get("environment", {})
    kernels = doc.get("kernels", {})
    guests = ", ".join(f"{_code(k)} ({_code(v.get('kernel', '?'))})" for k, v in kernels.items())
    lines.append(f"Host: {_code(env.get('distro', '?'))}, kernel {_code(env.get('kernel', '?'))}"
                 + (f", {_code(env['libc'])}" if isinstance(env.get("libc"), str) else "")
                 + (f"; guests: {guests}" if kernels else ""))
    lines.append("")
    for name, (cols, rows) in matrices(doc).items():
        # only rows that are not all-pass: a summary, not the whole suite
        shown = {k: v for k, v in rows.items() if any(r["verdict"] != "pass" for r in v.values())}
        lines.append(f"### {'Case × kernel' if name == 'kernels' else 'Case × runtime'}"
                     f" ({len(rows) - len(shown)} rows all pass, not shown)")
        if shown:
            lines.append("")
            lines.append("| case | " + " | ".join(_code(c, cell=True) for c in cols) + " |")
            lines.append("|---|" + "---|" * len(cols))
            for label, by_col in shown.items():
                cells = [by_col[c]["verdict"] if c in by_col else "–" for c in cols]
                cells = [f"**{x}**" if x in BAD else x for x in cells]
                lines.append(f"| {_code(label, cell=True)} | " + " | ".join(cells) + " |")
        lines.append("")
    bad = [r for r in res if r["verdict"] in BAD]
    if bad:
        lines.append("### Failures")
        lines.append("")
        for r in bad[:max_details]:
            lines.append(f"- **{r['verdict']}** {_code(run_id(r))}: {_code(r.get('reason', ''), 400)}")
        if len(bad) > max_details:
            lines.append(f"- … and {len(bad) - max_details} more (see the results JSON)")
        lines.append("")
    return "\n".join(lines)


def _code(text, limit=200, cell=False):
    """TEXT from a results file as one Markdown code span, so none of it is
    markup: no HTML (`<img onerror>`), no links (`[x](y)`), no @mentions or
    emphasis. The fence is one backtick longer than the longest run of
    backticks inside (CommonMark), control characters and newlines are shown
    as escapes, and in a table CELL a `|` is escaped (GFM splits cells
    first, even inside code)."""
    t = visible(text)[:limit]
    if cell:
        t = t.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", t)), default=0) + 1)
    if t.startswith(("`", " ")) or t.endswith(("`", " ")):
        t = f" {t} "   # CommonMark strips one space on each side
    return f"{fence}{t}{fence}" if t else ""


# ------------------------------------------------------------ TAP 13

def tap(doc: dict) -> str:
    res = doc["results"]
    lines = ["TAP version 13", f"1..{len(res)}"]
    for i, r in enumerate(res, 1):
        v = r["verdict"]
        ok = "not ok" if v in BAD else "ok"
        directive = ""
        if v == "skip":
            directive = f" # SKIP {_tap(r.get('reason', ''))}"
        elif v == "xfail":
            directive = f" # TODO expected divergence: {_tap(r.get('reason', ''))}"
        lines.append(f"{ok} {i} - {_tap(run_id(r), None)}{directive}")
        if v in BAD:
            lines += ["  ---", f"  verdict: {v}", f"  message: {json.dumps(r.get('reason', ''))}",
                      f"  kernel: {json.dumps(r.get('kernel', ''))}", "  ..."]
    return "\n".join(lines) + "\n"


def _tap(text, limit=200):
    """Text on a TAP line: an unescaped '#' starts a directive (a failing
    case named 'x # TODO' made prove say PASS) and a newline starts another
    TAP line, so '\\' and '#' are backslash-escaped and control characters
    shown as escapes."""
    return visible(text[:limit].replace("\\", "\\\\").replace("#", "\\#"))


# ------------------------------------------------------------ merge / diff

def merge(docs: list[tuple[str, dict]]) -> dict:
    """One matrix from many results files: each file's host runs get the
    machine's kernel release as their column, guests keep their kernel
    label. Two files whose runs would land in the same cell (two machines
    on the same kernel) get the file's number appended to the column."""
    out = {"schema": 1, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "merged_from": [], "results": [], "kernels": {}}
    taken = {}   # run id -> file index
    for i, (path, doc) in enumerate(docs):
        env = doc.get("environment", {})
        out["merged_from"].append({"file": path, "environment": env, "created": doc.get("created")})
        host_col = env.get("kernel", "host")
        moved = [dict(r, column=host_col if r.get("target", "host") == "host" else (r.get("column") or r["target"]),
                      source=path) for r in doc["results"]]
        clash = {r["column"] for r in moved if taken.get(run_id(r), i) != i}
        for r in moved:
            if r["column"] in clash:
                r["column"] = f"{r['column']} [{i + 1}]"
            taken[run_id(r)] = i
        out["results"] += moved
        for label, k in doc.get("kernels", {}).items():
            out["kernels"][f"{label} [{i + 1}]" if label in clash else label] = k
    dup = duplicate_run(out["results"])
    if dup:
        rid, first, second = dup
        raise RenderError(f"cannot merge: run {_show(rid)} of {visible(out['results'][first]['source'])} "
                          f"and of {visible(out['results'][second]['source'])} land in the same cell")
    out["totals"] = totals(out["results"])
    return out


class Change(typing.NamedTuple):
    """A run whose verdict changed, appeared or disappeared (kpc diff)."""
    run: str
    before: str        # None: the run is new
    after: str         # None: the run is gone
    reason: str        # the newer file's reason


def diff(old: dict, new: dict) -> list[Change]:
    """[Change] for runs whose verdict changed, appeared or disappeared.
    Both documents are validated (load()): run ids are unique, verdicts are
    the six."""
    a = {run_id(r): r for r in old["results"]}
    b = {run_id(r): r for r in new["results"]}
    out = []
    for k in list(a) + [k for k in b if k not in a]:
        va = a[k]["verdict"] if k in a else None
        vb = b[k]["verdict"] if k in b else None
        if va != vb:
            out.append(Change(k, va, vb, (b.get(k) or a.get(k)).get("reason", "")))
    return out


def is_regression(old_v: str | None, new_v: str | None) -> bool:
    return new_v in BAD and old_v not in BAD


# ------------------------------------------------------------ HTML

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "xfail": "#f9a825", "skip": "#0277bd", "hang": "#6a1b9a",
          "error": "#212121"}


def html_report(doc: dict, notes: dict[str, str] | None = None, title: str = "kpc matrix") -> str:
    """One self-contained page (inline CSS and JS, no network): the case ×
    kernel and case × runtime matrices, a filter by area and verdict, and a
    panel with expected vs observed, the stuck tasks' stacks, provenance
    and the lab note for the clicked cell. `notes`: case id -> lab note."""
    notes = notes or {}
    in_doc = {r["case"] for r in doc["results"]}
    data = {"results": doc["results"], "notes": {k: v for k, v in notes.items() if k in in_doc},
            "environment": doc.get("environment", {}), "kernels": doc.get("kernels", {}),
            "totals": totals(doc["results"])}
    mats = matrices(doc)
    areas = sorted({r.get("area", "?") for r in doc["results"]})
    index = {id(r): i for i, r in enumerate(doc["results"])}   # list.index per cell was O(n²)
    parts = []
    for name, (cols, rows) in mats.items():
        head = "".join(f"<th>{_h(c)}</th>" for c in cols)
        body = []
        for label, by_col in rows.items():
            any_r = next(iter(by_col.values()))
            cells = []
            for c in cols:
                r = by_col.get(c)
                if r is None:
                    cells.append("<td class='none'>–</td>")
                    continue
                v = _h(r["verdict"])
                cells.append(f"<td class='cell v-{v}' data-i='{index[id(r)]}' title='{v}: "
                             f"{_h(r.get('reason', '')[:200])}'>{v}</td>")
            verdicts = " ".join(sorted({r["verdict"] for r in by_col.values()}))
            body.append(f"<tr data-area='{_h(any_r.get('area', '?'))}' data-verdicts='{_h(verdicts)}'>"
                        f"<th class='rowh'>{_h(label)}</th>{''.join(cells)}</tr>")
        heading = "Case × kernel" if name == "kernels" else "Case × runtime"
        parts.append(f"<h2>{heading}</h2><table class='matrix' id='m-{name}'><thead><tr><th>case @ flavor</th>"
                     f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    t = data["totals"]
    summary = " ".join(f"<span class='badge v-{v}'>{t[v]} {v}</span>" for v in VERDICTS)
    area_opts = "".join(f"<option>{_h(a)}</option>" for a in areas)
    verdict_opts = "".join(f"<option>{v}</option>" for v in VERDICTS)
    env = data["environment"]
    if doc.get("merged_from"):
        where = _h(f"merged from {len(doc['merged_from'])} files: " + ", ".join(
            f"{os.path.basename(m['file'])} ({m['environment'].get('distro', '?')}, "
            f"kernel {m['environment'].get('kernel', '?')}{_libc(m['environment'])})" for m in doc["merged_from"]))
    else:
        where = _h(f"host {env.get('distro', '?')}, kernel {env.get('kernel', '?')}{_libc(env)}")
    style = "".join(f".v-{v}{{background:{c};color:#fff}}" for v, c in COLORS.items())
    payload = script_json(data)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}
h1{{font-size:20px;margin:0 0 .3em}} h2{{font-size:16px;margin:1.2em 0 .4em}}
.badge{{display:inline-block;padding:2px 8px;border-radius:10px;margin-right:4px;font-weight:600}}
table.matrix{{border-collapse:collapse}} .matrix th,.matrix td{{border:1px solid #ccc;padding:2px 8px}}
.matrix thead th{{background:#eee;position:sticky;top:0}} .rowh{{text-align:left;font:12px monospace;font-weight:normal}}
td.cell{{cursor:pointer;text-align:center;font-weight:600}} td.none{{color:#999;text-align:center}}
td.cell.sel{{outline:3px solid #000}}
{style}
#panel{{position:fixed;right:0;top:0;bottom:0;width:42%;overflow:auto;background:#fafafa;border-left:2px solid #999;
padding:1em;display:none;font-size:13px}} #panel pre{{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:6px}}
#panel table td{{border-bottom:1px solid #ddd;padding:2px 6px;vertical-align:top;font-family:monospace}}
.diff{{background:#ffebee}} .filters{{margin:.6em 0}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<div>{summary} — {len(doc['results'])} runs; {where}; {_h(doc.get('created', ''))}</div>
<div class="filters">area <select id="f-area"><option value="">all</option>{area_opts}</select>
verdict <select id="f-verdict"><option value="">all</option>{verdict_opts}</select>
<label><input type="checkbox" id="f-nonpass"> only rows that are not all pass</label></div>
{''.join(parts)}
<div id="panel"><button id="close">close</button><div id="panel-body"></div></div>
<script id="kpc-data" type="application/json">{payload}</script>
<script>
const D = JSON.parse(document.getElementById('kpc-data').textContent);
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}}[c]));
function filter() {{
  const a = document.getElementById('f-area').value, v = document.getElementById('f-verdict').value,
        np = document.getElementById('f-nonpass').checked;
  document.querySelectorAll('table.matrix tbody tr').forEach(tr => {{
    const vs = tr.dataset.verdicts.split(' ');
    const show = (!a || tr.dataset.area === a) && (!v || vs.includes(v)) && (!np || vs.some(x => x !== 'pass'));
    tr.style.display = show ? '' : 'none';
  }});
}}
['f-area', 'f-verdict', 'f-nonpass'].forEach(id => document.getElementById(id).addEventListener('change', filter));
function show(i, td) {{
  document.querySelectorAll('td.sel').forEach(x => x.classList.remove('sel'));
  td.classList.add('sel');
  const r = D.results[i];
  let h = `<h2>${{esc(r.case)}}${{r.variant ? ':' + esc(r.variant) : ''}} @ ${{esc(r.flavor)}} — ${{esc(r.column || r.target)}}</h2>`;
  h += `<p><span class="badge v-${{esc(r.verdict)}}">${{esc(r.verdict)}}</span> kernel ${{esc(r.kernel)}}`;
  h += r.runtime && r.runtime !== 'none' ? `, runtime ${{esc(r.runtime)}} (profile ${{esc(r.profile)}})` : '';
  h += `</p><p>${{esc(r.reason)}}</p>`;
  (r.details || []).forEach(d => h += `<div>${{esc(d)}}</div>`);
  h += '<h3>expected vs observed</h3><table><tr><td><b>key</b></td><td><b>expected</b></td><td><b>observed</b></td><td><b>row</b></td></tr>';
  const keys = new Set([...Object.keys(r.observations || {{}}), ...Object.keys(r.expected || {{}})]);
  keys.forEach(k => {{
    const e = (r.expected || {{}})[k] || {{}}, o = (r.observations || {{}})[k];
    const cls = e.value !== undefined && o !== undefined && String(e.value) !== String(o) ? ' class="diff"' : '';
    h += `<tr${{cls}}><td>${{esc(k)}}</td><td>${{esc(e.value)}}${{e.xfail ? ' (xfail)' : ''}}</td><td>${{esc(o)}}</td><td>${{esc(e.where)}}</td></tr>`;
  }});
  h += '</table>';
  if (r.hang) {{
    h += '<h3>stuck tasks</h3>';
    (r.hang.tasks || []).forEach(t => h += `<div>${{t.stuck ? '<b>STUCK</b> ' : ''}}task ${{esc(t.tid)}} (${{esc(t.comm)}}) ${{esc(t.state)}} wchan ${{esc(t.wchan)}}</div><pre>${{esc((t.stack || []).join('\\n'))}}</pre>`);
    if (r.hang.guest_console_tail) h += `<h3>last console lines</h3><pre>${{esc(r.hang.guest_console_tail.join('\\n'))}}</pre>`;
  }}
  if (r.provenance) h += '<h3>provenance</h3>' + r.provenance.map(p => {{
    const m = String(p).match(/https?:\\/\\/\\S+/);
    return `<div>${{m ? esc(p).replace(esc(m[0]), `<a href="${{esc(m[0])}}">${{esc(m[0])}}</a>`) : esc(p)}}</div>`;
  }}).join('');
  if (D.notes[r.case]) h += `<h3>lab note</h3><pre>${{esc(D.notes[r.case])}}</pre>`;
  document.getElementById('panel-body').innerHTML = h;
  document.getElementById('panel').style.display = 'block';
}}
document.querySelectorAll('td.cell').forEach(td => td.addEventListener('click', () => show(+td.dataset.i, td)));
document.getElementById('close').addEventListener('click', () => document.getElementById('panel').style.display = 'none');
</script></body></html>
"""


def _h(text):
    """Text from a results file in HTML: escaped, quotes too (it goes into
    attributes), control characters shown."""
    return html.escape(visible(text), quote=True)


def script_json(data: object) -> str:
    """DATA as JSON to put inside <script type="application/json">: no NaN
    (JSON.parse throws on it, and the page dies), and every '<', '>', '&'
    as \\u003c etc. so no string can close the element or open a comment
    ('<!--<script>' in a reason swallowed the page's own script)."""
    text = json.dumps(data, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def lab_notes(cases: dict[str, cases_mod.Case]) -> dict[str, str]:
    """case id -> lab note text, for the HTML panel."""
    out = {}
    for c in cases.values():
        try:
            with open(c.note_path, encoding="utf-8") as f:
                out[c.id] = f.read()
        except OSError:
            pass
    return out


def write(path: str, text: str) -> None:
    """A report or merged results file: safefile.write ('-' is standard
    output, no symbolic link followed, an atomic replace)."""
    safefile.write(path, text)
