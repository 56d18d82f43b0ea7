"""The formats kernel CI reads (runner/kpc/formats.py): KTAP through
python3-tap the way Linaro's kselftest parser reads it, KCIDB v5.3 against
the schema's rules, LAVA test-case names, kirk's runtest file and LTP exit
codes. Every format gets hostile strings: results may come from another
machine."""

import json
import os
import re

import pytest

from kpc import formats, render

jsonschema = pytest.importorskip("jsonschema", reason="Debian's python3-jsonschema (.ci/run installs it)")
tap_parser = pytest.importorskip("tap.parser", reason="Debian's python3-tap (.ci/run installs it)")

HOSTILE = "boom\nok 7 injected # SKIP\r\x1b[2J # TODO \u202e Kernel panic TPASS ok 9 x"


def run(case, verdict, flavor="host", variant="", reason="", **kw):
    return {"case": case, "area": "signals", "variant": variant, "flavor": flavor, "verdict": verdict,
            "reason": reason, "target": "host", "kernel": "6.1.0-50-cloud-amd64", "duration_ms": 12.5, **kw}


def document():
    res = [run("alpha", "pass"), run("alpha", "xfail", "pidns", reason=HOSTILE),
           run("alpha", "skip", "userns", reason="needs Linux >= 7.1 (running 6.1.0)"),
           run("beta", "fail", variant="fork", reason=HOSTILE, details=["ok 3 fake", "# not ok 4 fake"]),
           run("beta", "hang", variant="fork", flavor="pidns", reason="stuck: 12 (probe) D in fuse_flush",
               hang={"tasks": [{"tid": 12, "comm": "probe", "state": "D", "wchan": "fuse_flush",
                                "stack": ["fuse_flush+0x1", "filp_flush+0x2"], "stuck": True}]}),
           run("beta", "error", variant="clone", reason=HOSTILE),
           run("gamma", "skip", reason="needs root"), run("gamma", "skip", flavor="pidns", reason="needs root")]
    doc = {"schema": 1, "created": "2026-12-01T12:00:00+00:00", "environment": {"kernel": "6.1.0-50-cloud-amd64",
                                                                                "machine": "x86_64"},
           "results": res}
    render.validate(doc)
    return doc


# ------------------------------------------------------------ KTAP

def nested(text):
    """Linaro's reading of kselftest output (parse-output.py, python3-tap):
    each top-level result's children are the diagnostics before it, their
    leading '#' removed, parsed again. Returns [(name, ok, skip, children)]."""
    out, pending = [], []
    for line in tap_parser.Parser().parse_text(text):
        if line.category == "test":
            out.append((line.description, line.ok, line.skip, nested("\n".join(pending) + "\n") if pending else []))
            pending = []
        elif line.category == "diagnostic":
            pending.append(line.text[1:].strip())
    return out


def test_ktap_nested_results_seen_by_python3_tap():
    text = formats.ktap(document())
    assert text.startswith("KTAP version 1\n1..3\n")
    top = nested(text)
    assert [(n, ok, skip) for n, ok, skip, _ in top] == [
        ("selftests: kpc: alpha", True, False), ("selftests: kpc: beta", False, False),
        ("selftests: kpc: gamma", True, True)]
    alpha, beta, gamma = (children for _, _, _, children in top)
    # the hostile reasons added no test at any level
    assert [(n, ok, skip) for n, ok, skip, kids in alpha if not kids] == [
        ("host", True, False), ("pidns", True, False), ("userns", True, True)]
    assert [(n, ok) for n, ok, _, _ in beta] == [("fork.host", False), ("fork.pidns", False), ("clone.host", False)]
    assert all(not kids for _, _, _, kids in alpha + beta + gamma)
    assert [skip for _, _, skip, _ in gamma] == [True, True]


def test_ktap_directives_and_stable_skip_reasons():
    lines = formats.ktap(document()).splitlines()
    assert "# ok 3 userns # SKIP kernel_too_old" in lines        # short and stable: Linaro appends it to the name
    assert "# ok 2 pidns # XFAIL" in lines
    assert "# not ok 2 fork.pidns # TIMEOUT" in lines
    assert "# not ok 3 clone.host # ERROR" in lines
    for line in lines:   # one line each; a '#' inside a text is escaped
        assert "\n" not in line and "\x1b" not in line
        assert not re.match(r"^[# ]*(not )?ok \d+ (injected|x|fake)", line), line
    # KTAP numbering: 1..N at each level, results numbered from 1
    assert [ln for ln in lines if re.match(r"^(not )?ok ", ln)] == [
        "ok 1 selftests: kpc: alpha", "not ok 2 selftests: kpc: beta", "ok 3 selftests: kpc: gamma # SKIP"]


@pytest.mark.parametrize("reason, kind", [("needs root", "needs_root"), ("needs CONFIG_FUSE_FS (not set in x)",
                                                                         "kconfig_missing"),
                                          ("slow case (15 s): run with --slow", "slow"),
                                          ("pidns flavor unavailable here: EPERM", "flavor_unavailable"),
                                          ("PIDFD_THREAD: EINVAL (6.9+)", "not_supported")])
def test_skip_kinds(reason, kind):
    assert formats.skip_kind(reason) == kind


# ------------------------------------------------------------ KCIDB

# The rules of KCIDB's v5.3 schema (kernelci/kcidb-io kcidb_io/schema/v05_03.py,
# as listed in the research notes' kernel-ci-and-field.md §1.1): required
# fields, id/origin/path patterns, the status enum, environment's closed set
# of properties, log_excerpt's length, date-time start times.
ID = {"type": "string", "pattern": "^[a-z0-9_]+:[^\\x00]*$"}
ORIGIN = {"type": "string", "pattern": "^[a-z0-9_]+$"}
KCIDB_53 = {
    "type": "object", "required": ["version"], "additionalProperties": False,
    "properties": {
        "version": {"type": "object", "required": ["major", "minor"], "additionalProperties": False,
                    "properties": {"major": {"const": 5}, "minor": {"type": "integer", "minimum": 0, "maximum": 3}}},
        "checkouts": {"type": "array", "items": {"type": "object", "required": ["id", "origin"],
                                                 "properties": {"id": ID, "origin": ORIGIN,
                                                                "comment": {"type": "string"},
                                                                "misc": {"type": "object"}}}},
        "builds": {"type": "array", "items": {"type": "object", "required": ["checkout_id", "id", "origin"],
                                              "properties": {"id": ID, "origin": ORIGIN, "checkout_id": ID,
                                                             "architecture": {"type": "string",
                                                                              "pattern": "^[a-z0-9_]*$"},
                                                             "comment": {"type": "string"},
                                                             "misc": {"type": "object"}}}},
        "tests": {"type": "array", "items": {
            "type": "object", "required": ["build_id", "id", "origin"],
            "properties": {
                "id": ID, "origin": ORIGIN, "build_id": ID, "comment": {"type": "string"},
                "path": {"type": "string", "pattern": "^([a-zA-Z0-9_-]+(\\.[a-zA-Z0-9_-]+)*)?$"},
                "status": {"enum": ["FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP"]},
                "environment": {"type": "object", "additionalProperties": False,
                                "properties": {"compatible": {"type": "array", "items": {"type": "string"}},
                                               "comment": {"type": "string"}, "misc": {"type": "object"}}},
                "log_excerpt": {"type": "string", "maxLength": 16384},
                "start_time": {"type": "string", "format": "date-time"},
                "duration": {"type": "number"}, "misc": {"type": "object"}}}},
    }}


def kcidb_valid(doc):
    jsonschema.Draft7Validator(KCIDB_53, format_checker=jsonschema.FormatChecker()).validate(doc)


def test_kcidb_document_meets_the_v5_3_rules():
    out = formats.kcidb(document(), origin="my_ci")
    kcidb_valid(json.loads(json.dumps(out)))
    tests = {t["path"]: t for t in out["tests"]}
    assert set(tests) == {"kpc.signals.alpha.host", "kpc.signals.alpha.pidns", "kpc.signals.alpha.userns",
                          "kpc.signals.beta.fork.host", "kpc.signals.beta.fork.pidns", "kpc.signals.beta.clone.host",
                          "kpc.signals.gamma.host", "kpc.signals.gamma.pidns"}
    assert [tests[p]["status"] for p in ("kpc.signals.alpha.pidns", "kpc.signals.beta.fork.pidns",
                                         "kpc.signals.beta.clone.host")] == ["PASS", "FAIL", "ERROR"]
    xfail, hang = tests["kpc.signals.alpha.pidns"], tests["kpc.signals.beta.fork.pidns"]
    assert xfail["misc"]["kpc_verdict"] == "xfail" and "\n" not in xfail["misc"]["reason"]
    assert hang["misc"]["kpc_verdict"] == "hang" and "fuse_flush+0x1" in hang["log_excerpt"]
    assert len({t["id"] for t in out["tests"]}) == len(out["tests"])
    assert all(t["id"].startswith("my_ci:") and t["build_id"] == "my_ci:6_1_0-50-cloud-amd64" for t in out["tests"])
    assert out["builds"][0]["architecture"] == "x86_64"


def test_kcidb_rules_catch_what_they_should():
    """The schema rules above refuse what KCIDB refuses (else the test above proves nothing)."""
    good = formats.kcidb(document())
    for bad in ({"path": "kpc/sig"}, {"status": "XFAIL"}, {"id": "no-origin-prefix"},
                {"environment": {"unknown": 1}}, {"log_excerpt": "x" * 16385}):
        doc = json.loads(json.dumps(good))
        doc["tests"][0].update(bad)
        with pytest.raises(jsonschema.ValidationError):
            kcidb_valid(doc)


def test_kcidb_long_logs_are_cut_and_origin_checked():
    doc = document()
    doc["results"][3]["details"] = ["x" * 1000] * 40
    assert len(formats.kcidb(doc)["tests"][3]["log_excerpt"]) == formats.LOG_EXCERPT_MAX
    with pytest.raises(ValueError):
        formats.kcidb(doc, origin="Bad-Origin")


# ------------------------------------------------------------ LAVA

def test_lava_names_one_per_run_without_whitespace():
    res = formats.lava_results(document())
    assert len(res) == len(document()["results"]) == len({n for n, _ in res})
    assert all(re.match(r"^[A-Za-z0-9_.-]+$", n) for n, _ in res)
    assert dict(res)["beta.fork.pidns"] == "fail" and dict(res)["alpha.pidns"] == "pass"
    assert {r for _, r in res} <= {"pass", "fail", "skip", "unknown"}


def test_lava_test_definition_is_well_formed():
    yaml = pytest.importorskip("yaml")
    from kpc import paths
    with open(os.path.join(paths.ROOT, "lava", "kpc.yaml")) as f:
        d = yaml.safe_load(f)
    assert d["metadata"]["format"] == "Lava-Test Test Definition 1.0"
    assert d["metadata"]["name"] == "kpc" and d["metadata"]["description"]
    # every step a string (a bare 'false' is a YAML boolean: the dispatcher crashes on it)
    assert d["run"]["steps"] and all(isinstance(s, str) for s in d["run"]["steps"])
    assert any("--lava" in s for s in d["run"]["steps"])


# ------------------------------------------------------------ kirk

def test_kirk_runtest_lines_and_ltp_codes(demo_cases):
    text = formats.kirk_runtest(demo_cases)
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    # kirk's reading: NAME COMMAND ARGS..., names unique
    assert all(len(ln) == 3 and ln[1] == "kpc-ltp" for ln in lines)
    assert len({ln[0] for ln in lines}) == len(lines) == 3 + 2 * 3 + 3
    assert ["kpc_other_fork_pidns", "kpc-ltp", "other:fork@pidns"] in lines
    assert formats.LTP_EXIT == {"pass": 0, "xfail": 0, "skip": 32, "error": 2, "fail": 1, "hang": 1}


def test_ltp_text_cannot_trigger_kirk():
    out = formats.ltp_safe(HOSTILE)
    assert "Kernel panic" not in out and "TPASS" not in out and "\n" not in out
