"""What a run produces: the compact verdict table, the results JSON and JUnit
XML."""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from typing import ContextManager, Iterable, TYPE_CHECKING, TextIO

from . import evaluate, safefile

if TYPE_CHECKING:
    from . import envinfo, session, tables

COLORS = {"pass": "32", "fail": "31;1", "xfail": "33", "skip": "36", "hang": "35;1", "error": "31;7"}
SCHEMA_VERSION = 1


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, verdict: str, color: bool) -> str:
    return f"\033[{COLORS[verdict]}m{text}\033[0m" if color and verdict in COLORS else text


def totals(items: Iterable[session.Item]) -> dict[str, int]:
    return evaluate.totals(item.verdict.verdict for item in items)


def totals_line(items: list[session.Item], wall_s: float) -> str:
    counts = totals(items)
    body = ", ".join(f"{counts[v]} {v}" for v in evaluate.VERDICTS)
    return f"totals: {body}  ({len(items)} runs in {wall_s:.2f} s)"


def print_table(items: list[session.Item], flavors: list[str], stream: TextIO = sys.stdout, verbose: bool = False,
                wall_s: float = 0.0) -> None:
    color = use_color(stream)
    rows = {}
    matrix = any(i.target != "host" for i in items)
    for item in items:
        label = item.case.id + (f":{item.variant}" if item.variant else "")
        if matrix:
            # --kernels: a row per case x flavor, a column per kernel
            label += f"@{item.flavor}" + (f"+{item.runtime.name}" if item.runtime else "")
            rows.setdefault(label, {})[item.target] = item
        else:
            rows.setdefault(label, {})[item.column] = item
    width = max([len(r) for r in rows] + [4])
    if matrix:
        cols = []
        for item in items:
            if item.target not in cols:
                cols.append(item.target)
    else:
        # Flavors in their order, then runtimes in the order they were given.
        cols = [f for f in flavors if any(f in r for r in rows.values())]
        for item in items:
            if item.column not in cols:
                cols.append(item.column)
    cw = max([6] + [len(c) for c in cols])
    stream.write(f"{'CASE'.ljust(width)}  " + "  ".join(c.ljust(cw) for c in cols) + "\n")
    for label, by_flavor in rows.items():
        cells = []
        for c in cols:
            it = by_flavor.get(c)
            text = it.verdict.verdict if it else "-"
            cells.append(paint(text.ljust(cw), text, color))
        stream.write(f"{label.ljust(width)}  " + "  ".join(cells) + "\n")

    if matrix:
        _print_differences(rows, cols, stream)

    details = [i for i in items if i.verdict.verdict != "pass" and (verbose or i.verdict.verdict != "skip")]
    if details:
        stream.write("\n")
    provenance_shown = set()
    for item in details:
        v = item.verdict
        stream.write(paint(v.verdict.upper(), v.verdict, color) + f" {item.run_id}: {v.reason}\n")
        if verbose or v.verdict != "xfail":
            for line in v.details:
                stream.write(f"    {line}\n")
        if v.verdict in evaluate.BAD:
            if v.hang:
                for line in v.hang.get("kernel_messages", [])[:10]:
                    stream.write(f"    kernel: {line}\n")
                if v.hang.get("guest_console_tail"):
                    stream.write("    last console lines:\n")
                    for line in v.hang["guest_console_tail"][-12:]:
                        stream.write(f"        {line}\n")
                for t in v.hang.get("tasks", []):
                    mark = "STUCK " if t.get("stuck") else ""
                    stream.write(f"    {mark}task {t.get('tid')} ({t.get('comm')}) state {t.get('state')} "
                                 f"wchan {t.get('wchan') or '-'}\n")
                    for frame in t.get("stack", [])[:12]:
                        stream.write(f"        {frame}\n")
                if v.hang.get("probe_exit"):
                    when, found = v.hang.get("probe_exit_ms"), v.hang.get("detected_ms")
                    num = evaluate.is_number
                    stream.write(f"    the probe {v.hang['probe_exit']}"
                                 + (f" at {when:.0f} ms" if num(when) else "")
                                 + (f" (the hang was found at {found:.0f} ms)" if num(found) else "") + "\n")
                if v.verdict != "error":  # an error prints the probe's stderr below
                    for line in v.hang.get("probe_stderr_tail", [])[-5:]:
                        stream.write(f"    probe stderr: {line}\n")
            if item.case.id not in provenance_shown:
                provenance_shown.add(item.case.id)
                for line in item.case.provenance_lines():
                    stream.write(f"    {line}\n")
            if v.verdict == "error" and v.stderr.strip():
                tail = v.stderr.strip().splitlines()[-5:]
                stream.write("    stderr: " + "\n            ".join(tail) + "\n")
        if verbose and v.observations:
            for k, val in sorted(v.observations.items()):
                stream.write(f"    observed {k} = {val}\n")
    stream.write("\n" + totals_line(items, wall_s) + "\n")


def differences(rows: list[tables.Row], cols: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """[(row label, key, {target: value})] for observations whose value is
    not the same on every target that recorded it: where kernels differ."""
    out = []
    for label, by_target in rows.items():
        keys = []
        for c in cols:
            it = by_target.get(c)
            for k in (it.verdict.observations if it and it.verdict else {}):
                if k not in keys:
                    keys.append(k)
        for k in keys:
            vals = {c: by_target[c].verdict.observations.get(k) for c in cols
                    if c in by_target and by_target[c].verdict and k in by_target[c].verdict.observations}
            if len(set(vals.values())) > 1:
                out.append((label, k, vals))
    return out


def _print_differences(rows, cols, stream):
    diffs = differences(rows, cols)
    if not diffs:
        return
    stream.write("\nobservations that differ between kernels:\n")
    for label, key, vals in diffs:
        stream.write(f"  {label} {key}: " + ", ".join(f"{c}={v}" for c, v in vals.items()) + "\n")


def result_json(item: session.Item, env: envinfo.Environment) -> dict:
    v = item.verdict
    out = {"case": item.case.id, "area": item.case.area, "variant": item.variant, "flavor": item.flavor,
           "kernel": (item.env or env).kernel, "target": item.target,
           "runtime": item.runtime.name if item.runtime else "none",
           "profile": item.runtime.profile if item.runtime else "none", "verdict": v.verdict,
           "observations": v.observations,
           "expected": v.expected, "reason": v.reason, "duration_ms": round(v.duration_ms, 3)}
    out.update({k: getattr(v, k) for k in ("details", "notes", "hang", "marks") if getattr(v, k)})
    if v.verdict in evaluate.BAD:
        out["provenance"] = item.case.provenance_lines()
    return out


def write_json(path: str, items: list[session.Item], env: envinfo.Environment, wall_s: float,
               kernels: dict | None = None) -> dict:
    """`kernels`: label -> the guest's environment and boot facts."""
    doc = document(items, env, wall_s, kernels)
    safefile.write(path, dumps_indent1(doc) + "\n")
    return doc


def dumps_indent1(obj: object) -> str:
    """json.dumps(obj, indent=1), the same text in half the time: with an
    indent, json encodes in Python through a generator per container (60 ms
    for a suite's results); this appends to one list, strings and numbers
    encoded as json's encoder does. Anything it does not know (a cycle, a
    type json refuses) goes to json.dumps itself, for json's own error."""
    out = []
    app = out.append

    def enc(o, nl):
        if isinstance(o, str):
            app(_json_str(o))
        elif o is None:
            app("null")
        elif o is True:
            app("true")
        elif o is False:
            app("false")
        elif isinstance(o, int):
            app(int.__repr__(o))
        elif isinstance(o, float):
            app(_json_float(o))
        elif isinstance(o, (list, tuple)):
            if not o:
                app("[]")
                return
            inner = nl + " "
            app("[" + inner)
            for n, v in enumerate(o):
                if n:
                    app("," + inner)
                enc(v, inner)
            app(nl + "]")
        elif isinstance(o, dict):
            if not o:
                app("{}")
                return
            inner = nl + " "
            app("{" + inner)
            for n, (k, v) in enumerate(o.items()):
                if not isinstance(k, str):
                    raise _NotPlain
                app(("," + inner if n else "") + _json_str(k) + ": ")
                enc(v, inner)
            app(nl + "}")
        else:
            raise _NotPlain

    try:
        enc(obj, "\n")
    except (_NotPlain, RecursionError):
        return json.dumps(obj, indent=1)
    return "".join(out)


class _NotPlain(Exception):
    """A value dumps_indent1 leaves to json.dumps."""


_json_str = json.encoder.encode_basestring_ascii   # json.dumps' (ensure_ascii)


def _json_float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == float("inf"):
        return "Infinity"
    if o == float("-inf"):
        return "-Infinity"
    return float.__repr__(o)


def document(items: list[session.Item], env: envinfo.Environment, wall_s: float,
             kernels: dict | None = None) -> dict:
    """The results document of judged ITEMS (what write_json writes)."""
    return {"schema": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": env.to_json(),
            **({"kernels": kernels} if kernels else {}),
            "wall_s": round(wall_s, 3),
            "totals": totals(items),
            "results": [result_json(i, env) for i in items]}


def results_lock(directory: str) -> ContextManager[None]:
    """An flock on DIRECTORY/.lock (results/runs/.lock) for the write of the
    default results file: two `./kpc run` in one checkout used to share
    last.json.tmp, and one lost its results or left half a file."""
    os.makedirs(directory, exist_ok=True)
    return safefile.flocked(directory, ".lock")


def write_junit(path: str, items: list[session.Item], env: envinfo.Environment, wall_s: float) -> None:
    import xml.etree.ElementTree as ET   # here: most runs write no JUnit
    counts = totals(items)
    suite = ET.Element("testsuite", name="kpc", tests=str(len(items)),
                       failures=str(counts["fail"] + counts["hang"]), errors=str(counts["error"]),
                       skipped=str(counts["skip"] + counts["xfail"]), time=f"{wall_s:.3f}",
                       hostname=os.uname().nodename)
    props = ET.SubElement(suite, "properties")
    for k, val in env.to_json().items():
        ET.SubElement(props, "property", name=k, value=json.dumps(val) if not isinstance(val, str) else val)
    for item in items:
        v = item.verdict
        name = item.run_id[len(item.case.id):].lstrip(":")   # variant@flavor+runtime#kernel
        tc = ET.SubElement(suite, "testcase", classname=f"kpc.{item.case.area}.{item.case.id}", name=name,
                           time=f"{v.duration_ms / 1000:.3f}")
        body = "\n".join([v.reason, *v.details, *item.case.provenance_lines()])
        if v.verdict in evaluate.FAILURES:
            el = ET.SubElement(tc, "failure", message=v.reason, type=v.verdict)
            el.text = body + ("\n" + json.dumps(v.hang, indent=1) if v.hang else "")
        elif v.verdict == "error":
            ET.SubElement(tc, "error", message=v.reason, type="error").text = body
        elif v.verdict in ("skip", "xfail"):
            ET.SubElement(tc, "skipped", message=f"{v.verdict}: {v.reason}")
        if v.observations:
            obs = sorted(v.observations.items())
            ET.SubElement(tc, "system-out").text = "\n".join(f"{k} = {val}" for k, val in obs)
    for el in suite.iter():
        el.text = _xml_text(el.text)
        for k, val in el.attrib.items():
            el.attrib[k] = _xml_text(val)
    safefile.write(path, ET.tostring(suite, encoding="utf-8", xml_declaration=True))


# Characters XML 1.0 cannot hold at all, even escaped (ElementTree writes
# them raw and the file stops being XML): probe output and reasons may.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text):
    """TEXT with every character XML cannot carry shown as an escape
    (\\x1b); ElementTree escapes & < > and quotes itself."""
    if text is None:
        return None
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)
