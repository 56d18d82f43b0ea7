"""Shared fixtures for kpc's own tests (./kpc selftest)."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

RUNNER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, RUNNER)

from kpc import cases, paths  # noqa: E402


def _default_dispositions():
    """Tests start from the signal state a terminal gives: a selftest
    started in the background of a non-interactive shell (`cmd &`) inherits
    SIGINT and SIGQUIT ignored, and every demo, probe and workload the tests
    start would inherit that (five lab demos and the trap workload's test
    failed so, on code that was right). SIGPIPE and SIGXFSZ stay: Python
    ignores those itself, and subprocess restores them for its children."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ):
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        except (OSError, ValueError):
            pass


_default_dispositions()


def make_case(case_id="demo", area="signals", flavors=("host", "pidns", "userns"), variants=()):
    """A Case object without files, for table and evaluator tests."""
    return cases.Case(id=case_id, area=area, summary="demo case", metadata_path=f"/nonexistent/{case_id}.toml",
                      probe=case_id, args=[], flavors=list(flavors), variants=list(variants), timeout_s=5.0,
                      hang_ms=1000, exclusive=False, requires=cases.Requires(), flavor_notes={}, provenance={})


@pytest.fixture
def demo_cases():
    return {"demo": make_case(), "other": make_case("other", variants=("fork", "clone")),
            "fusey": make_case("fusey", area="fuse")}


def table_name(text):
    """The file a table's text goes in: <case>.exp of the case its first
    section names (demo.exp when it has none)."""
    m = re.search(r"^\[([a-z0-9_]+)", text, re.M)
    return (m.group(1) if m else "demo") + ".exp"


@pytest.fixture
def write_table(tmp_path):
    """write_table('signals', text) -> the directory holding the tables,
    laid out like cases/: the text in <area>/<case>.exp (table_name), or in
    <area>/NAME with name=NAME (e.g. 'area.exp')."""
    def write(area, text, name=None):
        d = tmp_path / "tables" / area
        d.mkdir(parents=True, exist_ok=True)
        (d / (name or table_name(text))).write_text(text)
        return str(tmp_path / "tables")
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


class Scope:
    """What one test starts, and only that. Another kpc run may be going on
    beside the test (a developer's, CI's, a second checkout's): a test never
    judges the whole machine. Its kpc processes get a private $TMPDIR
    (sticky and world-writable like /tmp, so runs as another user work too);
    the launcher and shims carry it in their environment, probes carry their
    run directory under it (KPC_TMPDIR), and whatever those start descends
    from them. Leftovers are found by that mark."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="kpc-test-")
        os.chmod(self.tmp, 0o1777)
        self._marks = (f"TMPDIR={self.tmp}\0".encode(), f"KPC_TMPDIR={self.tmp}/".encode())

    def env(self, **extra):
        return dict(os.environ, TMPDIR=self.tmp, **extra)

    def processes(self):
        """{pid: (ppid, state, comm)} of this test's processes: marked ones
        and everything they started (zombies and exec'd programs with an
        environment of their own included)."""
        every = processes()
        mine = set()
        for pid in every:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = b"\0" + f.read()
            except OSError:
                continue
            if any(b"\0" + m in env for m in self._marks):
                mine.add(pid)
        grew = True
        while grew:
            more = {pid for pid, (ppid, _, _) in every.items() if ppid in mine and pid not in mine}
            mine |= more
            grew = bool(more)
        return {pid: every[pid] for pid in mine}

    def fuse_mounts(self):
        """FUSE mounts under this test's $TMPDIR, as any process sees them."""
        out = set()
        for path in glob.glob("/proc/[0-9]*/mountinfo"):
            try:
                with open(path) as f:
                    for line in f:
                        fields = line.split()
                        fstype = line.split(" - ", 1)[1].split()[0] if " - " in line else ""
                        if (fstype in ("fuse", "fuseblk") or fstype.startswith("fuse.")) and \
                                fields[4].startswith(self.tmp + "/"):
                            out.add((fields[4], fstype))
            except OSError:
                continue
        return out

    def run_dirs(self):
        return set(glob.glob(os.path.join(self.tmp, "kpc-run.*")))

    def leftovers(self):
        """What the test's runs left: {} when nothing."""
        found = {"processes": self.processes(), "FUSE mounts": self.fuse_mounts(), "run directories": self.run_dirs()}
        return {k: v for k, v in found.items() if v}

    def settle(self, timeout=15.0):
        """Waits (a shim may still be finishing its cleanup) and returns the leftovers."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.leftovers():
            time.sleep(0.1)
        return self.leftovers()

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def scope():
    s = Scope()
    yield s
    s.close()


# kpc's own tests of what only root can do (a PID namespace, OCI runtimes,
# mknod, writing root's checkout) skip as another user, saying so; the rest
# run for everybody (a student's `./kpc selftest`).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes long (a real LAVA job); .ci/run runs it")
