"""The guest console watch: an OOM kill's report (its routine stack dump)
is not a kernel complaint, but a real one inside or after it still is."""

from kpc.guest import ConsoleWatch

# What Debian's 7.2.13 prints for a memcg OOM kill at loglevel=5 (shortened).
OOM_REPORT = """\
[   51.733101] oom_group_kill invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
[   51.733502] CPU: 1 UID: 0 PID: 212 Comm: oom_group_kill Not tainted 7.2.13+deb14-cloud-amd64 #1 Debian 7.2.13-1
[   51.733772] Call Trace:
[   51.733801]  <TASK>
[   51.733900]  dump_stack_lvl+0x5d/0x80
[   51.734000]  dump_header+0x43/0x1a0
[   51.734100]  oom_kill_process.cold+0xa/0xb0
[   51.734200]  </TASK>
[   51.734300] memory: usage 32768kB, limit 32768kB, failcnt 21
[   51.734400] Memory cgroup out of memory: Killed process 212 (oom_group_kill) total-vm:40000kB
""".splitlines()


def complaints(lines):
    w = ConsoleWatch()
    return [line for line in lines if w.complaint(line)]


def test_an_oom_report_is_not_a_complaint():
    assert complaints(OOM_REPORT) == []


def test_a_call_trace_outside_an_oom_report_is():
    lines = OOM_REPORT + ["[   60.000000] WARNING: CPU: 0 PID: 1 at fs/fuse/dev.c:1 x", "[   60.000001] Call Trace:"]
    assert complaints(lines) == lines[-2:]


def test_an_oops_inside_an_oom_report_is():
    lines = OOM_REPORT[:3] + ["[   51.733780] BUG: kernel NULL pointer dereference, address: 0000000000000000"]
    assert complaints(lines) == lines[-1:]
