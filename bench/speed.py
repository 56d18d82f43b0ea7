#!/usr/bin/python3
"""kpc benchmark: issue 22's four speed figures, each beside its target, and
kpc's rate beside LTP's. Prints figures, asserts nothing.

  host suite     `./kpc run --no-build` (default options) N times: median wall,
                 and CPU time (the floor of the wall is CPU time / CPUs);
                 and whether one `--jobs 1` suite gives the same verdicts
                 target <= 2 s on 2 cores
  deadlock       FUSE deadlock formed -> hang verdict (bench/fuse_hang.py's
                 measure, both deadlocking cases, every flavor): the worst
                 median                                     target <= 200 ms
  matrix         `./kpc run --kernels 5.10,6.1,6.12,7.2` (the host too): wall
                 target <= 20 s (TCG, 2 cores)
  launcher       the noop test probe through `kpc-launch batch --jobs 1`,
                 minus the same probe spawned and waited for directly: what
                 the launcher adds per run, median          target <= 1 ms

  rate           catalogue behaviours observed per second of wall time: kpc's
                 host suite and matrix (bench/coverage.py's count), LTP's as
                 issue 22 quotes it (LTP is not installed here; the figures are
                 the issue author's measurement on this machine: 220 s for its
                 tests of these areas, 27 s without the fork stress tests; 48
                 catalogue behaviours, as runner/kpc/catalogue.py scores LTP)

Usage: bench/speed.py [--repeats N] [--no-matrix] [--kernels LIST]   (build first: ./kpc run)
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import ROOT  # noqa: E402
from kpc import cases, paths  # noqa: E402
from kpc.catalogue import CATALOGUE  # noqa: E402

# Issue 22's measurement of LTP on this machine (LTP is not installed here).
LTP = {"behaviours": sum(1 for b in CATALOGUE.values() if b.score("LTP")), "wall_s": 220.0,
       "wall_s_without_fork_stress": 27.0}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def suite(extra, cpu=None):
    """Wall seconds and verdicts of one ./kpc run; CPU seconds (user+sys of
    kpc and of everything it started) appended to the list CPU."""
    c0 = children_cpu()
    verdicts, _, rc, wall = benchlib.suite(extra)
    if cpu is not None:
        cpu.append(children_cpu() - c0)
    if rc not in (0, 1) or verdicts is None:
        sys.exit(f"bench/speed.py: ./kpc run {' '.join(extra)} failed (exit {rc})")
    return wall, verdicts


def host_suite(repeats):
    walls, cpus, first = [], [], None
    for _ in range(repeats):
        wall, verdicts = suite([], cpus)
        walls.append(wall)
        first = first or verdicts
    _, serial = suite(["--jobs", "1"])
    differ = sorted(k for k in first if serial.get(k) != first[k])
    return statistics.median(walls), min(walls), max(walls), len(first), differ, statistics.median(cpus)


def deadlock():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "fuse_hang.py"), "--runs", "3"],
                       capture_output=True, text=True, cwd=ROOT)
    medians = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0].startswith("fuse_") and parts[3] == "ms":
            medians.append(float(parts[2]))
    return max(medians) if medians else None, len(medians)


def launcher_added(runs=200):
    noop = os.path.join(paths.build_dir(), "testprobes", "noop")
    direct = []
    for _ in range(runs):
        t0 = time.monotonic()
        pid = os.posix_spawn(noop, [noop], {}, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                                             (os.POSIX_SPAWN_DUP2, 1, 2)])
        os.waitpid(pid, 0)
        direct.append((time.monotonic() - t0) * 1000)
    results, _, _, _ = benchlib.noop_batch("host", runs)
    through = [r["duration_ms"] for r in results]
    if len(through) != runs:
        return None, None, None
    return statistics.median(through), statistics.median(direct), statistics.median(through) - statistics.median(direct)


def matrix(kernels):
    wall, verdicts = suite(["--kernels", kernels])
    return wall, len(verdicts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="host suites to take the median of (default 5)")
    ap.add_argument("--no-matrix", action="store_true", help="skip the four-kernel matrix (about 1-2 minutes)")
    ap.add_argument("--kernels", default="5.10,6.1,6.12,7.2")
    args = ap.parse_args()
    if not os.path.exists(paths.launcher()):
        sys.exit(f"bench/speed.py: {paths.launcher()} missing; build first with ./kpc run")
    covered = len({b for c in cases.load_all().values() for b in c.catalogue})
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs; load {load:.1f} at the start "
          f"(figures from a loaded machine are not the machine's)")
    print(f"  {'figure':<44} {'measured':>12} {'target':>10}  met")
    med, lo, hi, n, differ, cpu = host_suite(args.repeats)
    print(f"  {'host suite wall, median of %d (%d runs)' % (args.repeats, n):<44} {med:>10.2f} s "
          f"{'<= 2 s':>10}  {'yes' if med <= 2 else 'no'}   (min {lo:.2f}, max {hi:.2f})")
    # What the wall cannot go below with every CPU busy: CPU time / CPUs.
    print(f"  {'  its CPU time (kpc, launcher, probes), median':<44} {cpu:>10.2f} s {'':>10}       "
          f"(/ {os.cpu_count()} CPUs = {cpu / (os.cpu_count() or 1):.2f} s)")
    print(f"  {'  verdicts equal to a --jobs 1 suite':<44} {len(differ):>8} diff {'0':>10}  "
          f"{'yes' if not differ else 'no: ' + ', '.join(map(str, differ[:5]))}")
    worst, rows = deadlock()
    if worst is None:
        print(f"  {'deadlock -> hang verdict':<44} {'not measured (needs root, /dev/fuse)':>24}")
    else:
        print(f"  {'deadlock -> hang verdict, worst median of %d' % rows:<44} {worst:>9.0f} ms "
              f"{'<= 200 ms':>10}  {'yes' if worst <= 200 else 'no'}")
    m_wall = None
    if not args.no_matrix:
        m_wall, m_runs = matrix(args.kernels)
        print(f"  {'matrix %s + host (%d runs)' % (args.kernels, m_runs):<44} {m_wall:>10.2f} s "
              f"{'<= 20 s':>10}  {'yes' if m_wall <= 20 else 'no'}")
    through, direct, added = launcher_added()
    if added is None:
        print(f"  {'launcher: added per run':<44} {'failed':>12}")
    else:
        print(f"  {'launcher: added per run, median':<44} {added:>9.2f} ms {'<= 1 ms':>10}  "
              f"{'yes' if added <= 1 else 'no'}   (noop {through:.2f} ms through it, {direct:.2f} ms direct)")
    print(f"\nrate: catalogue behaviours observed per second of wall time ({covered} for kpc, "
          f"{LTP['behaviours']} for LTP)")
    print(f"  kpc host suite        {covered / med:>7.1f} /s   ({med:.2f} s)")
    if m_wall:
        targets = len(args.kernels.split(",")) + 1
        print(f"  kpc matrix            {covered * targets / m_wall:>7.1f} /s   ({targets} kernels x {covered} in "
              f"{m_wall:.1f} s)")
    print(f"  LTP (issue 22)        {LTP['behaviours'] / LTP['wall_s']:>7.2f} /s   ({LTP['wall_s']:.0f} s; "
          f"{LTP['behaviours'] / LTP['wall_s_without_fork_stress']:.2f} /s without its fork stress tests, "
          f"{LTP['wall_s_without_fork_stress']:.0f} s)")
    print(f"  ratio kpc host / LTP  {covered / med / (LTP['behaviours'] / LTP['wall_s']):>7.0f}x   "
          f"({covered / med / (LTP['behaviours'] / LTP['wall_s_without_fork_stress']):.0f}x without LTP's fork "
          f"stress)")


if __name__ == "__main__":
    main()
