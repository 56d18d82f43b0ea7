"""Labs: the cases as a course's exercises (`kpc lab`, `kpc grade`, `kpc
handout`, `kpc list --course`).

A lab shows the question (the lab note's **Predict.** paragraph) and the
setup (numbered steps from the case's [lab] metadata: what the probe does,
never what it finds), asks for a prediction of each observation in the
form that observation takes (values.FORMS: the prompt names the form and
gives an example that is not the answer), runs the variant the question is
about in a flavor that works for this user, and compares. Only then does
it reveal the rule (the case summary) and the note.

Answers are typed at a terminal or piped (one line per prompt, or
`key = value` lines); a bad answer is explained and asked again, whether
typed or piped. A run that skips or hangs leaves the keys it did not
record "not gradable here": never WRONG. Per-student parameters ([lab.params])
come from a seed (the student's name), so neighbours get different values;
`kpc grade` runs each student's parameters and scores a class's answer
files. Code-writing exercises live in labs/<name>/ (labs/init-exercise:
write a container init until the staged checks pass).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import typing
from typing import Callable, TYPE_CHECKING, TextIO

from . import cases as cases_mod
from . import envinfo, manpages, paths, requirements, safefile, session, tables, tomlread, values

if TYPE_CHECKING:
    import argparse
    from . import cases, evaluate

UNITS = (
    ("basics", "Basics: exit status, zombies, signal masks and dispositions across fork and exec"),
    ("reaping", "Reaping: SIGCHLD, orphans, subreapers, threads"),
    ("inheritance", "Inheritance bugs from real incidents: masks, ignores, timers, exec"),
    ("pidns", "PID namespaces: the init's special rules and teardown"),
    ("fuse", "FUSE: servers that die, aborts, and the teardown deadlock (capstone)"),
    ("project", "Project: write your own container init"),
    ("reference", "Reference and advanced: pidfd, clone3, tracing, the full inheritance matrix"),
)
UNIT_NAMES = tuple(u for u, _ in UNITS)
LABS_DIR = os.path.join(paths.ROOT, "labs")
MAX_ANSWER_FILE = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


class LabError(Exception):
    """Bad input for a lab command: one line, exit 2 (cli turns it into
    its InputError)."""


def clean(text: object, limit: int = 400) -> str:
    """Text from a student's file or input, safe for a terminal: control
    and direction-changing characters shown as escapes, length bounded."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(text))
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- notes

def read_note(case: cases.Case) -> str:
    try:
        with open(case.note_path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def paragraphs(text: str) -> list[str]:
    body = text.split("\n", 1)[1] if text.startswith("#") else text
    return [p.strip("\n") for p in re.split(r"\n\s*\n", body) if p.strip()]


def question(text: str) -> str:
    """The note's question: its **Predict.** (or **Question.**) paragraph."""
    for para in paragraphs(text):
        if para.lstrip().startswith(("**Predict.**", "**Predict:**", "**Question.**")):
            return para.strip()
    return ""


def plain(md: str) -> str:
    """Markdown as a terminal shows it: no ** markers."""
    return md.replace("**", "")


@dataclasses.dataclass
class Demo:
    """One command of a note's **See it yourself.** block: `$ cmd` runs
    as any user, `# cmd` needs root; `expected` are the output lines shown
    under it ('...' stands for anything)."""
    root: bool
    command: str
    expected: list


def demo_blocks(text: str) -> list[list[str]]:
    """The runnable commands of the note's See-it-yourself section, as
    blocks (one shell session each): the indented lines that start with
    '$ ' or '# ' and the output lines under them."""
    start = re.search(r"\*\*See it yourself[^*]*\*\*", text)
    if not start:
        return []
    section = text[start.end():]
    nxt = re.search(r"\n\*\*[A-Z][^*\n]*[.:]\*\*", section)
    if nxt:
        section = section[:nxt.start()]
    blocks, current, last = [], None, None
    for line in section.split("\n"):
        if line.startswith("    ") or (line.startswith("\t")):
            code = line[4:] if line.startswith("    ") else line[1:]
            if current is None:
                current = []
                blocks.append(current)
            m = re.match(r"^([$#]) (.*)$", code)
            if last is not None and _unfinished(last.command):
                last.command += "\n" + code
            elif m:
                last = Demo(m.group(1) == "#", m.group(2), [])
                current.append(last)
            elif last is not None and code.strip():
                last.expected.append(code)
        elif line.strip():
            current, last = None, None
    return [b for b in blocks if b]


def _unfinished(command):
    """A command that goes on on the next line: an open quote or a
    trailing backslash."""
    if command.rstrip().endswith("\\"):
        return True
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return True
    return False


def strip_comment(line: str) -> str:
    """'grep SigBlk x   # why' -> 'grep SigBlk x' (a '#' after two spaces
    starts a comment in the notes' demos)."""
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].rstrip()


# ---------------------------------------------------------------- the exercise

@dataclasses.dataclass
class Exercise:
    case: object
    variant: str
    params: dict            # name -> value for this student
    keys: list              # the keys to predict, in order
    forms: dict             # key -> values.Form
    avoid: dict             # key -> table values (examples must differ from them)

    @property
    def run_case(self) -> str:
        """The case as this exercise runs it: only its variant, with the
        student's parameters as probe arguments."""
        extra = []
        for name, value in self.params.items():
            extra += [self.case.lab.params[name]["arg"], value]
        return dataclasses.replace(self.case, variants=[self.variant] if self.variant else [],
                                   args=list(self.case.args) + extra)


def params_for(case: cases.Case, seed: str | None) -> dict:
    """The student's parameter values: the defaults (what the tables say)
    without a seed; otherwise a choice derived from the seed, the case and
    the parameter, so it is the same on every machine and run."""
    out = {}
    for name, p in sorted(case.lab.params.items()):
        if seed is None:
            out[name] = p["default"]
        else:
            digest = hashlib.sha256(f"{seed}\0{case.id}\0{name}".encode()).digest()
            out[name] = p["choices"][int.from_bytes(digest[:8], "big") % len(p["choices"])]
    return out


def param_rows(case: cases.Case, params: dict) -> dict:
    """key -> the expected value under these parameters."""
    rows = {}
    for name, value in params.items():
        for key, template in case.lab.params[name]["rows"].items():
            rows[key] = template.format(value)
    return rows


def setup_steps(case: cases.Case, params: dict) -> list[str]:
    return [step.format(**params) for step in case.lab.setup]


def table_values(tbl: tables.Tables, case_id: str, key: str) -> list[str]:
    """The values a key's rows expect; a row that only reports the value
    (tables.REPORTED) expects none."""
    return [r.value for r in tbl.rows_for(case_id, key) if r.value != tables.REPORTED]


def form_of(case: cases.Case, tbl: tables.Tables, key: str) -> values.Form:
    spec = case.lab.forms.get(key)
    if spec:
        return values.form(spec)
    return values.infer_form(key, table_values(tbl, case.id, key))


def keys_of(case: cases.Case, tbl: tables.Tables, variant: str) -> list[str]:
    """The keys a run of `variant` can record: those with a row whose
    variant condition (if any) admits it, in table order."""
    keys = []
    for row in tbl.rows_for(case.id):
        if row.key not in keys and all(c.dim != "variant" or c.matches({"variant": variant})
                                       for c in row.conditions):
            keys.append(row.key)
    return keys


def prepare(case: cases.Case, tbl: tables.Tables, variant: str | None = None, seed: str | None = None) -> Exercise:
    variant = variant if variant is not None else (case.lab.variant or (case.variants[0] if case.variants else ""))
    if case.variants and variant not in case.variants:
        raise LabError(f"{case.id} has variants {', '.join(case.variants)}; not '{clean(variant, 60)}'")
    if not case.variants and variant:
        raise LabError(f"{case.id} has no variants (--variant {clean(variant, 60)})")
    recorded = keys_of(case, tbl, variant)
    asked = [k for k in case.lab.ask if k in recorded] if case.lab.ask else recorded
    params = params_for(case, seed)
    overrides = param_rows(case, params)
    forms = {k: form_of(case, tbl, k) for k in recorded}
    avoid = {k: table_values(tbl, case.id, k) + ([overrides[k]] if k in overrides else []) for k in recorded}
    return Exercise(case, variant, params, asked, forms, avoid)


def read_answer(ex: Exercise, key: str, text: str) -> str:
    """A prediction in the key's form -> canonical text; ValueError_ says
    what is expected."""
    return ex.forms[key].read(text)


# ---------------------------------------------------------------- asking

def parse_predicts(ex: Exercise, predicts: list[str] | None, known: list[str]) -> dict:
    """--predict KEY=VALUE ... -> {key: (raw, canonical)}; bad input is a
    LabError before anything runs."""
    given = {}
    for p in predicts:
        k, sep, v = p.partition("=")
        k, v = k.strip(), v.strip()
        if not sep:
            raise LabError(f"--predict wants KEY=VALUE, not '{clean(p, 80)}'")
        if k not in known:
            raise LabError(f"no observation {clean(k, 80)} in {ex.case.id}; it records: {', '.join(known)}")
        try:
            given[k] = (v, read_answer(ex, k, v))
        except values.ValueError_ as e:
            raise LabError(f"--predict {clean(k, 80)}: {clean(e, 200)} (expected: {ex.forms[k].hint})") from None
    return given


def ask(ex: Exercise, inp: TextIO, out: TextIO, echo: bool) -> dict:
    """Ask each key; one line answers one prompt. A bad answer is explained
    and asked again (also when the lines are piped: the next line is the
    retry). `key = value` answers that key out of turn. '?' explains the
    form; an empty line skips the key. Returns {key: (raw, canonical)}."""
    given = {}
    width = max([len(k) for k in ex.keys] + [3])
    pending = list(ex.keys)
    while pending:
        key = pending[0]
        out.write(f"  {key.ljust(width)} = ")
        out.flush()
        line = inp.readline()
        if not line:
            out.write("\n")
            break
        text = line.strip()
        if echo:
            out.write(clean(text) + "\n")
        m = re.match(r"^([a-z0-9_.-]+)\s*=\s*(.*)$", text)
        if m and m.group(1) in ex.keys and m.group(1) != key and not _reads(ex, key, text):
            key, text = m.group(1), m.group(2).strip()
        elif m and m.group(1) == key:
            text = m.group(2).strip()
        if not text:
            pending.remove(key)
            continue
        if text == "?":
            f = ex.forms[key]
            out.write(f"      {key}: {f.prompt(ex.avoid[key])}\n")
            continue
        try:
            given[key] = (text, read_answer(ex, key, text))
            if key in pending:
                pending.remove(key)
        except values.ValueError_ as e:
            out.write(f"      not read: {clean(e, 200)}. Expected {ex.forms[key].prompt(ex.avoid[key])} "
                      f"(Enter skips)\n")
    return given


def _reads(ex, key, text):
    try:
        read_answer(ex, key, text)
        return True
    except values.ValueError_:
        return False


# ---------------------------------------------------------------- running

def _candidate_flavors(case, env, requested):
    """(flavor, why) in the order to try: the one asked for; else the one
    the question is about, then the ones that work for this user (userns
    without root)."""
    if requested:
        return [(requested, "")]
    prefer = case.lab.flavor or ("host" if "host" in case.flavors else case.flavors[0])
    order = [prefer] + [f for f in ("userns", "host", "pidns") if f in case.flavors and f != prefer]
    runnable = [f for f in order if requirements.skip_reason(case, f, env) is None]
    return [(f, "") for f in runnable] or [(prefer, "")]


def _tables_for(tbl, ex):
    """The tables as this student's parameters make them."""
    overrides = param_rows(ex.case, ex.params)
    if not overrides:
        return tbl
    out = tables.Tables()
    out.sections = tbl.sections
    out.rows = dict(tbl.rows)
    out.rows[ex.case.id] = [dataclasses.replace(r, value=overrides[r.key]) if r.key in overrides else r
                            for r in tbl.rows_for(ex.case.id)]
    return out


def run(ex: Exercise, all_cases: dict[str, cases.Case], tbl: tables.Tables, env: envinfo.Environment,
        requested_flavor: str | None = None, say: Callable[[str], object] | None = None,
        ) -> tuple[evaluate.Verdict | None, session.Item | None, str | None]:
    """Run the exercise once: (verdict, item, flavor). A run that skips in
    the preferred flavor is tried in the next one that may work (a probe
    that makes its own PID namespace skips as non-root in host; userns
    works), unless the flavor was asked for."""
    tbl_x = _tables_for(tbl, ex)
    tried = []
    verdict = item = flavor = None
    for flavor, _ in _candidate_flavors(ex.case, env, requested_flavor):
        sess = session.Session(all_cases, tbl_x, env, [ex.run_case], [flavor], jobs=1, slow=True)
        sess.progress.enabled = False
        item = sess.items[0] if sess.items else None
        if item is None:
            raise LabError(f"{ex.case.id} does not run in flavor {flavor}")
        verdict, = sess.run_all([item])
        if verdict.verdict != "skip" or requested_flavor:
            break
        tried.append(f"{flavor}: {verdict.reason}")
        if say:
            say(f"(flavor {flavor} skipped: {verdict.reason}; trying the next flavor)")
    return verdict, item, flavor


@dataclasses.dataclass
class Mark:
    key: str
    answer: str          # what was written
    read: str            # canonical, or '' when unreadable
    kernel: str          # the kernel's canonical value, or ''
    result: str          # right, wrong, ungraded, unreadable, unanswered
    why: str = ""


def mark(ex: Exercise, given: dict, verdict: evaluate.Verdict) -> list[Mark]:
    """Compare predictions with what the kernel recorded. Keys the run did
    not record (it skipped, hung first, broke) are 'ungraded': a skip or a
    hang is never the student's fault."""
    marks = []
    obs = verdict.observations if verdict else {}
    for key in ex.keys:
        raw, read = given.get(key, ("", ""))
        if key not in given:
            marks.append(Mark(key, "", "", obs.get(key, ""), "unanswered"))
            continue
        if read is None:
            marks.append(Mark(key, raw, "", obs.get(key, ""), "unreadable", "not read as " + ex.forms[key].hint))
            continue
        if key not in obs:
            why = {"skip": f"the run skipped here: {verdict.reason}" if verdict else "not run",
                   "hang": "the run hung before recording it"}.get(verdict.verdict if verdict else "skip",
                                                                   "the run did not record it")
            marks.append(Mark(key, raw, read, "", "ungraded", why))
            continue
        ok = values.same(ex.forms[key], read, obs[key])
        marks.append(Mark(key, raw, read, obs[key], "right" if ok else "wrong"))
    return marks


def score(marks: list[Mark], blanks_count: bool = False) -> tuple[int, int]:
    """(right, out of). A lab counts the predictions made; a grade also
    counts a key left blank that the kernel recorded (it scores 0)."""
    right = sum(m.result == "right" for m in marks)
    counted = ("right", "wrong", "unreadable") + (("unanswered",) if blanks_count else ())
    graded = sum(m.result in counted and (m.result != "unanswered" or bool(m.kernel)) for m in marks)
    return right, graded


def show_value(form: values.Form, text: str) -> str:
    if not text:
        return ""
    if form.name in ("sigset", "signal"):
        return values.describe_sigset(text)
    return text


def _difference(form, read, kernel):
    if form.name != "sigset" or not read or not kernel:
        return ""
    want, got = values.parse_sigset(kernel), values.parse_sigset(read)
    parts = []
    if got & ~want:
        parts.append("you added " + values.format_sigset(got & ~want))
    if want & ~got:
        parts.append("you missed " + values.format_sigset(want & ~got))
    return "; ".join(parts)


# ---------------------------------------------------------------- kpc lab

def header(case: cases.Case, position: str | None = None) -> str:
    lab = case.lab
    bits = [x for x in (f"lab {position}" if position else "", lab.difficulty,
                        f"unit {lab.unit}" if lab.unit else "") if x]
    return f"== {case.id}" + (f" ({', '.join(bits)})" if bits else "") + " =="


def print_exercise(ex: Exercise, out: TextIO, flavor_line: str = "", seed: str | None = None) -> None:
    case = ex.case
    pos = course_positions(None).get(case.id) if case.lab.unit else None
    out.write(header(case, pos) + "\n")
    if case.variants:
        others = [v for v in case.variants if v != ex.variant]
        out.write(f"variant {ex.variant} (the question's; others: {', '.join(others)} with --variant)\n")
    if flavor_line:
        out.write(flavor_line + "\n")
    if case.lab.prerequisites:
        out.write(f"do first: {', '.join(case.lab.prerequisites)}\n")
    q = question(read_note(case))
    out.write("\n" + plain(q or "(this case's note has no question)") + "\n")
    steps = setup_steps(case, ex.params)
    if steps:
        out.write("\nThe setup (what the probe does):\n")
        for i, step in enumerate(steps, 1):
            out.write(f"  {i}. {step}\n")
    if ex.params and seed is not None:
        params = ", ".join(f"{k} = {v}" for k, v in ex.params.items())
        out.write(f"  (your parameters, from seed {clean(seed, 60)}: {params})\n")


def print_keys(ex: Exercise, out: TextIO) -> None:
    width = max([len(k) for k in ex.keys] + [3])
    for k in ex.keys:
        out.write(f"  {k.ljust(width)}  {ex.forms[k].prompt(ex.avoid[k])}\n")


def run_lab(args: argparse.Namespace, all_cases: dict[str, cases.Case], tbl: tables.Tables,
            ensure_build: Callable[[], None], out: TextIO = sys.stdout, inp: TextIO = sys.stdin) -> int:
    """kpc lab ID: predict, run, compare, then the rule and the note."""
    if args.id in exercise_names():
        return init_exercise(args, all_cases, tbl, ensure_build, out)
    course_positions(all_cases)
    case = all_cases.get(args.id)
    if case is None:
        close = [c for c in all_cases if args.id in c or c in args.id]
        hint = f" (did you mean: {', '.join(close[:5])}?)" if close else "; `./kpc list --course` shows the labs"
        raise LabError(f"unknown lab '{clean(args.id, 80)}'{hint}")
    if args.flavor and args.flavor not in case.flavors:
        raise LabError(f"{case.id} does not run in flavor {args.flavor} (it runs in {', '.join(case.flavors)})")
    ex = prepare(case, tbl, args.variant, args.seed)
    given = parse_predicts(ex, args.predict or [], keys_of(case, tbl, ex.variant))
    if args.save and ex.variant != (case.lab.variant or (case.variants[0] if case.variants else "")):
        raise LabError("--save keeps answers for the lab's own variant (kpc grade runs that one): drop --variant")
    ensure_build()
    env = envinfo.detect()
    flavors = _candidate_flavors(case, env, args.flavor)
    flavor_line = ""
    if not args.flavor and flavors[0][0] != (case.lab.flavor or "host"):
        flavor_line = (f"flavor {flavors[0][0]} ({case.lab.flavor or 'host'} cannot run for this user here: "
                       f"{requirements.skip_reason(case, case.lab.flavor or 'host', env)})")
    print_exercise(ex, out, flavor_line, args.seed)
    if not given:
        interactive = inp.isatty()
        out.write("\nPredict what the probe will record. Each prompt wants the form below; a bad answer is "
                  "asked again, ? explains, Enter skips:\n")
        print_keys(ex, out)
        out.write("\n")
        given = ask(ex, inp, out, echo=not interactive)
    out.write("\nRunning it...\n")
    out.flush()
    verdict, item, flavor = run(ex, all_cases, tbl, env, args.flavor, say=lambda m: out.write(m + "\n"))
    marks = mark(ex, given, verdict)
    report(ex, marks, verdict, flavor, env, out, reveal=not args.no_reveal)
    if args.save and given:
        save_answers(args.save, case.id, {k: raw for k, (raw, _) in given.items()}, args.seed)
        out.write(f"\nanswers saved in {args.save} (hand it in; kpc grade scores it)\n")
    if verdict.verdict == "error" and not verdict.observations:
        return 1
    right, graded = score(marks)
    return 0 if right == graded else 1


def report(ex: Exercise, marks: list[Mark], verdict: evaluate.Verdict | None, flavor: str | None,
           env: envinfo.Environment, out: TextIO, reveal: bool = True) -> None:
    out.write(f"\nThe kernel ({env.kernel}, flavor {flavor}) recorded:\n")
    keys = list(ex.keys) + [k for k in verdict.observations if k not in ex.keys]
    width = max([len(k) for k in keys] + [3])
    by_key = {m.key: m for m in marks}
    for k in keys:
        form = ex.forms.get(k) or values.FORMS["text"]
        seen = verdict.observations.get(k)
        line = f"  {k.ljust(width)}  {show_value(form, seen) if seen is not None else '(not recorded)'}"
        if reveal and k in verdict.expected:
            line += f"   (table: {verdict.expected[k]['value']})"
        m = by_key.get(k)
        if m and m.result not in ("unanswered",):
            mine = show_value(form, m.read) if m.read else clean(m.answer, 120)
            tag = {"right": "RIGHT", "wrong": "WRONG", "ungraded": "not gradable here",
                   "unreadable": "UNREADABLE"}[m.result]
            diff = _difference(form, m.read, m.kernel) if m.result == "wrong" else ""
            line += f"\n  {''.ljust(width)}  you: {mine}  {tag}" + (f" ({diff})" if diff else "") + \
                (f": {m.why}" if m.why and m.result != "wrong" else "")
        out.write(line + "\n")
    right, graded = score(marks)
    ungraded = sum(m.result == "ungraded" for m in marks)
    if graded or ungraded:
        out.write(f"\n{right} of {graded} predictions right" + (f"; {ungraded} not gradable here" if ungraded else "")
                  + ".\n")
    else:
        out.write("\n(no predictions to score)\n")
    # The verdict's reason quotes the table's rows: part of the reveal.
    out.write(f"verdict against the expected table: {verdict.verdict}"
              + (f" ({verdict.reason})" if verdict.reason and (reveal or verdict.verdict == "skip") else "") + "\n")
    if verdict.verdict == "skip":
        out.write("This lab could not run here, so nothing was graded. " + _skip_advice(ex.case, verdict.reason)
                  + "\n")
    if reveal:
        out.write(f"\nThe rule: {ex.case.summary}\n")
        note = read_note(ex.case)
        if note:
            out.write("\n" + plain(note.rstrip()) + "\n")
        for story in ex.case.stories:   # the incidents behind the lab (cases/stories.toml)
            out.write(f"\nStory {story.id}: {plain(story.summary)}.\n  {plain(story.citation())}\n")


def _skip_advice(case, reason):
    if "CAP_SYS_ADMIN" in reason or "needs root" in reason:
        return ("Without root, try --flavor userns" if "userns" in case.flavors else "It needs root") + \
            "; a teacher can also run it as root for the class."
    if "runs only under --runtime" in reason:
        return ("It plays a container engine around a runtime: `./kpc lab init-exercise --init FILE` runs it under "
                "your own init, `./kpc run --runtime tini --case " + case.id + " -v` under tini.")
    if "/dev/fuse" in reason:
        return "FUSE needs /dev/fuse readable and writable (Debian's default is 0666)."
    return ""


# ---------------------------------------------------------------- answer files

def read_answer_file(path: str) -> dict:
    """An answer file (TOML) -> dict. It is untrusted input read as root:
    a regular file opened without following a symbolic link, at most 1
    MiB, UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        why = "a symbolic link (give the file itself)" if e.errno == errno.ELOOP else e.strerror
        raise LabError(f"{clean(path, 200)}: cannot read: {why}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LabError(f"{clean(path, 200)}: not a regular file")
        if st.st_size > MAX_ANSWER_FILE:
            raise LabError(f"{clean(path, 200)}: larger than {MAX_ANSWER_FILE} bytes")
        data = os.read(fd, MAX_ANSWER_FILE + 1)
    finally:
        os.close(fd)
    try:
        return tomlread.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise LabError(f"{clean(path, 200)}: not UTF-8 text") from None
    except tomlread.TOMLError as e:
        raise LabError(f"{clean(path, 200)}: not an answer file (TOML): {clean(e, 200)}") from None


def _flatten(table, prefix=""):
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif isinstance(v, (str, int, float)):
            out[key] = str(v)
        else:
            out[key] = None
    return out


def answers_of(doc: dict) -> tuple[str | None, str, dict[str, dict[str, str]]]:
    """(student, seed, {case id: {key: raw}}) from an answer file's TOML."""
    student = doc.get("student")
    seed = doc.get("seed", student)
    labs = {k: _flatten(v) for k, v in doc.items() if isinstance(v, dict)}
    return student, seed, labs


def _toml_str(text):
    return json.dumps(str(text), ensure_ascii=False)


def save_answers(path: str, case_id: str, answers: dict, seed: str) -> None:
    """Add (or replace) one lab's answers in an answer file."""
    doc = {}
    if os.path.lexists(path):
        doc = read_answer_file(path)
    student, old_seed, labs = answers_of(doc)
    labs[case_id] = dict(answers)
    lines = []
    who = student or seed
    if who is not None:
        lines.append(f"student = {_toml_str(who)}")
    if old_seed is not None and old_seed != who:
        lines.append(f"seed = {_toml_str(old_seed)}")
    for cid, ans in labs.items():
        lines.append(f"\n[{cid}]")
        lines += [f"{_toml_str(k)} = {_toml_str(v)}" for k, v in ans.items() if v is not None]
    write_file(path, "\n".join(lines) + "\n")


def write_file(path: str, data: str | bytes) -> None:
    """Grades, answer files, handouts: written without following a planted
    symbolic link and without a predictable temporary name (kpc may run as
    root in a shared directory): kpc's safefile writer."""
    safefile.write(path, data)


# ---------------------------------------------------------------- kpc grade

def grade(args: argparse.Namespace, all_cases: dict[str, cases.Case], tbl: tables.Tables,
          ensure_build: Callable[[], None], out: TextIO = sys.stdout) -> int:
    """Score a class: each answer file's labs are run with that student's
    parameters (one run per distinct case and parameters) and compared
    key by key. Scores per student and per key; --json for the gradebook."""
    students = []
    for path in args.answers:
        doc = read_answer_file(path)
        student, seed, labs = answers_of(doc)
        if not labs:
            raise LabError(f"{clean(path, 200)}: no [case_id] table of answers")
        for cid in labs:
            if cid not in all_cases:
                raise LabError(f"{clean(path, 200)}: unknown lab [{clean(cid, 80)}] (`kpc list --course`)")
        students.append((path, str(student if student is not None else os.path.basename(path)),
                         None if seed is None else str(seed), labs))
    ensure_build()
    env = envinfo.detect()
    runs = {}   # (case id, params) -> (verdict, flavor)
    results = []
    for path, student, seed, labs in students:
        entry = {"student": student, "file": path, "labs": {}, "right": 0, "graded": 0, "ungraded": 0}
        for cid, answers in labs.items():
            case = all_cases[cid]
            ex = prepare(case, tbl, None, seed)
            key = (cid, tuple(sorted(ex.params.items())))
            if key not in runs:
                verdict, _, flavor = run(ex, all_cases, tbl, env, args.flavor)
                runs[key] = (verdict, flavor)
            verdict, flavor = runs[key]
            given, problems = {}, []
            recorded = keys_of(case, tbl, ex.variant)
            for k, raw in answers.items():
                if k not in recorded:
                    problems.append(f"{k}: no such observation")
                    continue
                if k not in ex.keys:
                    ex.keys.append(k)   # answered although not asked: graded too
                try:
                    given[k] = (raw, read_answer(ex, k, raw or ""))
                except values.ValueError_:
                    given[k] = (raw, None)
            marks = mark(ex, given, verdict)
            right, graded = score(marks, blanks_count=True)
            ungraded = sum(m.result == "ungraded" for m in marks)
            entry["labs"][cid] = {"variant": ex.variant, "flavor": flavor, "params": ex.params,
                                  "verdict": verdict.verdict, "right": right, "graded": graded,
                                  "ungraded": ungraded, "problems": problems,
                                  "keys": {m.key: {"answer": m.answer, "read": m.read, "kernel": m.kernel,
                                                   "result": m.result, **({"why": m.why} if m.why else {})}
                                           for m in marks}}
            entry["right"] += right
            entry["graded"] += graded + len(problems)
            entry["ungraded"] += ungraded
        results.append(entry)
    per_key = {}
    for entry in results:
        for cid, lab in entry["labs"].items():
            for k, m in lab["keys"].items():
                s = per_key.setdefault(f"{cid} {k}", {"right": 0, "wrong": 0, "ungraded": 0, "unanswered": 0})
                bucket = {"right": "right", "wrong": "wrong", "unreadable": "wrong"}.get(m["result"], m["result"])
                s[bucket] = s.get(bucket, 0) + 1
    doc = {"schema": "kpc-grade/1", "kernel": env.kernel, "machine": env.machine,
           "students": results, "keys": per_key}
    width = max([len(e["student"]) for e in results] + [7])
    out.write(f"{'STUDENT'.ljust(width)}  SCORE     LABS\n")
    for e in results:
        labs = ", ".join(f"{cid} {lab['right']}/{lab['graded']}" + (f" (+{lab['ungraded']} not gradable)"
                                                                    if lab["ungraded"] else "")
                         for cid, lab in e["labs"].items())
        out.write(f"{clean(e['student'], 60).ljust(width)}  {e['right']:>3}/{e['graded']:<4}  {labs}\n")
        for cid, lab in e["labs"].items():
            for p in lab["problems"]:
                out.write(f"{''.ljust(width)}  {cid}: {clean(p, 200)} (scored 0)\n")
    hard = sorted(((s["wrong"], k) for k, s in per_key.items() if s["wrong"]), reverse=True)[:5]
    if hard:
        out.write("most missed: " + ", ".join(f"{k} ({n} wrong)" for n, k in hard) + "\n")
    if args.json:
        try:
            write_file(args.json, json.dumps(doc, indent=1) + "\n")
        except OSError as e:
            raise LabError(f"cannot write {clean(args.json, 200)}: {e}") from None
        out.write(f"grades: {args.json}\n")
    return 0


# ---------------------------------------------------------------- the course

def course(all_cases: dict[str, cases.Case]) -> list[tuple[str, list[str]]]:
    """[(unit, [case ids in order])]: units in UNITS order; inside a unit,
    prerequisites first, then easy before hard, then by id."""
    rank = {d: i for i, d in enumerate(cases_mod.DIFFICULTIES)}
    out = []
    for unit in UNIT_NAMES:
        members = {cid: c for cid, c in all_cases.items() if c.lab.unit == unit}
        done, order = set(), []
        while len(order) < len(members):
            ready = [cid for cid, c in members.items() if cid not in done
                     and all(p in done or p not in members for p in c.lab.prerequisites)]
            if not ready:   # a cycle: `kpc check` reports it; list the rest as they come
                ready = [cid for cid in members if cid not in done]
            nxt = min(ready, key=lambda cid: (rank.get(members[cid].lab.difficulty, 9), cid))
            done.add(nxt)
            order.append(nxt)
        if unit == "project":
            order += [f"labs/{name}" for name in exercise_names()]
        if order:
            out.append((unit, order))
    return out


_POSITIONS = {}


def course_positions(all_cases: dict[str, cases.Case] | None) -> dict[str, str]:
    """case id -> '1.3' (unit number . place in the unit)."""
    if all_cases is None:
        return _POSITIONS
    _POSITIONS.clear()
    for u, (unit, ids) in enumerate(course(all_cases), 1):
        for i, cid in enumerate(ids, 1):
            _POSITIONS[cid] = f"{u}.{i}"
    return _POSITIONS


def first_sentence(text: str, limit: int = 100) -> str:
    q = re.sub(r"^\*\*[^*]+\*\*\s*", "", text).replace("\n", " ")
    q = re.sub(r"\s+", " ", q).strip()
    m = re.match(r"(.+?[.?!])(\s|$)", q)
    s = m.group(1) if m else q
    return s if len(s) <= limit else s[:limit - 3] + "..."


def list_course(all_cases: dict[str, cases.Case], out: TextIO = sys.stdout) -> int:
    positions = course_positions(all_cases)
    titles = dict(UNITS)
    out.write("The course path: do the labs in this order. `./kpc lab ID` runs one, `./kpc handout ID` "
              "prints its sheet.\n")
    for u, (unit, ids) in enumerate(course(all_cases), 1):
        out.write(f"\n{u}. {titles[unit]}\n")
        width = max(len(i) for i in ids)
        for cid in ids:
            if cid.startswith("labs/"):
                name = cid[5:]
                out.write(f"  {positions[cid]:<5} {name.ljust(width)}  {'project':<8}  "
                          f"{first_sentence(exercise_summary(name))}\n")
                continue
            c = all_cases[cid]
            pre = [positions.get(p, p) for p in c.lab.prerequisites]
            out.write(f"  {positions[cid]:<5} {cid.ljust(width)}  {c.lab.difficulty:<8}  "
                      f"{first_sentence(question(read_note(c)) or c.lab.setup[0] if c.lab.setup else '')}"
                      + (f"  [after {', '.join(pre)}]" if pre else "") + "\n")
    missing = [cid for cid, c in all_cases.items() if not c.lab.unit]
    if missing:
        out.write(f"\nnot in the course yet: {', '.join(missing)}\n")
    return 0


# ---------------------------------------------------------------- handouts

def handout_markdown(case: cases.Case, tbl: tables.Tables, seed: str | None = None) -> str:
    """The lab sheet: question, setup, what to predict and in which form,
    the commands to see it yourself, how to check and hand in. No answer:
    no summary, no expected rows, no note body, no story."""
    positions = course_positions(None)
    ex = prepare(case, tbl, None, seed)
    lab = case.lab
    pos = positions.get(case.id)
    lines = [f"# Lab {pos + ': ' if pos else ''}{case.id}", ""]
    meta = [f"unit: {dict(UNITS).get(lab.unit, lab.unit)}" if lab.unit else "",
            f"difficulty: {lab.difficulty}" if lab.difficulty else "",
            f"do first: {', '.join(f'`{p}`' for p in lab.prerequisites)}" if lab.prerequisites else "",
            f"variant: {ex.variant}" if ex.variant else ""]
    lines += ["*" + " · ".join(m for m in meta if m) + "*", ""] if any(meta) else []
    q = question(read_note(case))
    lines += ["## Question", "", re.sub(r"^\*\*(Predict|Question)[.:]\*\*\s*", "", q.strip()) or "(none)", ""]
    steps = setup_steps(case, ex.params)
    if steps:
        lines += ["## Setup", "", "What the probe does:", ""] + [f"{i}. {s}" for i, s in enumerate(steps, 1)] + [""]
    if ex.params:
        lines += ["Your parameters (from your seed `" + str(seed) + "`): "
                  + ", ".join(f"{k} = `{v}`" for k, v in ex.params.items()), ""]
    lines += ["## Your predictions", "", "| observation | write it as | your prediction |", "|---|---|---|"]
    for k in ex.keys:
        lines.append(f"| `{k}` | {ex.forms[k].prompt(ex.avoid[k]).replace('|', chr(92) + '|')} | |")
    lines.append("")
    blocks = demo_blocks(read_note(case))
    if blocks:
        lines += ["## See it yourself", "", "Predict what each command prints, then run it:", ""]
        for block in blocks:
            for d in block:
                cmd = d.command.replace("\n", "\n      ")
                lines.append(f"    {'#' if d.root else '$'} {strip_comment(cmd)}")
            lines.append("")
    seed_arg = f" --seed {seed}" if seed is not None else ""
    lines += ["## Check and hand in", "",
              f"    ./kpc lab {case.id}{seed_arg} --save answers.toml", "",
              "asks for each prediction, runs the probe on this machine's kernel, compares, and adds your "
              "answers to `answers.toml`; your teacher scores a class with `kpc grade`. By hand, the file is:", "",
              "    student = \"your name\"", f"    [{case.id}]"]
    lines += [f"    \"{k}\" = \"...\"" for k in ex.keys[:3]] + [""]
    return "\n".join(lines)


def handout_html(markdown_text: str, title: str) -> str:
    """A small HTML rendering of a handout (for --pdf)."""
    import html as html_mod
    out, in_code, in_table, in_list = [], False, False, False
    for line in markdown_text.split("\n"):
        esc = html_mod.escape(line)
        esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)
        esc = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", esc)
        if line.startswith("    "):
            if not in_code:
                out.append("<pre>")
                in_code = True
            out.append(html_mod.escape(line[4:]))
            continue
        if in_code:
            out.append("</pre>")
            in_code = False
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table border=1 cellpadding=4 style='border-collapse:collapse'>")
                in_table = True
            tds = [re.sub(r"`([^`]+)`", r"<code>\1</code>", html_mod.escape(c)) for c in cells]
            out.append("<tr>" + "".join(f"<td>{td}</td>" for td in tds) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        m = re.match(r"^\d+\. (.*)$", line)
        if m:
            if not in_list:
                out.append("<ol>")
                in_list = True
            out.append(f"<li>{esc[len(line) - len(m.group(1)):]}</li>")
            continue
        if in_list:
            out.append("</ol>")
            in_list = False
        if line.startswith("## "):
            out.append(f"<h2>{esc[3:]}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{esc[2:]}</h1>")
        elif line.startswith("*") and line.endswith("*") and len(line) > 2:
            out.append(f"<p><i>{esc[1:-1]}</i></p>")
        elif line.strip():
            out.append(f"<p>{esc}</p>")
    for flag, tag in ((in_code, "</pre>"), (in_table, "</table>"), (in_list, "</ol>")):
        if flag:
            out.append(tag)
    return ("<!doctype html><meta charset=utf-8><title>" + html_mod.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto}td{min-width:6em}</style>"
            + "\n".join(out))


def to_pdf(html_text: str) -> bytes:
    """PDF bytes from HTML by headless Chromium (Debian's chromium), in a
    private temporary directory."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise LabError("--pdf needs Debian's chromium (apt install chromium); the Markdown handout works without it")
    with tempfile.TemporaryDirectory(prefix="kpc-handout-") as d:
        src, pdf = os.path.join(d, "handout.html"), os.path.join(d, "handout.pdf")
        with open(src, "w", encoding="utf-8") as f:
            f.write(html_text)
        cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={d}/profile",
               "--no-pdf-header-footer", f"--print-to-pdf={pdf}", f"file://{src}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not os.path.exists(pdf):
            raise LabError(f"chromium could not print the PDF (exit {r.returncode}): {clean(r.stderr.strip()[-200:])}")
        with open(pdf, "rb") as f:
            return f.read()


def handout(args: argparse.Namespace, all_cases: dict[str, cases.Case], tbl: tables.Tables,
            out: TextIO = sys.stdout) -> int:
    course_positions(all_cases)
    ids = args.id
    docs = []
    for cid in ids:
        case = all_cases.get(cid)
        if case is None:
            raise LabError(f"unknown lab '{clean(cid, 80)}'; `./kpc list --course` shows the labs")
        docs.append(handout_markdown(case, tbl, args.seed))
    text = "\n\n---\n\n".join(docs)
    try:
        if args.pdf:
            write_file(args.pdf, to_pdf(handout_html(text, " ".join(ids))))
            out.write(f"handout: {args.pdf}\n")
        if args.output:
            write_file(args.output, text + "\n")
            if args.output != "-":
                out.write(f"handout: {args.output}\n")
        if not args.pdf and not args.output:
            out.write(text + "\n")
    except OSError as e:
        raise LabError(f"cannot write the handout: {clean(e, 200)}") from None
    return 0


# ---------------------------------------------------------------- code exercises (labs/)

def exercise_names() -> list[str]:
    try:
        return sorted(d for d in os.listdir(LABS_DIR) if os.path.isfile(os.path.join(LABS_DIR, d, "checks.toml")))
    except OSError:
        return []


def load_exercise(name: str) -> dict:
    with open(os.path.join(LABS_DIR, name, "checks.toml"), "rb") as f:
        return tomlread.loads(f.read().decode("utf-8"))


def exercise_summary(name: str) -> str:
    try:
        return load_exercise(name).get("summary", name)
    except (OSError, tomlread.TOMLError):
        return name


def _init_prefix(path, workdir):
    """The student's init as a command prefix: a .py runs under
    /usr/bin/python3, a .c is compiled first (cc), anything else must be
    executable."""
    if not os.path.isfile(path):
        raise LabError(f"--init {clean(path, 200)}: no such file")
    path = os.path.abspath(path)
    if path.endswith(".py"):
        return ["/usr/bin/python3", path]
    if path.endswith(".c"):
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise LabError("compiling a .c init needs a C compiler (apt install gcc)")
        exe = os.path.join(workdir, "init")
        r = subprocess.run([cc, "-O2", "-Wall", "-o", exe, path], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            first = r.stderr.strip().splitlines()[0] if r.stderr.strip() else r.returncode
            raise LabError(f"{clean(path, 200)} does not compile: {clean(first, 300)}")
        return [exe]
    if not os.access(path, os.X_OK):
        raise LabError(f"--init {clean(path, 200)}: not executable (or give a .py or .c file)")
    return [path]


def init_exercise(args: argparse.Namespace, all_cases: dict[str, cases.Case], tbl: tables.Tables,
                  ensure_build: Callable[[], None], out: TextIO = sys.stdout) -> int:
    """kpc lab init-exercise --init FILE: run the runtime cases under the
    student's init and report the staged checks, easy to hard; the first
    stage that fails names what to fix next."""
    from . import runtimes
    spec = load_exercise(args.id)
    if not args.init:
        starters = ", ".join(f"labs/{args.id}/{s}" for s in spec.get("starters", []))
        raise LabError(f"{args.id}: give your init with --init FILE (start from a copy of {starters})")
    ensure_build()
    env = envinfo.detect()
    with tempfile.TemporaryDirectory(prefix="kpc-init-") as workdir:
        prefix = _init_prefix(args.init, workdir)
        try:
            rt = runtimes.resolve(shlex.join(prefix), "clean")
        except ValueError as e:
            raise LabError(str(e)) from None
        selected = checked_runs(spec, all_cases)
        wanted = [c.id for c in selected]
        out.write(f"== {args.id}: {spec.get('summary', '')} ==\nyour init: {' '.join(prefix)}\n"
                  f"running {', '.join(wanted)} under it (a few seconds)...\n")
        out.flush()
        sess = session.Session(all_cases, tbl, env, selected, ["host"], jobs=2, slow=True, runtimes=[rt])
        sess.progress.enabled = False
        verdicts = {(i.case.id, i.variant): (v, i) for i, v in zip(sess.items, sess.run_all())}
    return report_stages(spec, verdicts, out)


def checked_runs(spec: dict, all_cases: dict[str, cases.Case]) -> list[cases.Case]:
    """The cases an exercise's checks name, each with only the variants
    they name ('case:variant:key'; 'case:key' for a case without any)."""
    wanted = {}
    for st in spec["stage"]:
        for check in st["checks"]:
            parts = check.split(":")
            wanted.setdefault(parts[0], set()).update(parts[1:2] if len(parts) == 3 else [])
    return [dataclasses.replace(all_cases[c], variants=[v for v in all_cases[c].variants if v in named])
            for c, named in sorted(wanted.items())]


class _Checked(typing.NamedTuple):
    seen: object       # the observed value (None: not recorded)
    want: object       # the expected value, canonical (None: no row)
    verdict: object    # the run's evaluate.Verdict


def _check_key(check, verdicts):
    """'case:variant:key' -> _Checked, or None when the run is missing."""
    parts = check.split(":")
    cid, variant, key = (parts[0], "", parts[1]) if len(parts) == 2 else parts
    got = verdicts.get((cid, variant))
    if got is None:
        return None
    v, item = got
    types = {r["obs"]: r["type"] for r in (item.result or {}).get("records", []) if "obs" in r}
    seen = v.observations.get(key)
    row = v.expected.get(key)
    want = None
    if row is not None:
        try:
            want = values.canonical(types.get(key, "str"), row["value"])
        except values.ValueError_:
            want = row["value"]
    return _Checked(seen, want, v)


def report_stages(spec: dict, verdicts: dict, out: TextIO) -> int:
    passed = 0
    stages = spec["stage"]
    failed_at = None
    for n, st in enumerate(stages, 1):
        problems, ungraded = [], []
        for check in st["checks"]:
            got = _check_key(check, verdicts)
            key = check.split(":")[-1]
            if got is None or got.seen is None or got.want is None:
                v = got.verdict if got else None
                ungraded.append(f"{key}: " + (f"not recorded ({v.verdict}: {v.reason})" if v else "not run"))
                continue
            seen, want, _ = got
            if want == tables.REPORTED:   # reported, not judged: any value passes
                continue
            if seen != want:
                diff = ""
                try:
                    if "|" in want + seen or want.startswith("SIG") or seen.startswith("SIG") or "none" in (want, seen):
                        w, s = values.parse_sigset(want), values.parse_sigset(seen)
                        diff = "; ".join(x for x in (f"extra {values.format_sigset(s & ~w)}" if s & ~w else "",
                                                     f"missing {values.format_sigset(w & ~s)}" if w & ~s else "") if x)
                except values.ValueError_:
                    pass
                problems.append(f"{key}: expected {values.describe_sigset(want) if 'SIG' in want else want}, "
                                f"your init gave {values.describe_sigset(seen) if 'SIG' in seen else seen}"
                                + (f" ({diff})" if diff else ""))
        status = "PASS" if not problems and not ungraded else ("FAIL" if problems else "NOT RUN")
        out.write(f"\n  stage {n}: {st['title']}  ... {status}\n")
        for p in problems + ungraded:
            out.write(f"      {p}\n")
        if status == "PASS":
            passed += 1
        elif failed_at is None:
            failed_at = st
            if problems and st.get("hint"):
                out.write(f"      hint: {st['hint']}\n")
    out.write(f"\n{passed} of {len(stages)} stages pass" + (". Next: " + failed_at["title"] if failed_at else
                                                            ": your init does a container init's job.") + "\n")
    return 0 if passed == len(stages) else 1


# ---------------------------------------------------------------- kpc check

def note_problems(case: cases.Case) -> list[str]:
    """A case has a lab note, with a question to predict and a way to see
    it yourself (for `kpc check`)."""
    rel_note = os.path.relpath(case.note_path, paths.ROOT)
    if not os.path.exists(case.note_path):
        return [f"{case.id}: no lab note {rel_note}"]
    with open(case.note_path, encoding="utf-8") as f:
        note = f.read()
    problems = []
    if not any(m in note for m in ("**Predict.**", "**Predict:**", "**Question.**")):
        problems.append(f"{case.id}: {rel_note} has no question to predict (a '**Predict.**' paragraph)")
    if "see it yourself" not in note.lower() and "/proc" not in note:
        problems.append(f"{case.id}: {rel_note} does not say how to see it yourself "
                        f"(a '**See it yourself.**' paragraph)")
    return problems


def lint(all_cases: dict[str, cases.Case], tbl: tables.Tables) -> list[str]:
    """Problems with the course metadata and notes (for `kpc check`)."""
    problems = []
    unit_rank = {u: i for i, u in enumerate(UNIT_NAMES)}
    for cid, c in all_cases.items():
        rel = os.path.relpath(c.metadata_path, paths.ROOT)
        lab = c.lab
        if lab.unit not in unit_rank:
            problems.append(f"{rel}: lab.unit must be one of {', '.join(UNIT_NAMES)}" + (
                f"; got '{lab.unit}'" if lab.unit else " (every case is in the course)"))
        if not lab.difficulty:
            problems.append(f"{rel}: lab.difficulty missing ({', '.join(cases_mod.DIFFICULTIES)})")
        if not lab.setup:
            problems.append(f"{rel}: lab.setup missing (the numbered steps `kpc lab` shows; not the answer)")
        for p in lab.prerequisites:
            if p not in all_cases:
                problems.append(f"{rel}: lab.prerequisites names an unknown case '{p}'")
            elif unit_rank.get(all_cases[p].lab.unit, 99) > unit_rank.get(lab.unit, 99):
                problems.append(f"{rel}: prerequisite {p} comes in a later unit ({all_cases[p].lab.unit})")
        recorded = [r.key for r in tbl.rows_for(cid)]
        for k in list(lab.ask) + list(lab.forms):
            if k not in recorded:
                problems.append(f"{rel}: lab names observation '{k}', which {cid}'s table does not have")
        for k, spec in lab.forms.items():
            try:
                values.form(spec)
            except values.ValueError_ as e:
                problems.append(f"{rel}: lab.forms.{k}: {e}")
        for name, p in lab.params.items():
            for k, template in p["rows"].items():
                rows = tbl.rows_for(cid, k)
                if not rows:
                    problems.append(f"{rel}: lab.params.{name}.rows names '{k}', which the table does not have")
                elif any(r.value != template.format(p["default"]) for r in rows):
                    problems.append(f"{rel}: lab.params.{name}: with the default {p['default']}, {k} would be "
                                    f"{template.format(p['default'])}, but the table says {rows[0].value}")
        try:
            setup_steps(c, params_for(c, None))
        except (KeyError, IndexError, ValueError) as e:
            problems.append(f"{rel}: lab.setup uses a placeholder that is not a parameter: {e}")
        note = read_note(c)
        paras = paragraphs(note)
        if paras and not paras[0].lstrip().startswith(("**Predict.**", "**Question.**")):
            problems.append(f"{os.path.relpath(c.note_path, paths.ROOT)}: the question (**Predict.**) must be the "
                            f"first paragraph, before any answer")
    for cid, c in all_cases.items():
        seen, node = set(), cid
        stack = [cid]
        while stack:
            node = stack.pop()
            for p in all_cases[node].lab.prerequisites if node in all_cases else []:
                if p == cid:
                    problems.append(f"{cid}: its prerequisites lead back to it (a cycle)")
                    stack = []
                    break
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
    for name in exercise_names():
        try:
            spec = load_exercise(name)
        except (OSError, tomlread.TOMLError) as e:
            problems.append(f"labs/{name}/checks.toml: {e}")
            continue
        for st in spec.get("stage", []):
            for check in st.get("checks", []):
                # case:key, or case:variant:key for a case with variants: a
                # key with a row for that variant
                parts = check.split(":")
                case = all_cases.get(parts[0])
                variant = parts[1] if len(parts) == 3 else ""
                if (case is None or len(parts) not in (2, 3) or bool(variant) != bool(case.variants)
                        or (variant and variant not in case.variants) or parts[-1] not in keys_of(case, tbl, variant)):
                    problems.append(f"labs/{name}/checks.toml: stage '{st.get('title')}' checks unknown {check}")
        for s in spec.get("starters", []):
            if not os.path.isfile(os.path.join(LABS_DIR, name, s)):
                problems.append(f"labs/{name}: starter {s} is missing")
    return problems


def check_quotes(all_cases: dict[str, cases.Case]) -> tuple[list[str], str]:
    """(problems, note): every man-page quote verbatim in the installed
    page; `note` says what was not checked and why."""
    problems, others = [], 0
    for cid, c in all_cases.items():
        for q in manpages.quotes_of(c):
            if not manpages.is_man_quote(q):
                others += 1
                continue
            try:
                why = manpages.check_quote(q)
            except manpages.NotInstalled as e:
                return [], f"quotes not checked: {e}"
            if why:
                problems.append(f"{os.path.relpath(c.metadata_path, paths.ROOT)}: quote {why}")
    return problems, f"man-page quotes checked against {manpages.MAN_DIR} ({others} quotes from other sources " \
                     f"not checked)"
