"""README's case list ("Cases by area") and course path ("For teachers: the
lab") are generated from the case metadata (runner/kpc/readme.py): a new
case or a changed summary or [lab] section is one command away from README,
`runner/update_readme.py`, and these tests fail until it has been run."""

import dataclasses
import os
import subprocess
import sys

from kpc import cases, lab, paths, readme

ALL = cases.load_all()
SCRIPT = os.path.join(paths.ROOT, readme.SCRIPT)


def _readme():
    with open(os.path.join(paths.ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_blocks_are_what_the_metadata_gives():
    have, want = readme.current(_readme()), readme.generated(ALL)
    for name in readme.BLOCKS:
        assert have[name] == want[name], \
            f"README.md's {name} is not what the case metadata gives: run {readme.SCRIPT} (and commit README.md)"


def test_the_case_list_names_every_case_with_its_summary():
    block = readme.current(_readme())["case list"]
    assert [line for line in block.splitlines() if line.startswith("- `")] == \
        [f"- `{c.id}` — {c.summary}" for c in sorted(ALL.values(), key=lambda c: (c.area, c.id))]


def test_the_course_path_is_kpc_list_course():
    block = readme.current(_readme())["course path"]
    order = [cid for _, ids in lab.course(ALL) for cid in ids]
    pos = [block.index(f"`{cid}`" if not cid.startswith("labs/") else f"`{cid}/`") for cid in order]
    assert pos == sorted(pos) and len(order) == len(ALL) + len(lab.exercise_names())


def test_a_metadata_change_shows_and_the_script_fixes_it(tmp_path):
    """The check can fail: a changed summary makes the README stale, and the
    script (on a copy) writes it back, leaving the rest of README alone."""
    case = ALL["zombie_until_waited"]
    changed = dict(ALL)
    changed[case.id] = dataclasses.replace(case, summary="A summary changed by hand")
    text = _readme()
    stale = readme.rewrite(text, changed)
    assert stale != text and "- `zombie_until_waited` — A summary changed by hand\n" in stale
    assert readme.rewrite(stale, ALL) == text

    copy = tmp_path / "README.md"
    copy.write_text(stale, encoding="utf-8")
    r = subprocess.run([sys.executable, SCRIPT, "--check", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "out of date: case list" in r.stdout and readme.SCRIPT in r.stdout
    r = subprocess.run([sys.executable, SCRIPT, str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "rewrote case list" in r.stdout, r.stderr
    assert copy.read_text(encoding="utf-8") == text
    r = subprocess.run([sys.executable, SCRIPT, "--check", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "up to date" in r.stdout


def test_a_readme_without_the_markers_is_refused(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text(_readme().replace(readme.end_marker("course path"), ""), encoding="utf-8")
    before = copy.read_text(encoding="utf-8")
    r = subprocess.run([sys.executable, SCRIPT, str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("kpc: README.md lacks the markers of the course path")
    assert copy.read_text(encoding="utf-8") == before and not os.path.exists(str(copy) + ".tmp")
