"""Expected tables: every malformed input gives file:line, overlaps are
found at load time, and matching follows the documented conditions."""

import pytest

from conftest import table_name
from kpc import kver, tables


def load(write_table, demo_cases, text, area="signals"):
    return tables.load(demo_cases, write_table(area, text))


def ctx(**kw):
    base = {"kernel": kver.parse("6.1.0"), "flavor": "host", "variant": "", "profile": "none", "runtime": "none",
            "libc": "glibc", "arch": "x86_64", "root": "yes"}
    base.update(kw)
    return base


def error_of(write_table, demo_cases, text, area="signals"):
    with pytest.raises(tables.TableError) as e:
        load(write_table, demo_cases, text, area)
    return str(e.value)


def test_plain_rows_load_and_match(write_table, demo_cases):
    t = load(write_table, demo_cases, "# comment\n[demo]\na.b = SIGTERM|SIGINT\nc = \"exited 0\"\n")
    row = t.match("demo", "c", ctx())
    assert row.value == "exited 0" and row.where.endswith("signals/demo.exp:4")
    assert t.match("demo", "a.b", ctx()).value == "SIGTERM|SIGINT"
    assert t.match("demo", "missing", ctx()) is None


@pytest.mark.parametrize("text, line, message", [
    ("a = 1\n", 1, "row before any [case_id] section"),
    ("[nosuch]\n", 1, "unknown case id 'nosuch'"),
    ("[demo]\nthis is not a row\n", 2, "cannot read row"),
    ("[demo]\nBad Key = 1\n", 2, "cannot read row"),
    ("[demo]\nBAD = 1\n", 2, "bad key 'BAD'"),
    ("[demo]\na =\n", 2, "has no value"),
    ("[demo]\na = 1 if\n", 2, "'if' without a condition"),
    ("[demo]\na = 1 when flavor=host -- x\n", 2, "unexpected 'when'"),
    ("[demo]\na = 1 if flavor=host\n", 2, "needs a reason"),
    ("[demo]\na = 1 xfail\n", 2, "needs a reason"),
    ("[demo]\na = 1 if colour=red -- x\n", 2, "unknown condition 'colour'"),
    ("[demo]\na = 1 if flavor=vm -- x\n", 2, "'vm' is not a flavor of this case"),
    ("[demo]\na = 1 if variant=fork -- x\n", 2, "'fork' is not a variant of this case"),
    ("[demo]\na = 1 if kernel>=six -- x\n", 2, "bad kernel version"),
    ("[demo]\na = 1 if kernel>=5.x -- x\n", 2, "bad kernel version"),      # once read as 5.0
    ("[demo]\na = 1 if kernel<6.1.2.3 -- x\n", 2, "bad kernel version"),
    ("[demo]\na = 1 if kernel!=6.1 -- x\n", 2, "kernel!= is not supported"),
    ("[demo]\na = 1 if glibc>=two -- x\n", 2, "bad glibc version"),
    ("[demo]\na = 1 if glibc<2.x -- x\n", 2, "bad glibc version"),
    ("[demo]\na = 1 if glibc!=2.36 -- x\n", 2, "glibc!= is not supported"),
    ("[demo]\na = 1 if glibc>=2.38 libc=musl -- x\n", 2, "never hold together"),
    ("[demo]\na = 1 if flavor>host -- x\n", 2, "takes = or !="),
    ("[demo]\na = 1 if flavor=host| -- x\n", 2, "empty alternative"),
    ("[demo]\na = SIGBOGUS\n", 2, "SIGBOGUS"),
    ("[demo]\na = \"unterminated\n", 2, "cannot read"),
    ("[demo]\nhang = maybe\n", 2, "hang takes yes or no"),
    ("[demo]\nhang = yes\n", 2, "must be xfail"),
    ("[demo]\na = 1\n[demo]\n", 3, "already has a section at"),
])
def test_malformed_tables_name_file_and_line(write_table, demo_cases, text, line, message):
    err = error_of(write_table, demo_cases, text)
    assert f"signals/{table_name(text)}:{line}:" in err, err
    assert message in err


def test_section_in_the_wrong_area_file(write_table, demo_cases):
    err = error_of(write_table, demo_cases, "[fusey]\na = 1\n")
    assert "signals/fusey.exp:1" in err and "put its rows in cases/fuse/fusey.exp" in err


@pytest.mark.parametrize("rows", [
    "a = 1\na = 2\n",                                                   # two unconditional rows
    "a = 1\na = 2 if flavor=pidns -- why\n",                            # unconditional + conditional
    "a = 1 if kernel>=5.10 -- x\na = 2 if kernel<6.2 -- y\n",           # overlapping ranges
    "a = 1 if kernel=6.1 -- x\na = 2 if kernel>=6.1.50 -- y\n",         # 6.1.50.. is inside 6.1
    "a = 1 if flavor!=host -- x\na = 2 if flavor=userns -- y\n",        # != against =
    "a = 1 if runtime=tini -- x\na = 2 if profile=clean -- y\n",         # different dimensions
    "a = 1 if glibc<2.38 -- x\na = 2 if glibc>=2.36 -- y\n",             # overlapping glibc ranges
    "a = 1 if glibc=2.36 -- x\na = 2 if libc=glibc -- y\n",              # a version is inside its libc
    "a = 1 if glibc>=2.38 -- x\na = 2 if libc!=musl -- y\n",
])
def test_two_rows_that_both_match_are_an_error_at_load(write_table, demo_cases, rows):
    err = error_of(write_table, demo_cases, "[demo]\n" + rows)
    assert "both match 'a'" in err and "demo.exp:2" in err and "demo.exp:3" in err


@pytest.mark.parametrize("rows", [
    "a = 1 if kernel<6.3 -- old\na = 2 if kernel>=6.3 -- new\n",
    "a = 1 if kernel<=6.2 -- old\na = 2 if kernel>6.2 -- new\n",
    "a = 1 if flavor=host -- h\na = 2 if flavor!=host -- other\n",
    "a = 1 if flavor=host|pidns -- h\na = 2 if flavor=userns -- u\n",
    "a = 1 if runtime=tini kernel<6.3 -- x\na = 2 if runtime=tini kernel>=6.3 -- y\na = 3 if runtime!=tini -- z\n",
    # musl has no glibc version: these are not a context where both hold
    "a = 1 if glibc<2.38 -- old\na = 2 if glibc>=2.38 -- new\na = 3 if libc=musl -- m\n",
    "a = 1 if glibc<2.38 -- old\na = 2 if glibc>=2.38 kernel>=5.5 -- new\na = 3 if glibc>=2.38 kernel<5.5 -- f\n"
    "a = 4 if libc!=glibc -- other\n",
])
def test_exclusive_rows_load(write_table, demo_cases, rows):
    load(write_table, demo_cases, "[demo]\n" + rows)


def test_kernel_ranges_are_half_open(write_table, demo_cases):
    t = load(write_table, demo_cases,
             "[demo]\na = old if kernel<6.3 -- before the fix\na = new if kernel>=6.3 -- fixed\n")
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.2.16"))).value == "old"
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.3"))).value == "new"
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.12.0-1-cloud-amd64"))).value == "new"


def test_kernel_equals_means_the_whole_series(write_table, demo_cases):
    t = load(write_table, demo_cases, "[demo]\na = x if kernel=6.1 -- bookworm only\n")
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.1.158"))).value == "x"
    assert t.match("demo", "a", ctx(kernel=kver.parse("6.10.0"))) is None


def test_glibc_versions_compare_as_versions_and_only_on_glibc(write_table, demo_cases):
    t = load(write_table, demo_cases, "[demo]\na = old if glibc<2.38 -- before\na = new if glibc>=2.38 -- after\n"
                                      "a = musl if libc=musl -- m\n")
    assert t.match("demo", "a", ctx(glibc=(2, 36, 0))).value == "old"
    assert t.match("demo", "a", ctx(glibc=(2, 38, 0))).value == "new"
    assert t.match("demo", "a", ctx(glibc=(2, 41, 0))).value == "new"
    assert t.match("demo", "a", ctx(glibc=(2, 9, 0))).value == "old"      # 2.9 < 2.38: numbers, not text
    assert t.match("demo", "a", ctx(libc="musl", glibc=None)).value == "musl"
    assert t.match("demo", "a", ctx(glibc=None)) is None                   # glibc of unknown version: no guess
    assert t.rows_for("demo", "a")[0].describe() == "a = old if glibc<2.38"


def test_the_context_carries_the_glibc_version():
    from kpc import envinfo

    def env(libc):
        return envinfo.Environment(kernel="6.1.0", machine="x86_64", distro="d", libc=libc, root=True,
                                   capabilities="=ep", effective_caps=frozenset(), kconfig=None, kconfig_source="",
                                   flavors={})
    assert env("glibc 2.36").context("host")["glibc"] == (2, 36, 0)
    assert env("glibc 2.41").context("host")["libc"] == "glibc"
    assert env("musl 1.2.3").context("host")["glibc"] is None
    assert env("unknown").context("host")["glibc"] is None


@pytest.mark.parametrize("glibc, kernel, ignored, xfail", [
    ((2, 31, 0), "5.10.0", "SIGUSR2|SIG32|SIG33", True),   # Debian 11
    ((2, 36, 0), "6.18.0", "SIGUSR2|SIG32|SIG33", True),   # Debian 12
    ((2, 41, 0), "6.18.0", "SIGUSR2", False),              # Debian 13: 2053c11331 (2.38)
    ((2, 41, 0), "5.4.0", "SIGUSR2|SIG32|SIG33", True),    # no CLONE_CLEAR_SIGHAND: glibc's fallback
    (None, "6.18.0", "SIGUSR2", False),                    # musl
])
def test_shipped_posix_spawn_rows_follow_glibc_and_kernel(glibc, kernel, ignored, xfail):
    from kpc import cases
    t = tables.load(cases.load_all())
    c = ctx(variant="posix_spawn", glibc=glibc, libc="glibc" if glibc else "musl", kernel=kver.parse(kernel))
    for key in ("exec.ignored", "exec2.ignored"):
        row = t.match("inherited_state_by_creation_path", key, c)
        assert (row.value, row.xfail) == (ignored, xfail), row.where
    expected_setsigdef = ignored.replace("SIGUSR2|", "").replace("SIGUSR2", "none")
    row = t.match("inherited_state_by_creation_path", "exec.ignored", dict(c, variant="posix_spawn_setsigdef"))
    assert (row.value, row.xfail) == (expected_setsigdef, xfail)


@pytest.mark.parametrize("glibc, libc, caught", [
    ((2, 31, 0), "glibc", "SIGTERM|SIG32|SIG33"),   # Debian 11: libpthread's start-up handlers
    ((2, 34, 0), "glibc", "SIGTERM"),               # 2f69522d46, 41c7295617: installed on first use
    ((2, 41, 0), "glibc", "SIGTERM"),
    (None, "musl", "SIGTERM"),
])
def test_shipped_handler_rows_follow_glibc(glibc, libc, caught):
    from kpc import cases
    t = tables.load(cases.load_all())
    c = ctx(variant="fork", glibc=glibc, libc=libc)
    for key in ("parent.caught", "child.caught"):
        assert t.match("inherited_state_by_creation_path", key, c).value == caught


def test_xfail_rows_keep_their_reason(write_table, demo_cases):
    t = load(write_table, demo_cases, "[demo]\na = 1 if runtime=catatonit xfail -- catatonit blocks TSTP\n")
    row = t.match("demo", "a", ctx(runtime="catatonit"))
    assert row.xfail and row.reason == "catatonit blocks TSTP"


def test_variant_conditions(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other]\na = 1 if variant=fork -- f\na = 2 if variant=clone -- c\n")
    assert t.match("other", "a", ctx(variant="clone")).value == "2"


def test_runtime_ambiguity_is_still_caught_when_matching(demo_cases):
    # Tables built by hand (bypassing the load-time lint) still refuse to pick one.
    t = tables.Tables()
    t.rows["demo"] = [tables._parse_row("a = 1", demo_cases["demo"], "x.exp:1"),
                      tables._parse_row("a = 2", demo_cases["demo"], "x.exp:2")]
    with pytest.raises(tables.TableError) as e:
        t.match("demo", "a", ctx())
    assert "x.exp:1, x.exp:2" in str(e.value)


def test_the_shipped_tables_load(tmp_path):
    from kpc import cases
    tables.load(cases.load_all())


def test_globs_match_variants_and_are_checked(write_table, demo_cases):
    t = load(write_table, demo_cases, "[other]\na = 1 if variant=f* -- f\na = 2 if variant!=f* -- not f\n")
    assert t.match("other", "a", ctx(variant="fork")).value == "1"
    assert t.match("other", "a", ctx(variant="clone")).value == "2"
    err = error_of(write_table, demo_cases, "[other]\na = 1 if variant=spawn* -- s\n")
    assert "signals/other.exp:2" in err and "'spawn*' is not a variant of this case" in err


def test_globs_overlapping_a_plain_row_are_found(write_table, demo_cases):
    err = error_of(write_table, demo_cases, "[other]\na = 1 if variant=f* -- f\na = 2 if variant=fork -- f\n")
    assert "both match 'a'" in err


def test_strings_starting_with_sig_are_not_read_as_sets(write_table, demo_cases):
    t = load(write_table, demo_cases, '[demo]\norder = "SIGUSR1,SIG36:3"\n')
    assert t.match("demo", "order", ctx()).value == "SIGUSR1,SIG36:3"


# ---------------------------------------------------------------- overlap linter: pairs, not contexts

def brute_force_overlaps(case, rows):
    """The linter as it was (every context of the product of the domains,
    O(domain^dimensions)): the reference the pairwise one must agree with."""
    import itertools
    problems = []
    for key_rows, dims, domains in tables.shared_keys(case, rows):
        for point in itertools.product(*domains):
            ctx = dict(zip(dims, point))
            hits = [r for r in key_rows if r.matches(ctx)]
            if len(hits) > 1:
                problems.append((hits[0], hits[1], ctx))
                break
    return problems


def _same(case, rows):
    def key(found):
        return [(a.where, b.where, ctx) for a, b, ctx in found]
    assert key(tables.find_overlaps(case, rows)) == key(brute_force_overlaps(case, rows)), \
        [r.describe() for r in rows]


def test_overlap_linter_agrees_with_the_walk_over_every_context_on_the_shipped_tables():
    import random
    from kpc import cases
    all_cases = cases.load_all()
    t = tables.load(all_cases)
    rng = random.Random(15)
    compared = 0
    for case_id, rows in t.rows.items():
        _same(all_cases[case_id], rows)
        # ... and with one row repeated under a new value: an overlap the
        # two must find at the same first context with the same two rows.
        for _ in range(3 if rows else 0):
            extra = rng.choice(rows)
            _same(all_cases[case_id], rows + [tables.Row(case_id, extra.key, "other", extra.conditions, extra.xfail,
                                                         "copy", "copy.exp:1")])
            compared += 1
    assert compared > 50


_RANDOM_CONDITIONS = ["kernel>=5.10", "kernel<6.1", "kernel=6.1", "kernel>6.1.5", "kernel<=5.4", "kernel=6",
                      "flavor=host", "flavor!=host", "flavor=pidns|userns", "flavor=*ns", "variant=fork",
                      "variant!=clone", "variant=f*", "variant=posix_spawn|clone", "runtime=tini", "runtime!=tini",
                      "runtime=none", "runtime=t*", "runtime=tini|runc", "runtime=[bc]*", "profile=clean",
                      "profile!=clean|pass-through", "libc=musl", "libc!=glibc", "root=yes", "root!=yes",
                      "arch=x86_64", "arch=aarch64|x86_64", "arch!=?86*", "glibc>=2.38", "glibc<2.34",
                      "glibc=2.36", "glibc<=2.38", "libc=glibc", "libc=glibc|musl"]


def test_overlap_linter_agrees_with_the_walk_over_every_context_on_random_tables():
    import random
    from conftest import make_case
    case = make_case("rand", variants=("fork", "clone", "posix_spawn"))
    rng = random.Random(1515)
    found = 0
    for n in range(1500):
        rows = []
        for i in range(rng.randint(2, 6)):
            while True:
                conds = rng.sample(_RANDOM_CONDITIONS, rng.choice([0, 1, 1, 2, 2, 3, 4]))
                text = f"{rng.choice('ab')} = {i}" + (f" if {' '.join(conds)} -- r" if conds else "")
                try:
                    rows.append(tables._parse_row(text, case, f"r{n}.exp:{i + 1}"))
                    break
                except tables.TableError as e:   # glibc>=2.38 with libc=musl: refused, draw again
                    assert "never hold together" in str(e)
        _same(case, rows)
        found += bool(tables.find_overlaps(case, rows))
    assert 150 < found < 1450   # both kinds of table were compared


def _disjoint_rows(case, n):
    """n rows of one key, 4 conditions each, no two overlapping (the
    audit's input: 36 of them took 29 s to lint)."""
    return [tables._parse_row(f"a = {i} if runtime=r{i} profile=p{i} arch=a{i} kernel=5.{i} -- row {i}", case,
                              f"big.exp:{i + 1}") for i in range(n)]


def test_overlap_linter_does_not_walk_the_contexts(demo_cases, monkeypatch):
    """Counted, not timed: Condition.matches is asked only for the rows'
    first common context, never once per context (200 rows x 4 dimensions
    is 202^4 contexts; the walk asked 10^11 times)."""
    import time
    case = demo_cases["demo"]
    rows = _disjoint_rows(case, 200)
    rows.append(tables._parse_row("a = dup if runtime=r199 profile=p199 arch=a199 kernel=5.199 -- dup", case,
                                  "big.exp:201"))
    calls = []
    real = tables.Condition.matches

    def counted(self, ctx):
        calls.append(1)
        assert len(calls) <= 4 * len(rows), "the linter asks every context"   # fail fast, do not walk 10^9
        return real(self, ctx)
    monkeypatch.setattr(tables.Condition, "matches", counted)
    start = time.monotonic()
    (a, b, ctx), = tables.find_overlaps(case, rows)
    took = time.monotonic() - start
    assert (a.where, b.where) == ("big.exp:200", "big.exp:201")
    assert ctx == {"arch": "a199", "kernel": (5, 199, 0), "profile": "p199", "runtime": "r199"}
    assert tables.find_overlaps(case, rows[:-1]) == []
    assert took < 1.0, f"{took:.2f} s for 201 rows"


def test_words_are_shlex_words():
    """tables._words splits a row without quotes or backslashes itself: it
    must give shlex.split's words (posix, no comments) for every line of
    the tables and for random text, quotes and odd whitespace included."""
    import glob
    import os
    import random
    import shlex
    from kpc import paths
    lines = [line for path in glob.glob(os.path.join(paths.ROOT, "**", "*.exp"), recursive=True)
             for line in open(path, encoding="utf-8")]
    assert len(lines) > 100
    rng = random.Random(2212)
    alphabet = " \t\r\n\x0b\x0c\xa0\u2003ab=|#*?[]-_.!<>\x00é'\"\\"
    texts = lines + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(30000)]
    for text in texts:
        try:
            want = shlex.split(text, comments=False, posix=True)
        except ValueError as e:
            want = f"ValueError: {e}"
        try:
            got = tables._words(text)
        except ValueError as e:
            got = f"ValueError: {e}"
        assert got == want, repr(text)
