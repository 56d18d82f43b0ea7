#!/usr/bin/python3
"""The expected tables in figures, and proof that a rewrite kept them.

Default: per area and in total, the number of checks the tables hold -- a
check is one (case, key, conditions) triple of a parsed row, the
conditions read from named sets and sub-sections as the evaluator sees
them -- next to the lines, the lines longer than 100 characters, the
longest line, and the rows that repeat a condition list another row of
their case already wrote (two or more conditions, or one with
alternatives, written out rather than named once: a @NAME or a
`[case if ...]` sub-section). Counted from tables.load(), so a row written with a named
set or inside a `[case if ...]` sub-section counts as the same check it
was when written out in full.

--against REV   also compare the tables of git revision REV (e.g. main)
                with the working tree's (REV may hold them in either
                layout: cases/<area>/<id>.exp, or the one before,
                results/expected/<area>.exp, whose named sets are
                written out so that each case's rows load alone: its
                "repeated" figure counts those), context by context: for every
                case and every context its rows' conditions can tell
                apart, the row each key matches must have the same value
                and the same xfail in both (reasons may be reworded: they
                are counted, not compared). Then every stored run in
                --results FILE... (default: results/runs/*.json*) is
                judged again under both: the matched rows must agree, and
                a pass/xfail run must still pass/xfail.
--min N         exit 1 when the working tree holds fewer than N checks.

Usage: bench/table_checks.py [--against REV] [--results FILE...] [--min N]
Prints figures; exit 1 only when --against finds a difference or --min
is not met.
"""

import argparse
import glob
import gzip
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runner"))

from kpc import cases, kver, paths, tables, values  # noqa: E402

LIMIT = 100


def condition_key(c):
    """A condition as what it means, not how it was written."""
    return (c.dim, c.negate, tuple(sorted(c.choices)), c.lo, c.hi)


def area_of(where):
    """The area of a row's file: cases/<area>/<id>.exp (or an old <area>.exp)."""
    path = where.rsplit(":", 1)[0]
    parent = os.path.basename(os.path.dirname(path))
    return os.path.splitext(os.path.basename(path))[0] if parent in ("expected", "") else parent


def checks(tbl):
    """{area: set of (case, key, conditions)} of parsed rows."""
    out = {}
    for case_id, rows in tbl.rows.items():
        for r in rows:
            out.setdefault(area_of(r.where), set()).add(
                (case_id, r.key, frozenset(condition_key(c) for c in r.conditions)))
    return out


def is_list(own):
    """A condition list worth naming once: two or more conditions, or one
    with alternatives (a @NAME alone is the name, not the list)."""
    return len(own) >= 2 or (len(own) == 1 and "|" in own[0] and not own[0].startswith("@"))


def repeated_lists(tbl):
    """{area: rows whose own condition list (as written) another row of the
    same case wrote before}."""
    out, seen = {}, set()
    for case_id, rows in tbl.rows.items():
        for r in rows:
            said = (case_id, tuple(r.own))
            if is_list(r.own) and said in seen:
                name = area_of(r.where)
                out[name] = out.get(name, 0) + 1
            seen.add(said)
    return out


def table_files(directory):
    """{area: [its .exp files]} of a directory laid out like cases/."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "*.exp"))):
        out.setdefault(os.path.basename(os.path.dirname(path)), []).append(path)
    return out


def line_figures(files):
    """{area: (lines, lines over LIMIT, longest)} of {area: [files]}."""
    out = {}
    for area, paths_ in files.items():
        lines = []
        for path in paths_:
            with open(path, encoding="utf-8") as f:
                text = f.read().split("\n")
            if text and text[-1] == "":
                text.pop()
            lines += text
        out[area] = (len(lines), sum(len(x) > LIMIT for x in lines), max(map(len, lines or [""])))
    return out


def count(all_cases, directory=None, figures_from=None):
    """Prints the figures per area; (tables, number of checks). FIGURES_FROM:
    {area: [files]} to count lines in (default: the tables loaded)."""
    tbl = tables.load(all_cases, directory)
    per_area = checks(tbl)
    repeats = repeated_lists(tbl)
    figures = line_figures(figures_from or table_files(directory or paths.EXPECTED))
    total = [0, 0, 0, 0, 0, 0]
    print(f"{'area':18} {'rows':>5} {'checks':>6} {'lines':>5} {'>100':>5} {'longest':>7} {'repeated':>8}")
    for name in sorted(figures):
        n_rows = sum(1 for rows in tbl.rows.values() for r in rows if area_of(r.where) == name)
        n_checks = len(per_area.get(name, ()))
        lines, long_lines, longest = figures[name]
        n_rep = repeats.get(name, 0)
        print(f"{name:18} {n_rows:5} {n_checks:6} {lines:5} {long_lines:5} {longest:7} {n_rep:8}")
        total = [total[0] + n_rows, total[1] + n_checks, total[2] + lines, total[3] + long_lines,
                 max(total[4], longest), total[5] + n_rep]
    print(f"{'total':18} {total[0]:5} {total[1]:6} {total[2]:5} {total[3]:5} {total[4]:7} {total[5]:8}")
    return tbl, total[1]


def _git(*args, text=True):
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True, text=text).stdout


_SET_USE = re.compile(r"@[a-z][a-z0-9_]*")
_SECTION = re.compile(r"^\[([a-z0-9_]+)")


def split_area_file(text):
    """An old <area>.exp -> {case id: its lines}: each case's contiguous
    sections, with every @NAME written out (a set there served the whole
    file) and the set definitions and comments left out."""
    lines = text.replace("\r\n", "\n").split("\n")
    sets, out, current = {}, {}, None
    joined, buf = [], ""
    for x in lines:      # continued lines first: a @NAME may sit on a continuation
        buf = buf + " " + x.strip() if buf else x
        if buf.rstrip().endswith("\\"):
            buf = buf.rstrip()[:-1].rstrip()
            continue
        joined.append(buf)
        buf = ""
    for x in joined:
        s = x.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("@"):
            name, body = s.split("=", 1)
            sets[name.strip()] = " ".join(shlex.quote(t) for t in shlex.split(body))
            continue
        m = _SECTION.match(s)
        if m:
            current = m.group(1)
        out.setdefault(current, []).append(_SET_USE.sub(lambda u: sets.get(u.group(0), u.group(0)), s))
    return out


def extract(rev, into, old):
    """REV's tables into INTO, laid out like cases/ (an old layout's files
    as they were into OLD); returns {area: [files as REV wrote them]} for
    the line figures."""
    names = _git("ls-tree", "-r", "--name-only", rev, "--", "cases").split()
    exp = [n for n in names if n.endswith(".exp")]
    originals = {}
    if exp:   # cases/<area>/<id>.exp
        for name in exp:
            _, area, base = name.split("/")
            os.makedirs(os.path.join(into, area), exist_ok=True)
            path = os.path.join(into, area, base)
            with open(path, "wb") as f:
                f.write(_git("show", f"{rev}:{name}", text=False))
            originals.setdefault(area, []).append(path)
        return originals
    # results/expected/<area>.exp (before issue 24's move)
    for name in _git("ls-tree", "--name-only", f"{rev}:results/expected").split():
        if not name.endswith(".exp"):
            continue
        area = name[:-4]
        text = _git("show", f"{rev}:results/expected/{name}")
        with open(os.path.join(old, name), "w", encoding="utf-8") as f:
            f.write(text)
        originals[area] = [os.path.join(old, name)]
        os.makedirs(os.path.join(into, area))
        for case_id, rows in split_area_file(text).items():
            with open(os.path.join(into, area, case_id + ".exp"), "w", encoding="utf-8") as f:
                f.write("\n".join(rows) + "\n")
    return originals


def same_value(a, b):
    if a == b:
        return True
    try:
        return values.parse_sigset(a) == values.parse_sigset(b)
    except values.ValueError_:
        return False


def matched(tbl, case_id, ctx):
    """{key: row} of the rows matching ctx (the load lint keeps it one per key)."""
    return {r.key: r for r in tbl.rows_for(case_id) if r.matches(ctx)}


def differs(old, new):
    """The keys whose matched rows disagree in value or xfail, as text."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or not same_value(a.value, b.value) or a.xfail != b.xfail:
            out.append(f"{key}: {a.describe() + ' [' + a.where + ']' if a else 'no row'} / "
                       f"{b.describe() + ' [' + b.where + ']' if b else 'no row'}")
    return out


def contexts(case, rows):
    """Every context the rows' conditions can tell apart (the product of the
    overlap linter's domains), without the ones that cannot exist (a glibc
    version under another libc)."""
    dims = sorted({c.dim for r in rows for c in r.conditions})
    if "glibc" in dims and "libc" not in dims:
        dims.append("libc")
    domains = [tables._domain(d, case, rows) for d in dims]
    for point in itertools.product(*domains):
        ctx = dict(zip(dims, point))
        if ctx.get("glibc") is not None and ctx.get("libc") not in (None, "glibc"):
            continue
        yield ctx


def tables_of(tbl, case_ids):
    """The rows of CASE_IDS only, as a Tables."""
    out = tables.Tables()
    out.rows = {c: tbl.rows_for(c) for c in case_ids}
    return out


def compare_tables(all_cases, old, new):
    """(differences, contexts compared, rows reworded, cases new since
    REV): a case with rows now and none at REV is an addition, listed,
    not compared; one that lost its rows is a difference."""
    problems, compared, reworded = [], 0, 0
    added = sorted(c for c in new.rows if c not in old.rows)
    for case_id in sorted((set(old.rows) | set(new.rows)) - set(added)):
        case = all_cases[case_id]
        rows = old.rows_for(case_id) + new.rows_for(case_id)
        for ctx in contexts(case, rows):
            full = dict(ctx)
            full.setdefault("variant", "")
            a, b = matched(old, case_id, full), matched(new, case_id, full)
            compared += 1
            for d in differs(a, b):
                problems.append(f"{case_id} when {tables.describe_context(ctx)}: {d}")
            reworded += sum(1 for k in a if k in b and a[k].reason != b[k].reason)
    return problems, compared, reworded, added


def _env_context(env):
    libc = "musl" if "musl" in env.get("libc", "") else "glibc"
    glibc = None
    if libc == "glibc":
        try:
            glibc = kver.parse(env["libc"].split()[1])
        except (IndexError, ValueError, KeyError):
            glibc = None
    return {"libc": libc, "glibc": glibc, "arch": env.get("machine", "x86_64"),
            "root": "yes" if env.get("root", True) else "no"}


def stored_runs(files):
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        envs = {"host": data.get("environment", {}), **(data.get("kernels") or {})}
        for r in data.get("results", []):
            env = envs.get(r.get("target", "host")) or data.get("environment", {})
            ctx = {"kernel": kver.parse(r["kernel"]), "flavor": r["flavor"], "variant": r.get("variant", ""),
                   "profile": r.get("profile", "none"), "runtime": r.get("runtime", "none"), **_env_context(env)}
            yield os.path.basename(path), r, ctx


def rejudge(rows, obs):
    """pass/xfail/fail/error of stored observations against matched rows,
    as evaluate() decides for a probe that ended or hung."""
    xfail = False
    for key, value in obs.items():
        row = rows.get(key)
        if row is None:
            return "error"
        if row.value != tables.REPORTED and not same_value(row.value, value):
            return "fail"
        xfail |= row.xfail
    # a run that hung (observed hang = yes) is judged on what it recorded
    # before; one that ended must have recorded every key with a row
    if obs.get("hang") != "yes" and any(k not in obs for k in rows):
        return "error"
    return "xfail" if xfail else "pass"


def compare_runs(all_cases, old, new, files):
    problems, judged, same_verdict = [], 0, 0
    for name, r, ctx in stored_runs(files):
        if r["case"] not in all_cases:
            continue
        a, b = matched(old, r["case"], ctx), matched(new, r["case"], ctx)
        for d in differs(a, b):
            problems.append(f"{name} {r['case']}:{r.get('variant', '')}@{r['flavor']}+{r.get('runtime')} "
                            f"#{r.get('target')}: {d}")
        if r["verdict"] in ("pass", "xfail") and r.get("observations"):
            judged += 1
            before, after = rejudge(a, r["observations"]), rejudge(b, r["observations"])
            if before == after == r["verdict"]:
                same_verdict += 1
            elif before != after:
                problems.append(f"{name} {r['case']}:{r.get('variant', '')}@{r['flavor']} #{r.get('target')}: "
                                f"stored {r['verdict']}, old tables {before}, new tables {after}")
    return problems, judged, same_verdict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", metavar="REV", help="compare with the tables of this git revision")
    ap.add_argument("--results", nargs="*", metavar="FILE", help="stored runs to judge again (with --against)")
    ap.add_argument("--min", type=int, metavar="N", help="exit 1 with fewer than N checks")
    args = ap.parse_args(argv)
    all_cases = cases.load_all()
    print("working tree:")
    new, n_checks = count(all_cases)
    status = 0
    if args.against:
        with tempfile.TemporaryDirectory(prefix="kpc-tables.") as tmp:
            tables_dir = os.path.join(tmp, "cases")
            os.mkdir(tables_dir)
            originals = extract(args.against, tables_dir, tmp)
            print(f"\n{args.against}:")
            old, n_old = count(all_cases, tables_dir, originals)
        print(f"\nchecks: {n_old} at {args.against}, {n_checks} now ({n_checks - n_old:+d})")
        problems, compared, reworded, added = compare_tables(all_cases, old, new)
        if added:
            n_added = sum(len(checks_of) for checks_of in checks(tables_of(new, added)).values())
            print(f"cases new since {args.against} (not compared): {', '.join(added)} ({n_added} checks)")
        print(f"contexts compared: {compared}; matched rows with another reason: {reworded}; "
              f"differences: {len(problems)}")
        files = args.results if args.results is not None else sorted(
            glob.glob(os.path.join(ROOT, "results", "runs", "*.json*")))
        run_problems, judged, same = compare_runs(all_cases, old, new, files)
        print(f"stored runs: {len(files)} files; pass/xfail runs judged again: {judged}, same verdict as stored "
              f"under both: {same}; differences: {len(run_problems)}")
        for p in (problems + run_problems)[:40]:
            print("  " + p)
        if problems or run_problems:
            status = 1
    if args.min is not None and n_checks < args.min:
        print(f"{n_checks} checks, fewer than {args.min}")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
