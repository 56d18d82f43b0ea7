"""pytest adapter: the suite as pytest tests, one per run, named by its run
id (`case:variant@flavor`, evaluate.run_id), in runner/suite/test_suite.py.

Two ways in, one session (kpc/session.py) and this one plugin:

- `./kpc run` builds the Session from its options (cases, flavors,
  kernels, runtimes, targets) and calls pytest.main() with KpcPlugin;
  pytest's own reporter is switched off: kpc prints its table and writes
  its results file.
- `python3 -m pytest runner/suite` (runner/suite/conftest.py): the
  conftest builds the host Session, every case in every flavor, and
  registers the same plugin; pytest's selection (node ids, `-k`), `-x`,
  `--junitxml` and its reporter work as for any pytest suite.

Both prepare with commands.prepare and write kpc's results file with
commands.write_results (here: --kpc-json FILE).

Under pytest directly the runs start when collection is finished, after
pytest has deselected what `-k` leaves out: only the chosen runs are
launched. `./kpc run` has chosen its runs already and starts them before
pytest is imported (start() is then a no-op).
"""

from __future__ import annotations

import os
import sys

import pytest
from typing import Iterator

# pytest 6 (Debian 11) names a file by py.path (fspath=, the hook's path);
# 7 and later by pathlib (path=, module_path).
PYTEST_6 = int(pytest.__version__.split(".")[0]) < 7
SUITE_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "suite", "test_suite.py")


class RunItem(pytest.Item):
    """One run: its verdict from the session, as a pytest outcome."""

    def __init__(self, *, kpc_item, kpc_session, **kw):
        super().__init__(**kw)
        self.kpc_item, self.kpc_session = kpc_item, kpc_session
        case = kpc_item.case
        # -k matches these too: `-k "signals and not userns"`
        words = (case.id, case.area, kpc_item.flavor, kpc_item.variant, kpc_item.target,
                 kpc_item.runtime.name if kpc_item.runtime else "")
        self.extra_keyword_matches.update(w for w in words if w)

    def runtest(self) -> None:
        verdict = self.kpc_session.verdict(self.kpc_item)
        self.user_properties.append(("verdict", verdict.verdict))
        if verdict.reason:
            self.user_properties.append(("reason", verdict.reason))
        raise_outcome(verdict)

    def reportinfo(self) -> tuple[object, None, str]:
        return (self.fspath if PYTEST_6 else self.path), None, self.name

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None) -> object:
        """An xfail's text is its verdict's, like a failure's
        (pytest.fail(pytrace=False)): pytest would otherwise show the
        traceback through its own code, finding each frame's statement by
        parsing its source file (~50 ms of CPU an xfail; nobody reads it: pytest
        reports an xfail by its reason)."""
        if isinstance(excinfo.value, pytest.xfail.Exception):
            style = "value"
        return super().repr_failure(excinfo, style)


class SuiteFile(pytest.File):
    """runner/suite/test_suite.py: the session's runs, in its order."""

    def __init__(self, *, kpc_session, **kw):
        super().__init__(**kw)
        self.kpc_session = kpc_session

    def collect(self) -> Iterator[RunItem]:
        for item in self.kpc_session.items:
            yield RunItem.from_parent(self, name=item.run_id, kpc_item=item, kpc_session=self.kpc_session)


class KpcPlugin:
    def __init__(self, session, on_finish=None):
        self.session = session
        self.on_finish = on_finish
        self.collect_errors = []

    def _suite_file(self, path: object, parent: pytest.Collector) -> SuiteFile | None:
        """The suite's file is not a module of test functions: its tests
        are the session's runs."""
        if os.path.realpath(str(path)) != os.path.realpath(SUITE_FILE):
            return None
        if PYTEST_6:
            return SuiteFile.from_parent(parent, fspath=path, kpc_session=self.session)
        return SuiteFile.from_parent(parent, path=path, kpc_session=self.session)

    if PYTEST_6:   # Debian 11's pytest 6: the hook's argument is a py.path
        @pytest.hookimpl(tryfirst=True)
        def pytest_pycollect_makemodule(self, path: object, parent: pytest.Collector) -> SuiteFile | None:
            return self._suite_file(path, parent)
    else:
        @pytest.hookimpl(tryfirst=True)
        def pytest_pycollect_makemodule(self, module_path: object, parent: pytest.Collector) -> SuiteFile | None:
            return self._suite_file(module_path, parent)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            return
        chosen = [i.kpc_item for i in session.items if isinstance(i, RunItem)]
        self.session.start(chosen)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(str(report.longrepr))

    def pytest_internalerror(self, excrepr: object) -> None:
        sys.stderr.write(f"kpc: pytest internal error:\n{excrepr}\n")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.session.stop()
        for err in self.collect_errors:
            sys.stderr.write(f"kpc: collection error:\n{err}\n")
        if self.on_finish:
            self.on_finish()


def raise_outcome(verdict: str) -> None:
    """Map a kpc verdict onto pytest's outcomes."""
    v = verdict.verdict
    text = "\n".join([verdict.reason, *verdict.details])
    if v == "pass":
        return
    if v == "skip":
        pytest.skip(verdict.reason)
    if v == "xfail":
        pytest.xfail(verdict.reason)
    pytest.fail(f"{v.upper()}: {text}", pytrace=False)


# ---------------------------------------------------------------- python3 -m pytest runner/suite

def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kpc", "kpc suite (python3 -m pytest runner/suite)")
    group.addoption("--kpc-slow", action="store_true", help="also run the slow cases (./kpc run --slow)")
    group.addoption("--kpc-jobs", type=int, default=None, metavar="N",
                    help="runs at once (./kpc run --jobs; default: 8 per CPU, at most 64)")
    group.addoption("--kpc-no-build", action="store_true",
                    help="do not build first (./kpc run --no-build); the build must exist")
    group.addoption("--kpc-json", default=None, metavar="FILE",
                    help="write kpc's results file of the runs pytest chose (./kpc run --json); "
                         "kpc diff, report and evaluate read it")


def configure_direct(config: pytest.Config) -> None:
    """Without `./kpc run`: build (incrementally), then the session of
    every case on this machine, in every flavor; pytest selects from it.
    Bad input is a pytest usage error (exit 4) with kpc's one line."""
    if any(isinstance(p, KpcPlugin) for p in config.pluginmanager.get_plugins()):
        return   # ./kpc run brought its own session
    if config.option.help:
        return
    from . import build, cases, commands, messages, session
    jobs = config.getoption("kpc_jobs")
    jobs = min(8 * (os.cpu_count() or 2), 64) if jobs is None else jobs
    if not 1 <= jobs <= 1024:
        raise pytest.UsageError(f"kpc: --kpc-jobs must be 1 to 1024, got {jobs}")
    try:
        all_cases, tbl, env = commands.prepare(config.getoption("kpc_no_build"))
    except (build.BuildError, messages.InputError) as e:
        raise pytest.UsageError(f"kpc: {e}") from None
    sess = session.Session(all_cases, tbl, env, list(all_cases.values()), list(cases.FLAVORS), jobs=jobs,
                           slow=config.getoption("kpc_slow"))
    sess.progress.enabled = False   # pytest reports progress itself
    json_path = config.getoption("kpc_json")

    def write_results() -> None:
        if json_path:
            try:
                commands.write_results(sess, env, json_path)
            except OSError as e:
                sys.stderr.write(f"kpc: cannot write results: {e}\n")

    config.pluginmanager.register(KpcPlugin(sess, on_finish=write_results), "kpc")
