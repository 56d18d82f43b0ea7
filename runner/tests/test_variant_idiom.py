"""One idiom for variants (CONTRIBUTING.md item 8): a probe reads its
variant through p.variant_is("a", "b") or p.dispatch({{"a", fn}, ...}),
which make an unknown variant a broken probe. Comparing p.variant -- or a
copy of it: `const std::string& v = p.variant`, a parameter named
`variant` -- with == or != by hand, or a piece of it (v.starts_with("read_"),
.ends_with, .substr, .find, ...), lets a misspelt or new variant fall
through silently, so no probe under cases/ does it. Passing p.variant on as
a string (into a key, a helper's argv) is fine; cases/lib, which implements
variant_is, is not a probe. And one way to pick variants to run:
`./kpc run --case ID:VARIANT` (globs)."""

import json
import os
import re

import pytest

from kpc import paths

CASES = os.path.join(paths.ROOT, "cases")
LIBRARY = os.path.join(CASES, "lib")

# `NAME = p.variant`, `NAME{p.variant}`, `NAME(p.variant)` as a declaration:
# NAME is a copy of the variant (or a reference to it).
COPY = re.compile(r"(?:std::string|std::string_view|auto)\s*&?\s*(\w+)\s*(?:=|\{|\()"
                  r"\s*\w+\s*(?:\.|->)\s*variant\b")
# Pieces of it compared by hand: v.starts_with("read_") and the like.
PIECES = "starts_with|ends_with|substr|find|rfind|compare|contains"
# A parameter that carries the variant under its own name.
PARAM = re.compile(r"(?:std::string|std::string_view)\s*&?\s*(variant)\b")


def comparisons(text):
    """The lines (1-based number, text) of TEXT, C++ source, that compare the
    variant or a copy of it with == or != by hand."""
    code = re.sub(r"//[^\n]*", "", text)   # comments may say anything
    names = {"variant"} | set(COPY.findall(code)) | set(PARAM.findall(code))
    alt = "|".join(sorted(re.escape(n) for n in names))
    operand = rf"(?:\b\w+\s*(?:\.|->)\s*)?\b(?:{alt})\b"
    pattern = re.compile(rf"{operand}(?!\s*[\.(\[])\s*[!=]=|[!=]=\s*{operand}(?!\s*[\.(\[])"
                         rf"|{operand}\s*\.\s*(?:{PIECES})\s*\(")
    return [(i, line.strip()) for i, line in enumerate(code.splitlines(), 1) if pattern.search(line)]


def probe_sources():
    out = []
    for d, dirs, files in os.walk(CASES):
        if os.path.abspath(d).startswith(LIBRARY):
            dirs[:] = []
            continue
        out += [os.path.join(d, f) for f in files if f.endswith((".cc", ".h", ".c"))]
    return sorted(out)


def test_no_probe_compares_its_variant_by_hand():
    files = probe_sources()
    assert len(files) > 100   # the probes and their helpers
    found = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for n, line in comparisons(fh.read()):
                found.append(f"{os.path.relpath(f, paths.ROOT)}:{n}: {line}")
    assert not found, ("compares the variant by hand; use p.variant_is(\"a\", \"b\") for two variants or "
                       "p.dispatch({{\"a\", fn}, ...}) (CONTRIBUTING.md item 8):\n" + "\n".join(found))


@pytest.mark.parametrize("source, flagged", [
    ('if (p.variant == "fork") {', True),
    ('bool autou = p.variant != "plain";', True),
    ('if ("x" == p.variant) return 0;', True),
    ('const std::string& v = p.variant;\nif (v != "a" && v != "b") kpc::broken("?");', True),
    ('std::string mode{p.variant};\nint x = 1;\nreturn mode == "x";', True),
    ('void tracee(const std::string& variant) {\n  if (variant == "vfork") {', True),
    ('long r = probe->variant == "x";', True),
    ('if (p.variant_is("exitkill", "detach")) {', False),
    ('return p.dispatch({{"a", [] { return 0; }}});', False),
    ('kpc::exec_or_broken({p.helper(p.id), "--variant", p.variant, "exec-side"});', False),
    ('std::string path_arg = p.variant.substr(5);', True),
    ('const std::string& v = p.variant;\nbool do_read = v.starts_with("read_");', True),
    ('if (p.variant.ends_with("_ignored")) signal(sig, SIG_IGN);', True),
    ('std::string h = p.helper("x");\nif (h.ends_with("_x")) return 0;', False),
    ('// variant == "x" in a comment\nint v = 3;\nif (v == 3) return;', False),
    ('if (how == How::waitpid) {', False),
])
def test_the_check_sees_a_hand_comparison(source, flagged):
    """The scan finds what it is meant to find, and only that."""
    assert bool(comparisons(source)) == flagged, comparisons(source)


# ---------------------------------------------------------------- selecting variants: --case ID:VARIANT

def test_case_variant_patterns_narrow_the_variants_and_refuse_a_typo():
    from kpc import cases, commands
    from kpc.messages import InputError
    all_cases = cases.load_all()

    def sel(*patterns):
        return [(c.id, c.variants) for c in commands._select(all_cases, list(patterns), None)]
    sigchld = all_cases["sigchld_ignored_no_zombies"].variants
    assert len(sigchld) == 4
    assert sel("sigchld_ignored_no_zombies") == [("sigchld_ignored_no_zombies", sigchld)]
    nocldwait = ["sa_nocldwait_default", "sa_nocldwait_handler"]
    assert sel("sigchld_ignored_no_zombies:sa_nocldwait_*") == [("sigchld_ignored_no_zombies", nocldwait)]
    assert sel("sigchld_ignored_no_zombies:sa_nocldwait_handler", "sigchld_ignored_no_zombies:d*") == [
        ("sigchld_ignored_no_zombies", ["default", "sa_nocldwait_handler"])]   # the case's order
    # a case id glob: the cases without such a variant are left out
    assert sel("sigchld_*:sig_ign") == [("sigchld_ignored_no_zombies", ["sig_ign"])]
    assert sel("sigchld_ignored_no_zombies:sig_ign", "sigmask_survives_execve") == [
        ("sigchld_ignored_no_zombies", ["sig_ign"]), ("sigmask_survives_execve", [])]
    # the catalogue's own case objects are left as they were
    assert all_cases["sigchld_ignored_no_zombies"].variants == sigchld
    for bad, says in [(["sigchld_ignored_no_zombies:ign"], "no variant matches --case sigchld_ignored_no_zombies:ign"),
                      (["sigchld_ignored_no_zombies:nope", "sigchld_ignored_no_zombies"], "no variant matches"),
                      (["sigmask_survives_execve:x"], "sigmask_survives_execve: no variants"),
                      (["no_such_case:x"], "no case matches")]:
        with pytest.raises(InputError, match=says):
            commands._select(all_cases, bad, None)


def test_run_case_variant_runs_just_that_variant(tmp_path, built):
    from test_cli import kpc
    out = tmp_path / "r.json"
    p = kpc("run", "--no-build", "--case", "sigchld_ignored_no_zombies:sig_ign", "--flavor", "host", "--json",
            str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    runs = [(r["case"], r["variant"], r["flavor"]) for r in json.loads(out.read_text())["results"]]
    assert runs == [("sigchld_ignored_no_zombies", "sig_ign", "host")]
    p = kpc("run", "--no-build", "--case", "sigchld_ignored_no_zombies:ign")
    assert p.returncode == 2 and p.stderr.startswith("kpc: no variant matches --case sigchld_ignored_no_zombies:ign")
    assert p.stderr.count("\n") == 1, p.stderr
