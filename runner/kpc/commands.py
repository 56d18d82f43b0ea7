"""What each `./kpc` command does, called by cli.py with its parsed
arguments (argparse.Namespace); a command returns the exit code
(messages.EXIT_*) and says what is wrong with its input by raising
messages.InputError (one line, exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Callable

from . import build, cases, columns, envinfo, evaluate, paths, report, session, tables
from .messages import EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, InputError, say

if TYPE_CHECKING:
    import argparse

DEFAULT_JSON = os.path.join("results", "runs", "last.json")
# Under `./kpc run` (python3 -m pytest runner/suite keeps them all).
NOT_USED_PYTEST_PLUGINS = ("cacheprovider", "terminal", "stepwise", "logging", "warnings", "capture", "unittest",
                           "nose", "doctest", "junitxml", "pastebin", "setuponly", "setupplan", "legacypath",
                           "python_path", "recwarn", "monkeypatch", "tmpdir", "debugging", "threadexception",
                           "unraisableexception")
PYTHON = "/usr/bin/python3"


def _load_cases_and_tables():
    try:
        all_cases = cases.load_all()
        tbl = tables.load(all_cases)
    except (cases.CaseError, tables.TableError) as e:
        raise InputError(str(e)) from None
    return all_cases, tbl


def _select(all_cases, patterns, areas):
    try:
        return cases.select(all_cases, patterns, areas)
    except cases.SelectionError as e:
        raise InputError(str(e) + ("; `./kpc list` shows the ids" if e.nothing_selected else "")) from None


def _ensure_build(no_build, with_tests=False):
    """A BuildError goes to main(), which prints it with the tool's output."""
    build.check_trusted()
    if no_build:
        if not os.path.exists(paths.launcher()):
            raise InputError(f"--no-build given but {paths.launcher()} does not exist")
        return
    build.ensure_packages(with_tests=with_tests)
    build.build(with_tests=with_tests)


# ---------------------------------------------------------------- run

def _show_path(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _render_outputs(doc, args, all_cases):
    """--html / --markdown / --tap FILE ('-' = standard output; see
    safefile.write for what kpc refuses to write through)."""
    from . import formats, render
    outputs = {"html": lambda: render.html_report(doc, render.lab_notes(all_cases)),
               "markdown": lambda: render.markdown(doc), "tap": lambda: render.tap(doc),
               "ktap": lambda: formats.ktap(doc),
               "kcidb": lambda: json.dumps(formats.kcidb(doc, origin=args.kcidb_origin), indent=1) + "\n"}
    for key, make in outputs.items():
        path = getattr(args, key, None)
        if path:
            render.write(path, make())


def cmd_report(args: argparse.Namespace) -> int:
    from . import render
    if not (args.html or args.markdown or args.tap or args.ktap or args.kcidb):
        raise InputError("report: say what to write: --html FILE, --markdown FILE, --tap FILE, --ktap FILE or "
                         "--kcidb FILE ('-' = stdout)")
    try:
        doc = render.load(args.results)
        all_cases = cases.load_all()
    except (render.RenderError, cases.CaseError) as e:
        raise InputError(str(e)) from None
    try:
        _render_outputs(doc, args, all_cases)
    except OSError as e:
        raise InputError(f"cannot write the report: {e}") from None
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from . import render
    try:
        docs = [(p, render.load(p)) for p in args.results]
        merged = render.merge(docs)
    except render.RenderError as e:
        raise InputError(str(e)) from None
    try:
        render.write(args.output, json.dumps(merged, indent=1, allow_nan=False) + "\n")
    except OSError as e:
        raise InputError(f"cannot write {render.visible(args.output)}: {e}") from None
    cols = sorted({render.visible(render.column(r)) for r in merged["results"]})
    # with -o - the merged JSON is standard output: the summary goes to stderr
    print(f"merged {len(docs)} files, {len(merged['results'])} runs, columns: {', '.join(cols)} -> "
          f"{render.visible(args.output)}", file=sys.stderr if args.output == "-" else sys.stdout)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from . import render
    try:
        old, new = render.load(args.old), render.load(args.new)
    except render.RenderError as e:
        raise InputError(str(e)) from None
    changes = render.diff(old, new)
    regressions = [c for c in changes if render.is_regression(c.before, c.after)]
    for rid, a, b, reason in changes:
        # names and reasons come from the files: no control character reaches the terminal
        mark = "REGRESSION " if render.is_regression(a, b) else ""
        print(f"{mark}{render.visible(rid)}: {a or 'absent'} -> {b or 'absent'}"
              + (f"  ({render.visible(reason)})" if b in render.BAD else ""))
    print(f"{len(changes)} changed, {len(regressions)} regressions "
          f"({len(old['results'])} runs before, {len(new['results'])} after)")
    return EXIT_FAIL if regressions else EXIT_OK


def prepare(no_build: bool, check_args: Callable[[dict[str, cases.Case]], None] | None = None) \
        -> tuple[dict[str, cases.Case], tables.Tables, envinfo.Environment]:
    """What both ways into the suite do before their session: load the
    cases and tables, check the caller's arguments (check_args), build
    (installing missing packages as root), describe this machine. Used by
    `./kpc run` (cmd_run) and by `python3 -m pytest runner/suite`
    (pytest_plugin.configure_direct), so the two judge alike."""
    all_cases, tbl = _load_cases_and_tables()
    if check_args:
        check_args(all_cases)
    _ensure_build(no_build)
    env = envinfo.detect()
    # The launcher refuses a $TMPDIR others could replace run directories
    # in; its flavor check says so once (every run would be a skip).
    if env.flavors.get("host", "").startswith("run directory base:"):
        raise InputError(env.flavors["host"])
    return all_cases, tbl, env


def write_results(sess: session.Session, env: envinfo.Environment, json_path: str | None) -> dict:
    """The results file of the session's finished runs (default
    results/runs/last.json, one writer at a time); returns the document."""
    done = [i for i in sess.items if i.done.is_set()]
    for item in done:
        sess.verdict(item)   # those pytest did not ask for (after -x) too
    if json_path:
        return report.write_json(json_path, done, env, sess.wall_s, kernels=sess.kernel_report())
    json_path = os.path.join(paths.ROOT, DEFAULT_JSON)
    # two runs in one checkout: one after the other (and each through its own temporary file)
    with report.results_lock(os.path.dirname(json_path)):
        return report.write_json(json_path, done, env, sess.wall_s, kernels=sess.kernel_report())


def cmd_run(args: argparse.Namespace) -> int:
    def check_args(all_cases):
        nonlocal selected, flavors, rts
        selected = _select(all_cases, args.case, args.area)
        flavors = args.flavor or list(cases.FLAVORS)
        rts = columns.runtimes_for(args)
        columns.check_kernel_args(args)
        # (Asked only when given: each imports what guests and SSH targets
        # need -- ~17 ms before a host suite could start.)
        if args.target:
            columns.check_targets(args)
        if args.no_host and not (args.kernels or args.kernel or args.target):
            raise InputError("--no-host needs --kernels, --kernel or --target (something has to run)")

    selected, flavors, rts = [], [], []
    all_cases, tbl, env = prepare(args.no_build, check_args)
    if rts:
        env.runtimes = {r.name: r.describe() for r in rts}
        for r in rts:
            say(f"runtime {r.name} {r.version or ''}: profile {r.profile}"
                + (f"; skipped: {r.unavailable}" if r.unavailable else "")
                + (f" ({r.profile_note})" if r.profile_note else ""))
    kernels_ = columns.kernels_for(args) if args.kernels or args.kernel else []
    remote = columns.ssh_targets(args, labels=[k.label for k in kernels_]) if args.target else []
    try:
        sess = session.Session(all_cases, tbl, env, selected, flavors, jobs=args.jobs, slow=args.slow,
                               runtimes=rts, kernels=kernels_, host=not args.no_host,
                               kernel_append=args.kernel_append or "", targets=remote)
    except BaseException:
        for t in remote:
            t.join()   # removes the copied bundle
        raise
    if not sess.items:
        if rts:
            raise InputError("none of the selected cases runs under a runtime (metadata under_runtimes = true)")
        raise InputError(f"the selected cases do not run in flavor(s) {', '.join(flavors)}")

    # The runs start now, before pytest is imported and collects: the
    # launcher works while pytest starts up (the items wait for their runs).
    try:
        sess.start()
        import pytest  # Debian's python3-pytest
        from .pytest_plugin import KpcPlugin
    except BaseException:
        sess.stop()
        raise

    plugin = KpcPlugin(sess)
    pytest_args = [os.path.join(paths.RUNNER, "suite", "test_suite.py"),
                   "--rootdir", os.path.join(paths.RUNNER, "suite"), "-c", os.devnull,
                   "--noconftest"]   # runner/suite/conftest.py is for python3 -m pytest runner/suite
    # pytest's plugins that nothing here uses: kpc prints and writes its
    # own reports (nothing is captured), and the suite's tests take no
    # fixtures. Each costs an import and, for some, hooks around every
    # run's three phases.
    for name in NOT_USED_PYTEST_PLUGINS:
        pytest_args += ["-p", f"no:{name}"]
    try:
        pytest_rc = pytest.main(pytest_args, plugins=[plugin])
    except KeyboardInterrupt:
        pytest_rc = pytest.ExitCode.INTERRUPTED
    finally:
        sess.stop()
    interrupted = pytest_rc == pytest.ExitCode.INTERRUPTED
    if pytest_rc in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR) or plugin.collect_errors:
        say(f"pytest could not run the suite (exit {int(pytest_rc)})")
        return EXIT_INPUT

    done = [i for i in sess.items if i.done.is_set()]
    for item in done:
        sess.verdict(item)
    report.print_table(done, list(cases.FLAVORS), verbose=args.verbose, wall_s=sess.wall_s)
    json_path = args.json or os.path.join(paths.ROOT, DEFAULT_JSON)
    try:
        doc = write_results(sess, env, args.json)
        if args.junit:
            report.write_junit(args.junit, done, env, sess.wall_s)
        _render_outputs(doc, args, all_cases)
    except OSError as e:
        raise InputError(f"cannot write results: {e} (choose another place with --json FILE / --junit FILE)") from None
    extra = [f"{k}: {_show_path(getattr(args, k))}" for k in ("junit", "html", "markdown", "tap", "ktap", "kcidb")
             if getattr(args, k, None) and getattr(args, k) != "-"]
    print(f"results: {_show_path(json_path)}" + "".join(f", {x}" for x in extra))
    if interrupted:
        say(f"interrupted: {len(sess.items) - len(done)} of {len(sess.items)} runs not reported")
        return EXIT_INTERRUPTED
    if sess.launcher_failure:
        say(sess.launcher_failure)
    for run in sess.unrecovered:
        stuck = ", ".join(f"{t.get('tid')} ({t.get('comm')})" for t in run.get("left_running", [])) or "?"
        say(f"{run.get('run')}: tasks kpc could not free are still on this machine: {stuck}; as root, abort the "
            f"FUSE connections they wait on (echo 1 > /sys/fs/fuse/connections/N/abort)")
    for label, why in sess.guest_failures.items():
        say(f"{'kernel ' if label in [k.label for k in sess.kernels] else 'target '}{label}: {why}")
    bad = [i for i in done if i.verdict.verdict in evaluate.BAD]
    return EXIT_FAIL if bad or sess.launcher_failure or sess.guest_failures or sess.unrecovered else EXIT_OK


def cmd_bundle(args: argparse.Namespace) -> int:
    from . import bundle
    all_cases, _ = _load_cases_and_tables()
    _ensure_build(args.no_build)
    try:
        size = bundle.build(all_cases, args.output)
    except bundle.BundleError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"cannot write {render_visible(args.output)}: {e}") from None
    if args.output != "-":
        print(f"bundle: {_show_path(args.output)} ({size / 1e6:.1f} MB, {len(all_cases)} cases); on the device: "
              f"tar xf {os.path.basename(args.output)} && kpc/run")
    return EXIT_OK


def render_visible(text: str) -> str:
    from .render import visible
    return visible(text)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """The runs a bundle recorded elsewhere, judged here (targets.ReplayTarget)."""
    from . import targets
    all_cases, tbl = _load_cases_and_tables()
    selected = _select(all_cases, args.case, args.area)
    try:
        t = targets.ReplayTarget(args.events, label=args.label)
    except targets.TargetError as e:
        raise InputError(str(e)) from None
    sess = session.Session(all_cases, tbl, t.env, selected, args.flavor or list(cases.FLAVORS), jobs=1,
                           slow=t.slow, host=False, targets=[t])
    if not sess.items:
        raise InputError(f"the selected cases do not run in flavor(s) {', '.join(args.flavor or [])}")
    sess.run_all()
    report.print_table(sess.items, list(cases.FLAVORS), verbose=args.verbose, wall_s=sess.wall_s)
    kernels = sess.kernel_report()
    try:
        if args.json:
            doc = report.write_json(args.json, sess.items, t.env, sess.wall_s, kernels=kernels)
        else:
            doc = report.document(sess.items, t.env, sess.wall_s, kernels=kernels)
        if args.junit:
            report.write_junit(args.junit, sess.items, t.env, sess.wall_s)
        _render_outputs(doc, args, all_cases)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write results: {e}") from None
    if t.failure:
        say(t.failure)
    bad = [i for i in sess.items if i.verdict.verdict in evaluate.BAD]
    return EXIT_FAIL if bad or t.failure else EXIT_OK


# ---------------------------------------------------------------- list / explain / check

def cmd_list(args: argparse.Namespace) -> int:
    all_cases = _load_cases_or_fail()
    if args.course:
        from . import lab
        return lab.list_course(all_cases)
    rows = [c for c in all_cases.values() if not args.area or c.area in args.area]
    width = max([len(c.id) for c in rows] + [2])
    for c in rows:
        print(f"{c.id.ljust(width)}  {c.area:<8}  {c.summary}")
    return EXIT_OK


def _load_cases_or_fail():
    try:
        return cases.load_all()
    except cases.CaseError as e:
        raise InputError(str(e)) from None


def cmd_explain(args: argparse.Namespace) -> int:
    all_cases, tbl = _load_cases_and_tables()
    case = all_cases.get(args.id)
    if case is None:
        close = [c for c in all_cases if args.id in c or c in args.id]
        hint = f" (did you mean: {', '.join(close[:5])}?)" if close else "; `./kpc list` shows the ids"
        raise InputError(f"unknown case id '{args.id}'{hint}")
    rel = lambda p: os.path.relpath(p, paths.ROOT)  # noqa: E731
    print(f"{case.id}  ({case.area})\n  {case.summary}\n")
    print(f"probe source   {rel(case.source_path)}" + (f"  (args: {' '.join(case.args)})" if case.args else ""))
    print(f"metadata       {rel(case.metadata_path)}")
    print(f"expected rows  {rel(case.table_path)}"
          + ("" if case.id in tbl.sections else f"  (no [{case.id}] section yet)"))
    print(f"lab note       {rel(case.note_path)}" + ("" if os.path.exists(case.note_path) else "  (missing)"))
    print(f"flavors        {', '.join(case.flavors)}")
    for f, why in case.flavor_notes.items():
        print(f"  not {f}: {why}")
    if case.variants:
        print(f"variants       {', '.join(case.variants)}")
    print(f"timeout        {case.timeout_s:g} s (hang threshold {case.hang_ms} ms" +
          (f"; after a hang, {case.hang_grace_ms} ms with only its FUSE connections aborted before its tree is "
           f"killed)" if case.hang_grace_ms else ")"))
    r = case.requires
    needs = [n for n in ("root" if r.root else "", *(f"cap {c}" for c in r.caps), *r.kconfig,
                         f"kernel {r.kernel}" if r.kernel else "", *(f"file {p}" for p in r.files),
                         *(f"command {c}" for c in r.commands)) if n]
    print(f"requires       {', '.join(needs) or 'nothing special'}")
    if case.catalogue:  # the coverage catalogue's behaviours (bench/coverage.py)
        print(f"catalogue      {', '.join(case.catalogue)}")
    for line in case.provenance_lines():
        print(f"  {line}")
    from . import manpages
    for quote in manpages.quotes_of(case):
        print(f"  quote: {quote}")
    rows = tbl.rows_for(case.id)
    if rows:
        print("\nexpected:")
        for row in rows:
            print(f"  {row.describe()}    [{row.where}]")
    if os.path.exists(case.note_path):
        with open(case.note_path, encoding="utf-8") as f:
            print("\n" + f.read().rstrip())
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from . import lab
    all_cases, tbl = _load_cases_and_tables()
    missing = []
    for case in all_cases.values():
        if case.id not in tbl.sections:
            missing.append(f"{case.id}: no [{case.id}] section in {os.path.relpath(case.table_path, paths.ROOT)}")
        missing += lab.note_problems(case)
    missing += lab.lint(all_cases, tbl)
    quote_problems, quote_note = lab.check_quotes(all_cases)
    missing += quote_problems
    for m in missing:
        print(m)
    print(quote_note)
    n_rows = sum(len(r) for r in tbl.rows.values())
    summary = f"{len(all_cases)} cases, {n_rows} expected rows: "
    if not missing:
        print(summary + "ok")
        return EXIT_OK
    sys.stdout.flush()
    say(summary + f"{len(missing)} problems (listed above)")
    return EXIT_INPUT


# ---------------------------------------------------------------- selftest

def cmd_selftest(args: argparse.Namespace) -> int:
    """The project's own tests: GoogleTest (ctest), pytest for the runner
    (its tests run the suite end to end on this host, and clang-format and
    flake8 over the code), then `kpc check` (cases, tables, lab notes)."""
    bdir = paths.build_dir()
    if os.path.isdir(bdir) and not os.access(bdir, os.W_OK):
        # ctest writes its logs and GoogleTest's test list there.
        raise InputError(f"selftest writes to the build directory {bdir}, which this user cannot write: run it as "
                         f"the checkout's owner, or in a clone of your own")
    _ensure_build(args.no_build, with_tests=True)
    # ctest in the build directory: CMake 3.18 (Debian 11) has no --test-dir and
    # took the source tree for it, finding no tests and passing (--no-tests=error).
    steps = [
        ("unit tests (ctest)", ["ctest", "--output-on-failure", "--no-tests=error"], paths.build_dir()),
        ("runner tests (pytest)", [PYTHON, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                   "--rootdir", paths.RUNNER, "-c", os.devnull,
                                   *(["-k", args.k] if args.k else []), os.path.join(paths.RUNNER, "tests")]),
        ("lint (cases, tables, lab notes)", [sys.executable, os.path.join(paths.ROOT, "kpc"), "check"]),
    ]
    failed = []
    for label, cmd, *cwd in steps:
        say(f"selftest: {label}")
        sys.stdout.flush()
        rc = subprocess.run(cmd, cwd=cwd[0] if cwd else paths.ROOT).returncode
        if rc != 0:
            failed.append(f"{label} (exit {rc})")
    if failed:
        say("selftest FAILED: " + "; ".join(failed))
        return EXIT_FAIL
    say("selftest passed")
    return EXIT_OK


# ---------------------------------------------------------------- lab / grade / handout (kpc/lab.py)

def _lab(fn, args, build=True):
    """Load cases and tables, then hand over to kpc/lab.py; its LabError is
    bad input (exit 2)."""
    from . import lab
    all_cases, tbl = _load_cases_and_tables()
    try:
        if build:
            return fn(args, all_cases, tbl, lambda: _ensure_build(args.no_build))
        return fn(args, all_cases, tbl)
    except lab.LabError as e:
        raise InputError(str(e)) from None


def cmd_lab(args: argparse.Namespace) -> int:
    """Predict, run, compare: for a student."""
    from . import lab
    return _lab(lab.run_lab, args)


def cmd_grade(args: argparse.Namespace) -> int:
    from . import lab
    return _lab(lab.grade, args)


def cmd_handout(args: argparse.Namespace) -> int:
    from . import lab
    return _lab(lab.handout, args, build=False)


# ---------------------------------------------------------------- decode / inspect

def cmd_decode(args: argparse.Namespace) -> int:
    """Masks as arguments, or (with '-') a pasted /proc/PID/status or some
    of its lines on standard input."""
    from . import sigstate
    if args.mask == ["-"]:
        try:
            for field, raw, names in sigstate.decode_lines(sys.stdin.read(1 << 20)):
                print(f"{field}: {raw} = {sigstate.names_of(names)}")
        except ValueError as e:
            raise InputError(str(e)) from None
        return EXIT_OK
    masks = []
    i = 0
    while i < len(args.mask):   # a pasted 'SigBlk: 000...' arrives as two words
        word = args.mask[i]
        if word.endswith(":") and i + 1 < len(args.mask):
            word += " " + args.mask[i + 1]
            i += 1
        masks.append(word)
        i += 1
    for mask in masks:
        try:
            names = sigstate.decode(mask)
        except ValueError as e:
            raise InputError(str(e)) from None
        prefix = f"{mask}: " if len(masks) > 1 else ""
        print(prefix + ("|".join(names) or "none") + _annotation(names))
    return EXIT_OK


def _annotation(names):
    from . import values
    odd = [values.signal_number(n) for n in names if values.signal_number(n) >= 32]
    return ("  (" + ", ".join(f"{values.signal_name(n)} = {values.signal_alias(n)}" for n in odd) + ")") if odd else ""


def cmd_inspect(args: argparse.Namespace) -> int:
    import json as json_mod
    from . import sigstate
    sig = None
    if args.signal:
        try:
            sig = sigstate.parse_signal(args.signal)
        except ValueError as e:
            raise InputError(str(e)) from None
    rc = EXIT_OK
    for pid in args.pid:
        try:
            info = sigstate.inspect(pid)
        except FileNotFoundError:
            say(f"no process {pid}")
            rc = EXIT_INPUT
            continue
        except OSError as e:
            say(f"cannot read /proc/{pid}: {e.strerror}")
            rc = EXIT_INPUT
            continue
        if sig is not None:
            answer = sigstate.what_if(info, sig)
            print(json_mod.dumps(answer, indent=1) if args.json else sigstate.format_what_if(info, answer))
        else:
            print(json_mod.dumps(info, indent=1) if args.json else sigstate.format_inspect(info))
    return rc
