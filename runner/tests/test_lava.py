"""Proof on a real engine: LAVA's own dispatcher (Debian's lava-dispatcher,
installed here when missing; lava-run, no server) boots a Debian kernel from
kpc's cache under QEMU TCG with a single-archive ramdisk holding the bundle,
runs kpc's test definition (lava/kpc.yaml), and LAVA's results are one per
run with the verdicts of `./kpc run --kernels 6.1` on that kernel. Slow
(about 3 minutes: a guest suite, a bundle, a LAVA job); .ci/run runs it."""

import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import run
from kpc import formats, guest, guest_image, kernels, lava, paths

KPC = os.path.join(paths.ROOT, "kpc")
PY = "/usr/bin/python3"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="lava-run refuses to run unless root"),
              pytest.mark.skipif(shutil.which(guest.QEMU) is None or not os.path.exists(guest_image.BUSYBOX),
                                 reason="needs qemu-system-x86 and busybox-static")]


def ensure_lava():
    if shutil.which("lava-run"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "--no-install-recommends",
                        "lava-dispatcher"], capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0 and shutil.which("lava-run"), f"installing lava-dispatcher failed: {r.stderr[-2000:]}"


# Two areas, 212 runs (the FUSE hangs among them): the test definition's
# KPC_ARGS parameter set through the job, and a third of the suite's time
# under TCG, twice (the whole suite made this the slowest test, 3 min).
AREAS = ["--area", "signals", "--area", "fuse"]


def test_lava_job_reports_kpc_verdicts(tmp_path, built):
    ensure_lava()
    # the reference: kpc's own guest on the same kernel (also fetches it into the cache)
    ref = tmp_path / "ref.json"
    r = run([PY, KPC, "run", "--no-build", "--no-host", "--kernels", "6.1", *AREAS, "--json", str(ref)],
            timeout=1800)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    kernel = kernels.fetch_debian(["6.1"])[0]
    tarball = tmp_path / "kpc-x86_64.tar.xz"
    r = run([PY, KPC, "bundle", "--no-build", "-o", str(tarball)], timeout=900)
    assert r.returncode == 0, r.stderr
    ramdisk = tmp_path / "ramdisk.cpio"
    lava.ramdisk(str(tarball), kernel, str(ramdisk))
    append = (f"console=ttyS0,115200 loglevel=6 panic=-1 oops=panic rdinit=/init hung_task_timeout_secs=0 nokaslr "
              f"reboot=t tsc_early_khz={guest.host_tsc_khz()}")
    with open(lava.DEFINITION) as f:
        job = lava.job(kernel.image, str(ramdisk), append, f.read(), parameters={"KPC_ARGS": " ".join(AREAS)})
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job, sort_keys=False))
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.monotonic()
    rc, log = lava.run_job(str(job_path), str(out), 900000 + os.getpid() % 100000)
    wall = time.monotonic() - t0
    res = lava.results(log)
    assert rc == 0 and res.get("lava", {}).get("job") == "pass", f"job incomplete: {res.get('lava')}; log {log}"
    got = res.get("0_kpc", {})
    with open(ref) as f:
        want = dict(formats.lava_results(json.load(f)))
    assert len(got) == len(want) > 200                      # one LAVA test case per run
    assert {k: v for k, v in got.items() if want.get(k) != v} == {}
    print(f"LAVA job: {wall:.1f} s, {len(got)} results, ramdisk {ramdisk.stat().st_size / 1e6:.1f} MB")
