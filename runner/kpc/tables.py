r"""Expected tables: cases/<area>/<id>.exp, beside the case's <id>.toml.

A case's file holds the rows of that case only:

    # comment
    @NAME = COND [COND...]                        a named condition set, for this file
    [case_id]                                     the case's rows
    KEY = VALUE                                   a row for every context
    KEY = VALUE  if COND [COND...]  -- reason     a row for some contexts
    KEY = VALUE  if COND  xfail  -- reason        a known divergence (verdict xfail)
    [case_id if COND [COND...] [-- reason]]       a sub-section: its rows inherit the
                                                  conditions (and the reason, if they have none)
    a row or header ending in \                   continues on the next line

cases/<area>/area.exp holds what the area's tables share: comments about
every case of the area, and the @NAME sets that more than one case uses
(a set only one case uses is defined in that case's file). No rows.

COND is DIM OP VALUE, or @NAME (a set defined above in the same file, or in area.exp):
    kernel>=5.3  kernel<6.3  kernel>6.1  kernel<=6.1  kernel=6.1 (any 6.1.x)
    flavor=pidns|userns  flavor!=host  variant=fork|clone  profile=clean
    variant=posix_spawn*   (shell-style globs in every dimension but kernel)
    runtime=tini  libc=musl  arch=x86_64  root=yes
    glibc>=2.38  glibc<2.34  glibc=2.36   (the C library's version: such a
                           condition holds only where the libc is glibc)
VALUE is read in the observation's type when compared (signal sets in any
order, `none` for the empty set); quote it ("...") if it holds spaces.
A signal set may use ranges, SIG34..SIG64 or SIGRTMIN..SIGRTMAX (both ends
included), and "all but SET" (quoted: it has spaces); the row keeps the set
written out.

A reason after `--` is required where the row is more than the case's own
choice: on every xfail row, every `*` row and every row with a condition on
anything but `variant` (a reason inherited from the sub-section counts).
The key `hang` (yes/no) states whether the case is expected to deadlock;
`hang = yes` must be xfail. For any context at most one row of a key may
match: overlaps are found when the tables load, with both rows' file:line.
No condition list is written twice: two sets of an area with the same
list are an error (one of them belongs in area.exp).
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import itertools
import os
import re
import shlex
from typing import Iterator, TYPE_CHECKING

from . import inputs, kver, paths, values

if TYPE_CHECKING:
    from . import cases as cases_mod
    from . import cases

DIMENSIONS = ("kernel", "flavor", "variant", "profile", "runtime", "libc", "glibc", "arch", "root")
# Compared as versions (intervals), not names. A context's glibc is its
# glibc's version, None where the libc is another (or its version unknown).
VERSIONED = ("kernel", "glibc")
_KEY = re.compile(r"^[a-z0-9_.-]+$")
_ROW = re.compile(r"^([^\s=]+)\s*=\s*(.*)$")
_COND = re.compile(r"^([a-z]+)(>=|<=|!=|=|<|>)(.+)$")
_SIGSET_LIKE = re.compile(r"^SIG[A-Z0-9]+(\|SIG[A-Z0-9]+)*$")  # checked early: a typo is a table error
_SECTION = re.compile(r"^\[(.*)\]$")
_SET_NAME = re.compile(r"^@[a-z][a-z0-9_]*$")
_SET_DEF = re.compile(r"^(@\S*)\s*=\s*(.*)$")
# A signal set with a range in it (SIG34..SIG64): written out when read.
_RANGE_SET = re.compile(r"^SIG[A-Z0-9+|.-]*\.\.[A-Z0-9+|.-]*$")
_ALL_BUT = "all but "
_GLOB = re.compile(r"[*?[]")  # fnmatch's special characters
_VERSION_VALUE = re.compile(r"^\d+(\.\d+){0,2}$")  # whole: kver.parse alone reads '5.x' as 5.0
OTHER = "(other)"  # a value of a free-form dimension that no row names
# A row's value that accepts whatever was observed: the observation is shown
# in the results, not judged (a fact no profile promises, for a runtime kpc
# does not know). Such a row needs a reason like any conditional row.
REPORTED = "*"


_QUOTING = re.compile(r"""['"\\]""")   # what shlex reads specially (posix, no comments)
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")  # shlex's whitespace


def _words(text: str) -> list[str]:
    """shlex.split(text, comments=False, posix=True): a row's words. Most
    rows quote nothing; those are split at shlex's whitespace directly (the
    same words, a tenth of the time); shlex reads the others."""
    if _QUOTING.search(text) is None:
        return [w for w in _SHLEX_SPACE.split(text) if w]
    return shlex.split(text, comments=False, posix=True)


class TableError(Exception):
    def __init__(self, where, message):
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _successor(v):
    return (v[0], v[1], v[2] + 1)


@dataclasses.dataclass(frozen=True)
class Condition:
    dim: str
    text: str
    negate: bool = False
    choices: tuple = ()          # dimensions of names
    lo: tuple | None = None             # VERSIONED: half-open interval [lo, hi)
    hi: tuple | None = None

    def __post_init__(self):
        # A plain choice matches its own text only (as fnmatch would): a
        # set lookup; the patterns go through fnmatch.
        object.__setattr__(self, "_plain", frozenset(c for c in self.choices if not _GLOB.search(c)))
        object.__setattr__(self, "_patterns", tuple(c for c in self.choices if _GLOB.search(c)))

    def matches(self, ctx: dict) -> bool:
        if self.dim in VERSIONED:
            v = ctx.get(self.dim)
            return v is not None and (self.lo is None or v >= self.lo) and (self.hi is None or v < self.hi)
        value = ctx[self.dim]
        inside = value in self._plain or any(fnmatch.fnmatchcase(value, c) for c in self._patterns)
        return not inside if self.negate else inside


def parse_condition(token: str, case: cases.Case, where: str) -> Condition:
    m = _COND.match(token)
    if not m:
        raise TableError(where, f"cannot read condition '{token}' (expected e.g. kernel>=5.3 or flavor=pidns)")
    dim, op, value = m.groups()
    if dim not in DIMENSIONS:
        raise TableError(where, f"unknown condition '{dim}' (known: {', '.join(DIMENSIONS)})")
    if dim in VERSIONED:
        if not _VERSION_VALUE.match(value):
            raise TableError(where, f"bad {dim} version in '{token}' (want e.g. "
                                    f"{'6.1 or 5.10.3' if dim == 'kernel' else '2.38'})")
        v = kver.parse(value)
        if op == "!=":
            raise TableError(where, f"{dim}!= is not supported; use two rows with < and >")
        if op == "=":
            parts = value.split(".")
            if len(parts) == 1:
                hi = (v[0] + 1, 0, 0)
            elif len(parts) == 2:
                hi = (v[0], v[1] + 1, 0)
            else:
                hi = _successor(v)
            return Condition(dim, token, lo=v, hi=hi)
        lo, hi = {">=": (v, None), ">": (_successor(v), None), "<": (None, v), "<=": (None, _successor(v))}[op]
        return Condition(dim, token, lo=lo, hi=hi)
    if op not in ("=", "!="):
        raise TableError(where, f"'{dim}' takes = or !=, not {op}")
    choices = tuple(value.split("|"))
    if any(not c for c in choices):
        raise TableError(where, f"empty alternative in '{token}'")
    allowed = {
        "flavor": set(case.flavors) if case else None,
        "variant": set(case.variants) if case else None,
        "root": {"yes", "no"},
        "libc": {"glibc", "musl"},
    }.get(dim)
    if allowed is not None:
        bad = [c for c in choices if not any(fnmatch.fnmatchcase(a, c) for a in allowed)]
        if bad:
            what = {"flavor": "flavor of this case", "variant": "variant of this case"}.get(dim, dim)
            raise TableError(where, f"'{bad[0]}' is not a {what} (known: {', '.join(sorted(allowed)) or 'none'})")
    return Condition(dim, token, negate=op == "!=", choices=choices)


def _expand_sigset(value, where):
    """A signal set written with ranges (SIG34..SIG64) or as "all but SET"
    -> the set written out (values.format_sigset); any other value as it is."""
    all_but = value.startswith(_ALL_BUT)
    if not all_but and not _RANGE_SET.match(value):
        return value
    body = value[len(_ALL_BUT):].strip() if all_but else value
    mask = 0
    try:
        for item in ([] if body == "none" else body.split("|")):
            lo, sep, hi = item.partition("..")
            if not lo or (sep and not hi):
                raise values.ValueError_("an empty signal or range end")
            first, last = values.signal_number(lo), values.signal_number(hi) if sep else None
            if last is not None and last < first:
                raise values.ValueError_(f"the range {item} runs backwards")
            for n in range(first, (last or first) + 1):
                mask |= 1 << (n - 1)
    except values.ValueError_ as e:
        raise TableError(where, f"bad signal set '{value}': {e}") from None
    return values.format_sigset(values.ALL_SIGNALS & ~mask if all_but else mask)


def _conditions(tokens, case, where, sets):
    """Conditions of the tokens, a @NAME read from `sets` (marked used)."""
    out = []
    for token in tokens:
        if not token.startswith("@"):
            out.append(parse_condition(token, case, where))
            continue
        if sets is None or token not in sets:
            raise TableError(where, f"unknown condition set '{token}' (define it above: '{token} = COND...')")
        entry = sets[token]
        entry["users"].add(case.id if case else "")
        try:
            out += [parse_condition(t, case, where) for t in entry["tokens"]]
        except TableError as e:
            raise TableError(where, f"{e.message} (in {token}, defined at {entry['where']})") from None
    return out


def _implied(conditions, where):
    """A glibc version condition also says libc=glibc, as a condition of
    its own (with no text of its own): the overlap linter takes the
    dimensions one by one, and without it would pair 'glibc<2.38' with
    'libc=musl' in a context that cannot exist (musl with a glibc
    version). A row that names another libc as well never matches."""
    if not any(c.dim == "glibc" for c in conditions):
        return []
    implied = Condition("libc", "", choices=("glibc",))
    for c in conditions:
        if c.dim == "libc" and not c.matches({"libc": "glibc"}):
            raise TableError(where, f"'{c.text}' and a glibc version condition never hold together")
    return [implied]


@dataclasses.dataclass
class Row:
    case: str
    key: str
    value: str
    conditions: tuple
    xfail: bool
    reason: str
    where: str  # "cases/signals/x.exp:12"
    own: tuple = ()  # the row's own condition tokens as written (a @NAME unread; none inherited)

    def matches(self, ctx: dict) -> bool:
        for c in self.conditions:
            if not c.matches(ctx):
                return False
        return True

    def describe(self) -> str:
        text = f"{self.key} = {self.value}"
        if self.conditions:
            text += " if " + " ".join(c.text for c in self.conditions if c.text)
        return text + (" xfail" if self.xfail else "")


def _split_reason(text):
    parts = re.split(r"(?:^|\s)--(?:\s|$)", text, maxsplit=1)
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


def _shell_words(text, where):
    """A row's or a set's words, quoted as in a shell ("exited 0" is one)."""
    try:
        return _words(text)
    except ValueError as e:
        raise TableError(where, f"cannot read '{text}': {e}") from None


def _parse_row(text, case, where, sets=None, inherited=(), inherited_reason=""):
    """One row; `inherited`: its sub-section's conditions (and reason)."""
    m = _ROW.match(text)
    if not m:
        raise TableError(where, f"cannot read row '{text}' (expected KEY = VALUE [if COND...] [xfail] [-- reason])")
    key, rest = m.groups()
    if not _KEY.match(key):
        raise TableError(where, f"bad key '{key}' (use a-z 0-9 _ . -)")
    rest, reason = _split_reason(rest)
    reason = reason or inherited_reason
    tokens = _shell_words(rest, where)
    if not tokens:
        raise TableError(where, f"row for '{key}' has no value")
    value, tail = tokens[0], tokens[1:]
    xfail = False
    if tail and tail[-1] == "xfail":
        xfail = True
        tail = tail[:-1]
    conditions = list(inherited)
    if tail:
        if tail[0] != "if":
            raise TableError(where, f"unexpected '{tail[0]}' after the value (write: KEY = VALUE if COND...)")
        if len(tail) == 1:
            raise TableError(where, "'if' without a condition")
        conditions += _conditions(tail[1:], case, where, sets)
    conditions += _implied(conditions, where)
    # The variant is the case's own choice of what to do: a row for one
    # needs no reason. Anything else (kernel, libc, flavor, runtime, ...)
    # or a known divergence says why.
    if (xfail or any(c.dim != "variant" for c in conditions)) and not reason:
        raise TableError(where, "a row with a condition or xfail needs a reason: add ' -- why' "
                                "(a condition on the variant alone needs none)")
    if value == REPORTED:
        if xfail:
            raise TableError(where, f"'{REPORTED}' (reported, not judged) cannot be xfail")
        if not reason:
            raise TableError(where, f"'{key} = {REPORTED}' needs a reason: say why this value is not judged here")
        if key == "hang":
            raise TableError(where, f"hang cannot be '{REPORTED}'")
    if key == "hang":
        if value not in ("yes", "no"):
            raise TableError(where, "hang takes yes or no")
        if value == "yes" and not xfail:
            raise TableError(where, "'hang = yes' must be xfail: a deadlock is never the correct behaviour")
    value = _expand_sigset(value, where)
    if _SIGSET_LIKE.match(value):
        try:
            values.parse_sigset(value)
        except values.ValueError_ as e:
            raise TableError(where, str(e)) from None
    return Row(case=case.id if case else "", key=key, value=value, conditions=tuple(conditions), xfail=xfail,
               reason=reason, where=where, own=tuple(tail[1:]))


def _logical_lines(content, rel):
    """(line number, text) of every line that is not blank or a comment, a
    line ending in a backslash joined (with one space) to the next."""
    # Line ends as open() in text mode reads them (\n, \r\n, \r).
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        first, text = i + 1, lines[i].strip()
        i += 1
        if not text or text.startswith("#"):
            continue
        while text.endswith("\\"):
            text = text[:-1].rstrip()
            nxt = lines[i].strip() if i < len(lines) else ""
            if not nxt or nxt.startswith("#"):
                raise TableError(f"{rel}:{first}", "the line ends in '\\' (continued), but the next line is "
                                                   + ("a comment" if nxt else "empty or missing"))
            text += " " + nxt
            i += 1
        yield first, text


def _define_set(text, sets, where):
    m = _SET_DEF.match(text)
    if not m:
        raise TableError(where, f"cannot read '{text}' (a condition set is '@name = COND...')")
    name, body = m.groups()
    if not _SET_NAME.match(name):
        raise TableError(where, f"bad set name '{name}' (use @ then a-z 0-9 _, starting with a letter)")
    if name in sets:
        raise TableError(where, f"condition set '{name}' is already defined at {sets[name]['where']}")
    tokens = _shell_words(body, where)
    if not tokens:
        raise TableError(where, f"condition set '{name}' is empty")
    for t in tokens:
        if t.startswith("@"):
            raise TableError(where, f"a condition set cannot use another set ('{t}'): write its conditions")
        parse_condition(t, None, where)   # the form; variants and flavors are checked where it is used
    sets[name] = {"tokens": tokens, "where": where, "users": set()}


class Tables:
    def __init__(self):
        self.rows = {}      # case id -> [Row]
        self.sections = {}  # case id -> "file:line"
        self._by_key = {}   # case id -> (its row list, that list's length, {key: [Row]}): rows_for's index

    def rows_for(self, case_id: str, key: str | None = None) -> list[Row]:
        rows = self.rows.get(case_id, [])
        if key is None:
            return list(rows)
        # Indexed by key (a case's rows were scanned once per observation):
        # made again when the case's list is another or has grown.
        index = self._by_key.get(case_id)
        if index is None or index[0] is not rows or index[1] != len(rows):
            by_key = {}
            for r in rows:
                by_key.setdefault(r.key, []).append(r)
            index = self._by_key[case_id] = (rows, len(rows), by_key)
        return list(index[2].get(key, ()))

    def match(self, case_id: str, key: str, ctx: dict) -> Row | None:
        """The one row of `key` matching ctx, or None. Two matches raise
        TableError (load-time linting should have caught it)."""
        hits = [r for r in self.rows_for(case_id, key) if r.matches(ctx)]
        if len(hits) > 1:
            raise TableError(hits[0].where, f"rows {', '.join(r.where for r in hits)} all match {key} in this context")
        return hits[0] if hits else None


AREA_FILE = "area.exp"   # cases/<area>/area.exp: the area's shared sets and notes (no case is named 'area')


def _rel(path):
    return os.path.relpath(path, paths.ROOT)


def _read(path, rel):
    try:
        content = inputs.read_text(path)
    except inputs.InputFileError as e:
        raise TableError(e.where(rel), str(e)) from None
    return _logical_lines(content, rel)


def parse_area_file(path: str, sets: dict) -> None:
    """cases/<area>/area.exp: @NAME sets for several of the area's cases
    (added to `sets`), and comments; a row or a section is an error."""
    rel = _rel(path)
    for lineno, text in _read(path, rel):
        where = f"{rel}:{lineno}"
        if not text.startswith("@"):
            raise TableError(where, f"{AREA_FILE} holds only condition sets (@name = COND...) and comments: a "
                                    f"case's rows go in its own file, {os.path.dirname(rel)}/<case_id>.exp")
        _define_set(text, sets, where)


def parse_file(path: str, cases: dict[str, cases_mod.Case], tables: Tables, area_sets: dict | None = None) -> dict:
    """cases/<area>/<id>.exp: the rows of case <id>, every section naming
    it. `area_sets`: the sets of the area's area.exp, usable here too.
    Returns the sets the file defined itself."""
    rel = _rel(path)
    area = os.path.basename(os.path.dirname(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    current = None
    inherited, inherited_reason = (), ""   # the current sub-section's
    subsections = {}                       # condition texts -> "file:line"
    area_sets = area_sets or {}
    sets = dict(area_sets)                 # "@name" -> {tokens, where, users}
    empty = None                           # a sub-section header with no row yet
    for lineno, text in _read(path, rel):
        where = f"{rel}:{lineno}"
        if text.startswith("@"):
            name = _SET_DEF.match(text).group(1) if _SET_DEF.match(text) else ""
            if name in area_sets:
                raise TableError(where, f"condition set '{name}' is already defined at {area_sets[name]['where']}")
            _define_set(text, sets, where)
            continue
        m = _SECTION.match(text)
        if m:
            if empty:
                raise TableError(empty, "a sub-section without rows")
            head, reason = _split_reason(m.group(1))
            case_id, cond_text = (head.split(None, 1) + ["", ""])[:2] if head else ("", "")
            if case_id not in cases:
                raise TableError(where, f"unknown case id '{case_id}' (no cases/*/{case_id}.toml)")
            home = f"cases/{cases[case_id].area}/{case_id}.exp"
            if cases[case_id].area != area:
                raise TableError(where, f"case '{case_id}' belongs to area '{cases[case_id].area}': put its rows "
                                        f"in {home}")
            if case_id != stem:
                raise TableError(where, f"[{case_id}] in {stem}.exp: a file holds the rows of the case it is "
                                        f"named after; put the rows of '{case_id}' in {home}")
            if not cond_text:
                if reason:
                    raise TableError(where, "a reason belongs to a sub-section ([case_id if COND... -- why])")
                if case_id in tables.sections and not inherited:
                    raise TableError(where, f"case '{case_id}' already has a section at {tables.sections[case_id]}")
                # (again right after its sub-sections: back to rows for every context)
                current = cases[case_id]
                inherited, inherited_reason = (), ""
                tables.sections.setdefault(case_id, where)
                tables.rows.setdefault(case_id, [])
                continue
            tokens = _shell_words(cond_text, where)
            if tokens[0] != "if":
                raise TableError(where, f"unexpected '{tokens[0]}' after the case id "
                                        f"(write [{case_id}] or [{case_id} if COND...])")
            if len(tokens) == 1:
                raise TableError(where, "'if' without a condition")
            if current is None:
                current = cases[case_id]   # a case may start with a sub-section
                tables.sections[case_id] = where
                tables.rows.setdefault(case_id, [])
            inherited = tuple(_conditions(tokens[1:], current, where, sets))
            _implied(list(inherited), where)
            inherited_reason = reason
            said = tuple(sorted(c.text for c in inherited))
            if said in subsections:
                raise TableError(where, f"'{case_id}' already has a sub-section with these conditions at "
                                        f"{subsections[said]}: put the rows there")
            subsections[said] = where
            empty = where
            continue
        if current is None:
            raise TableError(where, "row before any [case_id] section")
        tables.rows[current.id].append(_parse_row(text, current, where, sets, inherited, inherited_reason))
        empty = None
    if empty:
        raise TableError(empty, "a sub-section without rows")
    if stem not in cases:
        raise TableError(rel, f"no case '{stem}' (no cases/{area}/{stem}.toml): a table is named after its case")
    if cases[stem].area != area:
        raise TableError(rel, f"case '{stem}' belongs to area '{cases[stem].area}': put its rows in "
                              f"cases/{cases[stem].area}/{stem}.exp")
    own = {name: entry for name, entry in sets.items() if name not in area_sets}
    for name, entry in own.items():
        if not entry["users"]:
            raise TableError(entry["where"], f"condition set '{name}' is never used")
    return own


def _is_list(tokens):
    """A condition list worth naming once: two or more conditions, or one
    with alternatives (bench/table_checks.py counts repeats the same way)."""
    return len(tokens) >= 2 or (len(tokens) == 1 and "|" in tokens[0])


def _check_area_sets(area, area_sets, own_sets):
    """An area.exp set serves several cases; no list is defined twice."""
    for name, entry in area_sets.items():
        users = sorted(entry["users"])
        if not users:
            raise TableError(entry["where"], f"condition set '{name}' is never used")
        if len(users) == 1:
            raise TableError(entry["where"], f"condition set '{name}' is used only by '{users[0]}': define it in "
                                             f"cases/{area}/{users[0]}.exp")
    seen = {}
    for name, entry in list(area_sets.items()) + own_sets:
        said = tuple(sorted(entry["tokens"]))
        if _is_list(said) and said in seen:
            first_name, first = seen[said]
            raise TableError(entry["where"], f"'{name}' has the conditions of '{first_name}' ({first['where']}): "
                                             f"write the list once, in cases/{area}/{AREA_FILE} if several cases "
                                             f"use it")
        seen.setdefault(said, (name, entry))


def _domain(dim, case, rows):
    named = {ch for r in rows for c in r.conditions if c.dim == dim for ch in c.choices}
    if dim == "flavor":
        return list(case.flavors)
    if dim == "variant":
        return list(case.variants) or [""]
    if dim == "root":
        return ["yes", "no"]
    if dim == "libc":
        return sorted(named | {"glibc", "musl"})
    if dim in VERSIONED:
        points = {(0, 0, 0)}
        for r in rows:
            for c in r.conditions:
                if c.dim == dim:
                    points.update(p for p in (c.lo, c.hi) if p is not None)
        # glibc: None first, the context of another libc (or of an unknown version)
        return ([None] if dim == "glibc" else []) + sorted(points)
    return sorted(named | {OTHER, "none"})


def _condition_mask(cond, domain, index):
    """The values of `domain` where `cond` holds, as a bit mask (bit k:
    domain[k]) — what Condition.matches says for each value, without
    asking it once per value: a kernel range is a run of the sorted
    points, a plain choice one value; only globs are matched one by one."""
    if cond.dim in VERSIONED:
        first = 1 if domain and domain[0] is None else 0   # None matches no version condition
        lo = first if cond.lo is None else bisect.bisect_left(domain, cond.lo, first)
        hi = len(domain) if cond.hi is None else bisect.bisect_left(domain, cond.hi, first)
        return ((1 << hi) - 1) & ~((1 << lo) - 1)
    mask = 0
    for choice in cond.choices:
        if _GLOB.search(choice):
            for k, value in enumerate(domain):
                if fnmatch.fnmatchcase(value, choice):
                    mask |= 1 << k
        elif choice in index:
            mask |= 1 << index[choice]
    return ((1 << len(domain)) - 1) & ~mask if cond.negate else mask


def _row_mask(row, dim, domain, index):
    """Where all of the row's conditions on `dim` hold; everywhere when it
    has none."""
    mask = (1 << len(domain)) - 1
    for c in row.conditions:
        if c.dim == dim:
            mask &= _condition_mask(c, domain, index)
    return mask


def shared_keys(case: cases.Case, rows: list[Row]) -> Iterator[tuple[list[Row], list[str], list]]:
    """(the rows, the dimensions their conditions name, each dimension's
    domain) for every key that more than one row sets: where two rows can
    overlap."""
    by_key = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    for key_rows in by_key.values():
        if len(key_rows) < 2:
            continue
        dims = sorted({c.dim for r in key_rows for c in r.conditions})
        yield key_rows, dims, [_domain(d, case, key_rows) for d in dims]


def find_overlaps(case: cases.Case, rows: list[Row]) -> list[tuple[Row, Row, dict]]:
    """Contexts where two rows of one key both match: [(row_a, row_b, ctx)],
    one per key: the first such context in the order of the dimensions'
    domains, with the first two rows that match it.

    Rows are compared in pairs, not contexts enumerated: conditions are
    per dimension, so two rows both match exactly the contexts whose every
    dimension lies in both rows' sets for it, and the first of those takes
    the lowest common value of each dimension. Walking every context was
    O(domain^dimensions x rows) (36 rows with 4 conditions: 29 s per
    command); this is O(rows^2 x dimensions) ANDs of masks."""
    problems = []
    for key_rows, dims, domains in shared_keys(case, rows):
        indexes = [{v: k for k, v in enumerate(dom)} for dom in domains]
        masks = [[_row_mask(r, d, dom, ix) for d, dom, ix in zip(dims, domains, indexes)] for r in key_rows]
        first = None
        for a, b in itertools.combinations(masks, 2):
            common = [x & y for x, y in zip(a, b)]
            if all(common):
                point = tuple((m & -m).bit_length() - 1 for m in common)  # lowest common value per dimension
                first = point if first is None else min(first, point)
        if first is not None:
            ctx = {d: dom[k] for d, dom, k in zip(dims, domains, first)}
            hits = [r for r in key_rows if r.matches(ctx)]
            problems.append((hits[0], hits[1], ctx))
    return problems


def describe_context(ctx: dict) -> str:
    parts = []
    for dim, v in sorted(ctx.items()):
        if v is not None:
            parts.append(f"{dim}={kver.show(v) if dim in VERSIONED else v}")
    return " ".join(parts) or "every context"


def load(cases: dict[str, cases_mod.Case], directory: str | None = None) -> Tables:
    """Parse every table (DIRECTORY/<area>/<id>.exp, by default cases/) and
    lint it; raises TableError on the first problem."""
    directory = directory or paths.EXPECTED
    tables = Tables()
    for area, names in _table_files(directory):
        area_dir = os.path.join(directory, area)
        area_sets = {}
        if AREA_FILE in names:
            parse_area_file(os.path.join(area_dir, AREA_FILE), area_sets)
        own_sets = []
        for name in names:
            if name != AREA_FILE:
                own_sets += parse_file(os.path.join(area_dir, name), cases, tables, area_sets).items()
        _check_area_sets(area, area_sets, own_sets)
    for case_id, rows in tables.rows.items():
        for a, b, ctx in find_overlaps(cases[case_id], rows):
            raise TableError(b.where, f"rows {a.where} and {b.where} both match '{a.key}' when "
                                      f"{describe_context(ctx)}: make their conditions exclusive")
    return tables


def _table_files(directory):
    """[(area, [names of its .exp files])] of DIRECTORY's subdirectories; a
    .exp file directly in DIRECTORY (the old layout: one <area>.exp per
    area, in another directory) is an error."""
    def listing(d):
        try:
            return inputs.list_dir(d)
        except inputs.InputFileError as e:
            where = d if d == directory else _rel(d)
            raise TableError(where, f"cannot read the expected tables: {e}"
                                    + (" (KPC_EXPECTED_DIR)" if os.environ.get("KPC_EXPECTED_DIR") else "")) from None
    out = []
    for entry in listing(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            names = [n for n in listing(path) if n.endswith(".exp")]
            if names:
                out.append((entry, names))
        elif entry.endswith(".exp"):
            raise TableError(_rel(path), "rows live beside their case now, in <area>/<case_id>.exp (one file per "
                                         "case); see CONTRIBUTING.md, 'Adding a case'")
    return out
