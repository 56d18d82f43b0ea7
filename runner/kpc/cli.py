"""./kpc — the command line: its words (argparse) and the dispatch to
commands.py. Exit codes: see messages.py (0 all pass/xfail/skip, 1 a
fail/hang/error or a regression, 2 bad usage or input, 3 an internal error,
130 interrupted).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import build, cases, commands, runtimes
from .commands import DEFAULT_JSON
from .messages import (EXIT_BROKEN_PIPE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, InputError, printable,
                       say)

MAX_JOBS = 1024  # more is a typo (3000000000 overflowed the launcher's int after the run had started)
# The suite's runs wait far more than they compute: 8 per CPU measured best
# on 2 cores (host suite 1.4 s at 16, 1.7 s at 8, 2.0 s at 32; verdicts the
# same as --jobs 1). bench/overhead.py prints the figures.
DEFAULT_JOBS = min(8 * (os.cpu_count() or 2), 64)
OUTPUT_HELP = ("Output FILEs: '-' is standard output; a symbolic link is refused (give the file it points to), "
               "a device or FIFO of root or yours (/dev/null) is written through, anything else is replaced "
               "atomically through a new randomly named file in the same directory.")


# ---------------------------------------------------------------- the words, then main()

class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other bad input (argparse's own
    form is the whole usage text, then the error)."""

    def error(self, message):
        say(f"{message} (see: {self.prog} --help)")
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


def _no_build(p, help):
    p.add_argument("--no-build", action="store_true", help=help)


def _command(sub, name, func, **kw):
    """The subcommand NAME, whose handler is FUNC (commands.py)."""
    p = sub.add_parser(name, **kw)
    p.set_defaults(func=func)
    return p


def parser() -> _Parser:
    p = _Parser(prog="kpc",
                description="kpc: Linux process-lifecycle conformance suite. Probes record "
                            "what the kernel does; expected tables (cases/<area>/<id>.exp) say what it should do.",
                epilog="exit codes: 0 all pass/xfail/skip, 1 a fail/hang/error (kpc diff: a "
                       "regression), 2 usage or input error, 3 internal error (a bug in kpc)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = _command(sub, "run", commands.cmd_run,
                 help="run the suite and print a verdict table",
                 description="Build on first use, run the selected cases in every flavor, compare the "
                 "observations with the expected tables (cases/<area>/<id>.exp), print a table and write "
                 "results JSON.")
    r.add_argument("--case", action="append", metavar="GLOB[:VARIANT]",
                   help="case id or glob (repeatable), e.g. 'sig*'; with :VARIANT (a glob too) only those variants "
                        "of it, e.g. 'runtime_pid1_duties:child_*'")
    r.add_argument("--area", action="append", metavar="AREA", help="only cases of this area (repeatable)")
    r.add_argument("--flavor", action="append", choices=cases.FLAVORS, help="only this flavor (repeatable)")
    r.add_argument("--json", metavar="FILE", help=f"results JSON (default {DEFAULT_JSON}). " + OUTPUT_HELP)
    r.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    r.add_argument("-v", "--verbose", action="store_true", help="show skip reasons and every observation")
    r.add_argument("--jobs", type=_jobs, default=DEFAULT_JOBS, metavar="N",
                   help=f"runs in parallel (default: 8 per CPU, here {DEFAULT_JOBS}: the runs mostly wait -- on "
                        f"handshakes, deadlines, a deadlock to show -- rather than compute); exclusive cases run "
                        f"alone")
    _no_build(r, "use the existing build, do not run cmake")
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

    rp = _command(sub, "report", commands.cmd_report,
                  help="render a results JSON (or a merged one) as HTML, Markdown or TAP",
                  description="Render a results file. Results files are validated first (a malformed "
                  "one is exit 2); every string from them is escaped in every format. " + OUTPUT_HELP)
    rp.add_argument("results", help="results JSON (results/runs/last.json, or kpc merge output)")
    _format_args(rp)

    bd = _command(sub, "bundle", commands.cmd_bundle,
                  help="kpc for a device under test: one relocatable tarball",
                  description="Write a tarball that runs the suite on a machine without a compiler, pytest "
                  "or network: `tar xf kpc-*.tar.xz && kpc/run` judges it there (python3 >= 3.9), or "
                  "`kpc/run --events FILE` records it for `./kpc evaluate FILE` (no Python). " + OUTPUT_HELP)
    bd.add_argument("-o", "--output", required=True, metavar="FILE", help="e.g. kpc-x86_64.tar.xz")
    _no_build(bd, "use the existing build")
    ev = _command(sub, "evaluate", commands.cmd_evaluate,
                  help="judge events a bundle recorded on another machine (kpc/run --events)",
                  description="Judge the runs in EVENTS (written by a bundle's `kpc/run --events FILE`) "
                  "with this checkout's tables: the same verdicts `./kpc run` gives on that machine. The "
                  "file is checked field by field first (a malformed one is exit 2 or error verdicts).")
    ev.add_argument("events", help="the events file")
    ev.add_argument("--case", action="append", metavar="GLOB[:VARIANT]")
    ev.add_argument("--area", action="append", metavar="AREA")
    ev.add_argument("--flavor", action="append", choices=cases.FLAVORS)
    ev.add_argument("--label", help="the column's name (default: the machine's kernel release)")
    ev.add_argument("-v", "--verbose", action="store_true")
    ev.add_argument("--json", metavar="FILE", help="results JSON (default: none)")
    ev.add_argument("--junit", metavar="FILE")
    _format_args(ev)
    mg = _command(sub, "merge", commands.cmd_merge,
                  help="combine results from many machines/kernels/runtimes into one matrix",
                  description="Combine results files (validated first) into one. " + OUTPUT_HELP)
    mg.add_argument("results", nargs="+", help="results JSON files")
    mg.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the merged results JSON ('-' = standard output)")
    df = _command(sub, "diff", commands.cmd_diff,
                  help="what changed verdict between two results files (exit 1 on a regression)",
                  description="Lists runs whose verdict changed, appeared or disappeared; a REGRESSION is "
                  "a run that became fail/hang/error. Exit 1 when there is one; exit 2 when a file is not a "
                  "valid results file (a run id twice, a verdict that is not one of the six, ...).")
    df.add_argument("old")
    df.add_argument("new")

    lb = _command(sub, "lab", commands.cmd_lab,
                  help="for students: predict a case's observations, run it, compare",
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
    _no_build(lb, None)
    gr = _command(sub, "grade", commands.cmd_grade,
                  help="for teachers: score a class's answer files",
                  description="Each ANSWERS file is TOML: student = \"name\" (also the seed of the "
                  "student's parameters) and one [case_id] table of KEY = \"prediction\" per lab. Every "
                  "lab is run on this machine with each student's parameters and each answer compared "
                  "with what the kernel recorded. Prints a score per student; --json writes scores per "
                  "student, lab and key.")
    gr.add_argument("answers", nargs="+", metavar="ANSWERS", help="answer files (one per student)")
    gr.add_argument("--json", metavar="OUT", help="write the grades as JSON")
    gr.add_argument("--flavor", choices=cases.FLAVORS, help="run every lab in this flavor")
    _no_build(gr, None)
    ho = _command(sub, "handout", commands.cmd_handout,
                  help="for teachers: a lab sheet without the answers (Markdown, or PDF)",
                  description="The question, the numbered setup, what to predict and in which form, the "
                  "commands to see it yourself and how to hand in, in Markdown; no rule, table or note. "
                  "--pdf renders it with Debian's chromium.")
    ho.add_argument("id", nargs="+", help="case ids (several: one document)")
    ho.add_argument("--seed", metavar="TEXT", help="the student's parameters in the setup")
    ho.add_argument("-o", "--output", metavar="FILE", help="write the Markdown here ('-' = stdout; default stdout)")
    ho.add_argument("--pdf", metavar="FILE", help="also write a PDF (needs chromium)")
    dc = _command(sub, "decode", commands.cmd_decode,
                  help="turn a SigBlk/SigIgn/SigCgt/SigPnd hex mask into signal names",
                  description="Decode /proc/PID/status signal masks (bit N-1 = signal N), e.g. "
                  "`kpc decode 0000000000014a02` or a pasted line `kpc decode 'SigBlk: 0000000000004200'`; "
                  "`kpc decode - < /proc/PID/status` decodes every signal line.")
    dc.add_argument("mask", nargs="+", help="hex mask, up to 16 digits (0x optional), a pasted 'SigBlk: ...' "
                    "line, or - for standard input")
    ins = _command(sub, "inspect", commands.cmd_inspect,
                   help="a live process's signal state per thread, decoded",
                   description="Blocked and pending per thread; ignored, caught and shared-pending per "
                   "process; read from /proc/PID/status and /proc/PID/task/*/status (like FreeBSD's "
                   "procstat -i/-j). --signal SIG says what would happen if SIG were sent now: blocked, "
                   "ignored, caught, default action, the PID-namespace init rule.")
    ins.add_argument("pid", nargs="+", type=int)
    ins.add_argument("--signal", metavar="SIG", help="what would happen if SIG (TERM, 15, SIGRTMIN+2) were sent now")
    ins.add_argument("--json", action="store_true", help="print JSON instead")

    ls = _command(sub, "list", commands.cmd_list,
                  help="list cases with area and summary (--course: the labs in course order)")
    ls.add_argument("--area", action="append", metavar="AREA")
    ls.add_argument("--course", action="store_true", help="the course path: units, easy to hard, prerequisites "
                    "first, with each lab's question (not its answer)")

    ex = _command(sub, "explain", commands.cmd_explain,
                  help="show a case: files, metadata, provenance, expected rows, lab note")
    ex.add_argument("id")

    _command(sub, "check", commands.cmd_check,
             help="lint case metadata and expected tables; report missing rows or lab notes")

    st = _command(sub, "selftest", commands.cmd_selftest,
                  help="the project's own tests (ctest, pytest, lint)")
    _no_build(st, "use the existing build")
    st.add_argument("-k", metavar="EXPR", help="only pytest tests matching EXPR")
    return p


def main(argv: list[str] | None = None) -> int:
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
        say(first)
        for line in rest.splitlines():
            sys.stderr.write(f"  {printable(line)}\n")
        return EXIT_INPUT
    except InputError as e:
        say(str(e))
        return EXIT_INPUT
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise   # main() ends quietly
    except Exception as e:  # noqa: BLE001 - exit 1 would read as a fail or a regression
        from .render import visible
        say(f"internal error: {type(e).__name__}: {visible(e)} (a bug in kpc; please report it with the command "
            "line that caused it)")
        return EXIT_INTERNAL
