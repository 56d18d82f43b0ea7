"""pytest adapter: one test per case x variant x flavor.

`./kpc run` builds a Session and calls pytest.main() with this plugin; the
test function (runner/suite/test_suite.py) asks the session for its item's
verdict and turns it into a pytest outcome. The terminal output is ours (the
compact table), so pytest's own reporter is switched off by the caller.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from . import session


class KpcPlugin:
    def __init__(self, session, on_finish=None):
        self.session = session
        self.on_finish = on_finish
        self.collect_errors = []

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "kpc_item" in metafunc.fixturenames:
            items = self.session.items
            metafunc.parametrize("kpc_item", items, ids=[i.run_id for i in items])

    @pytest.fixture
    def kpc_session(self) -> session.Session:
        return self.session

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.session.start()

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
