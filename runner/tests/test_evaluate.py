"""The evaluator: one launcher result + the tables -> one verdict. Every
verdict and every way a result or table can be wrong."""

import pytest

from kpc import evaluate, kver, tables

TABLE = """
[demo]
mask = SIGUSR1|SIGTERM
status = "exited 0"
err = ENOMEM if kernel<5.3 -- before the fix the kernel returned ENOMEM
err = EINVAL if kernel>=5.3 -- fixed
count = 2 if flavor=host -- host counts two
count = 3 if flavor!=host xfail -- the namespace adds one (known divergence)
"""


def ctx(**kw):
    base = {"kernel": kver.parse("6.1.0"), "flavor": "host", "variant": "", "profile": "none", "runtime": "none",
            "libc": "glibc", "arch": "x86_64", "root": "yes"}
    base.update(kw)
    return base


def obs(key, vtype, value):
    return {"obs": key, "type": vtype, "value": value}


def good_records(**override):
    recs = {"mask": obs("mask", "sigset", "SIGTERM|SIGUSR1"), "status": obs("status", "str", "exited 0"),
            "err": obs("err", "errno", "EINVAL"), "count": obs("count", "int", 2)}
    recs.update(override)
    return [r for r in recs.values() if r is not None] + [{"end": "ok"}]


def result(records=None, outcome="completed", exit_text="exited 0", **extra):
    r = {"outcome": outcome, "records": good_records() if records is None else records, "protocol_errors": [],
         "exit": {"text": exit_text}, "duration_ms": 1.5, "stderr": ""}
    r.update(extra)
    return r


@pytest.fixture
def tbl(write_table, demo_cases):
    return tables.load(demo_cases, write_table("signals", TABLE))


def verdict(demo_cases, tbl, res, **c):
    return evaluate.evaluate(demo_cases["demo"], res, tbl, ctx(**c))


def test_pass_when_every_observation_matches_its_row(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result())
    assert v.verdict == "pass", v.reason
    assert v.observations["mask"] == "SIGUSR1|SIGTERM"          # canonical order
    assert v.expected["err"]["where"].endswith("signals/demo.exp:6")


def test_fail_shows_expected_observed_and_row(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(mask=obs("mask", "sigset", "SIGUSR1"))))
    assert v.verdict == "fail"
    assert "mask: expected SIGUSR1|SIGTERM" in v.reason and "observed SIGUSR1" in v.reason
    assert "signals/demo.exp:3" in v.reason


def test_kernel_condition_selects_the_row(demo_cases, tbl):
    res = result(good_records(err=obs("err", "errno", "ENOMEM")))
    assert verdict(demo_cases, tbl, res, kernel=kver.parse("5.2.9")).verdict == "pass"
    assert verdict(demo_cases, tbl, res, kernel=kver.parse("5.3")).verdict == "fail"


def test_xfail_when_a_divergence_row_matches(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(count=obs("count", "int", 3))), flavor="pidns")
    assert v.verdict == "xfail"
    assert "namespace adds one" in v.reason


def test_a_divergence_row_that_does_not_hold_is_a_fail(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(count=obs("count", "int", 2))), flavor="pidns")
    assert v.verdict == "fail"


def test_skip_record_gives_skip_with_the_probes_reason(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result([{"skip": "clone3 not available (ENOSYS)"}], exit_text="exited 77"))
    assert (v.verdict, v.reason) == ("skip", "clone3 not available (ENOSYS)")


def test_unknown_key_observed_without_a_row_is_an_error(demo_cases, tbl):
    recs = good_records()
    recs.insert(0, obs("surprise", "bool", True))
    v = verdict(demo_cases, tbl, result(recs))
    assert v.verdict == "error"
    assert "no row for observation 'surprise'" in v.reason and "[demo]" in v.reason


def test_row_for_a_key_never_observed_is_an_error_with_file_line(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(status=None)))
    assert v.verdict == "error"
    assert "signals/demo.exp:4" in v.reason and "did not record 'status'" in v.reason


def test_no_section_for_the_case_is_an_error(demo_cases, tbl):
    v = evaluate.evaluate(demo_cases["other"], result(), tbl, ctx())
    assert v.verdict == "error" and "add a [other] section" in v.reason


def test_probe_without_end_record_is_an_error(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records()[:-1]))
    assert v.verdict == "error" and "before recording its end" in v.reason


def test_probe_killed_is_an_error(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(exit_text="killed SIGSEGV (core)"))
    assert v.verdict == "error" and "killed SIGSEGV" in v.reason


def test_broken_probe_is_an_error(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result([{"broken": "pipe2 failed: EMFILE"}], exit_text="exited 99"))
    assert v.verdict == "error" and "EMFILE" in v.reason


def test_protocol_garbage_is_an_error_not_a_pass(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(protocol_errors=["this is not json"]))
    assert v.verdict == "error" and "this is not json" in v.reason


def test_observation_recorded_twice_is_an_error(demo_cases, tbl):
    recs = good_records()
    recs.insert(0, obs("mask", "sigset", "SIGTERM|SIGUSR1"))
    assert verdict(demo_cases, tbl, result(recs)).verdict == "error"


def test_unknown_observation_type_is_an_error(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(count=obs("count", "float", 2.0))))
    assert v.verdict == "error" and "unknown type" in v.reason


def test_unreadable_value_is_an_error(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result(good_records(mask=obs("mask", "sigset", "SIGWHAT"))))
    assert v.verdict == "error"


STUCK = {"tasks": [{"tid": 42, "comm": "flusher", "state": "D", "wchan": "fuse_flush", "stuck": True,
                    "stack": ["[<0>] fuse_flush+0x1/0x2"]}], "recovered": True}


def test_hang_not_expected_is_a_hang_with_the_stuck_task(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result([], outcome="hang", exit_text="killed SIGKILL", hang=STUCK))
    assert v.verdict == "hang"
    assert "42 (flusher) D in fuse_flush" in v.reason
    assert v.hang["tasks"][0]["stack"]


def test_hang_expected_by_an_xfail_row_is_xfail(write_table, demo_cases):
    t = tables.load(demo_cases, write_table("signals", "[demo]\n"
                                                       "hang = yes if kernel<6.3 xfail -- deadlock before the fix\n"
                                                       "hang = no if kernel>=6.3 -- fixed\n"))
    res = result([], outcome="hang", exit_text="killed SIGKILL", hang=STUCK)
    assert evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1"))).verdict == "xfail"
    assert evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.12"))).verdict == "hang"


def test_no_hang_where_one_is_expected_is_a_fail(write_table, demo_cases):
    t = tables.load(demo_cases, write_table("signals", "[demo]\n"
                                                       "hang = yes if kernel<6.3 xfail -- deadlock before the fix\n"
                                                       "hang = no if kernel>=6.3 -- fixed\nok = true\n"))
    res = result([obs("ok", "bool", True), {"end": "ok"}])
    assert evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1"))).verdict == "fail"
    assert evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.12"))).verdict == "pass"


def test_a_hang_kpc_could_not_free_is_an_error_even_when_expected(write_table, demo_cases):
    """recovered: false is kpc's failure to clean up: never an xfail, and the
    verdict says what is still stuck and what a root user must do."""
    t = tables.load(demo_cases, write_table("signals", "[demo]\nhang = yes xfail -- a known deadlock\n"))
    stuck = dict(STUCK, recovered=False, aborted_fuse_connections=[47],
                 left_running=[{"tid": 42, "comm": "flusher", "state": "D", "wchan": "request_wait_answer"}])
    v = evaluate.evaluate(demo_cases["demo"], result([], outcome="hang", exit_text="killed SIGKILL", hang=stuck), t,
                          ctx())
    assert v.verdict == "error"
    assert "42 (flusher, D in request_wait_answer)" in v.reason and "47" in v.reason and "as root" in v.reason
    assert v.details == ["the run itself: xfail (a known deadlock [stuck: 42 (flusher) D in fuse_flush])"]
    # Recovered, the same run is the table's xfail.
    v = evaluate.evaluate(demo_cases["demo"], result([], outcome="hang", exit_text="killed SIGKILL",
                                                     hang=dict(STUCK, recovered=True)), t, ctx())
    assert v.verdict == "xfail"


HANG_TABLE = ("[demo]\nhang = yes if kernel<6.3 xfail -- deadlock before the fix\nhang = no if kernel>=6.3 -- fixed\n"
              "setns = ok\nfork = ENOMEM\ncompleted = true\n")


def test_observations_made_before_an_expected_hang_are_still_checked(write_table, demo_cases):
    t = tables.load(demo_cases, write_table("signals", HANG_TABLE))
    before = [obs("setns", "str", "ok"), obs("fork", "errno", "ENOMEM")]
    res = result(before, outcome="hang", exit_text="killed SIGKILL", hang=STUCK)
    v = evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "xfail", v.reason          # 'completed' never recorded: fine in a hang
    assert v.expected["fork"]["value"] == "ENOMEM" and v.hang["tasks"][0]["stack"]

    wrong = [obs("setns", "str", "ok"), obs("fork", "errno", "EAGAIN")]
    v = evaluate.evaluate(demo_cases["demo"], result(wrong, outcome="hang", exit_text="killed SIGKILL", hang=STUCK),
                          t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "fail"
    assert "fork: expected ENOMEM" in v.reason and "before the hang" in v.reason
    assert v.hang["tasks"][0]["wchan"] == "fuse_flush"  # the stack stays with the verdict


def test_an_unknown_observation_before_a_hang_is_an_error(write_table, demo_cases):
    t = tables.load(demo_cases, write_table("signals", HANG_TABLE))
    res = result([obs("nonsense", "int", 1)], outcome="hang", exit_text="killed SIGKILL", hang=STUCK)
    v = evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "error" and "nonsense" in v.reason


def test_timeout_is_an_error_with_the_tasks(demo_cases, tbl):
    v = verdict(demo_cases, tbl, result([], outcome="timeout", exit_text="killed SIGKILL", trouble=STUCK))
    assert v.verdict == "error" and "deadline of 5 s exceeded" in v.reason
    # a probe that broke and then ran into its deadline: both are said
    v = verdict(demo_cases, tbl, result([{"broken": "fork: EAGAIN"}], outcome="timeout", exit_text="killed SIGKILL",
                                        trouble=STUCK))
    assert v.verdict == "error" and v.details == ["the probe had recorded: broken: fork: EAGAIN"]


@pytest.mark.parametrize("outcome", ["launch-error", "interrupted"])
def test_launch_failures_are_errors(demo_cases, tbl, outcome):
    v = verdict(demo_cases, tbl, {"outcome": outcome, "records": [], "error": "clone: EPERM"})
    assert v.verdict == "error" and "EPERM" in v.reason


def test_a_run_its_guest_never_started_keeps_the_console_tail(demo_cases, tbl):
    tail = ["[ 1.03] Oops: int3: 0000 [#1] SMP NOPTI", "[ 1.07] Kernel panic - not syncing: Fatal exception"]
    v = verdict(demo_cases, tbl, {"outcome": "launch-error", "records": [], "console_tail": tail,
                                  "error": "kernel 7.2: not run: the guest ended (qemu exit 0)"})
    assert v.verdict == "error" and "not run" in v.reason
    assert v.details[1:] == tail


def test_a_helper_killed_by_the_signal_under_test_is_a_fail_not_an_error(built):
    """Issue 16's first rule, built for real: a system that does not keep
    SIG_IGN across exec (simulated by a probe that never ignores SIGUSR2)
    kills sig_ign_survives_execve's helper before it records
    exec.after_sigusr2. Judged with the real case's rows, that is the system's
    defect: fail, the unrecorded key listed as its consequence."""
    import json
    import re
    import subprocess

    from conftest import helper_probe
    from kpc import cases, envinfo, paths
    case = cases.load_all()["sig_ign_survives_execve"]
    tbl = tables.load(cases.load_all())
    r = json.loads(subprocess.run([paths.launcher(), "run", "--json", "--", helper_probe("helper_killed_by_signal")],
                                  capture_output=True, text=True, timeout=60).stdout)
    v = evaluate.evaluate(case, r, tbl, envinfo.detect().context("host"))
    assert v.verdict == "fail", (v.verdict, v.reason)
    assert v.reason.startswith("child.ignored: expected SIGUSR2"), v.reason
    assert any(re.fullmatch(r"exec\.status: expected exited 0 \(cases/signals/sig_ign_survives_execve\.exp:\d+\), "
                            r"observed killed SIGUSR2", d) for d in v.details), v.details
    assert "not recorded (a consequence): exec.after_sigusr2" in v.details


def test_a_missing_key_with_nothing_contradicted_stays_an_error(demo_cases, tbl):
    """Nothing recorded contradicts a row, yet a row's key never came: kpc
    cannot judge the run (a misspelt key, or a probe that died for its own
    reasons) -- error, as before."""
    v = verdict(demo_cases, tbl, result(good_records(count=None)))
    assert v.verdict == "error" and "did not record 'count'" in v.reason


def test_a_contradiction_recorded_before_the_probe_died_is_a_fail(demo_cases, tbl):
    records = good_records(mask=obs("mask", "sigset", "SIGTERM"), count=None)[:-1]  # no end record
    v = verdict(demo_cases, tbl, result(records, exit_text="killed SIGSEGV"))
    assert v.verdict == "fail" and v.reason.startswith("mask: expected SIGUSR1|SIGTERM")
    assert v.details[-2:] == ["not recorded (a consequence): count",
                              "the probe killed SIGSEGV before recording its end"]


def test_a_hang_keeps_how_the_probe_ended_and_its_last_stderr_lines(demo_cases, tbl):
    """A probe already gone when the hang was found explains the
    observations it never made: its wait status (and when the launcher
    learned it) and its last stderr lines stay with the hang's stacks."""
    res = result([], outcome="hang", exit_text="killed SIGABRT", hang=STUCK,
                 stderr="line 1\nterminate called without an active exception\n")
    res["exit"]["launcher_ms"] = 80.5
    v = verdict(demo_cases, tbl, res)
    assert v.verdict == "hang"
    assert v.hang["probe_exit"] == "killed SIGABRT" and v.hang["probe_exit_ms"] == 80.5
    assert v.hang["probe_stderr_tail"] == ["line 1", "terminate called without an active exception"]
    assert v.hang["tasks"][0]["wchan"] == "fuse_flush"
    assert "probe_exit" not in STUCK  # the launcher's record is not changed in place


def test_the_terminal_report_of_a_hang_says_how_the_probe_ended(demo_cases, tbl):
    import io
    from kpc import report, session
    res = result([], outcome="hang", exit_text="killed SIGABRT", hang=dict(STUCK, detected_ms=120.2),
                 stderr="terminate called without an active exception\n")
    res["exit"]["launcher_ms"] = 80.5
    it = session.Item(demo_cases["demo"], "", "host")
    it.verdict = verdict(demo_cases, tbl, res)
    out = io.StringIO()
    report.print_table([it], ["host"], stream=out)
    text = out.getvalue()
    assert "STUCK task 42 (flusher) state D wchan fuse_flush" in text
    assert "the probe killed SIGABRT at 80 ms (the hang was found at 120 ms)" in text
    assert "probe stderr: terminate called without an active exception" in text


def test_a_probe_that_broke_before_an_expected_hang_is_an_error(write_table, demo_cases):
    """A broken record before the hang is kpc's fault, not the known
    deadlock: the run was once the table's xfail with the record dropped."""
    t = tables.load(demo_cases, write_table("signals", HANG_TABLE))
    res = result([{"broken": "fork: EAGAIN"}], outcome="hang", exit_text="exited 99", hang=STUCK)
    v = evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "error"
    assert v.reason.startswith("probe broken: fork: EAGAIN (before the hang:") and "fuse_flush" in v.reason


def test_a_probe_that_broke_during_the_recovery_is_not_blamed_for_it(write_table, demo_cases):
    """The recovery aborts the run's FUSE connections: a probe blocked in a
    call on that mount can fail and record broken before its SIGKILL. The
    launcher marks a broken record read once the recovery had begun; that
    one is said, and the hang is judged as the table says."""
    t = tables.load(demo_cases, write_table("signals", HANG_TABLE))
    late = {"broken": "close: ECONNABORTED", "read_during_recovery": True}
    res = result([obs("setns", "str", "ok"), obs("fork", "errno", "ENOMEM"), late], outcome="hang",
                 exit_text="exited 99", hang=STUCK)
    v = evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "xfail", v.reason
    assert v.details == ["during kpc's recovery the probe recorded: broken: close: ECONNABORTED"]
    # a wrong observation before the hang is still a fail, and the late record is kept with it
    res = result([obs("setns", "str", "ok"), obs("fork", "errno", "EAGAIN"), late], outcome="hang",
                 exit_text="exited 99", hang=STUCK)
    v = evaluate.evaluate(demo_cases["demo"], res, t, ctx(kernel=kver.parse("6.1")))
    assert v.verdict == "fail" and v.details[-1].startswith("during kpc's recovery")
