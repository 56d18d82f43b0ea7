#!/usr/bin/python3
"""kpc benchmark: how often a Debian kernel boots cleanly under TCG, with
single-threaded TCG (what kpc uses) or QEMU's default multi-threaded TCG.
Each boot runs kpc's guest with an empty plan (boot, modules, flavor check,
power off). Prints figures, asserts nothing; a failed boot's whole console
goes to /tmp/kpc-tcg-boots/<kernel>-<mode>-<n>.log.

Why it exists: with multi-threaded TCG, Debian 7.2.13 oopsed while booting
("Oops: int3" in sched_clock_cpu during static-key patching) in about one
boot of nine on a 2-core host; single-threaded never did (images/README.md).

Usage: bench/tcg_boots.py KERNEL [BOOTS] [single|multi]    e.g. 7.2 40 multi
(KVM hosts: set KPC_ACCEL=tcg to measure TCG at all.)
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runner"))
from kpc import guest, kernels  # noqa: E402


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help") or len(args) > 3:
        sys.exit(__doc__)
    label = args[0]
    boots = int(args[1]) if len(args) > 1 else 20
    mode = args[2] if len(args) > 2 else "single"
    if mode not in ("single", "multi"):
        sys.exit(f"mode must be single or multi, not {mode!r}")
    kernel = kernels.fetch_debian([label])[0]
    guest.TCG_THREAD = mode
    logdir = "/tmp/kpc-tcg-boots"
    os.makedirs(logdir, exist_ok=True)
    failed, times, accel = [], [], "?"
    t0 = time.monotonic()
    for i in range(boots):
        r = guest.Guest(kernel, [], 1, lambda e: None).execute()
        accel = r.accel
        if r.failure or r.info is None:
            path = os.path.join(logdir, f"{label}-{mode}-{i}.log")
            with open(path, "w") as f:
                f.write("\n".join(line for _, line in r.console) + "\n")
            failed.append(i)
            print(f"boot {i}: FAILED: {r.failure} (console: {path})", flush=True)
        else:
            times.append(r.boot_s)
    print(f"{kernel.release} accel={accel} tcg-threads={mode}: {len(failed)}/{boots} boots failed; "
          f"boot to first frame median {statistics.median(times) if times else float('nan'):.2f} s; "
          f"wall {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
