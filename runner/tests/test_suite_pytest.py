"""`python3 -m pytest runner/suite` is the suite under pytest itself (issue
24): from the checkout or any other directory, without PYTHONPATH, one test
per run id, with pytest's own node ids, -k, -x and --junitxml; `./kpc run`
is a front end over the same session and plugin (kpc/pytest_plugin.py)."""

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from kpc import cases, evaluate, paths

PYTHON = "/usr/bin/python3"
SUITE = os.path.join(paths.RUNNER, "suite")
ALL = cases.load_all()
CASE = "exit_status_low_8_bits"   # quick, every flavor, no variants


def run_ids(case):
    return [evaluate.run_id(case.id, v, f) for v in (case.variants or [""]) for f in case.flavors]


def pytest_suite(*args, cwd, env=None, timeout=300):
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KPC_EXPECTED_DIR", "KPC_CASES_DIR")}
    return subprocess.run([PYTHON, "-m", "pytest", *args, "--kpc-no-build"], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**clean, **(env or {})})


def junit(path):
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    cases_ = suite.findall("testcase")
    return suite, {c.get("name"): c for c in cases_}


def test_collect_only_lists_every_run_id_from_anywhere(built, tmp_path):
    r = pytest_suite(SUITE, "--collect-only", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    listed = re.findall(r"^test_suite\.py::(\S+)$", r.stdout, re.M)
    assert sorted(listed) == sorted(i for c in ALL.values() for i in run_ids(c))
    assert not list(tmp_path.iterdir()), "pytest wrote into the directory it was started from"


@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_k_one_case_with_junitxml(built, tmp_path, where):
    xml = tmp_path / "suite.xml"
    cwd = paths.ROOT if where == "checkout" else tmp_path
    suite = "runner/suite" if where == "checkout" else SUITE
    r = pytest_suite(suite, "-q", "-rs", "-k", CASE, "--junitxml", str(xml), cwd=cwd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    top, tests = junit(xml)
    want = run_ids(ALL[CASE])
    assert sorted(tests) == sorted(want) and int(top.get("tests")) == len(want)
    assert int(top.get("failures")) == 0 and int(top.get("errors")) == 0
    for name, tc in tests.items():
        assert tc.get("classname") == "test_suite"
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        # the verdict kpc gave is the outcome pytest reported
        assert props["verdict"] == ("skip" if tc.find("skipped") is not None else "pass"), (name, props)
    if os.geteuid() == 0:
        assert all(tc.find("skipped") is None for tc in tests.values()), r.stdout


def test_a_node_id_is_one_run(built):
    node = f"runner/suite/test_suite.py::{CASE}@host"
    r = pytest_suite(node, "-v", cwd=paths.ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(rf"^(runner/suite/)?test_suite\.py::{CASE}@host PASSED", r.stdout, re.M), r.stdout[-2000:]
    assert "1 passed" in r.stdout


def test_x_stops_at_the_first_failure(built, tmp_path):
    """A table that no longer matches makes every run of the case fail; -x
    ends the session at the first, and JUnit carries kpc's reason."""
    expected = tmp_path / "expected"
    shutil.copytree(paths.EXPECTED, expected, ignore=lambda d, names: [   # the tables: <area>/<id>.exp
        n for n in names if not n.endswith(".exp") and not os.path.isdir(os.path.join(d, n))])
    table = expected / ALL[CASE].area / f"{CASE}.exp"
    lines = table.read_text().splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if "exit_263.waitpid" in line and "exited 7" in line]
    if len(rows) != 1:
        pytest.fail(f"{table.name}: no single row 'exit_263.waitpid ... exited 7' for {CASE} (the language changed?)")
    lines[rows[0]] = lines[rows[0]].replace("exited 7", "exited 8")
    table.write_text("".join(lines))
    xml = tmp_path / "suite.xml"
    r = pytest_suite(SUITE, "-q", "-x", "-k", CASE, "--junitxml", str(xml), cwd=tmp_path,
                     env={"KPC_EXPECTED_DIR": str(expected)})
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    top, tests = junit(xml)
    assert int(top.get("tests")) == 1 and int(top.get("failures")) == 1, ET.tostring(top)[:3000]
    (tc,) = tests.values()
    failure = tc.find("failure")
    # pytest 8 (Debian 13) puts "Failed: " before pytest.fail()'s message; 7 does not.
    message = failure.get("message")
    assert re.match(r"(Failed: )?FAIL: ", message) and "exited 8" in message + (failure.text or ""), message
    assert "stopping after 1 failures" in r.stdout


def test_bad_input_is_a_usage_error_not_a_traceback(built, tmp_path):
    r = pytest_suite(SUITE, "--kpc-jobs", "0", cwd=tmp_path)
    assert r.returncode == 4 and "kpc: --kpc-jobs must be 1 to 1024" in r.stderr and "Traceback" not in r.stderr
    r = pytest_suite(SUITE, cwd=tmp_path, env={"KPC_CASES_DIR": "/nonexistent"})
    assert r.returncode == 4 and "kpc: /nonexistent: cannot read the cases" in r.stderr, r.stderr[-2000:]


def test_kpc_run_and_pytest_judge_the_same_runs_alike(built, tmp_path):
    """Both doors build the session the same way (commands.prepare) and
    write the same results file (commands.write_results): a case run by
    `./kpc run --case` and chosen by `pytest -k` gives the same run ids,
    verdicts and observations."""
    a, b = tmp_path / "kpc-run.json", tmp_path / "pytest.json"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KPC_EXPECTED_DIR", "KPC_CASES_DIR")}
    r = subprocess.run([os.path.join(paths.ROOT, "kpc"), "run", "--no-build", "--case", CASE, "--json", str(a)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=clean)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = pytest_suite(SUITE, "-q", "-k", CASE, "--kpc-json", str(b), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    import json
    from kpc import render

    def judged(path):
        doc = json.loads(path.read_text())
        return {render.run_id(x): (x["verdict"], x.get("observations")) for x in doc["results"]}

    got_run, got_pytest = judged(a), judged(b)
    assert sorted(got_run) == sorted(run_ids(ALL[CASE])) and got_run == got_pytest
    assert {v for v, _ in got_run.values()} == {"pass"} and all(obs for _, obs in got_run.values())


def test_an_unwritable_results_file_is_one_line_not_a_traceback(built, tmp_path):
    (tmp_path / "a-file").write_text("")
    r = pytest_suite(SUITE, "-q", "-k", CASE, "--kpc-json", str(tmp_path / "a-file" / "r.json"), cwd=tmp_path)
    assert "kpc: cannot write results:" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


XFAIL_REPORTS = r'''
import json, os, sys, types
sys.path.insert(0, sys.argv[1])
import pytest
from kpc import evaluate
from kpc.pytest_plugin import KpcPlugin, SUITE_FILE

verdicts = {"a@host": evaluate.Verdict("xfail", "known divergence R1", details=["detail D1"]),
            "b@host": evaluate.Verdict("fail", "mismatch R2", details=["detail D2"])}

class Session:
    items = [types.SimpleNamespace(run_id=rid, case=types.SimpleNamespace(id=rid[0], area="x"), flavor="host",
                                   variant="", target="host", runtime=None) for rid in verdicts]
    def start(self, items): pass
    def stop(self): pass
    def verdict(self, item): return verdicts[item.run_id]

class Record:
    out = {}
    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.out[report.nodeid.split("::")[-1]] = [report.outcome, report.longreprtext]

rec = Record()
pytest.main([SUITE_FILE, "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", os.path.dirname(SUITE_FILE)],
            plugins=[KpcPlugin(Session()), rec])
print("RESULT " + json.dumps(rec.out))
'''


def test_an_xfail_is_reported_by_its_verdict_not_a_traceback(tmp_path):
    """pytest shows a failure's text as kpc's verdict (pytest.fail with
    pytrace=False), and an xfail's the same way: not a traceback through
    pytest's frames, for which pytest parsed each frame's source file (most
    of `./kpc run`'s CPU time with 18 xfails)."""
    script = tmp_path / "xfail_reports.py"
    script.write_text(XFAIL_REPORTS)
    r = subprocess.run([PYTHON, str(script), paths.RUNNER], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(line[0][len("RESULT "):])
    assert out["a@host"][0] == "skipped" and out["b@host"][0] == "failed", out   # xfail is pytest's skipped
    for rid, reason in (("a@host", "known divergence R1"), ("b@host", "mismatch R2")):
        text = out[rid][1]
        assert reason in text, (rid, text)
        assert "raise_outcome" not in text and "pytest_plugin.py" not in text, (rid, text)
