#!/usr/bin/python3
"""kpc benchmark: are the verdicts the same every time? Prints figures,
asserts nothing (issue 16's targets are all "0").

  host      N consecutive `./kpc run` on this machine: how many runs (whole
            suites) have any verdict that differs from the first suite's, and
            which run ids flipped
  pairs     N pairs of concurrent `./kpc run` from two clean clones of this
            checkout: verdict differences against the first host suite, and
            results lost (a missing or unparsable results file)
  kernels   N x `./kpc run --kernels LIST --no-host`: suites whose verdicts
            differ from the first
  selftest  N x `./kpc selftest --no-build` alone, then N (or --selftest-beside M) beside a running
            `./kpc run` loop: how many were green

Usage: bench/stability.py [--host N] [--pairs N] [--kernels LIST] [--arch LIST] [--kernel-runs N]
                          [--selftest N] [--selftest-beside M]
A count of 0 skips that part. Defaults: --host 50 --pairs 10 --kernel-runs 0 --selftest 0.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import KPC, ROOT  # noqa: E402
from kpc import render  # noqa: E402


def suite(kpc=KPC, extra=(), cwd=ROOT):
    """One run: ({run_id: verdict} or None when the results were lost, exit code, wall s)."""
    verdicts, doc, rc, wall = benchlib.suite(extra, kpc=kpc, cwd=cwd)
    for r in (doc or {}).get("results", []):
        REASONS[render.run_id(r), r["verdict"]] = (r.get("reason") or "")[:300]
    return verdicts, rc, wall


REASONS = {}  # (run key, verdict) -> its reason, the last one seen: printed beside a flip


def show(k, base, other):
    """One flipped run: the verdicts and the reason of the odd one."""
    return f"{k}: {base.get(k)} -> {other.get(k)} ({REASONS.get((k, other.get(k)), '')})"


def flips(base, other):
    return sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))


def host(n):
    base, _, wall = suite()
    flipped, differing = {}, 0
    walls = [wall]
    for _ in range(n - 1):
        v, _, wall = suite()
        walls.append(wall)
        f = flips(base, v or {})
        differing += bool(f)
        for k in f:
            flipped[k] = flipped.get(k, 0) + 1
            print(f"  flip: {show(k, base, v or {})}", flush=True)
    print(f"host: {n} suites of {len(base)} runs; {differing} differ from the first; "
          f"wall {min(walls):.1f}-{max(walls):.1f} s")
    for k, c in sorted(flipped.items()):
        print(f"  flipped {c}x: {k}")
    return base


def clone(tmp, name):
    path = os.path.join(tmp, name)
    subprocess.run(["git", "clone", "-q", ROOT, path], check=True)
    # Reuse this checkout's build: the clones differ only in where they write.
    os.symlink(os.path.join(ROOT, "build"), os.path.join(path, "build"))
    return path


def pairs(n, base):
    tmp = tempfile.mkdtemp(prefix="kpc-pairs-")
    try:
        a, b = clone(tmp, "a"), clone(tmp, "b")
        differences = lost = 0
        for _ in range(n):
            res = {}
            threads = [threading.Thread(target=lambda c=c: res.__setitem__(c, suite(os.path.join(c, "kpc"), cwd=c)))
                       for c in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for c in (a, b):
                v, _, _ = res[c]
                if v is None:
                    lost += 1
                else:
                    f = flips(base, v)
                    differences += len(f)
                    for k in f:
                        print(f"  differs: {show(k, base, v)}", flush=True)
        print(f"pairs: {n} concurrent pairs from two clones; {differences} verdict differences, {lost} results lost")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def kernels(n, klist, arch=None):
    extra = ["--kernels", klist, "--no-host", *(["--arch", arch] if arch else [])]
    base, _, _ = suite(extra=extra)
    differing = 0
    for _ in range(n - 1):
        v, _, _ = suite(extra=extra)
        f = flips(base, v or {})
        differing += bool(f)
        for k in f:
            print(f"  flipped: {show(k, base, v or {})}", flush=True)
    print(f"kernels {klist}{' --arch ' + arch if arch else ''}: {n} suites of {len(base)} runs; "
          f"{differing} differ from the first")


def selftest(n, n_beside):
    """N selftests alone, then N_BESIDE beside a loop of host suites; each
    run's result as it ends, and the tail of a failing one's output."""
    def once(label, i, count, beside_a_run=False):
        t0 = time.monotonic()
        p = subprocess.run([KPC, "selftest", "--no-build"], capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
        summary = [ln for ln in p.stdout.splitlines() if " passed" in ln or " failed" in ln][-1:]
        beside = f" ({len(background_runs)} host suites beside it so far)" if beside_a_run else ""
        print(f"  selftest {label} {i}/{count}: {'green' if p.returncode == 0 else f'FAILED (exit {p.returncode})'} "
              f"in {wall / 60:.1f} min  {' '.join(summary)}{beside}", flush=True)
        if p.returncode != 0:
            tail = (p.stdout + p.stderr).splitlines()[-80:]
            print("\n".join("    | " + ln for ln in tail), flush=True)
        return p.returncode == 0
    background_runs = []
    alone = sum(once("alone", i + 1, n) for i in range(n))
    stop = threading.Event()

    def background():
        while not stop.is_set():
            _, rc, _ = suite()
            background_runs.append(rc)
    t = threading.Thread(target=background)
    t.start()
    try:
        beside = sum(once("beside a ./kpc run loop", i + 1, n_beside, beside_a_run=True) for i in range(n_beside))
    finally:
        stop.set()
        t.join()
    bad = [rc for rc in background_runs if rc not in (0, 1)]
    print(f"selftest: {alone}/{n} green alone, {beside}/{n_beside} green beside a running ./kpc run "
          f"({len(background_runs)} host suites beside them, {len(bad)} of them ended in error)")


def main():
    # SIGTERM (kill, a CI's timeout) unwinds like Ctrl-C: the run loop's
    # thread is stopped and joined and the temporary clones and results
    # directories are removed, not left in /tmp.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--kernels", default="5.10,6.1,6.12,7.2")
    ap.add_argument("--arch", help="--kernels' architectures, e.g. arm64 or amd64,arm64 (run once with --arch first: "
                                   "the suites use --no-build)")
    ap.add_argument("--kernel-runs", type=int, default=0)
    ap.add_argument("--selftest", type=int, default=0)
    ap.add_argument("--selftest-beside", type=int, help="how many beside a run (default: --selftest's count)")
    args = ap.parse_args()
    print(f"cpus {os.cpu_count()}; {time.strftime('%Y-%m-%d %H:%M')}")
    base = host(max(args.host, 1)) if args.host or args.pairs else None
    if args.pairs:
        pairs(args.pairs, base)
    if args.kernel_runs:
        kernels(args.kernel_runs, args.kernels, args.arch)
    beside = args.selftest if args.selftest_beside is None else args.selftest_beside
    if args.selftest or beside:
        selftest(args.selftest, beside)


if __name__ == "__main__":
    main()
