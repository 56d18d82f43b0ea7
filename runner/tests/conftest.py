"""Shared fixtures for kpc's own tests (./kpc selftest)."""

import os
import subprocess
import sys

import pytest

RUNNER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, RUNNER)

from kpc import cases, paths  # noqa: E402


def make_case(case_id="demo", area="signals", flavors=("host", "pidns", "userns"), variants=()):
    """A Case object without files, for table and evaluator tests."""
    return cases.Case(id=case_id, area=area, summary="demo case", metadata_path=f"/nonexistent/{case_id}.toml",
                      probe=case_id, args=[], flavors=list(flavors), variants=list(variants), timeout_s=5.0,
                      hang_ms=1000, exclusive=False, requires=cases.Requires(), flavor_notes={}, provenance={})


@pytest.fixture
def demo_cases():
    return {"demo": make_case(), "other": make_case("other", variants=("fork", "clone")),
            "fusey": make_case("fusey", area="fuse")}


@pytest.fixture
def write_table(tmp_path):
    """write_table('signals', text) -> the directory holding it."""
    def write(area, text):
        (tmp_path / f"{area}.exp").write_text(text)
        return str(tmp_path)
    return write


@pytest.fixture(scope="session")
def built():
    """The C++ side must already be built (./kpc selftest builds it first)."""
    if not os.path.exists(paths.launcher()):
        pytest.fail(f"{paths.launcher()} missing: run ./kpc selftest (it builds first)")
    return paths.build_dir()


def helper_probe(name):
    return os.path.join(paths.build_dir(), "testprobes", name)


def processes():
    """{pid: (ppid, state, comm)} for every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        out[int(entry)] = (int(fields[1]), fields[0], comm)
    return out


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
