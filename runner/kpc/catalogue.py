"""The coverage catalogue: 120 distinct process-lifecycle behaviours in kpc's
four areas (signal state across creation paths, PID namespaces, reaping and
pidfd, FUSE teardown), each scored for kpc and its peer suites.

Source: the coverage study (coverage-catalogue.md of the project's research
notes, not in this repository; its appendix, written 2026-12-01 from LTP 695827725f4f, gVisor 3c5eee17dc45,
CRIU 2cf8f13ca1f1, libfuse e8d407ce93bf and kernel selftests read per file).
The table is copied here verbatim so the counts can be recomputed: a case
names the behaviours it observes in its metadata (`catalogue = ["R06"]`),
cases.py refuses an id that is not here, and bench/coverage.py counts them
against the peers' scores below.

A peer's score is 'Y' (asserted), 'p' (partly: one sub-case, or only
"the same after checkpoint/restore") or '.' (not found), in the order of
SUITES. The `kpc` column is kpc as the study read it (ee32aae), kept to show
what changed; kpc's coverage now is what the case metadata says.
"""

from __future__ import annotations

import dataclasses
import re

SUITES = ("kpc", "LTP", "kselftest", "gVisor", "zdtm", "libfuse")
PEERS = SUITES[1:]
AREAS = ("signals/creation", "pidns", "reaping/pidfd", "fuse")

# The study's own totals (its section 3, "covered, with partial counted"):
# the table below must reproduce them (runner/tests/test_catalogue.py).
STUDY_TOTALS = {
    "signals/creation": {"kpc": 28, "LTP": 12, "kselftest": 5, "gVisor": 21, "zdtm": 2, "libfuse": 0},
    "pidns": {"kpc": 12, "LTP": 15, "kselftest": 11, "gVisor": 5, "zdtm": 0, "libfuse": 0},
    "reaping/pidfd": {"kpc": 24, "LTP": 21, "kselftest": 23, "gVisor": 29, "zdtm": 5, "libfuse": 0},
    "fuse": {"kpc": 8, "LTP": 0, "kselftest": 3, "gVisor": 1, "zdtm": 0, "libfuse": 6},
}

ID = re.compile(r"^[SPRDF]\d\d$")


@dataclasses.dataclass(frozen=True)
class Behaviour:
    id: str
    area: str
    scores: str  # one of Y/p/. per SUITES
    text: str

    def score(self, suite: str) -> str:
        """'full', 'partial' or '' for one suite."""
        return {"Y": "full", "p": "partial", ".": ""}[self.scores[SUITES.index(suite)]]


_ROWS = [
    ('S01', 'signals/creation', "YY.p..", 'fork child inherits the blocked mask'),
    ('S02', 'signals/creation', "Y..Y..", 'blocked mask kept across execve'),
    ('S03', 'signals/creation', "Y..p..", 'SIG_IGN inherited by fork'),
    ('S04', 'signals/creation', "Y..Y..", 'SIG_IGN kept across execve (also through a shell)'),
    ('S05', 'signals/creation', "Yp....", 'caught handler (+sa_flags) inherited by fork'),
    ('S06', 'signals/creation', "Y..Y..", 'execve resets caught handlers to SIG_DFL and clears sa_flags'),
    ('S07', 'signals/creation', "YY....", 'new process (fork, vfork) starts with nothing pending'),
    ('S08', 'signals/creation', "Y.....", 'pending signals survive execve'),
    ('S09', 'signals/creation', "Y..Y..", 'altstack inherited by fork'),
    ('S10', 'signals/creation', "Y..Y..", 'altstack dropped by execve'),
    ('S11', 'signals/creation', "Y.....", 'altstack cleared for CLONE_VM without CLONE_VFORK'),
    ('S12', 'signals/creation', "YY.p..", 'alarm/interval timers not inherited by fork'),
    ('S13', 'signals/creation', "Y..Y..", 'interval timers kept across execve'),
    ('S14', 'signals/creation', "Yp....", 'POSIX timers not inherited by fork, deleted by execve'),
    ('S15', 'signals/creation', "Y.....", 'PDEATHSIG cleared in the child, kept by plain execve'),
    ('S16', 'signals/creation', "Y.....", 'PDEATHSIG cleared by set-user-ID execve'),
    ('S17', 'signals/creation', "Y..Yp.", 'PDEATHSIG fires when the creating thread exits'),
    ('S18', 'signals/creation', "YY.Yp.", 'child-subreaper flag: not inherited by fork, kept by exec, shared by threads'),
    ('S19', 'signals/creation', "Y.....", 'execve resets the exit signal to SIGCHLD'),
    ('S20', 'signals/creation', "Y.YY..", 'CLONE_CLEAR_SIGHAND semantics (+EINVAL with CLONE_SIGHAND)'),
    ('S21', 'signals/creation', "Y.....", "posix_spawn SETSIGMASK/SETSIGDEF (+glibc's SIG_IGN on 32/33)"),
    ('S22', 'signals/creation', "Y.....", 'same state on every creation path, after one and two execs'),
    ('S23', 'signals/creation', "YYYY..", 'execveat(AT_EMPTY_PATH)/fexecve of a binary, /dev/fd dependency'),
    ('S24', 'signals/creation', "..YY..", 'execveat of a #! script via an O_CLOEXEC fd fails ENOENT'),
    ('S25', 'signals/creation', "Y.pY..", "execve from a non-leader thread (threads die, PID takeover, caller's mask)"),
    ('S26', 'signals/creation', "..Y...", 'execve while a sibling thread is ptraced: de_thread waits for the tracer; PTRACE_ATTACH EAGAIN'),
    ('S27', 'signals/creation', "YY.Y..", 'SIGKILL/SIGSTOP cannot be caught, ignored or blocked; signalfd drops them'),
    ('S28', 'signals/creation', "Yp.p..", 'standard signals collapse, RT signals queue in order, lowest first'),
    ('S29', 'signals/creation', "Y..p..", 'ptrace event and syscall per creation path; same ns/cgroup'),
    ('S30', 'signals/creation', ".Y....", 'pthread_create: mask inherited, thread-directed pending empty'),
    ('S31', 'signals/creation', "...Y..", 'ignored+blocked signal is still queued (sigtimedwait takes it); ignored+unblocked dropped'),
    ('S32', 'signals/creation', ".Y....", 'CLONE_SIGHAND shares the handler table between parent and child'),
    ('S33', 'signals/creation', ".Y.Y..", 'vfork: parent suspended until child execs/exits; SIGCHLD during vfork delivered'),
    ('S34', 'signals/creation', "...Y..", 'SIGCONT discards pending stop signals (and a stop discards pending SIGCONT)'),
    ('S35', 'signals/creation', "Y.....", 'state a program inherits from its launcher/runtime (hygiene)'),
    ('P01', 'pidns', "YYY...", 'first process is PID 1 with getppid 0; its children see 1'),
    ('P02', 'pidns', "Y.Y...", 'NSpid chain gains a level'),
    ('P03', 'pidns', ".Y....", "init's session id and pgid read 0 until setsid, then 1"),
    ('P04', 'pidns', ".Y....", 'a /proc mounted in the namespace shows namespace PIDs'),
    ('P05', 'pidns', "YY....", 'init receives only handled signals from members (SIGKILL/SIGSTOP dropped)'),
    ('P06', 'pidns', "Yp....", 'from an ancestor only handled signals, SIGKILL/SIGSTOP forced'),
    ('P07', 'pidns', "YYpY..", 'init exit SIGKILLs every member'),
    ('P08', 'pidns', "YY....", 'nested namespaces torn down; outer init reaped after all'),
    ('P09', 'pidns', "Y..Y..", 'setns-entered members die too; a subreaper outside changes nothing'),
    ('P10', 'pidns', "Y.Y...", 'fork in a namespace whose init died: ENOMEM'),
    ('P11', 'pidns', "Y.....", 'setns into the dead namespace still succeeds'),
    ('P12', 'pidns', "Ypp...", 'unshare(CLONE_NEWPID) moves only children; second unshare / NEWPID|THREAD EINVAL'),
    ('P13', 'pidns', "Y.p...", 'pid_for_children before the first child (ENOENT vs resolves)'),
    ('P14', 'pidns', "..Y...", "setns into an init-less namespace via pid_for_children: joiner's child becomes PID 1"),
    ('P15', 'pidns', ".YY...", 'clone3 set_tid: choose the PID at each level (EEXIST, CAP_CHECKPOINT_RESTORE)'),
    ('P16', 'pidns', ".Y.Y..", 'IDs of processes outside the namespace read as 0 (si_pid, SO_PEERCRED, F_GETLK, mq_notify)'),
    ('P17', 'pidns', ".Y....", 'kill(-1) from the namespace init reaches every member but init'),
    ('P18', 'pidns', ".Y....", 'members cannot reach PIDs outside (ESRCH)'),
    ('P19', 'pidns', ".Y....", 'nesting depth limit (32)'),
    ('P20', 'pidns', "..Y...", 'per-namespace pid_max, capped by ancestors (6.14+)'),
    ('P21', 'pidns', "..Y...", 'pidfd fdinfo NSpid is 0 from a sibling namespace, -1 after exit'),
    ('P22', 'pidns', ".Y....", 'PIDFD_INFO_EXIT visibility between isolated namespaces'),
    ('P23', 'pidns', ".Y....", 'NS_GET_PARENT on pid namespaces (EPERM at the top)'),
    ('P24', 'pidns', "...Y..", 'CLONE_PARENT from a namespace init: EINVAL'),
    ('P25', 'pidns', "..YY..", 'setns(pidfd) to an exited/zombie task: ESRCH (and the exit race)'),
    ('P26', 'pidns', "Y.....", 'PID 1 that forwards SIGTERM then waits forever (story 004)'),
    ('R01', 'reaping/pidfd', "YY.Yp.", 'zombie until waited (Z, signalable), PID gone after wait'),
    ('R02', 'reaping/pidfd', "YY.Y..", 'SIGCHLD SIG_IGN / SA_NOCLDWAIT: no zombies, wait ends ECHILD'),
    ('R03', 'reaping/pidfd', "Y.....", 'SA_NOCLDWAIT handler still receives SIGCHLD'),
    ('R04', 'reaping/pidfd', "Y.....", 'auto-reaping across fork and exec'),
    ('R05', 'reaping/pidfd', "YYYYp.", 'orphans go to the nearest subreaper, else the namespace init'),
    ('R06', 'reaping/pidfd', ".Y....", "the subreaper gets SIGCHLD and the adopted orphan's exit status"),
    ('R07', 'reaping/pidfd', "Yp.p..", 'only the low 8 bits of the exit status'),
    ('R08', 'reaping/pidfd', "Y..Y..", 'non-SIGCHLD exit signal: invisible without __WALL/__WCLONE'),
    ('R09', 'reaping/pidfd', "Y.YYp.", 'zombie leader with live threads: not reapable, pidfd not readable until the group ends'),
    ('R10', 'reaping/pidfd', "Y.Yp..", "the group exit status wins over the leader's own"),
    ('R11', 'reaping/pidfd', "...Y..", 'WNOWAIT leaves the child waitable and reports the group status'),
    ('R12', 'reaping/pidfd', "pYYYp.", 'stop/continue reported to the waiter (WSTOPPED/WCONTINUED, CLD_*)'),
    ('R13', 'reaping/pidfd', ".Y....", 'SA_NOCLDSTOP suppresses SIGCHLD for stop/continue'),
    ('R14', 'reaping/pidfd', ".Y....", 'wait by process group (P_PGID, waitpid(0|-pgid))'),
    ('R15', 'reaping/pidfd', "...Y..", 'children of sibling threads are waitable; __WNOTHREAD restricts'),
    ('R16', 'reaping/pidfd', "...Y..", 'tracer vs real parent: tracee always waitable by tracer, tracer sees the exit first'),
    ('R17', 'reaping/pidfd', ".Y....", 'CLD_DUMPED / core-dump bit, CLD_KILLED'),
    ('R18', 'reaping/pidfd', "...Y..", 'RUSAGE_CHILDREN counts only waited-for children'),
    ('R19', 'reaping/pidfd', "...Y..", 'SIGKILL of a zombie does not change its status'),
    ('R20', 'reaping/pidfd', ".Y.Y..", "CLONE_PARENT: the caller's parent becomes the parent/reaper"),
    ('R21', 'reaping/pidfd', "pY.Y..", 'exit closes every fd (peers see EOF); exit_group ends all threads'),
    ('R22', 'reaping/pidfd', ".Y....", 'PIDs are not handed out again immediately (fork13 race)'),
    ('D01', 'reaping/pidfd', "YYYY..", 'pidfd_open: CLOEXEC, POLLIN on exit, read() refused'),
    ('D02', 'reaping/pidfd', "YYYYp.", 'pidfd_send_signal to live / reaped (ESRCH)'),
    ('D03', 'reaping/pidfd', ".YY...", 'pidfd_send_signal never reaches a recycled PID'),
    ('D04', 'reaping/pidfd', ".Y.Y..", 'pidfd_send_signal with a siginfo (si_code rules, spoofing EPERM)'),
    ('D05', 'reaping/pidfd', "...Y..", 'pidfd_send_signal: zombie accepted, unprivileged EPERM'),
    ('D06', 'reaping/pidfd', "pYYY..", 'pidfd_getfd: CLOEXEC, same file (kcmp), EPERM without ptrace access, ESRCH after reap'),
    ('D07', 'reaping/pidfd', "...Y..", 'pidfd_getfd against a non-dumpable exiting task (CVE-2026-46333)'),
    ('D08', 'reaping/pidfd', "Y.YY..", 'waitid(P_PIDFD) reaps'),
    ('D09', 'reaping/pidfd', ".YpY..", 'non-blocking pidfd: waitid EAGAIN while alive'),
    ('D10', 'reaping/pidfd', "..YY..", 'waitid(P_PIDFD) stop/continue states'),
    ('D11', 'reaping/pidfd', "Y.YY..", 'POLLIN on exit, POLLHUP after reap'),
    ('D12', 'reaping/pidfd', "..YY..", 'non-leader exec does not signal the pidfd; thread-pidfd revival by exec'),
    ('D13', 'reaping/pidfd', "Y.YY..", 'PIDFD_THREAD signal scope and exit notification'),
    ('D14', 'reaping/pidfd', "pYY...", 'PIDFD_GET_INFO before reap (creds, no exit) and after (exit)'),
    ('D15', 'reaping/pidfd', "..Y...", 'pidfd fdinfo Pid:/NSpid: (live, -1 when dead)'),
    ('D16', 'reaping/pidfd', "YYYY..", 'CLONE_PIDFD and clone3 struct-size rules'),
    ('D17', 'reaping/pidfd', "..Yp..", 'clone3 exit_signal validation (>NSIG, CSIGNAL bits: EINVAL)'),
    ('D18', 'reaping/pidfd', "pYY...", 'CLONE_INTO_CGROUP really places the child'),
    ('D19', 'reaping/pidfd', "Y.Y...", 'CLONE_AUTOREAP / CLONE_NNP / CLONE_PIDFD_AUTOKILL basics'),
    ('D20', 'reaping/pidfd', "..Y...", 'AUTOREAP edge rules: rejects CLONE_PARENT/THREAD, not inherited, multithreaded'),
    ('D21', 'reaping/pidfd', "Y.....", 'process_mrelease on a live process: EINVAL'),
    ('D22', 'reaping/pidfd', "Y.Y...", 'pidfd_open of a non-leader TID (EINVAL/ENOENT by version)'),
    ('D23', 'reaping/pidfd', "Y.p...", 'autoreaped orphan under a subreaper: no SIGCHLD, never waitable'),
    ('F01', 'fuse', "Y.p...", 'FLUSH on every close of every copy, RELEASE once after the last'),
    ('F02', 'fuse', "Y.....", "close() returns FLUSH's error and closes anyway; ENOSYS stops FLUSH"),
    ('F03', 'fuse', "Y.....", 'close() waits for the FLUSH answer'),
    ('F04', 'fuse', "Y....p", 'server death: in-flight ECONNABORTED, later ENOTCONN'),
    ('F05', 'fuse', "Y.Y..p", 'fusectl abort releases every waiter, new requests ENOTCONN'),
    ('F06', 'fuse', "Y.....", 'self-served exit holding a file hangs in fuse_flush'),
    ('F07', 'fuse', "Y.....", 'PID-namespace teardown deadlock (story 002)'),
    ('F08', 'fuse', "Y.....", 'request timeouts (6.14+) turn the hang into an exit'),
    ('F09', 'fuse', ".....Y", 'FOPEN_NOFLUSH: close() sends no FLUSH and does not block'),
    ('F10', 'fuse', ".....Y", 'auto_unmount: the mount goes away when the daemon is SIGKILLed'),
    ('F11', 'fuse', ".....Y", 'daemon SIGTERM: session loop exits cleanly and unmounts'),
    ('F12', 'fuse', "..Y...", 'the mount owner can abort from inside a user namespace'),
    ('F13', 'fuse', ".....Y", 'RELEASE and a following UNLINK do not race'),
    ('F14', 'fuse', "...Y..", 'INIT handshake rejection; /dev/fuse clone (FUSE_DEV_IOC_CLONE)'),
]

CATALOGUE = {i: Behaviour(i, area, scores, text) for i, area, scores, text in _ROWS}


def unknown_ids(ids: list[str]) -> list[str]:
    """The ids in `ids` that name no catalogue behaviour, in order."""
    return [i for i in ids if i not in CATALOGUE]
