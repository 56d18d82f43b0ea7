#!/usr/bin/python3
"""kpc benchmark: prints figures, asserts nothing (targets are for people).

  1. per-run launcher overhead: the `noop` test probe run N times per flavor
     through `kpc-launch batch --jobs 1`; the launcher's own duration_ms per
     run (clone shim + namespaces + probe + reaping) and wall time / N.
     Target: under 5 ms per case-flavor on a 2-core machine.
  2. whole host suite wall time: `./kpc run --no-build` end to end (Python
     start-up, pytest, table loading, every case in every flavor).

Usage: bench/overhead.py [--runs N] [--suite-repeats N]   (build first: ./kpc run)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from kpc import paths  # noqa: E402

TARGET_MS = 5.0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def launcher_overhead(runs, flavors):
    status = json.loads(subprocess.run([paths.launcher(), "flavors"], capture_output=True, text=True).stdout)
    print(f"launcher overhead, noop probe, {runs} runs per flavor, --jobs 1")
    print(f"  {'flavor':<8} {'median':>8} {'p90':>8} {'max':>8} {'wall/run':>9}   target < {TARGET_MS:g} ms")
    for flavor in flavors:
        if status.get(flavor) != "ok":
            print(f"  {flavor:<8} unavailable: {status.get(flavor)}")
            continue
        results, wall, rc, err = benchlib.noop_batch(flavor, runs)
        bad = [r for r in results if r["outcome"] != "completed"]
        if rc != 0 or bad or len(results) != runs:
            print(f"  {flavor:<8} FAILED: rc={rc} {len(bad)} bad runs {err[-300:]}")
            continue
        d = [r["duration_ms"] for r in results]
        verdict = "met" if statistics.median(d) < TARGET_MS else "NOT met"
        print(f"  {flavor:<8} {statistics.median(d):7.2f}ms {pct(d, 90):7.2f}ms {max(d):7.2f}ms "
              f"{wall / runs:8.2f}ms   {verdict}")


def suite_wall(repeats):
    times = []
    for _ in range(repeats):
        verdicts, doc, rc, wall = benchlib.suite()
        times.append(wall)
        if rc not in (0, 1) or doc is None:
            print(f"suite run failed (exit {rc})")
            return
    print(f"whole host suite: {len(doc['results'])} case-flavor runs, ./kpc run wall time "
          f"median {statistics.median(times):.2f} s over {repeats} (min {min(times):.2f}, max {max(times):.2f}); "
          f"runs alone {doc['wall_s']:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="noop runs per flavor (default 200)")
    ap.add_argument("--suite-repeats", type=int, default=3, help="whole-suite repetitions (default 3)")
    args = ap.parse_args()
    if not os.path.exists(paths.launcher()):
        sys.exit(f"bench: {paths.launcher()} missing; build first with ./kpc run")
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs")
    launcher_overhead(args.runs, ["host", "pidns", "userns"])
    suite_wall(args.suite_repeats)


if __name__ == "__main__":
    main()
