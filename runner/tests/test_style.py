"""Habits the code keeps: clang-format's style (.clang-format) for C and
C++, flake8 (.flake8) for Python. Each test skips, naming the Debian
package, where the tool is not installed."""

import os
import shutil
import subprocess

import pytest

from kpc import paths

C_ENDINGS = (".cc", ".h", ".c")
PY_SCRIPTS = ("kpc", "labs/init-exercise")   # Python without a .py ending


def tracked(endings):
    """Every file of the checkout with one of ENDINGS: git's list where this
    is a git checkout, else a walk that leaves out build and cache trees."""
    if os.path.isdir(os.path.join(paths.ROOT, ".git")) and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z"], cwd=paths.ROOT, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    else:
        names = []
        for d, dirs, files in os.walk(paths.ROOT):
            dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("build", "cache")]
            names += [os.path.relpath(os.path.join(d, f), paths.ROOT) for f in files]
    return sorted(n for n in names if n.endswith(endings) and os.path.isfile(os.path.join(paths.ROOT, n)))


def test_cpp_is_clang_formatted():
    tool = shutil.which("clang-format")
    if tool is None:
        pytest.skip("clang-format is not installed (Debian package clang-format)")
    files = tracked(C_ENDINGS)
    assert len(files) > 100   # the probes, the library, the launcher
    r = subprocess.run([tool, "--dry-run", "-Werror", "--style=file", *files], cwd=paths.ROOT,
                       capture_output=True, text=True)
    wrong = sorted({line.split(":")[0] for line in r.stderr.splitlines() if ": error:" in line})
    assert r.returncode == 0 and not wrong, \
        f"not in .clang-format's style (fix: clang-format -i FILE): {wrong}\n{r.stderr[-3000:]}"


def test_python_passes_flake8():
    if shutil.which("flake8") is None:
        pytest.skip("flake8 is not installed (Debian package flake8)")
    files = tracked((".py",)) + [s for s in PY_SCRIPTS if os.path.exists(os.path.join(paths.ROOT, s))]
    assert len(files) > 50
    r = subprocess.run(["flake8", *files], cwd=paths.ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"flake8 (config: .flake8):\n{r.stdout[-4000:]}{r.stderr[-2000:]}"


@pytest.mark.parametrize("tool, bad, config", [
    ("clang-format", ("x.cc", "int  main( ) {return 0;}\n"), ".clang-format"),
    ("flake8", ("x.py", "import os\nx=1\n"), ".flake8"),
])
def test_the_checkers_see_a_violation(tmp_path, tool, bad, config):
    """The configs are read and the tools do complain: a badly laid out file
    beside a copy of the config fails."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool})")
    shutil.copy(os.path.join(paths.ROOT, config), tmp_path / config)
    (tmp_path / bad[0]).write_text(bad[1])
    cmd = [tool, "--dry-run", "-Werror", "--style=file", bad[0]] if tool == "clang-format" else [tool, bad[0]]
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True).returncode != 0
