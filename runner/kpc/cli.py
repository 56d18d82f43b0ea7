"""./kpc — the command line.

Exit codes: 0 every run passed, xfailed or skipped; 1 a fail, hang or error
verdict (or a failing selftest, or a regression in `kpc diff`); 2 bad usage
or bad input (case metadata, expected tables, a results file, a build that
cannot be made, an output file kpc will not write); 3 an internal error (a
bug in kpc: never read as a fail or a regression); 130 interrupted.
"""

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys

from . import build, cases, cross, envinfo, evaluate, paths, report, runtimes, session, tables

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_JOBS = 1024  # more is a typo (3000000000 overflowed the launcher's int after the run had started)
# The suite's runs wait far more than they compute: 8 per CPU measured best
# on 2 cores (host suite 1.4 s at 16, 1.7 s at 8, 2.0 s at 32; verdicts the
# same as --jobs 1). bench/overhead.py prints the figures.
DEFAULT_JOBS = min(8 * (os.cpu_count() or 2), 64)
DEFAULT_JSON = os.path.join("results", "runs", "last.json")
EXIT_BROKEN_PIPE = 128 + 13   # SIGPIPE, as a shell reports a reader that went away
OUTPUT_HELP = ("Output FILEs: '-' is standard output; a symbolic link is refused (give the file it points to), "
               "a device or FIFO of root or yours (/dev/null) is written through, anything else is replaced "
               "atomically through a new randomly named file in the same directory.")
PYTHON = "/usr/bin/python3"


class InputError(Exception):
    """Bad usage or bad input files: exit code 2."""


# C0/C1 controls (ESC starts terminal escapes, CR rewrites the line, LF
# makes a second line), DEL, lone surrogates (undecodable bytes of a path),
# and Unicode's invisible format and line-separator characters.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def printable(text):
    """Text for the terminal: every unprintable character as its Python
    escape (\\x1b, \\n), so input quoted in a message (a file name, a
    table row, a --runtime) can neither move the cursor, recolour, rewrite
    or add lines, nor hide what it is."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def _say(msg):
    sys.stderr.write(f"kpc: {printable(str(msg))}\n")


# ---------------------------------------------------------------- helpers

def _load_cases_and_tables():
    try:
        all_cases = cases.load_all()
        tbl = tables.load(all_cases)
    except (cases.CaseError, tables.TableError) as e:
        raise InputError(str(e)) from None
    return all_cases, tbl


def _select(all_cases, patterns, areas):
    chosen = []
    for case in all_cases.values():
        if areas and case.area not in areas:
            continue
        if patterns and not any(fnmatch.fnmatchcase(case.id, p) for p in patterns):
            continue
        chosen.append(case)
    if not chosen:
        what = " ".join(patterns or []) or "(all)"
        raise InputError(f"no case matches --case {what}" + (f" in area {','.join(areas)}" if areas else "")
                         + "; `./kpc list` shows the ids")
    return chosen


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


def cmd_report(args):
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


def cmd_merge(args):
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


def cmd_diff(args):
    from . import render
    try:
        old, new = render.load(args.old), render.load(args.new)
    except render.RenderError as e:
        raise InputError(str(e)) from None
    changes = render.diff(old, new)
    regressions = [c for c in changes if render.is_regression(c[1], c[2])]
    for rid, a, b, reason in changes:
        # names and reasons come from the files: no control character reaches the terminal
        mark = "REGRESSION " if render.is_regression(a, b) else ""
        print(f"{mark}{render.visible(rid)}: {a or 'absent'} -> {b or 'absent'}"
              + (f"  ({render.visible(reason)})" if b in render.BAD else ""))
    print(f"{len(changes)} changed, {len(regressions)} regressions "
          f"({len(old['results'])} runs before, {len(new['results'])} after)")
    return EXIT_FAIL if regressions else EXIT_OK


def _check_kernel_args(args):
    """--kernels / --kernel / --kernel-append / --no-host: what can be told
    wrong from the words alone, before anything is built or fetched."""
    if args.no_host and not (args.kernels or args.kernel or getattr(args, "target", None)):
        raise InputError("--no-host needs --kernels, --kernel or --target (something has to run)")
    if args.kernel_append is not None:
        if not (args.kernels or args.kernel):
            raise InputError("--kernel-append needs --kernels or --kernel (it is for the guests' kernels)")
        if not args.kernel_append.strip() or any(ord(c) < 32 for c in args.kernel_append):
            raise InputError("--kernel-append: give kernel parameters on one line, e.g. 'lsm=lockdown,yama'")
    if args.kernels and not _kernel_requests(args):
        raise InputError("--kernels: give version series or suites, e.g. --kernels 6.1,6.12")
    if any(not spec for spec in args.kernel or []):
        raise InputError("--kernel: give a path, e.g. --kernel arch/x86/boot/bzImage")
    arches = _arches(args)
    if getattr(args, "arch", None) is not None and not args.kernels:
        raise InputError("--arch needs --kernels (it chooses the Debian kernels' architecture)")
    if args.kernel and "amd64" not in arches:
        raise InputError("--kernel boots an x86_64 bzImage; --arch applies to --kernels (add amd64 to --arch)")


def guest_mod():
    from . import guest
    return guest


def _arches(args):
    """--arch LIST: Debian architecture names, amd64 when not given. Checked
    from the words alone (one line and exit 2)."""
    from .kernels import ARCHES
    if getattr(args, "arch", None) is None:
        return ["amd64"]
    out = []
    for spec in args.arch:
        for a in spec.split(","):
            a = a.strip()
            if a not in ARCHES:
                shown = render_visible(a)[:40] if a else "''"
                raise InputError(f"--arch {shown}: give {' or '.join(ARCHES)} (comma-separated), "
                                 f"e.g. --arch amd64,arm64")
            if a in out:
                raise InputError(f"--arch: {a} given twice")
            out.append(a)
    return out


def _kernel_label(req, arch, arches):
    """A --kernels column's name: the request, with the arch when it is not
    amd64 or when the matrix has more than one (6.1, 6.1-arm64, 6.1-amd64)."""
    return req if arches == ["amd64"] else f"{req}-{arch}"


def _kernel_requests(args):
    return [r.strip() for spec in args.kernels or [] for r in spec.split(",") if r.strip()]


def _kernels(args):
    """--kernels / --kernel: the kernels to boot, fetched and cached (the
    arguments were checked by _check_kernel_args)."""
    from . import kernels
    if not (args.kernels or args.kernel):
        return []
    requests = _kernel_requests(args)
    try:
        # What can be refused is refused before QEMU (100 MB) is installed as
        # root: a wrong --kernel file, a KPC_DEBIAN_MIRROR that is not one URI,
        # a kernel cache someone else could write
        given = [kernels.from_path(spec) for spec in args.kernel or []]
        if requests:
            kernels.debian_uri()
        kernels.check_cache()
    except kernels.KernelError as e:
        raise InputError(str(e)) from None
    build.ensure_packages(extra=build.VM_PACKAGES)   # a BuildError: main() prints it with apt's output
    arches = _arches(args)
    foreign = [a for a in arches if a != guest_mod().HOST_ARCH] if requests else []
    extra = {}
    for a in foreign:
        extra.update(cross.HOST_PACKAGES.get(a, {}))
    if extra:
        build.ensure_packages(extra=dict(build.VM_PACKAGES, **extra))
    try:
        kernels.check_cache()
        found = []
        for a in arches if requests else []:
            found += kernels.fetch_debian(requests, refresh=args.refresh_kernels, arch=a,
                                          label=lambda r, a=a: _kernel_label(r, a, arches))
        found += given
        for a in foreign:
            if a not in cross.TRIPLET:
                raise InputError(f"--arch {a}: kpc cannot cross-build for it on this {os.uname().machine} host")
            _say(f"{a}: the suite cross-built in {os.path.relpath(cross.build_dir(a), paths.ROOT)}/")
            guest_mod().CROSS[a] = cross.ensure(a, no_build=args.no_build, refresh=args.refresh_kernels)
    except kernels.KernelError as e:
        raise InputError(str(e)) from None
    except cross.CrossError as e:
        raise InputError(f"--arch: {e}") from None
    labels = [k.label for k in found]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"kernel {', '.join(dup)} given twice")
    for k in found:
        _say(f"kernel {k.label}: {k.release} ({k.arch}; {k.origin})"
             + (f"; booted with {args.kernel_append}" if args.kernel_append else ""))
    return found


def _check_targets(args):
    """--target URLs, checked from the words alone (before the build)."""
    from . import sshtarget
    for url in args.target or []:
        try:
            sshtarget.parse_url(url)
        except ValueError as e:
            raise InputError(str(e)) from None


def _ssh_targets(args, labels):
    """--target: a bundle copied to each machine, its facts read
    (sshtarget.SshTarget.prepare); the copies are removed again if one fails."""
    from . import sshtarget, targets
    if not args.target:
        return []
    if args.runtime:
        raise InputError("--runtime runs on this machine only; leave out --target")
    try:
        path = sshtarget.bundle_for_targets()
    except (OSError, paths.PrivateDirError) as e:
        raise InputError(f"cannot make the bundle for --target: {e}") from None
    prepared = []
    try:
        for url in args.target:
            t = sshtarget.SshTarget(url, slow=args.slow)
            if t.label in labels + [p.label for p in prepared] or t.label == "host":
                raise InputError(f"--target {url}: {t.label} given twice")
            _say(f"target {url}: copying the bundle")
            t.prepare(path)
            _say(f"target {url}: {t.env.kernel} ({t.env.distro}), bundle in {t.remote_dir}")
            prepared.append(t)
    except targets.TargetError as e:
        for t in prepared:
            t.join()
        raise InputError(str(e)) from None
    except BaseException:
        for t in prepared:
            t.join()
        raise
    return prepared


def _runtimes(args):
    """--runtime / --profile -> [runtimes.Runtime] (checked before the build)."""
    if not args.runtime:
        if args.profile:
            raise InputError("--profile asserts a profile for a --runtime: give one")
        return []
    try:
        return runtimes.parse_list(",".join(args.runtime), args.profile)
    except ValueError as e:
        raise InputError(str(e)) from None


def cmd_run(args):
    all_cases, tbl = _load_cases_and_tables()
    selected = _select(all_cases, args.case, args.area)
    flavors = args.flavor or list(cases.FLAVORS)
    rts = _runtimes(args)
    _check_kernel_args(args)
    _check_targets(args)
    if args.no_host and not (args.kernels or args.kernel or args.target):
        raise InputError("--no-host needs --kernels, --kernel or --target (something has to run)")
    _ensure_build(args.no_build)
    env = envinfo.detect()
    # The launcher refuses a $TMPDIR others could replace run directories
    # in; its flavor check says so once (every run would be a skip).
    if env.flavors.get("host", "").startswith("run directory base:"):
        raise InputError(env.flavors["host"])
    if rts:
        env.runtimes = {r.name: r.describe() for r in rts}
        for r in rts:
            _say(f"runtime {r.name} {r.version or ''}: profile {r.profile}"
                 + (f"; skipped: {r.unavailable}" if r.unavailable else "")
                 + (f" ({r.profile_note})" if r.profile_note else ""))
    kernels_ = _kernels(args)
    remote = _ssh_targets(args, labels=[k.label for k in kernels_])
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
                   "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:stepwise",
                   "-p", "no:logging", "-p", "no:warnings", "--capture=no"]
    try:
        pytest_rc = pytest.main(pytest_args, plugins=[plugin])
    except KeyboardInterrupt:
        pytest_rc = pytest.ExitCode.INTERRUPTED
    finally:
        sess.stop()
    interrupted = pytest_rc == pytest.ExitCode.INTERRUPTED
    if pytest_rc in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR) or plugin.collect_errors:
        _say(f"pytest could not run the suite (exit {int(pytest_rc)})")
        return EXIT_INPUT

    done = [i for i in sess.items if i.done.is_set()]
    for item in done:
        sess.verdict(item)
    report.print_table(done, list(cases.FLAVORS), verbose=args.verbose, wall_s=sess.wall_s)
    json_path = args.json or os.path.join(paths.ROOT, DEFAULT_JSON)
    try:
        if args.json:
            doc = report.write_json(json_path, done, env, sess.wall_s, kernels=sess.kernel_report())
        else:
            # two runs in one checkout: one after the other (and each through its own temporary file)
            with report.results_lock(os.path.dirname(json_path)):
                doc = report.write_json(json_path, done, env, sess.wall_s, kernels=sess.kernel_report())
        if args.junit:
            report.write_junit(args.junit, done, env, sess.wall_s)
        _render_outputs(doc, args, all_cases)
    except OSError as e:
        raise InputError(f"cannot write results: {e} (choose another place with --json FILE / --junit FILE)") from None
    extra = [f"{k}: {_show_path(getattr(args, k))}" for k in ("junit", "html", "markdown", "tap", "ktap", "kcidb")
             if getattr(args, k, None) and getattr(args, k) != "-"]
    print(f"results: {_show_path(json_path)}" + "".join(f", {x}" for x in extra))
    if interrupted:
        _say(f"interrupted: {len(sess.items) - len(done)} of {len(sess.items)} runs not reported")
        return EXIT_INTERRUPTED
    if sess.launcher_failure:
        _say(sess.launcher_failure)
    for run in sess.unrecovered:
        stuck = ", ".join(f"{t.get('tid')} ({t.get('comm')})" for t in run.get("left_running", [])) or "?"
        _say(f"{run.get('run')}: tasks kpc could not free are still on this machine: {stuck}; as root, abort the "
             f"FUSE connections they wait on (echo 1 > /sys/fs/fuse/connections/N/abort)")
    for label, why in sess.guest_failures.items():
        _say(f"{'kernel ' if label in [k.label for k in sess.kernels] else 'target '}{label}: {why}")
    bad = [i for i in done if i.verdict.verdict in evaluate.BAD]
    return EXIT_FAIL if bad or sess.launcher_failure or sess.guest_failures or sess.unrecovered else EXIT_OK


def cmd_bundle(args):
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


def render_visible(text):
    from .render import visible
    return visible(text)


def cmd_evaluate(args):
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
        _say(t.failure)
    bad = [i for i in sess.items if i.verdict.verdict in evaluate.BAD]
    return EXIT_FAIL if bad or t.failure else EXIT_OK


# ---------------------------------------------------------------- list / explain / check

def cmd_list(args):
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


def cmd_explain(args):
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
    print(f"expected rows  {rel(case.table_path)} [{case.id}]  ({tbl.sections.get(case.id, 'no section yet')})")
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


def cmd_check(args):
    all_cases, tbl = _load_cases_and_tables()
    missing = []
    for case in all_cases.values():
        if case.id not in tbl.sections:
            missing.append(f"{case.id}: no [{case.id}] section in {os.path.relpath(case.table_path, paths.ROOT)}")
        if not os.path.exists(case.note_path):
            missing.append(f"{case.id}: no lab note {os.path.relpath(case.note_path, paths.ROOT)}")
        else:
            with open(case.note_path, encoding="utf-8") as f:
                note = f.read()
            rel_note = os.path.relpath(case.note_path, paths.ROOT)
            if not any(m in note for m in ("**Predict.**", "**Predict:**", "**Question.**")):
                missing.append(f"{case.id}: {rel_note} has no question to predict (a '**Predict.**' paragraph)")
            if "see it yourself" not in note.lower() and "/proc" not in note:
                missing.append(f"{case.id}: {rel_note} does not say how to see it yourself "
                               f"(a '**See it yourself.**' paragraph)")
    from . import lab
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
    _say(summary + f"{len(missing)} problems (listed above)")
    return EXIT_INPUT


# ---------------------------------------------------------------- selftest

def cmd_selftest(args):
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
        _say(f"selftest: {label}")
        sys.stdout.flush()
        rc = subprocess.run(cmd, cwd=cwd[0] if cwd else paths.ROOT).returncode
        if rc != 0:
            failed.append(f"{label} (exit {rc})")
    if failed:
        _say("selftest FAILED: " + "; ".join(failed))
        return EXIT_FAIL
    _say("selftest passed")
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


def cmd_lab(args):
    """Predict, run, compare: for a student."""
    from . import lab
    return _lab(lab.run_lab, args)


def cmd_grade(args):
    from . import lab
    return _lab(lab.grade, args)


def cmd_handout(args):
    from . import lab
    return _lab(lab.handout, args, build=False)


# ---------------------------------------------------------------- decode / inspect

def cmd_decode(args):
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


def cmd_inspect(args):
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
            _say(f"no process {pid}")
            rc = EXIT_INPUT
            continue
        except OSError as e:
            _say(f"cannot read /proc/{pid}: {e.strerror}")
            rc = EXIT_INPUT
            continue
        if sig is not None:
            answer = sigstate.what_if(info, sig)
            print(json_mod.dumps(answer, indent=1) if args.json else sigstate.format_what_if(info, answer))
        else:
            print(json_mod.dumps(info, indent=1) if args.json else sigstate.format_inspect(info))
    return rc


# ---------------------------------------------------------------- main

class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other bad input (argparse's own
    form is the whole usage text, then the error)."""

    def error(self, message):
        _say(f"{message} (see: {self.prog} --help)")
        sys.exit(EXIT_INPUT)


def _jobs(text):
    """--jobs: a whole number 1..MAX_JOBS (3000000000 once reached the
    launcher and turned every run into an error verdict)."""
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"want a whole number from 1 to {MAX_JOBS}, not '{text}'")
    return n


def _format_args(p):
    for key, what in (("html", "a self-contained HTML matrix"), ("markdown", "a Markdown summary"),
                      ("tap", "TAP 13"), ("ktap", "KTAP v1 as kselftest's runner prints it"),
                      ("kcidb", "a KCIDB v5.3 document (KernelCI's database)")):
        p.add_argument(f"--{key}", metavar="FILE", help=f"also write {what} ('-' = standard output)")
    p.add_argument("--kcidb-origin", default="kpc", metavar="NAME", type=_origin,
                   help="the KCIDB origin (your CI system's registered name; default kpc)")


def _origin(text):
    from . import formats
    if not formats.ORIGIN.match(text):
        raise argparse.ArgumentTypeError(f"a KCIDB origin is lower-case letters, digits and '_', not '{text}'")
    return text


def parser():
    p = _Parser(prog="kpc",
                description="kpc: Linux process-lifecycle conformance suite. Probes record "
                            "what the kernel does; expected tables in results/expected/ say what it should do.",
                epilog="exit codes: 0 all pass/xfail/skip, 1 a fail/hang/error (kpc diff: a "
                       "regression), 2 usage or input error, 3 internal error (a bug in kpc)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run the suite and print a verdict table",
                       description="Build on first use, run the selected cases in every flavor, compare the "
                       "observations with results/expected/*.exp, print a table and write results JSON.")
    r.add_argument("--case", action="append", metavar="GLOB", help="case id or glob (repeatable), e.g. 'sig*'")
    r.add_argument("--area", action="append", metavar="AREA", help="only cases of this area (repeatable)")
    r.add_argument("--flavor", action="append", choices=cases.FLAVORS, help="only this flavor (repeatable)")
    r.add_argument("--json", metavar="FILE", help=f"results JSON (default {DEFAULT_JSON}). " + OUTPUT_HELP)
    r.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    r.add_argument("-v", "--verbose", action="store_true", help="show skip reasons and every observation")
    r.add_argument("--jobs", type=_jobs, default=DEFAULT_JOBS, metavar="N",
                   help=f"runs in parallel (default: 8 per CPU, here {DEFAULT_JOBS}: the runs mostly wait -- on "
                        f"handshakes, deadlines, a deadlock to show -- rather than compute); exclusive cases run "
                        f"alone")
    r.add_argument("--no-build", action="store_true", help="use the existing build, do not run cmake")
    r.add_argument("--runtime", action="append", metavar="SPEC",
                   help="run the runtime cases as the child of each runtime, started by a deliberately dirty "
                        "caller: known names (comma-separated: " + ", ".join(runtimes.NAMES) + ") or one command "
                        "prefix such as 'my-init --' (repeatable)")
    r.add_argument("--profile", choices=runtimes.PROFILES,
                   help="the profile the --runtime(s) promise (default: the known runtime's own; clean for a "
                        "command prefix)")
    r.add_argument("--slow", action="store_true",
                   help="also run slow cases (metadata `slow`; e.g. FUSE request timeouts need 15-30 s); CI does")
    r.add_argument("--kernels", action="append", metavar="LIST",
                   help="also run the suite inside these Debian kernels under QEMU, comma-separated version "
                        "series or suite names (e.g. 5.10,6.1,6.12,7.2 or bullseye,sid): the cloud-amd64 "
                        "(--arch: cloud-arm64) kernel "
                        "packages are fetched with apt from the Debian archive this machine is configured with, "
                        "verified, and cached in images/cache/")
    r.add_argument("--arch", action="append", metavar="LIST",
                   help="with --kernels: the kernels' architectures, comma-separated: amd64 (the default) and/or "
                        "arm64. arm64 kernels (linux-image-cloud-arm64) boot under qemu-system-aarch64 -M virt "
                        "(emulated, TCG) with the suite cross-built in build-arm64/ (g++-aarch64-linux-gnu; the "
                        "arm64 libraries and busybox are extracted from Debian's .debs into images/cache/). "
                        "Columns name the arch unless it is amd64 alone: 6.1-arm64, and "
                        "6.1-amd64 next to it")
    r.add_argument("--kernel", action="append", metavar="BZIMAGE[:MODDIR]",
                   help="also run inside a kernel you built (its lib/modules/RELEASE directory when FUSE or the "
                        "virtio console are modules) (repeatable)")
    r.add_argument("--kernel-append", metavar="PARAMS",
                   help="with --kernels/--kernel: extra kernel command-line parameters for every guest, e.g. "
                        "'lsm=lockdown,capability,yama,apparmor' (recorded in the results' kernels block)")
    r.add_argument("--no-host", action="store_true", help="with --kernels/--kernel: do not run on this machine")
    r.add_argument("--refresh-kernels", action="store_true",
                   help="refresh kpc's apt lists now (otherwise at most every 12 h) to pick up new kernels, and "
                        "extract again a cached kernel whose files no longer match their recorded SHA256")
    _format_args(r)
    r.add_argument("--target", action="append", metavar="ssh://[USER@]HOST[:PORT]",
                   help="also run the suite on another machine over SSH (repeatable): kpc copies a bundle there, "
                        "runs it, streams the events back and judges them with these tables; each target is a "
                        "column like a --kernels kernel, and nothing kpc started is left there. ssh's own "
                        "configuration applies (KPC_SSH_CONFIG=FILE: ssh -F FILE)")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="render a results JSON (or a merged one) as HTML, Markdown or TAP",
                        description="Render a results file. Results files are validated first (a malformed "
                        "one is exit 2); every string from them is escaped in every format. " + OUTPUT_HELP)
    rp.add_argument("results", help="results JSON (results/runs/last.json, or kpc merge output)")
    _format_args(rp)
    rp.set_defaults(func=cmd_report)

    bd = sub.add_parser("bundle", help="kpc for a device under test: one relocatable tarball",
                        description="Write a tarball that runs the suite on a machine without a compiler, pytest "
                        "or network: `tar xf kpc-*.tar.xz && kpc/run` judges it there (python3 >= 3.9), or "
                        "`kpc/run --events FILE` records it for `./kpc evaluate FILE` (no Python). " + OUTPUT_HELP)
    bd.add_argument("-o", "--output", required=True, metavar="FILE", help="e.g. kpc-x86_64.tar.xz")
    bd.add_argument("--no-build", action="store_true", help="use the existing build")
    bd.set_defaults(func=cmd_bundle)
    ev = sub.add_parser("evaluate", help="judge events a bundle recorded on another machine (kpc/run --events)",
                        description="Judge the runs in EVENTS (written by a bundle's `kpc/run --events FILE`) "
                        "with this checkout's tables: the same verdicts `./kpc run` gives on that machine. The "
                        "file is checked field by field first (a malformed one is exit 2 or error verdicts).")
    ev.add_argument("events", help="the events file")
    ev.add_argument("--case", action="append", metavar="GLOB")
    ev.add_argument("--area", action="append", metavar="AREA")
    ev.add_argument("--flavor", action="append", choices=cases.FLAVORS)
    ev.add_argument("--label", help="the column's name (default: the machine's kernel release)")
    ev.add_argument("-v", "--verbose", action="store_true")
    ev.add_argument("--json", metavar="FILE", help="results JSON (default: none)")
    ev.add_argument("--junit", metavar="FILE")
    _format_args(ev)
    ev.set_defaults(func=cmd_evaluate)
    mg = sub.add_parser("merge", help="combine results from many machines/kernels/runtimes into one matrix",
                        description="Combine results files (validated first) into one. " + OUTPUT_HELP)
    mg.add_argument("results", nargs="+", help="results JSON files")
    mg.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the merged results JSON ('-' = standard output)")
    mg.set_defaults(func=cmd_merge)
    df = sub.add_parser("diff", help="what changed verdict between two results files (exit 1 on a regression)",
                        description="Lists runs whose verdict changed, appeared or disappeared; a REGRESSION is "
                        "a run that became fail/hang/error. Exit 1 when there is one; exit 2 when a file is not a "
                        "valid results file (a run id twice, a verdict that is not one of the six, ...).")
    df.add_argument("old")
    df.add_argument("new")
    df.set_defaults(func=cmd_diff)

    lb = sub.add_parser("lab", help="for students: predict a case's observations, run it, compare",
                        description="Shows the lab's question and numbered setup, asks for a prediction of each "
                        "observation in the form it takes (typed, piped one answer per line, or --predict "
                        "KEY=VALUE; a bad answer is asked again), runs the variant the question is about in a "
                        "flavor that works for you (userns without root), prints what the kernel recorded next "
                        "to your predictions, then the rule and the lab note. A skipped or hung run is never "
                        "marked wrong. Exit 0 when every gradable prediction was right. `kpc lab init-exercise "
                        "--init FILE` runs the write-your-own-init exercise (labs/init-exercise).")
    lb.add_argument("id", help="a case id (kpc list --course) or init-exercise")
    lb.add_argument("--predict", action="append", metavar="KEY=VALUE", help="a prediction (repeatable)")
    lb.add_argument("--flavor", choices=cases.FLAVORS, help="run in this flavor (default: the question's, or "
                    "the first that works for this user)")
    lb.add_argument("--variant", help="which variant (default: the one the question is about)")
    lb.add_argument("--seed", metavar="TEXT", help="your per-student parameters (e.g. your name): labs with "
                    "[lab.params] then block other signals, use another exit code, ...")
    lb.add_argument("--save", metavar="FILE", help="add your answers to this answer file (for kpc grade)")
    lb.add_argument("--no-reveal", action="store_true", help="do not print the rule, the table values or the note")
    lb.add_argument("--init", metavar="FILE", help="init-exercise: your init (.py, .c, or an executable)")
    lb.add_argument("--no-build", action="store_true")
    lb.set_defaults(func=cmd_lab)
    gr = sub.add_parser("grade", help="for teachers: score a class's answer files",
                        description="Each ANSWERS file is TOML: student = \"name\" (also the seed of the "
                        "student's parameters) and one [case_id] table of KEY = \"prediction\" per lab. Every "
                        "lab is run on this machine with each student's parameters and each answer compared "
                        "with what the kernel recorded. Prints a score per student; --json writes scores per "
                        "student, lab and key.")
    gr.add_argument("answers", nargs="+", metavar="ANSWERS", help="answer files (one per student)")
    gr.add_argument("--json", metavar="OUT", help="write the grades as JSON")
    gr.add_argument("--flavor", choices=cases.FLAVORS, help="run every lab in this flavor")
    gr.add_argument("--no-build", action="store_true")
    gr.set_defaults(func=cmd_grade)
    ho = sub.add_parser("handout", help="for teachers: a lab sheet without the answers (Markdown, or PDF)",
                        description="The question, the numbered setup, what to predict and in which form, the "
                        "commands to see it yourself and how to hand in, in Markdown; no rule, table or note. "
                        "--pdf renders it with Debian's chromium.")
    ho.add_argument("id", nargs="+", help="case ids (several: one document)")
    ho.add_argument("--seed", metavar="TEXT", help="the student's parameters in the setup")
    ho.add_argument("-o", "--output", metavar="FILE", help="write the Markdown here ('-' = stdout; default stdout)")
    ho.add_argument("--pdf", metavar="FILE", help="also write a PDF (needs chromium)")
    ho.set_defaults(func=cmd_handout)
    dc = sub.add_parser("decode", help="turn a SigBlk/SigIgn/SigCgt/SigPnd hex mask into signal names",
                        description="Decode /proc/PID/status signal masks (bit N-1 = signal N), e.g. "
                        "`kpc decode 0000000000014a02` or a pasted line `kpc decode 'SigBlk: 0000000000004200'`; "
                        "`kpc decode - < /proc/PID/status` decodes every signal line.")
    dc.add_argument("mask", nargs="+", help="hex mask, up to 16 digits (0x optional), a pasted 'SigBlk: ...' "
                    "line, or - for standard input")
    dc.set_defaults(func=cmd_decode)
    ins = sub.add_parser("inspect", help="a live process's signal state per thread, decoded",
                         description="Blocked and pending per thread; ignored, caught and shared-pending per "
                         "process; read from /proc/PID/status and /proc/PID/task/*/status (like FreeBSD's "
                         "procstat -i/-j). --signal SIG says what would happen if SIG were sent now: blocked, "
                         "ignored, caught, default action, the PID-namespace init rule.")
    ins.add_argument("pid", nargs="+", type=int)
    ins.add_argument("--signal", metavar="SIG", help="what would happen if SIG (TERM, 15, SIGRTMIN+2) were sent now")
    ins.add_argument("--json", action="store_true", help="print JSON instead")
    ins.set_defaults(func=cmd_inspect)

    ls = sub.add_parser("list", help="list cases with area and summary (--course: the labs in course order)")
    ls.add_argument("--area", action="append", metavar="AREA")
    ls.add_argument("--course", action="store_true", help="the course path: units, easy to hard, prerequisites "
                    "first, with each lab's question (not its answer)")
    ls.set_defaults(func=cmd_list)

    ex = sub.add_parser("explain", help="show a case: files, metadata, provenance, expected rows, lab note")
    ex.add_argument("id")
    ex.set_defaults(func=cmd_explain)

    ck = sub.add_parser("check", help="lint case metadata and expected tables; report missing rows or lab notes")
    ck.set_defaults(func=cmd_check)

    st = sub.add_parser("selftest", help="the project's own tests (ctest, pytest, lint)")
    st.add_argument("--no-build", action="store_true", help="use the existing build")
    st.add_argument("-k", metavar="EXPR", help="only pytest tests matching EXPR")
    st.set_defaults(func=cmd_selftest)
    return p


def main(argv=None):
    """Every command, --help and usage errors included: a reader that goes
    away (`kpc explain X | head`) ends kpc quietly with 128+SIGPIPE. kpc
    keeps Python's SIGPIPE ignored (a launcher that dies must be an EPIPE
    kpc handles, not kpc's death), so it is BrokenPipeError, caught here:
    from the command, from argparse's --help, and from the last flush."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # say nothing more to the reader; Python's exit-time flush would complain
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv):
    args = parser().parse_args(argv)
    try:
        build.ensure_toml()   # Python < 3.11: case metadata needs python3-tomli or python3-toml
        return args.func(args)
    except build.BuildError as e:
        # A compiler's or apt's output is read as it was printed, a line each
        # (made printable), under the one line that says what failed.
        first, _, rest = str(e).partition("\n")
        _say(first)
        for line in rest.splitlines():
            sys.stderr.write(f"  {printable(line)}\n")
        return EXIT_INPUT
    except InputError as e:
        _say(str(e))
        return EXIT_INPUT
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise   # main() ends quietly
    except Exception as e:  # noqa: BLE001 - exit 1 would read as a fail or a regression
        from .render import visible
        _say(f"internal error: {type(e).__name__}: {visible(e)} (a bug in kpc; please report it with the command "
             "line that caused it)")
        return EXIT_INTERNAL
