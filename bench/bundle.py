#!/usr/bin/python3
"""kpc bundle benchmark: prints figures, asserts nothing.

  1. ./kpc bundle: build time, size of the tarball and unpacked.
  2. on this machine as the device under test, from the unpacked tarball:
     kpc/run (judged by the bundle's Python runner) and kpc/run --events
     FILE (no Python) followed by ./kpc evaluate FILE: wall time, runs,
     and whether the verdicts agree.
  3. with --lava: the LAVA job of runner/tests/test_lava.py (root,
     lava-dispatcher, the 6.1 kernel in kpc's cache): ramdisk size, lava-run
     wall time, results.

Usage: bench/bundle.py [--repeats N] [--lava]   (build first: ./kpc run)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runner"))
KPC = os.path.join(ROOT, "kpc")
PY = "/usr/bin/python3"


def timed(argv, **kw):
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    return time.monotonic() - t0, p


def verdicts(path):
    with open(path) as f:
        return {(r["case"], r["variant"], r["flavor"]): r["verdict"] for r in json.load(f)["results"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lava", action="store_true", help="also time the LAVA job (root, lava-dispatcher)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpc-bench-") as tmp:
        os.chmod(tmp, 0o700)
        tarball = os.path.join(tmp, "kpc-x86_64.tar.xz")
        dt, p = timed([PY, KPC, "bundle", "--no-build", "-o", tarball])
        if p.returncode:
            sys.exit(f"bench: ./kpc bundle failed: {p.stderr.strip()}")
        with tarfile.open(tarball) as tar:
            unpacked = sum(m.size for m in tar.getmembers())
            tar.extractall(tmp)
        print(f"bundle: {os.path.getsize(tarball) / 1e6:.2f} MB xz, {unpacked / 1e6:.1f} MB unpacked, "
              f"built in {dt:.1f} s")
        dut = os.path.join(tmp, "kpc", "run")
        walls, evwalls = [], []
        for i in range(args.repeats):
            dt, p = timed([dut, "--json", os.path.join(tmp, "dut.json")])
            walls.append(dt)
            events = os.path.join(tmp, f"ev{i}.jsonl")
            dt1, p1 = timed([dut, "--events", events])
            dt2, p2 = timed([PY, KPC, "evaluate", events, "--json", os.path.join(tmp, "ev.json")])
            evwalls.append((dt1, dt2))
            if p.returncode not in (0, 1) or p1.returncode or p2.returncode not in (0, 1):
                sys.exit(f"bench: a run failed: {p.stderr[-300:]} {p1.stderr[-300:]} {p2.stderr[-300:]}")
        runs = len(verdicts(os.path.join(tmp, "dut.json")))
        same = verdicts(os.path.join(tmp, "dut.json")) == verdicts(os.path.join(tmp, "ev.json"))
        print(f"kpc/run on this machine: {runs} runs, wall median {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}) over {args.repeats}")
        print(f"kpc/run --events: median {statistics.median(e for e, _ in evwalls):.2f} s; ./kpc evaluate: "
              f"median {statistics.median(v for _, v in evwalls):.2f} s; verdicts equal to kpc/run's: {same}")
        if args.lava:
            lava_job(tmp, tarball)


def lava_job(tmp, tarball):
    import yaml
    from kpc import guest, kernels, lava
    kernel = kernels.fetch_debian(["6.1"])[0]
    ramdisk = os.path.join(tmp, "ramdisk.cpio")
    size = lava.ramdisk(tarball, kernel, ramdisk)
    append = (f"console=ttyS0,115200 loglevel=6 panic=-1 oops=panic rdinit=/init hung_task_timeout_secs=0 nokaslr "
              f"reboot=t tsc_early_khz={guest.host_tsc_khz()}")
    with open(lava.DEFINITION) as f:
        job = lava.job(kernel.image, ramdisk, append, f.read())
    path = os.path.join(tmp, "job.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(job, f, sort_keys=False)
    out = os.path.join(tmp, "lava")
    os.mkdir(out)
    t0 = time.monotonic()
    rc, log = lava.run_job(path, out, 800000 + os.getpid() % 100000)
    wall = time.monotonic() - t0
    res = lava.results(log)
    print(f"LAVA job (QEMU TCG, kernel {kernel.release}): ramdisk {size / 1e6:.1f} MB, lava-run exit {rc}, "
          f"{wall:.1f} s, {len(res.get('0_kpc', {}))} results, job {res.get('lava', {}).get('job')}")


if __name__ == "__main__":
    main()
