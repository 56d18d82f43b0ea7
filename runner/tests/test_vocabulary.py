"""One vocabulary, two languages: the C++ library names signals and sets
(cases/lib/src/signals.cc, what probes record) and the Python runner reads
them back (runner/kpc/values.py, what tables hold). The names are written
once, in cases/lib/include/kpc/signal_names.def, which both read; the
parsers and formatters around them are still two, so the same questions go
to both and the answers must agree.

The Python side also reads forms people write in tables and lab answers
that probes never print (SIGIOT, SIGRTMIN+2, ' SIGTERM '): those are the
only allowed differences, listed in PYTHON_ONLY."""

import os
import re
import subprocess

import pytest

from conftest import helper_probe
from kpc import values

PYTHON_ONLY = {
    "number SIGIOT", "number SIGPOLL", "number SIGCLD", "number SIGUNUSED", "number IOT",
    "number SIGRTMIN", "number SIGRTMIN+2", "number RTMAX", "number SIGRTMAX-1", "number  SIGTERM ",
    "set SIGRTMIN|SIGTERM", "set  none ",
}


def test_signal_names_are_written_once():
    """Only signal_names.def spells the names out: the C++ library and the
    runner read it (a second copy could drift from it unseen)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    copies = []
    for top in ("cases/lib", "runner/kpc", "runner/launcher"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if name.endswith((".cc", ".h", ".py", ".def")):
                    with open(os.path.join(d, name), encoding="utf-8") as f:
                        if "SIGSTKFLT" in f.read():
                            copies.append(os.path.relpath(os.path.join(d, name), root))
    assert copies == ["cases/lib/include/kpc/signal_names.def"]
    assert values.SIGNAL_NAMES[15] == "SIGTERM" and len(values.SIGNAL_NAMES) == 32 and values.MAX_SIGNAL == 64
    assert values.DEFAULT_ACTION["SIGCHLD"] == "Ign" and values.DEFAULT_ACTION["SIGQUIT"] == "Core"
    assert sorted(values.DEFAULT_ACTION) == sorted(values.SIGNAL_NAMES[1:])


@pytest.mark.parametrize("text, why", [("KPC_MAX_SIGNAL(64)\nKPC_SIGNAL(2, SIGINT, Term)\n", ":3: not KPC_SIGNAL(1, "),
                                       ("KPC_SIGNAL(1, SIGHUP, Term)\n", "no KPC_MAX_SIGNAL"),
                                       ("KPC_MAX_SIGNAL(64)\nKPC_SIGNAL(1, SIGHUP, Die)\n", ":3: not KPC_SIGNAL(1, "),
                                       ("KPC_MAX_SIGNAL(64)\nSIGHUP = 1\n", ":3: not KPC_SIGNAL(1, ")])
def test_a_broken_signal_list_is_refused_with_its_line(tmp_path, text, why):
    p = tmp_path / "signal_names.def"
    p.write_text("// a comment\n" + text)
    with pytest.raises(RuntimeError, match=re.escape(why)):
        values._read_signal_names(str(p))


def questions():
    qs = [f"name {n}" for n in range(-1, values.MAX_SIGNAL + 2)]
    words = [values.SIGNAL_NAMES[n] for n in range(1, 32)] + [f"SIG{n}" for n in range(32, 66)]
    words += [w[3:] for w in words] + [str(n) for n in range(0, 66)]
    words += ["", "SIG", "sigterm", "SIGNOPE", "SIG0", "SIG-1", "+5", "5x", "SIGRTMIN"]
    qs += [f"number {w}" for w in words]
    qs += [f"mask {m:x}" for m in (0, 1, 1 << 14, 1 << 31, 1 << 33, 1 << 63, (1 << 64) - 1, 0x4200)]
    qs += [f"set {s}" for s in ("none", "SIGTERM|SIGINT", "SIGINT|SIGTERM", "SIG34|USR1", "15|2", "SIGTERM|SIGTERM",
                                "", "|", "SIGTERM|", "|SIGTERM", "SIGTERM||SIGINT", "none|SIGTERM", "SIGBOGUS",
                                "SIG64|SIG32|SIGHUP")]
    return qs + sorted(PYTHON_ONLY)


def python_answer(q):
    verb, _, arg = q.partition(" ")
    try:
        if verb == "name":
            return values.signal_name(int(arg))
        if verb == "number":
            return str(values.signal_number(arg))
        if verb == "set":
            return values.format_sigset(values.parse_sigset(arg))
        if verb == "mask":
            return values.format_sigset(int(arg, 16))
    except values.ValueError_:
        return "" if verb == "name" else "-"
    raise AssertionError(q)


def test_cpp_and_python_name_signals_and_sets_alike():
    tool = helper_probe("signal_vocabulary")
    if not os.path.exists(tool):
        pytest.fail(f"{tool} missing: the unit-test build (./kpc selftest) makes it")
    qs = questions()
    out = subprocess.run([tool], input="".join(q + "\n" for q in qs), capture_output=True, text=True, check=True)
    cpp = out.stdout.split("\n")[:-1]
    assert len(cpp) == len(qs), out.stderr
    differ = {q: (c, python_answer(q)) for q, c in zip(qs, cpp) if c != python_answer(q)}
    assert set(differ) == PYTHON_ONLY, {q: d for q, d in differ.items() if q not in PYTHON_ONLY}
    # ...and each of those is a form C++ refuses, not one it reads otherwise.
    assert all(c == "-" for c, _ in differ.values()), differ


def test_the_python_side_of_the_comparison_is_not_vacuous():
    assert python_answer("name 15") == "SIGTERM" and python_answer("name 34") == "SIG34"
    assert python_answer("set SIG34|USR1") == "SIGUSR1|SIG34" and python_answer("set SIGTERM|") == "-"
    assert python_answer("mask 4200") == "SIGUSR1|SIGTERM"


@pytest.mark.parametrize("variant, runtime, target", [("", None, "host"), ("fork", None, "host"),
                                                      ("", None, "6.1"), ("vfork", "crun", "host"),
                                                      ("clone", "tini", "7.2")])
def test_the_results_file_names_a_run_as_the_launcher_did(variant, runtime, target):
    """kpc diff/merge/TAP key a run by render.run_id of its result; the
    launcher plan, the progress line and JUnit by session.Item.run_id. One
    format (evaluate.run_id), so a name in one can be looked up in the other."""
    import types
    from conftest import make_case
    from kpc import evaluate, report, render, session
    rt = types.SimpleNamespace(name=runtime, profile="p") if runtime else None
    item = session.Item(case=make_case("demo"), variant=variant, flavor="pidns", runtime=rt, target=target)
    item.verdict = evaluate.Verdict("pass")
    r = report.result_json(item, types.SimpleNamespace(kernel="6.18.0"))
    assert render.run_id(r) == item.run_id
    assert item.run_id == "demo" + (f":{variant}" if variant else "") + "@pidns" + \
        (f"+{runtime}" if runtime else "") + (f"#{target}" if target != "host" else "")


def test_one_verdict_vocabulary():
    from kpc import evaluate, render
    assert render.VERDICTS is evaluate.VERDICTS and render.BAD is evaluate.BAD
    assert set(evaluate.BAD) < set(evaluate.VERDICTS) and set(evaluate.FAILURES) < set(evaluate.BAD)
    assert evaluate.totals(["pass", "hang", "pass"]) == {"pass": 2, "fail": 0, "xfail": 0, "skip": 0, "hang": 1,
                                                         "error": 0}
