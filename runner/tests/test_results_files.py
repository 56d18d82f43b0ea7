"""Untrusted results files and the files kpc writes (security audit §6, §9,
§10, §11): every malformed input of the audit's table is one line and exit
2, every string is escaped in every format, writers never follow a planted
symbolic link, two runs in one checkout never lose results, two builds take
turns."""

import fcntl
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import types
import xml.etree.ElementTree as ET

import pytest

from conftest import run, needs_root
from kpc import evaluate, paths, render, report, safefile
from test_cli import KPC, kpc

EVIDENCE = "/work/shared/research/security-evidence"


def _r(case="sigmask_survives_execve", verdict="pass", **kw):
    r = {"case": case, "area": "signals", "variant": "", "flavor": "host", "kernel": "6.1.0", "target": "host",
         "runtime": "none", "profile": "none", "verdict": verdict, "observations": {"exec.blocked": "SIGUSR1"},
         "expected": {"exec.blocked": {"value": "SIGUSR1", "where": "signals.exp:3", "xfail": False, "reason": ""}},
         "reason": "", "duration_ms": 1.5}
    r.update(kw)
    return r


def _doc(results=None, **top):
    doc = {"schema": 1, "created": "2026-12-01T00:00:00+00:00", "environment": {"kernel": "6.1.0", "distro": "X"},
           "results": [_r()] if results is None else results}
    doc.update(top)
    return doc


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


def _deep(n=100_000):
    return '{"results": ' + "[" * n + "]" * n + "}"


def _gzip_bomb(path, megabytes=300, chunk=b" " * (1 << 20)):
    """A .json.gz of ~300 KB holding 300 MB of JSON (valid: blanks in an
    empty list), written in chunks so the test itself stays small."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b'{"results": [], "x": [')
        for _ in range(megabytes):
            f.write(chunk)
        f.write(b"[]]}")


def _list_bomb(path):
    """30 MB of '[],' in 100 KB of gzip: 10 million empty lists, 750 MB
    once parsed, under the size limit."""
    _gzip_bomb(path, 30, b"[]," * 349525)


# The audit's table (§11) by number: what goes in the file, then the
# commands it was tried with. A file is JSON text (str), bytes, or a
# function writing PATH. {f} is the file, {good} a valid results file,
# {out} an output path in tmp_path.
REPORT_HTML = ("report", "{f}", "--html", "{out}")
REPORT_TAP = ("report", "{f}", "--tap", "{out}")
REPORT_MD = ("report", "{f}", "--markdown", "{out}")
MERGE = ("merge", "{good}", "{f}", "-o", "{out}")
DIFF = ("diff", "{good}", "{f}")
INPUTS = {
    1: ("a result that is an int", json.dumps({"results": [1]}), [REPORT_HTML]),
    2: ("a result {}", json.dumps(_doc([{}])), [REPORT_HTML, MERGE, DIFF]),
    3: ("a result without verdict", json.dumps(_doc([_without(_r(), "verdict")])),
        [REPORT_HTML, REPORT_TAP, MERGE, DIFF]),
    4: ("reason: 5", json.dumps(_doc([_r(reason=5)])), [REPORT_HTML]),
    5: ("a failing result, reason a list", json.dumps(_doc([_r(verdict="fail", reason=["a", "b"])])),
        [REPORT_HTML, REPORT_MD]),
    6: ("environment: []", json.dumps(_doc(environment=[])), [REPORT_HTML, REPORT_MD, MERGE]),
    7: ("created: 5", json.dumps(_doc(created=5)), [REPORT_HTML]),
    8: ("100 000 nested lists", _deep(), [REPORT_HTML, MERGE, DIFF]),
    9: ("merged_from without file", json.dumps(_doc(merged_from=[{"nofile": 1}])), [REPORT_HTML]),
    10: ("target: 5", json.dumps(_doc([_r(target=5)])), [REPORT_HTML, MERGE]),
    11: ("kernels: []", json.dumps(_doc(kernels=[])), [MERGE]),
    12: ("duration_ms: NaN", json.dumps(_doc()).replace('"duration_ms": 1.5', '"duration_ms": NaN'),
         [REPORT_HTML, MERGE]),
    13: ("a run id twice (fail, then pass)", json.dumps(_doc([_r(verdict="fail", reason="REAL FAILURE"), _r()])),
         [("diff", "{good}", "{f}")]),
    14: ("verdict FAIL", json.dumps(_doc([_r(verdict="FAIL")])), [DIFF]),
    15: ("a verdict that is HTML", json.dumps(_doc([_r(verdict="<img src=x onerror=\"document.body.dataset."
                                                               "pwned='verdict-xss'\">")])),
         [REPORT_HTML, MERGE, ("report", "{out}.merged.json", "--html", "{out}")]),
    17: ("a case id ending in # TODO", json.dumps(_doc([_r(case="sigmask_survives_execve # TODO",
                                                           verdict="fail")])), [REPORT_TAP]),
    18: ("a case id with a backtick and <img>",
         json.dumps(_doc([_r(case="x` <img src=https://attacker.example/pixel.png> @octocat `y", verdict="fail")])),
         [REPORT_MD]),
    21: ("300 KB of gzip, 300 MB of JSON", _gzip_bomb, [("report", "{f}.gz", "--tap", "{out}")]),
    111: ("100 KB of gzip, 10 million empty lists", _list_bomb, [("report", "{f}.gz", "--tap", "{out}")]),
    22: ("results: 'abc'", json.dumps({"results": "abc"}), [REPORT_HTML]),
    23: ("a top-level list", json.dumps([_r()]), [REPORT_HTML]),
    24: ("invalid UTF-8", b'{"results": [], "created": "\xff\xfe"}', [REPORT_HTML]),
    25: ("an empty file", "", [REPORT_HTML]),
    26: ("a truncated .json.gz", lambda p: open(p, "wb").write(gzip.compress(json.dumps(_doc()).encode())[:40]),
         [("report", "{f}.gz", "--tap", "{out}")]),
    27: ("a file that does not exist", None, [("report", "/nonexistent.json", "--tap", "{out}")]),
    28: ("--html /", json.dumps(_doc()), [("report", "{f}", "--html", "/")]),
    29: ("-o /proc/version", json.dumps(_doc()), [("merge", "{f}", "-o", "/proc/version")]),
    30: ("no output option", json.dumps(_doc()), [("report", "{f}")]),
    # more of the same kind, found while fixing the above
    101: ("Infinity", json.dumps(_doc()).replace('"duration_ms": 1.5', '"duration_ms": -Infinity'), [MERGE]),
    102: ("1e999 (parses as inf)", json.dumps(_doc()).replace('"duration_ms": 1.5', '"duration_ms": 1e999'),
          [MERGE, REPORT_HTML]),
    103: ("an unpaired surrogate", json.dumps(_doc([_r(reason="\ud800")])), [REPORT_HTML, DIFF]),
    104: ("an integer of 5000 digits", json.dumps(_doc()).replace('"duration_ms": 1.5', '"duration_ms": ' + "9" * 5000),
          [REPORT_TAP]),
    105: ("hang.tasks[].stack a string", json.dumps(_doc([_r(verdict="hang", hang={"tasks": [{"stack": "x"}]})])),
          [REPORT_HTML]),
    106: ("an observation that is a list", json.dumps(_doc([_r(observations={"k": [1]})])), [REPORT_HTML]),
    107: ("a directory", lambda p: os.mkdir(p), [REPORT_TAP, DIFF]),
    108: ("a deep but finite object", '{"results": [], "x": ' + "[" * 40 + "]" * 40 + "}", [MERGE]),
    109: ("expected row xfail a string", json.dumps(_doc([_r(expected={"k": {"xfail": "yes"}})])), [REPORT_HTML]),
    110: ("two files with runs under the same runtime", json.dumps(_doc([_r(runtime="tini")])),
          [("merge", "{f}", "{f}", "-o", "{out}")]),
}
CASES = [pytest.param(n, i, id=f"{n}-{INPUTS[n][0]}-{' '.join(c[:1])}-{i}")
         for n in INPUTS for i, c in enumerate(INPUTS[n][2])]


def _materialize(tmp_path, n):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc([_r(), _r(case="other")])))
    f = tmp_path / f"input{n}.json"
    content = INPUTS[n][1]
    if callable(content):
        target = f"{f}.gz" if any("{f}.gz" in c for c in INPUTS[n][2]) else str(f)
        content(target)
    elif isinstance(content, bytes):
        f.write_bytes(content)
    elif content is not None:
        f.write_text(content)
    return {"f": str(f), "good": str(good), "out": str(tmp_path / "out")}


@pytest.mark.parametrize("n,i", CASES)
def test_a_malformed_results_file_is_one_line_and_exit_2(tmp_path, n, i):
    names = _materialize(tmp_path, n)
    cmds = INPUTS[n][2]
    if cmds[i][1] == "{out}.merged.json":
        # #15 through `kpc merge` first (the CI report job's path)
        kpc("merge", names["good"], names["f"], "-o", names["out"] + ".merged.json")
    argv = [a.format(**names) for a in cmds[i]]
    r = kpc(*argv)
    lines = r.stderr.splitlines()
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-2000:]
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    assert len(lines) == 1 and lines[0].startswith("kpc: "), r.stderr
    assert r.stdout == ""
    assert not os.path.exists(names["out"]), "an output was written from a bad input"


def test_a_malformed_file_names_the_file_and_what_is_wrong(tmp_path):
    names = _materialize(tmp_path, 14)
    r = kpc("diff", names["good"], names["f"])
    assert r.stderr == (f"kpc: {names['f']}: results[0].verdict is 'FAIL', not one of pass, fail, xfail, skip, "
                        "hang, error\n")
    names = _materialize(tmp_path, 13)
    r = kpc("diff", names["good"], names["f"])
    assert r.stderr == (f"kpc: {names['f']}: run 'sigmask_survives_execve@host' appears twice "
                        "(results[0] and results[1])\n")
    names = _materialize(tmp_path, 8)
    r = kpc("report", names["f"], "--tap", "-")
    assert "nested deeper than 32 levels" in r.stderr


def test_the_audits_duplicate_id_files_are_an_error_not_a_silent_pass():
    """dup_new.json: a fail ('REAL FAILURE') then a pass of the same run;
    kpc diff said '0 changed, 0 regressions' and exit 0."""
    old, new = os.path.join(EVIDENCE, "dup_old.json"), os.path.join(EVIDENCE, "dup_new.json")
    if not os.path.exists(new):
        pytest.skip(f"{EVIDENCE} is not on this machine")
    r = kpc("diff", old, new)
    assert r.returncode == 2 and "appears twice" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = kpc("report", os.path.join(EVIDENCE, "xss_verdict.json"), "--html", "-")
    assert r.returncode == 2 and "not one of pass" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("make,says", [(_gzip_bomb, "MiB of JSON once decompressed"),
                                       (_list_bomb, "JSON values")])
def test_a_gzip_bomb_stops_early_and_small(tmp_path, make, says):
    """#21: 300 KB of gzip made `kpc report` use 640 MB; reading now stops
    at MAX_BYTES of text, and at MAX_VALUES values (small text can parse
    into many objects)."""
    bomb = tmp_path / "bomb.json.gz"
    make(bomb)
    assert bomb.stat().st_size < 1 << 20
    err = tmp_path / "err"
    pid = os.fork()
    if pid == 0:   # the child: wait4 gives its own peak RSS, not the test's
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT, 0o600), 2)
            os.chdir(paths.ROOT)
            os.execv(KPC, [KPC, "report", str(bomb), "--tap", "-"])
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    text = err.read_text()
    assert os.waitstatus_to_exitcode(status) == 2 and text.startswith("kpc: ") and len(text.splitlines()) == 1, text
    assert says in text
    assert usage.ru_maxrss < 300 * 1024, f"kpc report used {usage.ru_maxrss // 1024} MB on a gzip bomb"


# ---------------------------------------------------------------- "handled"

def test_control_characters_from_files_never_reach_the_terminal(tmp_path):
    """#19: a reason with '\\r\\e[2K\\e[32mall good' rewrote kpc diff's
    line on a terminal. Also case ids in the regression line, and merge's
    column list."""
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc([_r(target="t\x1b[31m")])))
    new.write_text(json.dumps(_doc([_r(target="t\x1b[31m", verdict="fail",
                                       reason="boom\r\x1b[2K\x1b[32mall good\u202e")])))
    r = kpc("diff", str(old), str(new))
    assert r.returncode == 1, r.stderr                          # a real regression stays exit 1
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", r.stdout), repr(r.stdout)
    assert "REGRESSION sigmask_survives_execve@host#t\\x1b[31m: pass -> fail  " \
           "(boom\\r\\x1b[2K\\x1b[32mall good\\u202e)" in r.stdout
    r = kpc("merge", str(new), "-o", str(tmp_path / "m.json"))
    assert r.returncode == 0 and "\x1b" not in r.stdout and "t\\x1b[31m" in r.stdout, r.stdout
    for fmt in ("--tap", "--markdown", "--html"):
        r = kpc("report", str(new), fmt, "-")
        assert r.returncode == 0 and not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", r.stdout), (fmt, r.stdout)


class _Counted(dict):
    """A result that counts comparisons: list.index compares dicts."""
    compared = 0

    def __eq__(self, other):
        _Counted.compared += 1
        return dict.__eq__(self, other)

    __hash__ = None


def test_html_rendering_is_linear():
    """#20: doc['results'].index(r) for every cell made 20 000 results take
    6 s. Counted, not timed: rendering may compare results a few times per
    result, not n times."""
    n = 3000
    doc = _doc([_Counted(_r(case=f"c{i}", target="host" if i % 2 else "6.1")) for i in range(n)])
    _Counted.compared = 0
    text = render.html_report(doc)
    assert text.count("class='cell") == n
    assert _Counted.compared <= n, f"{_Counted.compared} comparisons of results for {n} results"


def test_merge_of_two_machines_with_the_same_columns_still_works(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc([_r(), _r(target="6.1")])))
    b.write_text(json.dumps(_doc([_r(verdict="fail"), _r(target="6.1")])))
    r = kpc("merge", str(a), str(b), "-o", "-")
    assert r.returncode == 0, r.stderr
    merged = json.loads(r.stdout)                               # -o -: the JSON alone on stdout
    assert sorted(render.run_id(x) for x in merged["results"]) == [
        "sigmask_survives_execve@host#6.1", "sigmask_survives_execve@host#6.1 [2]",
        "sigmask_survives_execve@host#6.1.0", "sigmask_survives_execve@host#6.1.0 [2]"]
    assert "merged 2 files" in r.stderr


# ---------------------------------------------------------------- exit codes

def test_an_unexpected_exception_is_an_internal_error_not_a_regression(tmp_path, monkeypatch, capsys):
    """Exit 1 means a fail or, for kpc diff, a regression: a crash must not
    read as one (every traceback of the audit's table was exit 1)."""
    from kpc import cli
    good = tmp_path / "g.json"
    good.write_text(json.dumps(_doc()))

    def boom(old, new):
        raise KeyError("surprise\n\x1b[2Ka second line")
    monkeypatch.setattr(render, "diff", boom)
    assert cli.main(["diff", str(good), str(good)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("kpc: internal error: KeyError: ") and "please report it" in err, err
    assert len(err.splitlines()) == 1 and "\x1b" not in err

    def interrupted(old, new):
        raise KeyboardInterrupt
    monkeypatch.setattr(render, "diff", interrupted)
    assert cli.main(["diff", str(good), str(good)]) == 130


def test_a_reader_that_goes_away_is_not_an_internal_error(tmp_path):
    """`kpc diff A B | head -1`: the pipe closes early; kpc stops quietly
    with 128+SIGPIPE, not 'internal error'."""
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc([_r(case=f"c{i}") for i in range(20000)])))
    new.write_text(json.dumps(_doc([_r(case=f"c{i}", verdict="skip") for i in range(20000)])))
    p = subprocess.Popen([KPC, "diff", str(old), str(new)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=paths.ROOT)
    assert p.stdout.read(10) == b"c0@host: p"
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == "", err


# ---------------------------------------------------------------- escaping

XSS_VERDICT = "<img src=x onerror=\"document.body.dataset.pwned='verdict-xss'\">"
COMMENT = "expected 1 <!--<script> observed 2 </script><script>document.body.dataset.pwned='reason'</script>"


def _hostile_doc():
    """A document that load() would refuse (the verdict), rendered anyway:
    escaping must not depend on validation."""
    return _doc([_r(verdict=XSS_VERDICT), _r(case="b", verdict="fail", reason=COMMENT, area="a'><b>",
                                             target="t'<x>", details=["<!--"], provenance=["</script>"])])


def test_html_escapes_every_string_even_an_invalid_verdict():
    page = render.html_report(_hostile_doc())
    body, script = page.split("<script id=\"kpc-data\" type=\"application/json\">")
    payload = script.split("</script>")[0]
    assert "<img" not in body and "onerror=\"" not in body     # §6: the verdict in the cell and data-verdicts
    assert "&lt;img src=x onerror=&quot;" in body
    assert "<" not in payload and ">" not in payload           # no '</script>' nor '<!--' inside the JSON element
    assert json.loads(payload)["results"][1]["reason"] == COMMENT
    assert "a'><b>" not in page and "t'<x>" not in page
    with pytest.raises(ValueError):                            # NaN: the page would die in JSON.parse
        render.html_report(_doc([_r(duration_ms=float("nan"))]))


def test_a_comment_opener_in_a_reason_keeps_the_page_working(tmp_path):
    """#16: '<!--<script>' in a reason made the data element swallow the
    page's script (2 scripts instead of 3). A valid file: rendered, exit 0."""
    f = tmp_path / "c.json"
    f.write_text(json.dumps(_doc([_r(verdict="fail", reason=COMMENT), _r(case="b")])))
    out = tmp_path / "c.html"
    r = kpc("report", str(f), "--html", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page


def _chromium():
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _dump_dom(tmp_path, page_text):
    probe = tmp_path / "probe.html"
    probe.write_text(page_text.replace("</body>", """<script>
document.querySelectorAll('td.cell').forEach(td => td.click());
document.body.dataset.scripts = document.scripts.length;
document.body.dataset.panel = document.getElementById('panel-body').textContent.length > 0;
</script></body>"""))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"file://{probe}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_no_script_from_a_results_file_runs_in_a_real_browser(tmp_path):
    dom = _dump_dom(tmp_path, render.html_report(_hostile_doc()))
    assert "<body" in dom, dom[:500]
    assert "data-pwned" not in dom                              # neither the verdict nor the reason ran
    assert 'data-scripts="3"' in dom                            # data, page script, our probe: nothing swallowed
    assert 'data-panel="true"' in dom                           # the page's own script works (clicks show the panel)


# TAP and Markdown: fields load() accepts as free text (the column: a kernel
# label, a merged machine name, a runtime) carry the hostile strings.

def test_tap_escapes_hash_and_newlines_so_a_failure_stays_a_failure(tmp_path):
    doc = _doc([_r(verdict="fail", target="host # TODO", reason="x\nok 2 - fake"),
                _r(verdict="skip", target="h2", reason="a # TODO b\nnot ok"),
                _r(verdict="pass", target="back\\slash#")])
    text = render.tap(doc)
    lines = text.splitlines()
    assert lines[2] == "not ok 1 - sigmask_survives_execve@host\\#host \\# TODO"
    assert lines[3:6] == ["  ---", "  verdict: fail", '  message: "x\\nok 2 - fake"']
    assert lines[8] == "ok 2 - sigmask_survives_execve@host\\#h2 # SKIP a \\# TODO b\\nnot ok"
    assert lines[9] == "ok 3 - sigmask_survives_execve@host\\#back\\\\slash\\#"
    if shutil.which("prove") is None:
        pytest.skip("prove (perl) is not installed")
    f = tmp_path / "x.tap"
    f.write_text(text)
    r = run(["prove", "-e", "cat", str(f)])
    assert "Result: FAIL" in r.stdout and "Failed 1/3" in r.stdout, r.stdout


def test_markdown_puts_every_string_from_a_file_in_a_code_span():
    hostile = "x` <img src=https://attacker.example/pixel.png> @octocat [a](http://e) `y|z\nw"
    doc = _doc([_r(verdict="fail", target=hostile, reason=hostile), _r(target="6.1")],
               environment={"kernel": "<b>k</b>", "distro": "@octocat"})
    md = render.markdown(doc)
    inner = "x` <img src=https://attacker.example/pixel.png> @octocat [a](http://e) `y"
    assert f"| case | ``{inner}\\|z\\nw`` | `6.1` |" in md              # header cell: | escaped
    assert f"- **fail** ``sigmask_survives_execve@host#{inner}|z\\nw``: ``{inner}|z\\nw``" in md
    assert "Host: `@octocat`, kernel `<b>k</b>`" in md
    # outside code spans nothing of the hostile text remains
    outside = re.sub(r"(`+)(.+?)\1", "", md)
    assert not re.search(r"[<@\[]", outside), outside


def test_junit_is_xml_even_with_control_characters(tmp_path):
    """A reason or observation with an escape character (probe output)
    made an XML file no parser reads."""
    case = types.SimpleNamespace(id="c", area="signals", provenance_lines=lambda: ["man 2 \x07bell"])
    v = evaluate.Verdict("fail", reason="boom\x1b[31m <b>&", details=["\x00nul"],
                         observations={"k\x01": "v\x0b"})
    item = types.SimpleNamespace(verdict=v, run_id="c@host#host", case=case)
    env = types.SimpleNamespace(to_json=lambda: {"kernel": "6.1\x1b"})
    out = tmp_path / "j.xml"
    report.write_junit(str(out), [item], env, 1.0)
    root = ET.parse(out).getroot()                              # parses: no raw control character
    failure = root.find("testcase/failure")
    assert failure.get("message") == "boom\\x1b[31m <b>&"
    assert "\\x00nul" in failure.text and "man 2 \\x07bell" in failure.text
    assert root.find("testcase/system-out").text == "k\\x01 = v\\x0b"


# ---------------------------------------------------------------- writers

def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "target").write_text("ROOT-ONLY CONFIG\n")
    return victim / "target"


def test_writers_never_follow_a_symlink_at_a_predictable_name(tmp_path):
    """§9: render.write used PATH.<pid>.tmp, write_json PATH.tmp; a link
    planted there made root overwrite its target."""
    target = _victim(tmp_path)
    out = tmp_path / "r.html"
    for name in (f"{out}.tmp", f"{out}.{os.getpid()}.tmp", f"{tmp_path}/.r.html.tmp"):
        os.symlink(target, name)
    render.write(str(out), "<p>report</p>")
    assert out.read_text() == "<p>report</p>" and not out.is_symlink()
    assert target.read_text() == "ROOT-ONLY CONFIG\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim", "r.html", "r.html.tmp", f"r.html.{os.getpid()}.tmp", ".r.html.tmp"])


@pytest.mark.parametrize("argv", [("report", "{good}", "--html", "{link}"), ("report", "{good}", "--tap", "{link}"),
                                  ("report", "{good}", "--markdown", "{link}"), ("merge", "{good}", "-o", "{link}")])
def test_a_symlink_at_the_output_is_refused(tmp_path, argv):
    target = _victim(tmp_path)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_doc()))
    link = tmp_path / "out"
    os.symlink(target, link)
    r = kpc(*[a.format(good=good, link=link) for a in argv])
    assert r.returncode == 2 and r.stderr.startswith("kpc: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "symbolic link" in r.stderr
    assert target.read_text() == "ROOT-ONLY CONFIG\n" and link.is_symlink()


def test_run_writes_no_result_through_a_planted_symlink(tmp_path, built):
    """The audit's reproduction: --json F with a link at F.tmp, --junit G a
    link. Both targets must stay as they were."""
    t1, t2 = tmp_path / "t1", tmp_path / "t2"
    t1.write_text("ROOT-ONLY 1\n")
    t2.write_text("ROOT-ONLY 2\n")
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    os.symlink(t1, f"{out_json}.tmp")
    os.symlink(t2, out_xml)
    r = kpc("run", "--no-build", "--case", "sigmask_survives_execve", "--flavor", "host",
            "--json", str(out_json), "--junit", str(out_xml))
    assert t1.read_text() == "ROOT-ONLY 1\n" and t2.read_text() == "ROOT-ONLY 2\n"
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("kpc: cannot write results: refusing"), r.stderr
    assert json.loads(out_json.read_text())["results"][0]["verdict"] == "pass"


@needs_root
def test_a_fifo_of_another_user_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    with pytest.raises(safefile.UnsafePath, match="not yours"):
        safefile.write(str(fifo), "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ---------------------------------------------------------------- concurrency

@needs_root
@pytest.mark.parametrize("case", ["sigmask_survives_execve", "inherited_state_by_creation_path"])
def test_two_runs_in_one_checkout_never_lose_or_corrupt_results(built, case):
    """§10: both runs wrote results/runs/last.json.tmp; a pair lost a run
    (exit 2) or left half a file while the other said success. The second
    case writes 450 KB of JSON, a wide enough window that the old code
    failed in about 2 of 5 pairs here (the first, 2 KB, in none of 10)."""
    last = os.path.join(paths.ROOT, "results", "runs", "last.json")
    cmd = [KPC, "run", "--no-build", "--case", case, "--flavor", "host"]
    for i in range(5):
        procs = [subprocess.Popen(cmd, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], (i, [err[-300:] for _, err in outs])
        with open(last) as f:
            doc = json.load(f)
        assert {r["case"] for r in doc["results"]} == {case}, i
    leftovers = [n for n in os.listdir(os.path.dirname(last)) if n.endswith(".tmp")]
    assert not leftovers, leftovers


def test_concurrent_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """The same race without timing luck: two threads (one pid, so the old
    PATH.<pid>.tmp was shared too) replace one file 50 times each."""
    path = tmp_path / "last.json"
    payloads = [json.dumps({"writer": w, "pad": str(w) * 300_000}) for w in range(2)]
    errors = []

    def writer(w):
        try:
            for _ in range(50):
                render.write(str(path), payloads[w])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert path.read_text() in payloads
    assert os.listdir(tmp_path) == ["last.json"]


@needs_root
def test_a_build_waits_for_another_build_of_the_same_directory(tmp_path, built):
    """§10: two builds at once linked a half-written libkpcprobe.a. Holding
    the build lock here, `./kpc run` (which builds first) must wait."""
    err = tmp_path / "stderr"
    fd = os.open(os.path.join(paths.build_dir(), ".kpc-build.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(err, "w") as f:
            p = subprocess.Popen([KPC, "run", "--case", "sigmask_survives_execve", "--flavor", "host", "--json",
                                  os.devnull], cwd=paths.ROOT, stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 60
        while "waiting for another kpc building" not in err.read_text() and time.monotonic() < deadline \
                and p.poll() is None:
            time.sleep(0.1)
        assert "waiting for another kpc building" in err.read_text(), err.read_text()
        time.sleep(1)
        assert p.poll() is None, "the run went on while another build held the lock"
    finally:
        os.close(fd)
    assert p.wait(timeout=300) == 0, err.read_text()


def test_a_build_failure_shows_the_compilers_lines(monkeypatch, capsys):
    """Seen on fresh Debian 13: the compiler's output was one line of '\\n's
    under 'kpc: cmake --build ... failed:'. Now: that line, then the
    output a line each (made printable), exit 2."""
    from kpc import build, cli

    def fail(**_):
        raise build.BuildError("cmake --build build failed:\nx.cc:29:5: error: 'uint32_t' was not declared\x1b[31m\n"
                               "ninja: build stopped")
    monkeypatch.setattr(build, "check_trusted", lambda: None)
    monkeypatch.setattr(build, "ensure_packages", lambda **_: None)
    monkeypatch.setattr(build, "build", fail)
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "kpc: cmake --build build failed:"
    assert err[1].startswith("  x.cc:29:5: error: 'uint32_t' was not declared") and "\x1b" not in err[1]
    assert err[2] == "  ninja: build stopped"


def test_results_text_is_json_dumps_indent_1():
    """report.dumps_indent1 writes the results file: json.dumps(indent=1)'s
    exact text, or json's own error, for whatever a document can hold."""
    import math
    doc = {"s": "é\x00\u2028\"\\\n\ud800", "f": [1.0, -0.0, 1e300, 5e-324, 0.1, math.nan, math.inf, -math.inf],
           "i": [True, False, None, 2 ** 70, -3, 0], "t": (1, (2, [])), "e": {}, "l": [],
           "n": {"a": {"b": [{}, [[]], {"c": [1, {"d": "x"}]}]}}, "": ""}
    assert report.dumps_indent1(doc) == json.dumps(doc, indent=1)
    for odd in ({1: 2}, {"x": {1.5: 2, None: 3, True: 4}}):   # keys json turns into text
        assert report.dumps_indent1(odd) == json.dumps(odd, indent=1)
    cycle = []
    cycle.append(cycle)
    for bad in (cycle, {"x": object()}, {(1,): 2}):
        with pytest.raises((ValueError, TypeError)) as want:
            json.dumps(bad, indent=1)
        with pytest.raises(want.type, match=re.escape(str(want.value))):
            report.dumps_indent1(bad)
