"""Reports from results JSON: Markdown, TAP, HTML, merge and diff."""

import json
import shutil
import subprocess

import pytest

from kpc import render
from test_cli import kpc


def _r(case, verdict, target="host", flavor="host", runtime="none", reason="", area="signals", obs=None):
    return {"case": case, "area": area, "variant": "", "flavor": flavor, "kernel": "6.1.0", "target": target,
            "runtime": runtime, "profile": "none", "verdict": verdict, "observations": obs or {}, "expected": {},
            "reason": reason, "duration_ms": 1.0}


def _doc(results, kernel="6.18.0"):
    return {"schema": 1, "created": "2026-11-24T00:00:00+00:00",
            "environment": {"kernel": kernel, "distro": "Debian 12"}, "results": results,
            "totals": render.totals(results)}


def test_markdown_shows_only_rows_that_are_not_all_pass_and_lists_failures():
    doc = _doc([_r("a", "pass"), _r("a", "pass", target="6.1"), _r("b", "pass"),
                _r("b", "fail", target="6.1", reason="x: expected 1, observed 2 | pipe")])
    md = render.markdown(doc)
    assert "| case | `host` | `6.1` |" in md
    assert "| `b@host` | pass | **fail** |" in md and "`a@host`" not in md.split("### Failures")[0].split("|---|")[1]
    # strings from the file are code spans (no markup); a | is escaped only in table cells
    assert "- **fail** `b@host#6.1`: `x: expected 1, observed 2 | pipe`" in md


def test_markdown_and_html_name_the_c_library():
    """Expected rows depend on glibc's version (glibc>=2.38): a report says
    which one the probes ran with."""
    doc = _doc([_r("a", "pass")])
    doc["environment"]["libc"] = "glibc 2.41"
    assert "Host: `Debian 12`, kernel `6.18.0`, `glibc 2.41`" in render.markdown(doc)
    assert "host Debian 12, kernel 6.18.0, glibc 2.41" in render.html_report(doc)
    del doc["environment"]["libc"]
    assert "Host: `Debian 12`, kernel `6.18.0`\n" in render.markdown(doc)


def test_tap_is_version_13_with_skip_and_todo_directives():
    doc = _doc([_r("a", "pass"), _r("b", "skip", reason="needs root"), _r("c", "xfail", reason="known #1"),
                _r("d", "hang", reason="stuck")])
    lines = render.tap(doc).splitlines()
    assert lines[:2] == ["TAP version 13", "1..4"]
    # '#' in a description is escaped (TAP 13): only a directive's '#' is bare
    assert lines[2] == "ok 1 - a@host"
    assert lines[3] == "ok 2 - b@host # SKIP needs root"
    assert lines[4] == "ok 3 - c@host # TODO expected divergence: known \\#1"
    assert lines[5] == "not ok 4 - d@host" and "  verdict: hang" in lines


def test_merge_gives_each_machine_a_column_and_diff_finds_regressions(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(_doc([_r("x", "pass"), _r("x", "pass", target="6.1")], kernel="6.18.0")))
    b.write_text(json.dumps(_doc([_r("x", "fail", reason="boom")], kernel="7.2.0")))
    out = tmp_path / "m.json"
    r = kpc("merge", str(a), str(b), "-o", str(out))
    assert r.returncode == 0, r.stderr
    merged = json.loads(out.read_text())
    assert sorted(render.column(x) for x in merged["results"]) == ["6.1", "6.18.0", "7.2.0"]
    # diff: the same run id on old and new
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(json.dumps(_doc([_r("x", "pass"), _r("y", "fail"), _r("z", "pass")])))
    new.write_text(json.dumps(_doc([_r("x", "hang", reason="stuck"), _r("y", "pass"), _r("w", "pass")])))
    r = kpc("diff", str(old), str(new))
    assert r.returncode == 1
    assert "REGRESSION x@host: pass -> hang  (stuck)" in r.stdout
    assert "y@host: fail -> pass" in r.stdout and "z@host: pass -> absent" in r.stdout
    assert "w@host: absent -> pass" in r.stdout
    r = kpc("diff", str(new), str(new))
    assert r.returncode == 0 and "0 changed, 0 regressions" in r.stdout


def test_bad_results_files_are_input_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    r = kpc("report", str(p), "--tap", "-")
    assert r.returncode == 2 and "not a kpc results file" in r.stderr
    r = kpc("diff", str(tmp_path / "nope.json"), str(p))
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = kpc("report", str(p))
    assert r.returncode == 2 and "say what to write" in r.stderr
    gz = tmp_path / "x.json.gz"
    gz.write_text("{}")
    r = kpc("report", str(gz), "--tap", "-")
    assert r.returncode == 2 and "x.json.gz: not gzip-compressed" in r.stderr and "None" not in r.stderr


def _chromium():
    for c in ("chromium", "chromium-browser"):
        if shutil.which(c):
            return shutil.which(c)
    return None


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_report_renders_in_a_real_browser(tmp_path):
    """Headless chromium: the page's script must run (the DOM it dumps has
    the cells and a working filter), and the screenshot is a real picture."""
    doc = _doc([_r("sigmask_survives_execve", "pass"), _r("sigmask_survives_execve", "fail", target="6.1",
                                                          reason="mask: expected SIGUSR1, observed none",
                                                          obs={"mask": "none"}),
                _r("inherited_signal_state", "pass", runtime="tini", area="signals"),
                _r("fuse_self_served_exit", "xfail", area="fuse")])
    doc["results"][1]["expected"] = {"mask": {"value": "SIGUSR1", "where": "signals.exp:3", "xfail": False}}
    page = tmp_path / "m.html"
    page.write_text(render.html_report(doc, {"sigmask_survives_execve": "LAB NOTE TEXT"}))
    html = page.read_text()
    assert "<script src" not in html and "http://" not in html.split("<script id")[0]  # self-contained
    # a click on the failing cell, then filters: done by the page's own script
    # at load time when asked through the URL hash, so headless --dump-dom
    # sees the result
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", """<script>
document.querySelector('td.v-fail').click();
document.getElementById('f-area').value = 'fuse';
document.getElementById('f-area').dispatchEvent(new Event('change'));
document.body.dataset.visibleRows = [...document.querySelectorAll('table.matrix tbody tr')]
  .filter(tr => tr.style.display !== 'none').length;
</script></body>"""))
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", f"file://{probe}"], capture_output=True, text=True, timeout=120).stdout
    assert "LAB NOTE TEXT" in dom                      # the panel shows the lab note
    assert 'class="diff"' in dom                       # expected vs observed, the differing row marked
    assert 'data-visible-rows="1"' in dom              # the area filter left only the fuse row
    assert "Case × runtime" in dom                     # both matrices
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1200,700", f"file://{page}"],
                   capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_merge_of_two_machines_on_one_kernel_keeps_both():
    a = _doc([_r("x", "pass")], kernel="6.1.0")
    b = _doc([_r("x", "fail"), _r("y", "pass", runtime="tini")], kernel="6.1.0")
    m = render.merge([("a.json", a), ("b.json", b)])
    assert [render.column(r) for r in m["results"]] == ["6.1.0", "6.1.0 [2]", "tini"]
    # a runtime run from the same machine does not clash with its kernel column
    c = render.merge([("a.json", a), ("r.json", _doc([_r("y", "pass", runtime="tini")], kernel="6.1.0"))])
    assert [r["column"] for r in c["results"]] == ["6.1.0", "6.1.0"]


def test_engines_are_columns_beside_the_runtimes_in_the_html_matrix():
    """Issue 19: one case × runtime matrix whose columns are the runtimes
    and the container engines of the run, side by side; a case that runs
    only under engines has cells there and '–' under the others."""
    import re
    names = ["tini", "runc", "crun", "podman", "podman:init", "docker", "docker:init"]
    results = [_r("inherited_signal_state", "pass", runtime=n) for n in names]
    results += [_r("engine_fuse_kill", "xfail", runtime=n, area="runtimes") for n in ("podman", "docker:init")]
    results += [_r("engine_fuse_kill", "skip", runtime="tini", area="runtimes")]
    results += [_r("sig_ign_survives_execve", "pass")]   # a kernel run: the other matrix
    page = render.html_report(_doc(results))
    table = re.search(r"<table class='matrix' id='m-runtimes'>(.*?)</table>", page, re.S).group(1)
    head = re.findall(r"<th>([^<]*)</th>", table.split("</thead>")[0])
    assert head == ["case @ flavor", *names]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<th class='rowh'>([^<]*)</th>(.*?)</tr>", table)}
    cells = re.findall(r"<td class='([^']*)'[^>]*>([^<]*)</td>", rows["engine_fuse_kill@host"])
    assert [c[1] for c in cells] == ["skip", "–", "–", "xfail", "–", "–", "xfail"]
    assert "sig_ign_survives_execve" not in table and "id='m-kernels'" in page
