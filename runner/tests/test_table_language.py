"""The table language's ways to write a condition list once (sub-sections,
named sets), reasons only where a row says why, signal-set shorthands and
continued lines; every malformed use gives file:line. And the shipped
tables written in it: short lines, no condition list written twice, no
check lost (bench/table_checks.py counts them)."""

import glob
import importlib.util
import os

import pytest

from kpc import kver, paths, tables, values

from conftest import table_name
from test_tables import ctx, error_of, load

LIMIT = 100
# The checks (case, key, conditions) the tables held before the rewrite
# (bench/table_checks.py at d81c808): a rewrite must not lose one.
CHECKS_BEFORE = 1054


def _bench():
    spec = importlib.util.spec_from_file_location(
        "table_checks", os.path.join(paths.ROOT, "bench", "table_checks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- sub-sections

def test_a_sub_section_gives_its_rows_its_conditions_and_reason(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other]\nplain = 1\n"
                                      "[other if variant=fork -- forked: a copy]\na = 1\nb = 2 if kernel<6.1\n"
                                      "[other if variant=clone]\na = 3 -- shared\n"
                                      "[other]\nlast = 4\n")
    fork, clone = ctx(variant="fork"), ctx(variant="clone")
    assert t.match("other", "a", fork).value == "1" and t.match("other", "a", clone).value == "3"
    assert t.match("other", "a", fork).reason == "forked: a copy"       # inherited
    assert t.match("other", "a", clone).reason == "shared"               # its own
    b = t.rows_for("other", "b")[0]
    assert b.describe() == "b = 2 if variant=fork kernel<6.1" and b.reason == "forked: a copy"
    assert t.match("other", "b", dict(fork, kernel=kver.parse("6.1"))) is None
    # back to rows for every context after the sub-sections
    assert t.match("other", "last", clone).value == "4" and t.rows_for("other", "last")[0].conditions == ()
    assert t.sections["other"].endswith("signals/other.exp:1")


def test_a_case_may_start_with_a_sub_section(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other if variant=fork]\na = 1\n[other if variant=clone]\na = 2\n")
    assert t.sections["other"].endswith("signals/other.exp:1")
    assert t.match("other", "a", ctx(variant="clone")).value == "2"


def test_rows_of_two_sub_sections_that_overlap_are_found(write_table, demo_cases):
    err = error_of(write_table, demo_cases, "[other if variant=fork]\na = 1\n[other if variant=f*]\na = 2\n")
    assert "both match 'a'" in err and "other.exp:2" in err and "other.exp:4" in err


# ---------------------------------------------------------------- named sets

def test_a_named_set_stands_for_its_conditions(write_table, demo_cases):
    t = load(write_table, demo_cases, "@forked_new = variant=fork kernel>=6.1\n"
                                      "[other]\na = 1 if @forked_new -- new\na = 2 if variant=clone -- c\n"
                                      "[other if @forked_new flavor=host -- both]\nb = 3\n")
    assert t.rows_for("other", "a")[0].describe() == "a = 1 if variant=fork kernel>=6.1"
    assert t.match("other", "a", ctx(variant="fork", kernel=kver.parse("6.12"))).value == "1"
    assert t.match("other", "a", ctx(variant="fork", kernel=kver.parse("5.10"))) is None
    assert t.match("other", "b", ctx(variant="fork", kernel=kver.parse("6.12"), flavor="pidns")) is None
    assert t.match("other", "b", ctx(variant="fork", kernel=kver.parse("6.12"))).value == "3"


def test_a_set_is_checked_against_the_case_that_uses_it(write_table, demo_cases):
    err = error_of(write_table, demo_cases, "@spawn = variant=posix_spawn\n[other]\na = 1 if @spawn\n")
    assert "other.exp:3:" in err and "'posix_spawn' is not a variant of this case" in err
    assert "in @spawn, defined at" in err and "other.exp:1" in err


# ---------------------------------------------------------------- reasons

def test_a_row_for_a_variant_needs_no_reason_but_others_do(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other]\na = 1 if variant=fork\na = 2 if variant=clone\n")
    assert t.match("other", "a", ctx(variant="fork")).reason == ""
    for row in ("a = 1 if variant=fork flavor=host", "a = 1 if variant=fork xfail", "a = * if variant=fork",
                "a = 1 if kernel>=6.1", "a = 1 if libc=musl", "a = 1 if runtime=tini"):
        assert "needs a reason" in error_of(write_table, demo_cases, f"[other]\n{row}\n"), row


# ---------------------------------------------------------------- signal sets

@pytest.mark.parametrize("written, meant", [
    ("SIG34..SIG36", "SIG34|SIG35|SIG36"),
    ("SIGUSR1|SIG62..SIG64", "SIGUSR1|SIG62|SIG63|SIG64"),
    ("SIGRTMIN..SIGRTMAX", "|".join(f"SIG{n}" for n in range(34, 65))),
    ("SIGHUP..SIGINT|SIGTERM", "SIGHUP|SIGINT|SIGTERM"),
    ('"all but SIGKILL|SIGSTOP|SIG32|SIG33"',
     "|".join(values.signal_name(n) for n in range(1, 65) if n not in (9, 19, 32, 33))),
    ('"all but SIG2..SIG64"', "SIGHUP"),
])
def test_signal_set_shorthands_are_written_out(write_table, demo_cases, written, meant):
    t = load(write_table, demo_cases, f"[demo]\na = {written}\n")
    row = t.match("demo", "a", ctx())
    assert row.value == meant
    assert values.canonical("sigset", row.value) == values.canonical("sigset", meant)


# ---------------------------------------------------------------- continued lines

def test_a_line_ending_in_a_backslash_continues(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other if \\\n   variant=fork]\na = 1 if kernel>=6.1 -- one \\\n"
                                      "    reason \\\n  on three lines\nb = 2\n")
    row = t.rows_for("other", "a")[0]
    assert row.reason == "one reason on three lines" and row.where.endswith("other.exp:3")
    assert row.describe() == "a = 1 if variant=fork kernel>=6.1"
    assert t.rows_for("other", "b")[0].where.endswith("other.exp:6")


# ---------------------------------------------------------------- malformed

@pytest.mark.parametrize("text, line, message", [
    # named sets
    ("@s = flavor=host\n[demo]\na = 1\n", 1, "condition set '@s' is never used"),
    ("[demo]\na = 1 if @nope -- r\n", 2, "unknown condition set '@nope'"),
    ("[demo]\na = 1 if @s -- r\n@s = flavor=host\n", 2, "unknown condition set '@s'"),   # used before defined
    ("@s = flavor=host\n@s = flavor=pidns\n", 2, "'@s' is already defined at"),
    ("@S = flavor=host\n", 1, "bad set name '@S'"),
    ("@ = flavor=host\n", 1, "bad set name '@'"),
    ("@s =\n", 1, "condition set '@s' is empty"),
    ("@s flavor=host\n", 1, "a condition set is '@name = COND...'"),
    ("@s = colour=red\n", 1, "unknown condition 'colour'"),
    ("@s = kernel!=6.1\n", 1, "kernel!= is not supported"),
    ("@s = @t\n", 1, "cannot use another set"),
    ('@s = "flavor=host\n', 1, "cannot read"),
    # sub-sections
    ("[demo if]\na = 1\n", 1, "'if' without a condition"),
    ("[demo when flavor=host]\na = 1\n", 1, "unexpected 'when' after the case id"),
    ("[demo -- why]\na = 1\n", 1, "a reason belongs to a sub-section"),
    ("[demo if flavor=vm]\na = 1 -- r\n", 1, "'vm' is not a flavor of this case"),
    ("[demo if kernel>=abc]\na = 1 -- r\n", 1, "bad kernel version"),
    ("[demo if glibc>=2.38 libc=musl]\na = 1 -- r\n", 1, "never hold together"),
    ("[nosuch if flavor=host]\n", 1, "unknown case id 'nosuch'"),
    ("[fusey if flavor=host]\n", 1, "belongs to area 'fuse'"),
    ("[other]\na = 1\n[demo]\nb = 1\n", 3,
     "[demo] in other.exp: a file holds the rows of the case it is named after; put the rows of 'demo' in "
     "cases/signals/demo.exp"),
    ("[other]\n[other if variant=fork]\na = 1\n[other if variant=fork]\nb = 1\n", 4,
     "already has a sub-section with these conditions at"),
    ("[other if variant=fork]\n[other if variant=clone]\na = 1\n", 1, "a sub-section without rows"),
    ("[other]\na = 1\n[other if variant=fork]\n", 3, "a sub-section without rows"),
    ("[demo]\na = 1\n[demo]\n", 3, "already has a section at"),          # not after a sub-section
    ("[demo if flavor=host]\na = 1\n", 2, "needs a reason"),               # a flavor says why
    ("[other if variant=fork]\na = 1 xfail\n", 2, "needs a reason"),
    # continued lines
    ("[demo]\na = 1 \\\n", 2, "ends in '\\' (continued), but the next line is empty or missing"),
    ("[demo]\na = 1 \\\n\nb = 2\n", 2, "the next line is empty"),
    ("[demo]\na = 1 \\\n# note\nb = 2\n", 2, "the next line is a comment"),
    ("[demo]\na = 1 if \\\n  flavor=vm -- r\n", 2, "'vm' is not a flavor"),   # the row's first line
    # signal sets
    ("[demo]\na = SIG64..SIG34\n", 2, "runs backwards"),
    ("[demo]\na = SIG1..SIGFOO\n", 2, "unknown signal 'SIGFOO'"),
    ("[demo]\na = SIG34..\n", 2, "bad signal set 'SIG34..'"),
    ("[demo]\na = SIG1..SIG2..SIG3\n", 2, "bad signal set"),
    ('[demo]\na = "all but SIGBOGUS"\n', 2, "bad signal set 'all but SIGBOGUS'"),
    ('[demo]\na = "all but SIGHUP||SIGINT"\n', 2, "bad signal set"),
])
def test_malformed_new_constructs_name_file_and_line(write_table, demo_cases, text, line, message):
    err = error_of(write_table, demo_cases, text)
    assert f"signals/{table_name(text)}:{line}:" in err, err
    assert message in err, err
    assert "\n" not in err


# ---------------------------------------------------------------- the shipped tables

def _shipped_tables():
    return sorted(glob.glob(os.path.join(paths.EXPECTED, "*", "*.exp")))


def test_every_table_is_beside_its_case():
    """cases/<area>/<id>.exp next to <id>.toml (or the area's area.exp), one
    for every case, and no table anywhere else."""
    from kpc import cases
    all_cases = cases.load_all()
    found = {os.path.relpath(p, paths.EXPECTED) for p in _shipped_tables()}
    own = {f"{c.area}/{c.id}.exp" for c in all_cases.values()}
    assert {f for f in found if not f.endswith("/" + tables.AREA_FILE)} == own
    assert not os.path.exists(os.path.join(paths.RESULTS, "expected"))


def test_tables_keep_lines_within_100_characters():
    long_lines = []
    for path in _shipped_tables():
        with open(path, encoding="utf-8") as f:
            long_lines += [f"{path}:{n}: {len(line)}" for n, line in enumerate(f.read().split("\n"), 1)
                           if len(line) > LIMIT]
    assert long_lines == []


def test_tables_write_no_condition_list_twice():
    from kpc import cases
    assert _bench().repeated_lists(tables.load(cases.load_all())) == {}


def test_the_tables_hold_no_fewer_checks_than_before_the_rewrite():
    from kpc import cases
    per_file = _bench().checks(tables.load(cases.load_all()))
    assert sum(len(c) for c in per_file.values()) >= CHECKS_BEFORE


def test_the_check_count_sees_a_lost_row(write_table, demo_cases):
    """The count the test above relies on drops when a row goes, and does
    not change when the row is written with a set or in a sub-section."""
    bench = _bench()

    def n(text):
        return sum(len(c) for c in bench.checks(load(write_table, demo_cases, text)).values())
    full = "[other]\na = 1 if variant=fork kernel>=6.1 -- x\na = 2 if variant=clone\nb = 3\n"
    assert n(full) == 3
    assert n("@new = variant=fork kernel>=6.1\n[other]\na = 1 if @new -- x\na = 2 if variant=clone\nb = 3\n") == 3
    assert n("[other]\nb = 3\n[other if variant=fork -- x]\na = 1 if kernel>=6.1\n"
             "[other if variant=clone]\na = 2\n") == 3
    assert n("[other]\na = 1 if variant=fork kernel>=6.1 -- x\nb = 3\n") == 2


# ---------------------------------------------------------------- one file per case, area.exp

def test_a_set_of_area_exp_serves_the_cases_that_use_it(write_table, demo_cases):
    write_table("signals", "# for demo and other\n@late = kernel>=6.1 flavor=host\n", name="area.exp")
    write_table("signals", "[demo]\na = 1 if @late -- new\n")
    t = load(write_table, demo_cases, "[other]\nb = 2 if @late -- new\n")
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.12"))).value == "1"
    assert t.rows_for("other", "b")[0].describe() == "b = 2 if kernel>=6.1 flavor=host"


@pytest.mark.parametrize("files, where, message", [
    # area.exp: sets several cases use, and comments; nothing else
    ({"area.exp": "@late = kernel>=6.1 flavor=host\n", "demo.exp": "[demo]\na = 1 if @late -- r\n"},
     "area.exp:1", "condition set '@late' is used only by 'demo': define it in cases/signals/demo.exp"),
    ({"area.exp": "@late = kernel>=6.1\n", "demo.exp": "[demo]\na = 1\n"}, "area.exp:1",
     "condition set '@late' is never used"),
    ({"area.exp": "# notes\n[demo]\na = 1\n"}, "area.exp:2",
     "area.exp holds only condition sets (@name = COND...) and comments"),
    ({"area.exp": "@late = kernel>=6.1\n", "demo.exp": "@late = kernel>=6.2\n[demo]\na = 1 if @late -- r\n"},
     "demo.exp:1", "condition set '@late' is already defined at"),
    # one list, written once across the area's files
    ({"demo.exp": "@a = kernel>=6.1 flavor=host\n[demo]\na = 1 if @a -- r\n",
      "other.exp": "@b = flavor=host kernel>=6.1\n[other]\nb = 1 if @b -- r\n"},
     "other.exp:1", "'@b' has the conditions of '@a'"),
    # a file is named after its case, in its case's area
    ({"demo.exp": "[demo]\na = 1\n[other]\nb = 1\n"}, "demo.exp:3",
     "[other] in demo.exp: a file holds the rows of the case it is named after; put the rows of 'other' in "
     "cases/signals/other.exp"),
    ({"nosuch.exp": "# rows to come\n"}, "nosuch.exp", "no case 'nosuch' (no cases/signals/nosuch.toml)"),
    ({"fusey.exp": "# rows to come\n"}, "signals/fusey.exp",
     "case 'fusey' belongs to area 'fuse': put its rows in cases/fuse/fusey.exp"),
])
def test_files_of_an_area_and_their_errors(write_table, demo_cases, files, where, message):
    for name, text in files.items():
        d = write_table("signals", text, name=name)
    with pytest.raises(tables.TableError) as e:
        tables.load(demo_cases, d)
    err = str(e.value)
    assert f"{where}:" in err and message in err and "\n" not in err, err


def test_a_table_outside_an_area_directory_is_an_error(tmp_path, demo_cases):
    (tmp_path / "signals.exp").write_text("[demo]\na = 1\n")
    with pytest.raises(tables.TableError) as e:
        tables.load(demo_cases, str(tmp_path))
    assert "signals.exp: rows live beside their case now, in <area>/<case_id>.exp" in str(e.value)


def test_no_case_is_named_like_the_area_file(tmp_path):
    from kpc import cases
    path = tmp_path / "signals" / "area.toml"
    with pytest.raises(cases.CaseError) as e:
        cases.case_from_data(str(path), {"summary": "x"}, check_source=False)
    assert "'area' cannot be a case id" in str(e.value)


def test_table_checks_reads_the_layout_before_the_move(write_table, demo_cases):
    """--against an older revision splits its <area>.exp per case, a set
    that served the whole file written out: the same checks load."""
    old = ("# area notes\n@late = kernel>=6.1 flavor=host\n[demo]\na = 1 if @late -- r\n"
           "[other if variant=fork]\nb = \\\n  2 if @late -- r\n[other]\nc = 3\n")
    split = _bench().split_area_file(old)
    assert sorted(split) == ["demo", "other"]
    for case_id, lines in split.items():
        d = write_table("signals", "\n".join(lines) + "\n", name=f"{case_id}.exp")
    t = tables.load(demo_cases, d)
    assert t.rows_for("demo", "a")[0].describe() == "a = 1 if kernel>=6.1 flavor=host"
    assert t.rows_for("other", "b")[0].describe() == "b = 2 if variant=fork kernel>=6.1 flavor=host"
    assert [r.key for r in t.rows_for("other")] == ["b", "c"]
