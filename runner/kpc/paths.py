"""Where things are. KPC_BUILD_DIR overrides the build directory,
KPC_EXPECTED_DIR the expected tables, KPC_CASES_DIR the case metadata (the
probes are still built from cases/), KPC_CACHE_DIR the cache of kernels
and guest images (default images/cache/; CI keeps it outside the checkout
so downloads survive a clean clone)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# KPC_CASES_DIR: another copy of cases/ for the metadata (tests of bad metadata use it).
CASES = os.environ.get("KPC_CASES_DIR") or os.path.join(ROOT, "cases")
RESULTS = os.path.join(ROOT, "results")
# KPC_EXPECTED_DIR: try another set of expected tables (and the tests use it).
EXPECTED = os.environ.get("KPC_EXPECTED_DIR") or os.path.join(RESULTS, "expected")
RUNNER = os.path.join(ROOT, "runner")


def build_dir():
    return os.environ.get("KPC_BUILD_DIR") or os.path.join(ROOT, "build")


def probe_dir():
    return os.path.join(build_dir(), "probes")


def launcher():
    return os.path.join(build_dir(), "bin", "kpc-launch")


# Kernel packages, extracted kernels, initramfs images, kpc's apt lists.
CACHE = os.environ.get("KPC_CACHE_DIR") or os.path.join(ROOT, "images", "cache")
