#!/usr/bin/python3
"""kpc benchmark: how fast a FUSE deadlock becomes a verdict, and how fast
kpc cleans up after it. Prints figures, asserts nothing.

For each deadlocking case (fuse_self_served_exit, fuse_pidns_teardown_deadlock)
in each flavor, N runs through `./kpc run --no-build`:

  formed -> verdict   from the probe's "deadlock-armed" mark (taken just
                      before the exit that deadlocks, CLOCK_MONOTONIC) to the
                      launcher's hang verdict (same clock). A FUSE waiter no
                      task of the run can answer is a hang the moment a scan
                      sees it: bounded by one scan interval (100 ms); other
                      hangs need hang_ms (1000 ms) without progress.
  verdict -> clean    from the verdict to the whole tree reaped (abort the
                      FUSE connection, SIGKILL, reap; the launcher's
                      recovery_ms).

Usage: bench/fuse_hang.py [--runs N]   (root, /dev/fuse; build first: ./kpc run)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("fuse_self_served_exit", "fuse_pidns_teardown_deadlock")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per case and flavor (default 5)")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        sys.exit("bench/fuse_hang.py: needs root and /dev/fuse")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = os.path.join(tmp, f"{i}.json")
            cmd = [os.path.join(ROOT, "kpc"), "run", "--no-build", "--jobs", "1", "--json", out]
            for c in CASES:
                cmd += ["--case", c]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode not in (0, 1):
                sys.exit(p.stdout + p.stderr)
            for r in json.load(open(out))["results"]:
                h = r.get("hang")
                armed = (r.get("marks") or {}).get("deadlock-armed")
                if not h or not armed:
                    continue
                key = (r["case"] + (":" + r["variant"] if r["variant"] else ""), r["flavor"])
                rows.setdefault(key, []).append(((h["detected_mono_ns"] - armed["probe_mono_ns"]) / 1e6,
                                                 h["recovery_ms"], h["hang_threshold_ms"]))
    print(f"FUSE deadlock: formed -> hang verdict -> cleaned up, {args.runs} runs each, --jobs 1")
    print(f"  {'case':<44} {'flavor':<7} {'formed->verdict':>16} {'max':>7} {'verdict->clean':>15} {'max':>6}")
    for (case, flavor), vals in sorted(rows.items()):
        det = [v[0] for v in vals]
        rec = [v[1] for v in vals]
        print(f"  {case:<44} {flavor:<7} {statistics.median(det):>13.0f} ms {max(det):>4.0f} ms"
              f" {statistics.median(rec):>12.1f} ms {max(rec):>3.0f} ms")
    if not rows:
        print("  no hang observed (a kernel without the deadlock?)")
    else:
        print(f"  (recognised structurally -- a FUSE request no task can answer -- not by the {vals[0][2]} ms "
              f"no-progress threshold; target: verdict within 200 ms of the deadlock forming)")


if __name__ == "__main__":
    main()
