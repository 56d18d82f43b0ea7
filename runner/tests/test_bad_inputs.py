"""Every bad input of the audit (security-audit.md of the research notes: #1-#30
results files (§11), #31-#55 expected tables and case metadata (§14),
#56-#95 command line (§15)), and some more ("x-..."): each is one line on
stderr starting with `kpc: `, exit code 2, no traceback, no raw control
character on the terminal, and an answer within seconds (a FIFO named
x.exp once hung kpc; 36 table rows took 29 s to lint).

Inputs the audit tried that are not bad input but were mishandled (a
script-looking reason, 20 000 results, a prefix running tini...) are in
the second test: accepted, and the harm is gone.

Argument errors are one line too (kpc's parser does not print argparse's
usage text first): `kpc: argument --jobs: ... (see: kpc run --help)`."""

import copy
import gzip
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from kpc import cases, paths

KPC = os.path.join(paths.ROOT, "kpc")
ANSWER_S = 20          # every input is answered well within this (most in 0.2 s)
# Never raw on the terminal: ESC, CR, ... (\n ends the one line), C1, bidi overrides.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def kpc(args, env=None, timeout=ANSWER_S):
    full_env = {k: v for k, v in os.environ.items() if k not in ("KPC_EXPECTED_DIR", "KPC_CASES_DIR")}
    full_env.update(env or {})
    start = time.monotonic()
    try:
        p = subprocess.run([KPC, *args], capture_output=True, encoding="utf-8", errors="backslashreplace",
                           env=full_env, cwd=paths.ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kpc {args} gave no answer in {timeout} s")
    p.took = time.monotonic() - start
    return p


# ---------------------------------------------------------------- building inputs

SIGMASK_WHERE = "cases/signals/sigmask_survives_execve.exp:3"


def _result(case="sigmask_survives_execve", verdict="pass", **kw):
    r = {"case": case, "area": "signals", "variant": "", "flavor": "host", "kernel": "6.1.0", "target": "host",
         "runtime": "none", "profile": "none", "verdict": verdict, "observations": {"exec.blocked": "SIGUSR1|SIGTERM"},
         "expected": {"exec.blocked": {"value": "SIGUSR1|SIGTERM", "where": SIGMASK_WHERE, "xfail": False,
                                       "reason": ""}},
         "reason": "", "duration_ms": 12.5}
    r.update(kw)
    return r


def results_doc(*results):
    """A small well-formed results file (the shape `kpc run` writes)."""
    env = {"kernel": "6.1.0", "machine": "x86_64", "distro": "Debian GNU/Linux 12 (bookworm)", "libc": "glibc 2.36",
           "root": True, "capabilities": "=ep", "runtime": "none", "kconfig_source": "/proc/config.gz",
           "flavors": {"host": "ok", "pidns": "ok", "userns": "ok"}}
    res = list(results) or [_result(), _result("handler_reset_by_execve")]
    totals = {v: sum(r.get("verdict") == v for r in res if isinstance(r, dict))
              for v in ("pass", "fail", "xfail", "skip", "hang", "error")}
    return {"schema": 1, "created": "2026-11-24T21:26:21+00:00", "environment": env, "wall_s": 1.5,
            "totals": totals, "results": res}


def write_results(t, mutate=None, name="r.json", doc=None):
    doc = copy.deepcopy(doc) if doc is not None else results_doc()
    if mutate:
        mutate(doc)
    path = t / name
    path.write_text(json.dumps(doc))
    return str(path)


def write_raw(t, data, name="raw.json"):
    path = t / name
    path.write_bytes(data)
    return str(path)


def good(t):
    return write_results(t, name="good.json")


def html_out(t):
    return str(t / "out.html")


def set_results(*results):
    return lambda d: d.__setitem__("results", list(results))


def first_result(**changes):
    def mutate(d):
        d["results"][0].update(changes)
    return mutate


def drop_verdict(d):
    del d["results"][0]["verdict"]


def gzip_bomb(t):
    """300 KB of gzip that is 300 MB of JSON (a well-formed results file
    padded with spaces): `kpc report` used 639 MB reading it."""
    path = t / "bomb.json.gz"
    chunk = b" " * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b'{"schema": 1, "results": []')
        for _ in range(300):
            f.write(chunk)
        f.write(b"}")
    return str(path)


def truncated_gz(t):
    data = gzip.compress(json.dumps(results_doc()).encode())
    return write_raw(t, data[:len(data) // 2], "trunc.json.gz")


SIGMASK_EXP = "signals/sigmask_survives_execve.exp"


def expected_copy(t, edit=None):
    """A copy of the tables (cases/<area>/*.exp) for KPC_EXPECTED_DIR;
    edit(dir) changes it."""
    d = t / "expected"
    shutil.copytree(paths.EXPECTED, d, ignore=lambda where, names: [
        n for n in names if not n.endswith(".exp") and not os.path.isdir(os.path.join(where, n))])
    if edit:
        edit(d)
    return {"KPC_EXPECTED_DIR": str(d)}


def append_bytes(name, data):
    """edit for expected_copy / cases_copy: bytes at the end of a file."""
    def edit(d):
        with open(d / name, "ab") as f:
            f.write(data)
    return edit


def add_rows(rows, section="[sigmask_survives_execve]"):
    """edit for expected_copy: rows (text) right after a section header."""
    def edit(d):
        f = d / SIGMASK_EXP
        text = f.read_text()
        assert section + "\n" in text
        f.write_text(text.replace(section + "\n", section + "\n" + rows, 1))
    return edit


def disjoint_rows(n):
    """The audit's #35: n rows of one key, 4 conditions each, no two
    overlapping; the old linter walked all ~(n+2)^4 contexts."""
    return "".join(f"dos.key = {i} if runtime=r{i} profile=p{i} arch=a{i} kernel=5.{i} -- row {i}\n"
                   for i in range(n))


def cases_copy(t, edit=None):
    """A copy of cases/ (metadata, probe sources, tables, lab notes) for KPC_CASES_DIR."""
    d = t / "cases"
    keep = (".toml", ".cc", ".md", ".exp")
    shutil.copytree(paths.CASES, d, ignore=lambda where, names: [
        n for n in names if n in ("lib", "helpers") or (os.path.isfile(os.path.join(where, n))
                                                        and not n.endswith(keep))])
    if edit:
        edit(d)
    return {"KPC_CASES_DIR": str(d)}


def toml_line(line, replace=None, case="signals/sigmask_survives_execve.toml"):
    """edit for cases_copy: replace a line starting with `replace` (or add one
    at the top level) in a case's metadata."""
    def edit(d):
        f = d / case
        lines = f.read_text().split("\n")
        if replace:
            hits = [i for i, x in enumerate(lines) if x.startswith(replace)]
            assert hits, f"no line {replace} in {case}"
            lines[hits[0]] = line
        else:
            lines.insert(1, line)
        f.write_text("\n".join(lines))
    return edit


def toml_append(text, case="signals/sigmask_survives_execve.toml"):
    def edit(d):
        with open(d / case, "a") as f:
            f.write("\n" + text + "\n")
    return edit


def fake_bzimage(t):
    """A file with a bzImage header (HdrS) whose version string is blank."""
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    head[0x20e:0x210] = (0x300).to_bytes(2, "little")   # the version string at 0x500
    head[0x500:0x502] = b" \0"
    return write_raw(t, bytes(head), "fake_bzimage")


def case_without(flavor):
    return next(c.id for c in cases.load_all().values() if flavor not in c.flavors)


# Each input: (id, build) where build(tmp_path) -> (argv, env) or argv.
# NEEDS_BUILD: inputs that get as far as asking the launcher.
NEEDS_BUILD = {"56", "57", "63", "65", "81", "82", "87"}
RUN = ["run", "--no-build"]


def _mkfifo(path):
    os.mkfifo(path)


def _mkdir(path):
    os.mkdir(path)


def _symlink(target, directory, name):
    os.symlink(target, directory / name)


BAD = [
    # -------- results files (§11; render.py/report.py: helper h1)
    ("01-result-is-an-int", lambda t: ["report", write_results(t, set_results(1)), "--html", html_out(t)]),
    ("02-result-is-empty", lambda t: ["report", write_results(t, set_results({})), "--html", html_out(t)]),
    ("02-result-is-empty-merge", lambda t: ["merge", write_results(t, set_results({})), "-o", str(t / "m.json")]),
    ("02-result-is-empty-diff", lambda t: ["diff", good(t), write_results(t, set_results({}))]),
    ("03-no-verdict", lambda t: ["report", write_results(t, drop_verdict), "--html", html_out(t)]),
    ("03-no-verdict-tap", lambda t: ["report", write_results(t, drop_verdict), "--tap", str(t / "o.tap")]),
    ("03-no-verdict-merge", lambda t: ["merge", write_results(t, drop_verdict), "-o", str(t / "m.json")]),
    ("03-no-verdict-diff", lambda t: ["diff", good(t), write_results(t, drop_verdict)]),
    ("04-reason-is-an-int", lambda t: ["report", write_results(t, first_result(reason=5)), "--html", html_out(t)]),
    ("05-reason-is-a-list", lambda t: ["report", write_results(t, first_result(verdict="fail", reason=["a", "b"])),
                                       "--html", html_out(t)]),
    ("05-reason-is-a-list-markdown", lambda t: ["report", write_results(t, first_result(verdict="fail",
                                                reason=["a", "b"])), "--markdown", str(t / "o.md")]),
    ("06-environment-is-a-list", lambda t: ["report", write_results(t, lambda d: d.update(environment=[])),
                                            "--html", html_out(t)]),
    ("06-environment-is-a-list-markdown", lambda t: ["report", write_results(t, lambda d: d.update(environment=[])),
                                                     "--markdown", str(t / "o.md")]),
    ("06-environment-is-a-list-merge", lambda t: ["merge", write_results(t, lambda d: d.update(environment=[])),
                                                  "-o", str(t / "m.json")]),
    ("07-created-is-an-int", lambda t: ["report", write_results(t, lambda d: d.update(created=5)),
                                        "--html", html_out(t)]),
    ("08-nested-100000", lambda t: ["report", write_raw(t, b"[" * 100000), "--html", html_out(t)]),
    ("08-nested-100000-merge", lambda t: ["merge", write_raw(t, b"[" * 100000), "-o", str(t / "m.json")]),
    ("08-nested-100000-diff", lambda t: ["diff", good(t), write_raw(t, b"[" * 100000)]),
    ("09-merged-from-without-file", lambda t: ["report", write_results(t, lambda d: d.update(
        merged_from=[{"nofile": 1}])), "--html", html_out(t)]),
    ("10-target-is-an-int", lambda t: ["report", write_results(t, first_result(target=5)), "--html", html_out(t)]),
    ("10-target-is-an-int-merge", lambda t: ["merge", write_results(t, first_result(target=5)),
                                             "-o", str(t / "m.json")]),
    ("11-kernels-is-a-list", lambda t: ["merge", write_results(t, lambda d: d.update(kernels=[])),
                                        "-o", str(t / "m.json")]),
    ("12-duration-nan", lambda t: ["report", write_results(t, first_result(duration_ms=float("nan"))),
                                   "--html", html_out(t)]),
    ("12-duration-nan-merge", lambda t: ["merge", write_results(t, first_result(duration_ms=float("nan"))),
                                         "-o", str(t / "m.json")]),
    ("13-duplicate-run-id", lambda t: ["diff", good(t), write_results(t, set_results(
        _result(verdict="fail", reason="REAL FAILURE"), _result()))]),
    ("14-verdict-upper-case", lambda t: ["diff", good(t), write_results(t, first_result(verdict="FAIL"))]),
    ("15-verdict-html", lambda t: ["report", write_results(t, first_result(verdict="<img src=x onerror=alert(1)>")),
                                   "--html", html_out(t)]),
    ("21-gzip-bomb", lambda t: ["report", gzip_bomb(t), "--tap", str(t / "o.tap")]),
    ("22-results-is-a-string", lambda t: ["report", write_results(t, lambda d: d.update(results="abc")),
                                          "--html", html_out(t)]),
    ("23-top-level-list", lambda t: ["report", write_raw(t, b"[]"), "--html", html_out(t)]),
    ("24-not-utf8", lambda t: ["report", write_raw(t, b'{"results": ["\xff\xfe"]}'), "--html", html_out(t)]),
    ("25-empty-file", lambda t: ["report", write_raw(t, b""), "--html", html_out(t)]),
    ("26-truncated-gzip", lambda t: ["report", truncated_gz(t), "--tap", str(t / "o.tap")]),
    ("27-no-such-file", lambda t: ["report", "/nonexistent.json", "--tap", str(t / "o.tap")]),
    ("28-html-to-root", lambda t: ["report", good(t), "--html", "/"]),
    ("29-merge-to-proc", lambda t: ["merge", good(t), "-o", "/proc/version"]),
    ("30-report-no-output", lambda t: ["report", good(t)]),
    # -------- expected tables (§14)
    ("31-expected-dir-missing", lambda t: (["check"], {"KPC_EXPECTED_DIR": "/nonexistent"})),
    ("31-expected-dir-not-utf8", lambda t: (["check"], {"KPC_EXPECTED_DIR": os.fsdecode(bytes(t) + b"/exp\xff")})),
    ("32-expected-dir-is-a-file", lambda t: (["check"], {"KPC_EXPECTED_DIR": write_raw(t, b"", "plain")})),
    ("32-expected-dir-is-a-file-run", lambda t: (RUN + ["--case", "sigmask_*"],
                                                 {"KPC_EXPECTED_DIR": write_raw(t, b"", "plain")})),
    ("33-exp-not-utf8", lambda t: (["check"], expected_copy(t, append_bytes(SIGMASK_EXP, b"x = caf\xe9\n")))),
    ("34-directory-named-x-exp", lambda t: (["check"], expected_copy(t, lambda d: _mkdir(d / "signals" / "x.exp")))),
    ("35-36-rows-and-an-overlap", lambda t: (["check"], expected_copy(t, add_rows(
        disjoint_rows(36) + "dos.key = x if runtime=r35 profile=p35 arch=a35 kernel=5.35 -- dup\n")))),
    ("36-unclosed-quote", lambda t: (["check"], expected_copy(t, add_rows('foo = "unclosed\n')))),
    ("37-unknown-case", lambda t: (["check"], expected_copy(t, append_bytes(SIGMASK_EXP, b"[no_such_case]\n")))),
    ("38-kernel-abc", lambda t: (["check"], expected_copy(t, add_rows("x.y = 1 if kernel>=abc -- r\n")))),
    ("39-unknown-signal", lambda t: (["check"], expected_copy(t, add_rows("x.y = SIGFOO\n")))),
    ("40-nul-in-section", lambda t: (["check"], expected_copy(t, append_bytes(SIGMASK_EXP,
                                                                              b"[sigmask\0_survives_execve]\n")))),
    ("41-signals-exp-emptied", lambda t: (["check"], expected_copy(t, lambda d: (d / SIGMASK_EXP).write_text("")))),
    ("x-exp-kernel-5x", lambda t: (["check"], expected_copy(t, add_rows("x.y = 1 if kernel>=5.x -- r\n")))),
    ("x-exp-is-a-fifo", lambda t: (["check"], expected_copy(t, lambda d: _mkfifo(d / "signals" / "zz.exp")))),
    ("x-exp-symlink-loop", lambda t: (["check"], expected_copy(t, lambda d: _symlink("zz.exp", d / "signals",
                                                                                     "zz.exp")))),
    ("x-exp-row-with-escapes", lambda t: (["check"], expected_copy(t, add_rows("x\x1b[2J\x1b[31m = 1\n")))),
    ("x-exp-section-with-osc-escape", lambda t: (["check"], expected_copy(t, append_bytes(
        SIGMASK_EXP, b"[no\x1b]0;pwned\x07case]\n")))),
    # -------- case metadata (§14)
    ("42-toml-not-utf8", lambda t: (["check"], cases_copy(t, append_bytes("signals/sigmask_survives_execve.toml",
                                                                          b"\n# \xff\xfe\n")))),
    ("43-directory-named-x-toml", lambda t: (["check"], cases_copy(t, lambda d: (d / "signals" / "zz_dir.toml")
                                                                   .mkdir()))),
    ("44-timeout-inf", lambda t: (["check"], cases_copy(t, toml_line("timeout = inf", "timeout")))),
    ("45-timeout-nan", lambda t: (["check"], cases_copy(t, toml_line("timeout = nan", "timeout")))),
    ("46-timeout-negative", lambda t: (RUN + ["--case", "sigmask_*", "--flavor", "host"],
                                       cases_copy(t, toml_line("timeout = -1", "timeout")))),
    ("47-hang-ms-zero", lambda t: (RUN + ["--case", "sigmask_*", "--flavor", "host"],
                                   cases_copy(t, toml_line("hang_ms = 0")))),
    ("48-timeout-1e10", lambda t: (["check"], cases_copy(t, toml_line("timeout = 1e10", "timeout")))),
    ("48-hang-ms-huge", lambda t: (["check"], cases_copy(t, toml_line("hang_ms = 99999999999")))),
    ("49-caps-typo", lambda t: (["check"], cases_copy(t, toml_append('[requires]\ncaps = ["CAP_SYS_ADMNI"]')))),
    ("50-kernel-5x", lambda t: (["check"], cases_copy(t, toml_append('[requires]\nkernel = ">=5.x"')))),
    ("51-summary-int", lambda t: (["check"], cases_copy(t, toml_line("summary = 5", "summary")))),
    ("52-duplicate-variants", lambda t: (["check"], cases_copy(t, toml_line('variants = ["a", "a"]')))),
    ("53-no-flavors", lambda t: (["check"], cases_copy(t, toml_line("flavors = []")))),
    ("54-probe-path", lambda t: (["check"], cases_copy(t, toml_line('probe = "../../../../../bin/true"')))),
    ("55-id-in-two-areas", lambda t: (["check"], cases_copy(t, lambda d: [
        shutil.copy(d / "signals" / f"sigmask_survives_execve.{x}", d / "pidns" / f"sigmask_survives_execve.{x}")
        for x in ("toml", "cc")]))),
    ("x-cases-dir-missing", lambda t: (["check"], {"KPC_CASES_DIR": "/nonexistent"})),
    ("x-toml-is-a-fifo", lambda t: (["check"], cases_copy(t, lambda d: _mkfifo(d / "signals" / "zz.toml")))),
    ("x-hang-ms-over-timeout", lambda t: (["check"], cases_copy(t, toml_line("hang_ms = 5001")))),
    ("x-timeout-below-1ms", lambda t: (["check"], cases_copy(t, toml_line("timeout = 0.0001", "timeout")))),
    ("x-caps-lower-case", lambda t: (["check"], cases_copy(t, toml_append('[requires]\ncaps = ["cap_sys_admin"]')))),
    ("x-case-id-not-a-name", lambda t: (["check"], cases_copy(t, lambda d: [
        shutil.copy(d / "signals" / f"sigmask_survives_execve.{x}", d / "signals" / f"Bad\x1b[1mId.{x}")
        for x in ("toml", "cc")]))),
    # -------- command line (§15); #56/#57 are kernels.py (helper h2)
    ("56-kernel-passwd-tmp", lambda t: RUN + ["--no-host", "--kernel", "/etc/passwd:/tmp"]),
    ("57-kernel-blank-version", lambda t: RUN + ["--no-host", "--kernel", fake_bzimage(t)]),
    ("58-jobs-3000000000", lambda t: RUN + ["--case", "sigmask_*", "--jobs", "3000000000"]),
    ("60-runtime-runc-binary", lambda t: RUN + ["--runtime", "/usr/sbin/runc"]),
    ("61-runtime-unclosed-quote", lambda t: RUN + ["--runtime", '"unclosed']),
    ("62-lab-variant-bogus", lambda t: ["lab", "sigmask_survives_execve", "--variant", "bogus", "--no-build"]),
    ("63-kernel-passwd", lambda t: RUN + ["--kernel", "/etc/passwd"]),
    ("64-kernel-empty", lambda t: RUN + ["--kernel", ""]),
    ("65-kernel-dev-null", lambda t: RUN + ["--kernel", "/dev/null"]),
    ("66-kernels-comma", lambda t: RUN + ["--kernels", ","]),
    ("67-kernel-append-newline", lambda t: RUN + ["--kernels", "6.1", "--kernel-append", "a\nb"]),
    ("68-kernel-append-alone", lambda t: RUN + ["--kernel-append", "lsm=yama"]),
    ("69-no-host-alone", lambda t: RUN + ["--no-host"]),
    ("70-jobs-0", lambda t: RUN + ["--jobs", "0"]),
    ("71-jobs-negative", lambda t: RUN + ["--jobs", "-3"]),
    ("72-jobs-abc", lambda t: RUN + ["--jobs", "abc"]),
    ("73-flavor-bogus", lambda t: RUN + ["--flavor", "bogus"]),
    ("74-case-nosuch", lambda t: RUN + ["--case", "nosuch"]),
    ("75-case-bracket", lambda t: RUN + ["--case", "["]),
    ("76-area-nosuch", lambda t: RUN + ["--area", "nosuch"]),
    ("77-runtime-empty", lambda t: RUN + ["--runtime", ""]),
    ("78-runtime-twice", lambda t: RUN + ["--runtime", "tini,tini"]),
    ("79-runtime-nonexistent", lambda t: RUN + ["--runtime", "/nonexistent"]),
    ("80-profile-without-runtime", lambda t: RUN + ["--profile", "clean"]),
    ("80-profile-without-value", lambda t: RUN + ["--profile"]),
    ("81-json-dev-full", lambda t: RUN + ["--case", "sigmask_survives_execve", "--flavor", "host",
                                          "--json", "/dev/full"]),
    ("82-junit-directory", lambda t: RUN + ["--case", "sigmask_survives_execve", "--flavor", "host",
                                            "--json", str(t / "r.json"), "--junit", str(t)]),
    ("83-explain-nosuch", lambda t: ["explain", "nosuch"]),
    ("84-explain-empty", lambda t: ["explain", ""]),
    ("85-lab-nosuch", lambda t: ["lab", "nosuch"]),
    ("86-lab-predict-without-equals", lambda t: ["lab", "sigmask_survives_execve", "--predict", "foo"]),
    ("87-lab-predict-unknown-key", lambda t: ["lab", "sigmask_survives_execve", "--no-build",
                                              "--predict", "nokey=1"]),
    ("88-lab-flavor-not-of-the-case", lambda t: ["lab", case_without("userns"), "--flavor", "userns"]),
    ("89-decode-zz", lambda t: ["decode", "zz"]),
    ("90-decode-empty", lambda t: ["decode", ""]),
    ("91-decode-17-digits", lambda t: ["decode", "1" * 17]),
    ("92-inspect-0", lambda t: ["inspect", "0"]),
    ("93-inspect-abc", lambda t: ["inspect", "abc"]),
    ("94-inspect-99999999", lambda t: ["inspect", "99999999"]),
    ("95-no-command", lambda t: []),
    ("x-unknown-command", lambda t: ["frobnicate"]),
    ("x-jobs-1025", lambda t: RUN + ["--jobs", "1025"]),
    ("x-jobs-empty", lambda t: RUN + ["--jobs", ""]),
    ("x-json-without-value", lambda t: RUN + ["--json"]),
    ("x-kernel-append-without-value", lambda t: RUN + ["--kernel-append"]),
    ("x-case-with-escapes", lambda t: RUN + ["--case", "\x1b[2J\x1b[31mall good\r"]),
    ("x-explain-with-newline", lambda t: ["explain", "sigmask\nkpc: all good"]),
    ("x-runtime-with-escapes", lambda t: RUN + ["--runtime", "/usr/bin/env\x1b[31m --"]),
    ("x-runtime-bidi", lambda t: RUN + ["--runtime", "/nonexistent/\u202eexe.sh --"]),
    ("x-decode-with-escapes", lambda t: ["decode", "\x1b]0;title\x07"]),
]


def test_the_list_has_every_audit_number():
    numbered = {int(i[:2]) for i, _ in BAD if i[:2].isdigit()} | {int(i[:2]) for i in VALID_IDS}
    assert numbered == set(range(1, 96))


@pytest.mark.parametrize("build", [b for _, b in BAD], ids=[i for i, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(build, request, tmp_path):
    if request.node.callspec.id[:2] in NEEDS_BUILD:
        request.getfixturevalue("built")
    made = build(tmp_path)
    argv, env = made if isinstance(made, tuple) else (made, None)
    p = kpc(argv, env)
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert p.returncode == 2, f"exit {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpc: ") and len(lines[0]) > len("kpc: ") + 5, p.stderr
    assert not CONTROL.search(p.stderr), f"raw control characters on stderr: {p.stderr!r}"


def test_the_messages_say_what_is_wrong(tmp_path):
    """Spot checks that the one line names the input, not just 'error'."""
    p = kpc(RUN + ["--runtime", '"unclosed'])
    assert "--runtime" in p.stderr and "No closing quotation" in p.stderr
    p = kpc(RUN + ["--jobs", "3000000000"])
    assert "--jobs" in p.stderr and "1024" in p.stderr
    p = kpc(["check"], cases_copy(tmp_path, toml_append('[requires]\ncaps = ["CAP_SYS_ADMNI"]')))
    assert "sigmask_survives_execve.toml" in p.stderr and "CAP_SYS_ADMNI" in p.stderr
    p = kpc(["lab", "sigmask_survives_execve", "--variant", "bogus", "--no-build"])
    assert p.stdout == "" and "no variants" in p.stderr          # refused before the exercise is printed
    p = kpc(["explain", "sigmask\nkpc: all good"])
    assert "sigmask\\nkpc: all good" in p.stderr                 # shown escaped, on the one line


# ---------------------------------------------------------------- accepted, and harmless

def _tap_directive_smuggled(text):
    """A `not ok` line whose description holds an unescaped '# TODO/SKIP'."""
    return [ln for ln in text.splitlines() if ln.startswith("not ok")
            and re.search(r"(?<!\\)#\s*(TODO|SKIP)", ln, re.I)]


def _valid_16(t):
    doc = results_doc(_result(verdict="fail", reason="x <!--<script> y"))
    out = t / "o.html"
    p = kpc(["report", write_results(t, doc=doc), "--html", str(out)])
    assert p.returncode == 0, p.stderr
    assert "<!--<script>" not in out.read_text()                 # it swallowed the page's own script


def _valid_17(t):
    doc = results_doc(_result(case="sigmask_survives_execve # TODO", verdict="fail"))
    out = t / "o.tap"
    p = kpc(["report", write_results(t, doc=doc), "--tap", str(out)])
    if p.returncode == 2:                                         # refused as a malformed case name: fine
        assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("kpc: ")
        return
    assert p.returncode == 0, p.stderr
    assert not _tap_directive_smuggled(out.read_text())


def _valid_18(t):
    doc = results_doc(_result(case="x` <img src=https://attacker.example/pixel.png> @octocat `y", verdict="fail"))
    out = t / "o.md"
    p = kpc(["report", write_results(t, doc=doc), "--markdown", str(out)])
    if p.returncode == 2:
        assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("kpc: ")
        return
    assert p.returncode == 0, p.stderr
    assert "<img" not in out.read_text()


def _valid_19(t):
    new = results_doc(_result(verdict="fail", reason="\r\x1b[2K\x1b[32mall good"), _result("handler_reset_by_execve"))
    p = kpc(["diff", good(t), write_results(t, doc=new, name="new.json")])
    assert p.returncode == 1, p.stdout + p.stderr                 # a regression, and says so
    assert "REGRESSION" in p.stdout
    assert not CONTROL.search(p.stdout + p.stderr), repr(p.stdout)


def _valid_20(t):
    # Against the same report of a tenth of the results: on a loaded machine
    # the absolute time is no measure (4.02 s once on fresh Debian 11 at load
    # 35). Ten times the results: linear is at most ~10x the tenth (~2x where
    # start-up dominates; 8.3x on Debian 13's faster Python 3.13), quadratic
    # ~100x: the bound sits between.
    (t / "small").mkdir()
    small = results_doc(*[_result(case=f"c{i:05d}") for i in range(2000)])
    base = kpc(["report", write_results(t / "small", doc=small), "--html", str(t / "small" / "o.html")])
    assert base.returncode == 0, base.stderr
    doc = results_doc(*[_result(case=f"c{i:05d}") for i in range(20000)])
    p = kpc(["report", write_results(t, doc=doc), "--html", str(t / "o.html")])
    assert p.returncode == 0, p.stderr
    assert p.took < 25 * base.took, (f"{p.took:.1f} s for 20 000 results, {base.took:.1f} s for 2 000 "
                                     "(quadratic: 8 s against 0.4 s; linear: 0.6 s against 0.35 s)")


def _valid_35(t):
    # Against the same lint without them: the suite's own rows take seconds
    # on a loaded machine (108 cases: 6.5 s once), the 36 rows must add
    # little (exponential pairing: 29 s for them alone).
    base = kpc(["check"], expected_copy(t / "base"))
    p = kpc(["check"], expected_copy(t, add_rows(disjoint_rows(36))))
    assert base.returncode == 0 and p.returncode == 0, p.stderr
    assert p.took - base.took < 3, f"36 rows added {p.took - base.took:.1f} s to the lint ({base.took:.1f} s without)"


def _valid_59(t):
    if not shutil.which("tini"):
        pytest.skip("tini is not installed")
    prefix = f"{shutil.which('tini')} -s --"
    out = t / "r.json"
    p = kpc(RUN + ["--runtime", prefix, "--case", "inherited_signal_state", "--json", str(out)])
    assert p.returncode in (0, 1) and "Traceback" not in p.stderr, p.stderr
    (r,) = json.loads(out.read_text())["results"]
    assert r["runtime"] == prefix and r["profile"] == "clean"     # its own column, the profile it was judged by
    assert f"runtime {prefix} " in p.stderr


VALID = [("16-reason-opens-a-script", _valid_16), ("17-case-name-with-todo", _valid_17),
         ("18-case-name-with-markdown", _valid_18), ("19-reason-with-escapes-in-diff", _valid_19),
         ("20-20000-results", _valid_20), ("35-36-disjoint-rows", _valid_35),
         ("59-runtime-prefix-running-tini", _valid_59)]
VALID_IDS = [i for i, _ in VALID]
NEEDS_BUILD |= {"59"}


@pytest.mark.parametrize("check", [c for _, c in VALID], ids=VALID_IDS)
def test_hostile_but_valid_input_is_accepted_and_harmless(check, request, tmp_path):
    if request.node.callspec.id[:2] in NEEDS_BUILD:
        request.getfixturevalue("built")
    check(tmp_path)
