"""The runner inside a kpc bundle: `kpc/run` on a device under test.

Python >= 3.9 and its standard library only: no pytest, no tomllib (the
bundle's cases.json is the precompiled metadata), no compiler, no network.
It runs the same Session and evaluator as `./kpc run` on this machine, so a
device gets the verdicts `./kpc run` would give it, and writes them in the
formats kernel CI reads:

  kpc/run [--case GLOB[:VARIANT]] [--area A] [--flavor F] [--slow] [--jobs N] [-v]
          [--json F] [--junit F] [--tap F] [--ktap F] [--kcidb F] [--lava]
  kpc/run --ltp CASE[:VARIANT]@FLAVOR     one run, LTP's exit codes (kirk)

Exit codes as `./kpc run`: 0 all pass/xfail/skip, 1 a fail/hang/error, 2
bad usage or input, 130 interrupted; --ltp: 0 pass (and xfail), 32 skip,
2 error (broken), 1 fail or hang.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from . import cases, envinfo, evaluate, formats, paths, render, report, session, tables

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_JOBS = min(8 * (os.cpu_count() or 2), 64)


class UsageError(Exception):
    pass


def _say(msg):
    sys.stderr.write(f"kpc: {render.visible(str(msg))}\n")


def manifest() -> dict:
    """What the bundle says about itself (kpc bundle wrote it)."""
    with open(os.path.join(paths.ROOT, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def _select(all_cases, patterns, areas):
    try:
        return cases.select(all_cases, patterns, areas)
    except cases.SelectionError as e:
        raise UsageError(str(e)) from None


def parse_run(text: str, all_cases: dict[str, cases.Case]) -> tuple[cases.Case, str, str]:
    """'case[:variant]@flavor' -> (case, variant, flavor)."""
    name, at, flavor = text.rpartition("@")
    case_id, _, variant = name.partition(":")
    case = all_cases.get(case_id)
    if not at or case is None or flavor not in case.flavors or (variant or "") not in (case.variants or [""]):
        raise UsageError(f"--ltp {text}: not a run of this bundle (CASE[:VARIANT]@FLAVOR; runtest/kpc lists them)")
    return case, variant, flavor


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kpc/run", description="Run the kpc suite on this machine and judge it "
                                "with the bundle's expected tables (kpc bundle).")
    p.add_argument("--case", action="append", metavar="GLOB[:VARIANT]")
    p.add_argument("--area", action="append", metavar="AREA")
    p.add_argument("--flavor", action="append", choices=cases.FLAVORS)
    p.add_argument("--slow", action="store_true", help="also the slow cases")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--json", metavar="FILE", help="results JSON (default: results/runs/last.json in the bundle)")
    p.add_argument("--junit", metavar="FILE")
    p.add_argument("--tap", metavar="FILE", help="TAP 13")
    p.add_argument("--ktap", metavar="FILE", help="KTAP v1 as kselftest's runner prints it ('-' = stdout)")
    p.add_argument("--kcidb", metavar="FILE", help="a KCIDB v5.3 document")
    p.add_argument("--kcidb-origin", default="kpc", metavar="NAME")
    p.add_argument("--lava", action="store_true",
                   help="report every run to LAVA: lava-test-case NAME --result pass|fail|skip|unknown")
    p.add_argument("--ltp", metavar="CASE[:VARIANT]@FLAVOR", help="run one run; exit with LTP's codes (kirk)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if not 1 <= args.jobs <= 1024:
            raise UsageError("--jobs wants a whole number from 1 to 1024")
        return _run(args)
    except (UsageError, cases.CaseError, tables.TableError, OSError) as e:
        _say(e)
        return EXIT_INPUT
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED


def _run(args):
    all_cases = cases.load_all()
    tbl = tables.load(all_cases)
    env = envinfo.detect()
    # The tables' libc is the probes' (static, from the machine that built the bundle).
    env.libc = manifest().get("libc", env.libc)
    if env.flavors.get("host", "").startswith("run directory base:"):
        raise UsageError(env.flavors["host"])
    if args.ltp:
        case, variant, flavor = parse_run(args.ltp, all_cases)
        sess = session.Session(all_cases, tbl, env, [case], [flavor], jobs=1, slow=True)
        sess.items = [i for i in sess.items if i.variant == variant]
        sess.by_run = {i.run_id: i for i in sess.items}
    else:
        selected = _select(all_cases, args.case, args.area)
        sess = session.Session(all_cases, tbl, env, selected, args.flavor or list(cases.FLAVORS), jobs=args.jobs,
                               slow=args.slow)
    if not sess.items:
        raise UsageError("nothing to run in the selected flavors")
    sess.run_all()
    if args.ltp:
        return ltp_report(sess.items[0])
    report.print_table(sess.items, list(cases.FLAVORS), verbose=args.verbose, wall_s=sess.wall_s)
    doc = _write(args, sess, env)
    if args.lava:
        lava_report(doc)
    bad = [i for i in sess.items if i.verdict.verdict in evaluate.BAD]
    return EXIT_FAIL if bad or sess.launcher_failure or sess.unrecovered else EXIT_OK


def _write(args, sess, env):
    path = args.json or os.path.join(paths.RESULTS, "runs", "last.json")
    doc = report.write_json(path, sess.items, env, sess.wall_s)
    if args.junit:
        report.write_junit(args.junit, sess.items, env, sess.wall_s)
    if args.tap:
        render.write(args.tap, render.tap(doc))
    if args.ktap:
        render.write(args.ktap, formats.ktap(doc))
    if args.kcidb:
        render.write(args.kcidb, json.dumps(formats.kcidb(doc, origin=args.kcidb_origin), indent=1) + "\n")
    if path != "-":
        print(f"results: {path}")
    return doc


def lava_report(doc: dict) -> None:
    """One LAVA test case per run, through lava-test-case when LAVA put it
    on PATH, else as the signal line lava-test-case prints."""
    tool = shutil.which("lava-test-case")
    for name, result in formats.lava_results(doc):
        if tool:
            subprocess.run([tool, name, "--result", result], check=False)
        else:
            print(f"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID={name} RESULT={result}>", flush=True)


def ltp_report(item: session.Item) -> int:
    """kirk reads LTP's Summary block and exit code: print both."""
    v = item.verdict
    code = formats.LTP_EXIT[v.verdict]
    counts = {"passed": 0, "failed": 0, "broken": 0, "skipped": 0, "warnings": 0}
    counts[formats.LTP_COUNT[v.verdict]] += 1
    print(f"kpc {formats.ltp_safe(item.run_id)}: {v.verdict}" + (f": {formats.ltp_safe(v.reason)}" if v.reason else ""))
    for line in v.details[:20]:
        print(f"    {formats.ltp_safe(line)}")
    print("\nSummary:")
    for k, n in counts.items():
        print(f"{k:<9}{n}")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
