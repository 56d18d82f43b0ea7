"""README.md's generated blocks: the case list ("Cases by area") and the
course path ("For teachers: the lab"), written from the case metadata
between marker comments. `runner/update_readme.py` rewrites them in place;
runner/tests/test_readme.py fails while README.md differs from what the
metadata gives, so a new case needs no README edit by hand."""

from __future__ import annotations

import os
import sys
import textwrap

from . import lab, paths

SCRIPT = "runner/update_readme.py"
BLOCKS = ("case list", "course path")
WIDTH = 79


def begin_marker(name: str) -> str:
    return f"<!-- {name}: generated from the case metadata by {SCRIPT}; do not edit -->"


def end_marker(name: str) -> str:
    return f"<!-- end of the generated {name} -->"


def case_list(all_cases: dict) -> str:
    """Every case under its area: "- `id` — summary", areas and ids sorted."""
    areas = {}
    for case in all_cases.values():
        areas.setdefault(case.area, []).append(case)
    out = []
    for area in sorted(areas):
        out += [f"**{area}**", ""]
        out += [f"- `{c.id}` — {c.summary}" for c in sorted(areas[area], key=lambda c: c.id)]
        out.append("")
    return "\n".join(out[:-1]) + "\n"


def _course_entry(all_cases, cid):
    if cid.startswith("labs/"):
        return f"the {cid[5:].replace('-', ' ')} (`{cid}/`)"
    case = all_cases[cid]
    notes = []
    if case.requires.kernel:
        notes.append(case.requires.kernel.lstrip(">=") + "+")
    if case.slow:
        notes.append("`--slow`")
    return f"`{cid}`" + (f" ({', '.join(notes)})" if notes else "")


def course_path(all_cases: dict) -> str:
    """The units of `kpc list --course` in order, each lab in its place."""
    titles = dict(lab.UNITS)
    out = []
    for number, (unit, ids) in enumerate(lab.course(all_cases), 1):
        text = f"{number}. {titles[unit]} — " + " → ".join(_course_entry(all_cases, cid) for cid in ids)
        out.append(textwrap.fill(text, WIDTH, subsequent_indent=" " * (len(str(number)) + 2),
                                 break_long_words=False, break_on_hyphens=False))
    return "\n".join(out) + "\n"


def generated(all_cases: dict) -> dict:
    """name -> the block's text as the metadata gives it."""
    return {"case list": case_list(all_cases), "course path": course_path(all_cases)}


def _span(text, name):
    """(start, end) of the block NAME's body in TEXT (between its markers)."""
    begin, end = begin_marker(name) + "\n", "\n" + end_marker(name)
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        raise ValueError(f"README.md lacks the markers of the {name}: {begin_marker(name)} ... {end_marker(name)}")
    return start + len(begin), stop + 1


def current(text: str) -> dict:
    """name -> the block's text as README.md has it."""
    out = {}
    for name in BLOCKS:
        start, stop = _span(text, name)
        out[name] = text[start:stop]
    return out


def rewrite(text: str, all_cases: dict) -> str:
    """TEXT with every generated block replaced by what the metadata gives."""
    for name, body in generated(all_cases).items():
        start, stop = _span(text, name)
        text = text[:start] + body + text[stop:]
    return text


def main(argv: list[str] | None = None) -> int:
    """update_readme.py [--check] [README]: rewrite the blocks (exit 0), or
    with --check only say whether they are up to date (exit 1 if not)."""
    import argparse

    from . import cases
    ap = argparse.ArgumentParser(prog=SCRIPT, description="Rewrite README.md's case list and course path from "
                                 "the case metadata (cases/*/*.toml).")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    ap.add_argument("readme", nargs="?", default=os.path.join(paths.ROOT, "README.md"))
    args = ap.parse_args(argv)
    try:
        all_cases = cases.load_all()
        with open(args.readme, encoding="utf-8") as f:
            text = f.read()
        new = rewrite(text, all_cases)
    except (cases.CaseError, OSError, ValueError) as e:
        print(f"kpc: {e}", file=sys.stderr)
        return 2
    stale = [n for n, body in current(text).items() if body != generated(all_cases)[n]]
    if args.check:
        print(f"{args.readme}: " + (f"out of date: {', '.join(stale)} (run {SCRIPT})" if stale else "up to date"))
        return 1 if stale else 0
    if new != text:
        tmp = args.readme + ".tmp"
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(new)
            os.replace(tmp, args.readme)
        except OSError as e:
            print(f"kpc: cannot rewrite {args.readme}: {e}", file=sys.stderr)
            return 2
    print(f"{args.readme}: " + (f"rewrote {', '.join(stale)}" if stale else "up to date"))
    return 0
