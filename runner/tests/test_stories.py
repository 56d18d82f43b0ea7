"""Incident provenance (issue 24): the public write-ups cases cite live in
cases/stories.toml, metadata names them by id (`stories = ["002"]`), every
output prints the citation, `kpc check` refuses an unknown id, and nothing
in the repository points outside it (a plain clone can follow every source)."""

import os
import re
import shutil
import subprocess

import pytest

from kpc import cases, paths

KPC = os.path.join(paths.ROOT, "kpc")
ALL = cases.load_all()
STORIES = cases.load_stories()
# Recorded runs are history (what a run printed then).
NOT_SCANNED = ("results/runs", "build", ".git", "images/cache")


def test_every_story_has_a_full_citation_and_is_cited():
    assert sorted(STORIES) == ["000", "001", "002", "003", "004"]
    for s in STORIES.values():
        assert s.title and s.author and s.publication and 1990 < s.year < 2100 and s.summary, s.id
        assert not s.url or s.url.startswith("https://"), s.id
        assert s.citation().startswith(f'{s.author}, "{s.title}", {s.publication}, {s.year}')
    cited = {s.id for c in ALL.values() for s in c.stories}
    assert cited == set(STORIES), f"stories no case cites: {sorted(set(STORIES) - cited)}"


def test_provenance_prints_the_citation_not_a_path():
    case = ALL["fuse_pidns_teardown_deadlock"]
    lines = case.provenance_lines()
    want = ('story 002: Tycho Andersen, "Debugging a FUSE deadlock in the Linux kernel", Netflix Technology Blog, '
            '2023, https://netflixtechblog.com/debugging-a-fuse-deadlock-in-the-linux-kernel-c75cd7989b6d')
    assert want in lines
    assert not any("shared" in line or ".txt" in line for c in ALL.values() for line in c.provenance_lines())


def test_kpc_explain_prints_the_citation():
    r = subprocess.run([KPC, "explain", "sig_ign_through_shell"], capture_output=True, text=True, cwd=paths.ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert '  story 001: Deepak (ndeepak.com), "The program that would not go away"' in r.stdout


def test_every_story_named_in_prose_exists():
    """'story 002' in a lab note, a probe's comment, metadata or README names
    a section of cases/stories.toml (and a note's case cites it)."""
    named = []
    for area in os.listdir(paths.CASES):
        d = os.path.join(paths.CASES, area)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.endswith((".md", ".toml", ".cc", ".c")):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    named += [(name, i) for i in re.findall(r"\b[Ss]tor(?:y|ies)\.? (\d{3})\b", f.read())]
    with open(os.path.join(paths.ROOT, "README.md"), encoding="utf-8") as f:
        named += [("README.md", i) for i in re.findall(r"\b[Ss]tory (\d{3})\b", f.read())]
    assert len(named) > 20
    assert [n for n in named if n[1] not in STORIES] == []
    for case in ALL.values():
        if os.path.exists(case.note_path):
            with open(case.note_path, encoding="utf-8") as f:
                in_note = set(re.findall(r"\b[Ss]tory (\d{3})\b", f.read()))
            # a note may mention a story in passing; the main one is cited
            if in_note and not in_note & {s.id for s in case.stories}:
                pytest.fail(f"{case.id}: its note tells story {sorted(in_note)}, its metadata cites none of them")


def test_nothing_points_outside_the_repository():
    found = []
    for top, dirs, files in os.walk(paths.ROOT):
        rel_top = os.path.relpath(top, paths.ROOT)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_top, d)) not in NOT_SCANNED
                   and not d.startswith("build-") and d != "__pycache__"]
        for name in files:
            rel = os.path.normpath(os.path.join(rel_top, name))
            if rel in NOT_SCANNED:
                continue
            try:
                with open(os.path.join(top, name), encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue   # images, archives
            found += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}" for m in re.finditer(r"\.\./shared/", text)]
    assert found == [], "paths outside the repository: " + ", ".join(found)


def test_unknown_story_is_refused_by_check(tmp_path):
    d = tmp_path / "cases"
    shutil.copytree(paths.CASES, d, ignore=lambda where, names: [n for n in names if n in ("lib", "helpers")])
    meta = d / "signals" / "sigmask_survives_execve.toml"
    meta.write_text(meta.read_text().replace('stories = ["000"]', 'stories = ["000", "999"]'))
    env = {k: v for k, v in os.environ.items() if k not in ("KPC_EXPECTED_DIR", "KPC_CASES_DIR")}
    r = subprocess.run([KPC, "check"], capture_output=True, text=True, cwd=paths.ROOT, timeout=120,
                       env={**env, "KPC_CASES_DIR": str(d)})
    assert r.returncode == 2
    assert r.stderr.startswith("kpc: ") and r.stderr.count("\n") == 1, r.stderr
    assert "provenance.stories: unknown story '999'" in r.stderr and "000, 001, 002, 003, 004" in r.stderr


@pytest.mark.parametrize("text, message", [
    ('["007"]\ntitle = "t"\nauthor = "a"\npublication = "p"\nsummary = "s"\n', "[007] needs year"),
    ('["007"]\ntitle = "t"\nauthor = "a"\npublication = "p"\nyear = "2020"\nsummary = "s"\n', "'007.year' must be int"),
    ('["007"]\ntitle = "t"\nauthor = "a"\npublication = "p"\nyear = 2020\nsummary = "s"\nurl = "/work/x.txt"\n',
     "url must be an https:// address"),
    ('["007"]\ntitle = "t"\nauthor = "a"\npublication = "p"\nyear = 2020\nsummary = "s"\npath = "x"\n',
     "unknown key path in [007]"),
])
def test_a_bad_stories_file_is_refused(tmp_path, text, message):
    (tmp_path / "stories.toml").write_text(text)
    with pytest.raises(cases.CaseError, match=re.escape(message)):
        cases.load_stories(str(tmp_path))


def test_a_bundle_carries_the_citations(tmp_path):
    """A bundle has no cases/stories.toml: cases.json carries the stories."""
    (tmp_path / cases.PRECOMPILED).write_text(cases.precompile(ALL))
    loaded = cases.load_all(str(tmp_path))
    assert loaded["engine_fuse_kill"].provenance_lines() == ALL["engine_fuse_kill"].provenance_lines()
    assert loaded["engine_fuse_kill"].stories == [STORIES["002"]]


def test_the_handout_tells_no_story_and_the_lab_reveal_does():
    """The story gives the answer away: not on the sheet; `kpc lab` prints
    it with the note, after the predictions (kpc/lab.py)."""
    r = subprocess.run([KPC, "handout", "sig_ign_through_shell"], capture_output=True, text=True, cwd=paths.ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ndeepak" not in r.stdout and "Story 001" not in r.stdout and "## Question" in r.stdout


def test_the_lab_reveal_cites_the_story():
    import io
    import types
    from kpc import evaluate, lab, tables
    case = ALL["sig_ign_through_shell"]
    ex = lab.prepare(case, tables.load(ALL), None, None)
    env = types.SimpleNamespace(kernel="6.1.0")
    for reveal in (True, False):
        out = io.StringIO()
        lab.report(ex, [], evaluate.Verdict("pass"), "host", env, out, reveal=reveal)
        told = 'Story 001: ' in out.getvalue() and '"The program that would not go away", ndeepak.com' in out.getvalue()
        assert told == reveal
