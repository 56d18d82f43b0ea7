"""Where things are. KPC_BUILD_DIR overrides the build directory,
KPC_EXPECTED_DIR the expected tables."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = os.path.join(ROOT, "cases")
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
