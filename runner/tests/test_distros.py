"""bench/distros.py's judgement of a suite (it runs for real in .ci/run:
README's two commands in fresh Debian rootfs): a row is green only when
both commands exited 0 and the run had no fail and no error."""

import importlib.util
import json
import os

import pytest

from kpc import paths

_spec = importlib.util.spec_from_file_location("distros", os.path.join(paths.ROOT, "bench", "distros.py"))
distros = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(distros)

LOG = """CASE  host
x     pass

totals: 210 pass, 0 fail, 9 xfail, 18 skip, 0 hang, 0 error  (237 runs in 10.68 s)
results: results/runs/last.json
"""


def test_totals_come_from_the_results_file_else_from_the_totals_line():
    doc = {"results": [{"verdict": "pass"}, {"verdict": "pass"}, {"verdict": "error"}]}
    assert distros.totals(json.dumps(doc), LOG) == {"pass": 2, "fail": 0, "xfail": 0, "skip": 0, "hang": 0,
                                                    "error": 1}
    assert distros.totals(None, LOG) == {"pass": 210, "fail": 0, "xfail": 9, "skip": 18, "hang": 0, "error": 0}
    assert distros.totals("not json", "kpc: cmake failed") is None


def test_pytest_summary_is_the_closing_line():
    log = "....F\n= 2 failed, 444 passed, 20 skipped in 239.35s (0:03:59) =\nkpc: selftest FAILED\n"
    assert distros.pytest_summary(log) == "2 failed, 444 passed, 20 skipped"
    assert distros.pytest_summary("kpc: missing packages") == ""
    build = "kpc: cmake --build /project/build --parallel 2 failed:\\n[1/275] Building CXX object ... in 3s\\n"
    assert distros.pytest_summary(build) == ""   # seen on Debian 13: the compiler's output became the row
    assert distros.first_complaint(build) == "kpc: cmake --build /project/build --parallel 2 failed:"
    assert len(distros.first_complaint("kpc: " + "x" * 500)) == 100


@pytest.mark.parametrize("row, ok", [
    ({"run_rc": 0, "selftest_rc": 0, "totals": {"pass": 3, "fail": 0, "error": 0}}, True),
    ({"run_rc": 0, "selftest_rc": 1, "totals": {"pass": 3, "fail": 0, "error": 0}}, False),   # selftest red
    ({"run_rc": 1, "selftest_rc": 0, "totals": {"pass": 3, "fail": 1, "error": 0}}, False),   # a fail
    ({"run_rc": 0, "selftest_rc": 0, "totals": {"pass": 3, "fail": 0, "error": 1}}, False),   # an error
    ({"run_rc": 2, "selftest_rc": 0, "totals": None}, False),                                 # no build
    ({"run_rc": None, "selftest_rc": None, "totals": None}, False),                           # never ran
])
def test_green_needs_both_commands_and_no_fail_or_error(row, ok):
    assert distros.green(row) is ok


def test_the_table_has_a_row_per_suite_with_versions_and_verdicts():
    rows = [{"suite": "bullseye", "glibc": "2.31", "python": "3.9.2", "gxx": "10.2.1", "run_rc": 0, "selftest_rc": 0,
             "totals": {"pass": 201, "fail": 0, "xfail": 18, "skip": 18, "hang": 0, "error": 0},
             "selftest": "444 passed, 20 skipped", "run_s": 300.0, "selftest_s": 245.5, "wall_s": 600.0},
            {"suite": "sid", "run_rc": 2, "selftest_rc": None, "totals": None, "problem": ["mmdebstrap failed"],
             "wall_s": 5.0}]
    for r in rows:
        r["green"] = distros.green(r)
    lines = distros.table(rows).splitlines()
    assert lines[0].split()[:4] == ["SUITE", "GLIBC", "PYTHON", "G++"]
    assert "bullseye  2.31" in lines[1] and "exit 0: 201 pass, 18 xfail, 18 skip" in lines[1]
    assert "exit 0: 444 passed, 20 skipped" in lines[1] and "5m00s" in lines[1] and lines[1].endswith("green")
    assert lines[2].startswith("sid") and "RED (mmdebstrap failed)" in lines[2]


def test_bad_usage_is_exit_2(capsys):
    assert distros.main(["bookworm;rm"]) == 2
    assert "is not a Debian suite name" in capsys.readouterr().err


# ------------------------------------------------------------ Python 3.9 and up

def _kpc_with(prelude, *args):
    """./kpc's own file run by this Python after `prelude` (what an older
    or barer interpreter would look like), as an ordinary user would."""
    import subprocess
    import sys
    code = (f"import sys, os\n{prelude}\nsys.argv = ['kpc', *{list(args)!r}]\n"
            f"exec(compile(open({os.path.join(paths.ROOT, 'kpc')!r}).read(), 'kpc', 'exec'), "
            f"{{'__name__': '__main__', '__file__': {os.path.join(paths.ROOT, 'kpc')!r}}})")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_an_old_python_is_one_line_naming_the_minimum_and_exit_2():
    p = _kpc_with("sys.version_info = (3, 8, 10, 'final', 0)", "list")
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("kpc: needs Python 3.9 or newer")
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_without_any_toml_parser_one_line_names_the_package():
    # Python 3.9/3.10 without python3-tomli or python3-toml, not root (root installs one)
    p = _kpc_with("for m in ('tomllib', 'tomli', 'toml'): sys.modules[m] = None\nos.geteuid = lambda: 1000", "list")
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "python3-tomli" in p.stderr and "Traceback" not in p.stderr


def test_the_old_toml_parser_reads_every_case_like_tomllib(monkeypatch):
    """Debian 11 has only python3-toml (toml 0.10): where it is installed,
    every case file must read the same as with tomllib."""
    toml = pytest.importorskip("toml", reason="python3-toml is not installed (Debian 11's TOML parser)")
    import glob
    tomllib = pytest.importorskip("tomllib")
    files = glob.glob(os.path.join(paths.ROOT, "cases", "*", "*.toml")) + [os.path.join(paths.CASES, "stories.toml")]
    assert len(files) > 30
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        assert toml.loads(text) == tomllib.loads(text), f
