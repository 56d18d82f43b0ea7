#!/usr/bin/python3
"""kpc benchmark: the whole suite on several Debian kernels under QEMU plus
the host, as one `./kpc run --kernels ...`. Prints figures, asserts nothing.

  per kernel   boot (QEMU start -> the guest's first frame: kernel boot,
               module loading, the guest's flavor check), suite (first frame
               -> the guest's last), wall (QEMU start -> QEMU gone), and the
               accelerator used
  host         the host suite runs meanwhile (its runs' summed durations)
  total        wall time of the whole command, including apt resolution and
               initramfs assembly (downloads are cached: run once before)

The target on a 2-core machine under TCG: 4 kernels + host in <= 60 s.

Usage: bench/matrix.py [--kernels 5.10,6.1,6.12,7.2] [--arch amd64,arm64] [--runs N] [--slow]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def once(kernels, slow, arch=None):
    with tempfile.TemporaryDirectory(prefix="kpc-bench-") as d:
        out = os.path.join(d, "r.json")
        cmd = [os.path.join(ROOT, "kpc"), "run", "--no-build", "--kernels", kernels, "--json", out]
        if slow:
            cmd.append("--slow")
        if arch:
            cmd += ["--arch", arch]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
        if not os.path.exists(out):
            sys.exit(f"kpc failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        with open(out) as f:
            return wall, json.load(f), proc.returncode


def fmt(x):
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", default="5.10,6.1,6.12,7.2")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--arch", help="the kernels' architectures (kpc run --arch), e.g. amd64,arm64")
    ap.add_argument("--slow", action="store_true", help="include slow cases (the FUSE request timeout: 15 s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpc-bench-") as d:   # never a fixed name in a shared /tmp
        subprocess.run([os.path.join(ROOT, "kpc"), "run", "--kernels", args.kernels,
                        *(["--arch", args.arch] if args.arch else []), "--case", "sigmask_survives_execve",
                        "--json", os.path.join(d, "warmup.json")],
                       capture_output=True, cwd=ROOT)  # fetch + build caches
    print(f"cpus {os.cpu_count()}; kernels {args.kernels}; slow cases {'on' if args.slow else 'off'}")
    for i in range(args.runs):
        wall, doc, rc = once(args.kernels, args.slow, args.arch)
        host = [r for r in doc["results"] if r["target"] == "host"]
        print(f"\nrun {i + 1}: exit {rc}, {len(doc['results'])} runs, totals {doc['totals']}")
        print(f"  {'kernel':<11} {'release':<30} {'accel':<5} {'boot s':>7} {'suite s':>8} {'wall s':>7} {'runs':>5}")
        for label, k in doc.get("kernels", {}).items():
            b = k.get("boot", {})
            n = sum(r["target"] == label for r in doc["results"])
            print(f"  {label:<11} {k['kernel']:<30} {b.get('accel', '-'):<5} {fmt(b.get('boot_s')):>7} "
                  f"{fmt(b.get('suite_s')):>8} {fmt(b.get('wall_s')):>7} {n:>5}"
                  + (f"  FAILED: {b['failure']}" if b.get("failure") else ""))
        print(f"  host        {doc['environment']['kernel']:<30} -     {'':>7} "
              f"{sum(r['duration_ms'] for r in host) / 1000:>8.2f} {'':>7} {len(host):>5}  (summed run durations)")
        print(f"  total wall {wall:.2f} s (kpc's own measure of the suite: {doc['wall_s']:.2f} s)")


if __name__ == "__main__":
    main()
