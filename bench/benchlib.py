"""What the bench scripts share: one `./kpc run` read back as {run id:
verdict} (run ids as the launcher names them, render.run_id), and the noop
test probe through the launcher's batch mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KPC = os.path.join(ROOT, "kpc")
sys.path.insert(0, os.path.join(ROOT, "runner"))
from kpc import paths, render  # noqa: E402


def suite(extra: tuple | list = (), kpc: str = KPC, cwd: str = ROOT):
    """One `./kpc run --no-build EXTRA` into a private results file:
    ({run id: verdict} or None when the results were lost, the results
    document or None, exit code, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="kpc-bench-") as d:
        out = os.path.join(d, "r.json")
        t0 = time.monotonic()
        proc = subprocess.run([kpc, "run", "--no-build", *extra, "--json", out], capture_output=True, text=True,
                              cwd=cwd)
        wall = time.monotonic() - t0
        try:
            with open(out) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None, None, proc.returncode, wall
    return {render.run_id(r): r["verdict"] for r in doc["results"]}, doc, proc.returncode, wall


def noop_batch(flavor: str, runs: int):
    """The noop test probe RUNS times in FLAVOR through `kpc-launch batch
    --jobs 1`: (the launcher's results, wall ms, exit code, its stderr)."""
    noop = os.path.join(paths.build_dir(), "testprobes", "noop")
    plan = "".join(json.dumps({"run": f"n{i}", "case": "noop", "flavor": flavor, "argv": [noop],
                               "timeout_ms": 5000, "hang_ms": 1000}) + "\n" for i in range(runs))
    t0 = time.monotonic()
    out = subprocess.run([paths.launcher(), "batch", "--jobs", "1"], input=plan, capture_output=True, text=True)
    wall = (time.monotonic() - t0) * 1000
    results = [json.loads(line) for line in out.stdout.splitlines() if '"result"' in line]
    return results, wall, out.returncode, out.stderr
