"""Run a probe as the process of an OCI container (runc, crun): the
--runtime prefix for OCI runtimes.

    /usr/bin/python3 runner/kpc/oci_run.py --runtime /usr/sbin/runc --id kpc-<16 hex> -- PROBE ARGS...
    /usr/bin/python3 runner/kpc/oci_run.py --cleanup --runtime /usr/sbin/runc --id kpc-<16 hex>

Builds a bundle in a private directory: an empty read-only rootfs, and a
config.json whose process is the probe, with kpc's build directory
bind-mounted read-only at the same path (probes, helpers), a tmpfs on /tmp,
the observation channel (fd 3) passed with --preserve-fds, and the KPC_*
environment. Runs `RUNTIME --root STATE run --bundle B --pid-file B/pid ID`
in the foreground, then deletes the container and the bundle.

Everything lives under /run/kpc-oci (0700, root's; created and entered
without following symlinks): state/<runtime>/ is the runtime's --root,
bundles/<ID>/ the bundles, locks/<ID>.lock one lock per container.

Names and cleanup. --id names the run (the runner picks it); every
container the wrapper starts for it is ID-<8 hex> (a probe that plays the
engine may start the prefix more than once in one run). `--cleanup --id
ID` deletes every container of the run, its cgroups, bundle and lock; the
launcher runs it once the run's process tree is gone, however the run
ended (a SIGKILLed wrapper runs no `finally:`).

Liveness. The wrapper holds an exclusive flock on locks/ID.lock and hands
the same open file to the runtime process, so the lock is held while
either lives. A container is swept (by the next wrapper, and by the
runner at the end of a session) only when its lock can be taken. Both
halves matter: runtime_pid1_duties:child_runtime_sigkill SIGKILLs the
wrapper and watches the container run on under `runc run`; a sweep that
deleted it then made `sigkill_of_runtime.workload_survives` false
whenever another wrapper started within 1.5 s, and a sweep from inside
the pid1_* variants' PID namespace (where the container's PIDs mean
nothing) made runc drop the state of a live container and leak its
cgroups (measured: 4 of 5 runs).

Removal never trusts a PID number from the runtime's state: the
container's processes are SIGKILLed through its cgroups (cgroup.procs
lists them in the reader's namespace; each is checked again through a
pidfd), then `RUNTIME delete` (without -f, which would signal the saved
init PID) removes the state, then kpc removes whatever cgroup directories
the runtime left.

Signal state: this wrapper does not change the signal mask or the ignored
set it inherited, and starts the runtime with subprocess's
restore_signals, which puts back SIGPIPE/SIGXFSZ (that Python itself
ignores) to their defaults — so the runtime sees the launcher's dirty
caller state unchanged (kpc's dirty caller does not ignore SIGPIPE/SIGXFSZ).
Signals the engine sends the wrapper are forwarded to the runtime process
(runc run proxies them into the container). The runtime's stderr is the
wrapper's own: nothing dies of SIGPIPE when the wrapper is killed.

crun on a hybrid cgroup host. crun 1.8.1 refuses every `run` when
/sys/fs/cgroup is v1 and the cgroup2 mount at /sys/fs/cgroup/unified has
controllers (here: hugetlb) -- before any option is read, and still so at
upstream HEAD (research notes, engines.md s.3). So crun's `run` is
started in a mount namespace of its own in which that cgroup2 mount is
detached: crun then sees a pure v1 host and runs. Nothing of the host
changes; `delete` and `kill` work from the host's namespace.

Refusal. A runtime that cannot run a container here (crun on a hybrid
cgroup host, say) leaves a `skip` record with its own error line. That is
decided by where the failure happened, never by words on stderr: the run
counts as refused only when the runtime exited non-zero before writing
its --pid-file (runc writes it after the container process was exec'd,
crun 1.8 once the container is set up and released) and logged an error
to its own --log file, which the workload cannot write to.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from typing import Callable, Iterable

KPC_OCI = "/run/kpc-oci"
STATE_DIR, BUNDLES_DIR, LOCKS_DIR = "state", "bundles", "locks"
RUN_ID = re.compile(r"kpc-[0-9a-f]{16}")
CONTAINER_ID = re.compile(r"(kpc-[0-9a-f]{16})-[0-9a-f]{8}")
LOCK_FD_MIN = 10   # above the fds the runtime passes into the container (3 = observations)


class OciError(Exception):
    """A message for the user (one line)."""


def _build_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    return os.environ.get("KPC_BUILD_DIR") or os.path.join(root, "build")


def config(argv: list[str], build_dir: str) -> dict:
    env = ["PATH=/usr/bin:/bin", "KPC_TMPDIR=/tmp"]
    env += [f"{k}={v}" for k, v in os.environ.items() if k.startswith("KPC_") and k != "KPC_TMPDIR"]
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # runc spec's defaults
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": argv, "env": env, "cwd": "/",
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "kpc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime",
                                                                                    "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": build_dir, "type": "bind", "source": build_dir, "options": ["rbind", "ro"]},
        ],
        # No cgroupsPath: runc then puts the container under its caller's
        # own cgroup in every hierarchy (named by the container ID), so it
        # counts against the limits of whoever runs kpc, and leftovers are
        # found next to the cleaner's own cgroup (_cgroup_dirs).
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]},
    }


# --- kpc's private directories ---------------------------------------------------------------------------------

def _open_dir(name, dir_fd=None):
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _private_dir(parent_fd, name, shown):
    """Create (0700) or enter `name` under parent_fd without following a
    symlink, and make sure it is ours and no one else can enter it. An
    older kpc made /run/kpc-oci 0755: it is tightened, not refused (only
    root can create anything in /run)."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    try:
        fd = _open_dir(name, parent_fd)
    except OSError as e:
        raise OciError(f"{shown}: {e.strerror} (not a directory, or a symlink)") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise OciError(f"{shown} belongs to uid {st.st_uid}, not to kpc's uid {os.geteuid()}: refusing to use it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def private_dir_if(parent_fd: int, name: str, shown: str, create: bool) -> int | None:
    """_private_dir; None, when CREATE is False, if NAME does not exist."""
    if not create:
        try:
            os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
    return _private_dir(parent_fd, name, shown)


def open_top(create: bool) -> int | None:
    """fd of /run/kpc-oci, holding a shared flock on it for as long as the
    fd is open (remove_empty_layout takes it exclusively: it never removes
    the layout under a kpc that is using it); None when it does not exist
    and create is False. A directory removed between our mkdir and our lock
    is made again."""
    parent, name = os.path.split(KPC_OCI)
    for _ in range(20):
        pfd = _open_dir(parent)
        try:
            try:
                top = private_dir_if(pfd, name, KPC_OCI, create)
            except OciError:
                if not os.path.lexists(KPC_OCI):
                    if not create:
                        return None
                    continue   # removed between the mkdir and the open
                raise
            if top is None:
                return None
        finally:
            os.close(pfd)
        fcntl.flock(top, fcntl.LOCK_SH)
        if os.fstat(top).st_nlink > 0:
            return top
        os.close(top)   # removed before we held it
        if not create:
            return None
    raise OciError(f"{KPC_OCI} keeps being removed under kpc")


def _open_tree(create):
    """fds of /run/kpc-oci and its three subdirectories (None when the tree
    does not exist and create is False: nothing to clean). The top's fd
    holds the shared lock (open_top) until _close_tree."""
    top = open_top(create)
    if top is None:
        return None
    try:
        return {"top": top, **{d: _private_dir(top, d, f"{KPC_OCI}/{d}") for d in (STATE_DIR, BUNDLES_DIR, LOCKS_DIR)}}
    except BaseException:
        os.close(top)
        raise


def _rmdir_own(dir_fd, name):
    """rmdir DIR_FD/NAME if it is a directory of ours, 0700 (as kpc makes
    them), empty: never through a symlink (unlinkat does not follow the
    last component, and the parent is an fd opened with O_NOFOLLOW)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            return False
        os.rmdir(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False


def remove_empty_layout() -> bool:
    """At the end of a session: remove kpc's directories under /run/kpc-oci
    (state/<runtime>, state, bundles, locks, engines, then kpc-oci itself)
    that are empty, with rmdir only, when no kpc holds the layout (its
    shared lock). Anything else -- a file, a symlink, a directory not ours
    or not 0700, a container's state -- stays, and with it its parents.
    True when /run/kpc-oci is gone."""
    parent, name = os.path.split(KPC_OCI)
    try:
        pfd = _open_dir(parent)
    except OSError:
        return False
    try:
        try:
            top = _open_dir(name, pfd)
        except OSError:
            return not os.path.lexists(KPC_OCI)   # absent; or a symlink / not a directory: not ours to touch
        try:
            st = os.fstat(top)
            if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                return False
            try:
                fcntl.flock(top, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False   # a kpc is using it
            try:
                sfd = _open_dir(STATE_DIR, top)
            except OSError:
                sfd = None
            if sfd is not None:
                try:
                    for n in os.listdir(sfd):
                        _rmdir_own(sfd, n)
                finally:
                    os.close(sfd)
            for n in (STATE_DIR, BUNDLES_DIR, LOCKS_DIR, "engines"):
                _rmdir_own(top, n)
            return _rmdir_own(pfd, name)
        finally:
            os.close(top)
    finally:
        os.close(pfd)


def _close_tree(tree):
    for fd in (tree or {}).values():
        os.close(fd)


def _runtime_name(runtime):
    name = os.path.basename(runtime)
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise OciError(f"--runtime {runtime}: not a runtime binary name")
    return name


def _state_root(tree, runtime):
    """The runtime's --root: one per runtime (crun's `list` complains
    about runc's state directories and the other way round)."""
    name = _runtime_name(runtime)
    os.close(_private_dir(tree[STATE_DIR], name, f"{KPC_OCI}/{STATE_DIR}/{name}"))
    return f"{KPC_OCI}/{STATE_DIR}/{name}"


def _runtime_cmd(root, runtime, *args):
    return [runtime, "--root", root, *args]


def _runtime_log_args(runtime, path):
    """The runtime's own messages go to PATH as JSON lines (both also print
    their final error on stderr)."""
    if os.path.basename(runtime).startswith("crun"):
        return [f"--log=file:{path}", "--log-format=json"]
    return ["--log", path, "--log-format", "json"]


def _rmtree_at(parent_fd, name):
    """Remove parent_fd/name by file descriptor: never follows a symlink,
    never crosses into another filesystem. False when something stays (a
    mount point, an entry swapped for a symlink under our feet)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return True
        fd = _open_dir(name, parent_fd)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    ok = True
    try:
        if os.fstat(fd).st_dev != os.fstat(parent_fd).st_dev:
            return False
        for entry in os.listdir(fd):
            ok = _rmtree_at(fd, entry) and ok
    finally:
        os.close(fd)
    if ok:
        try:
            os.rmdir(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return ok


# --- locks ------------------------------------------------------------------------------------------------------

def _hold_lock(tree, cid):
    """locks/ID.lock, created already locked (an O_TMPFILE that is flocked,
    then linked in), so a sweep never sees it unlocked while this wrapper
    lives. The fd is above the ones passed into the container and stays
    open, and the lock held, until the wrapper and the runtime process
    that inherits it are gone."""
    tmp = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=tree[LOCKS_DIR])
    try:
        fcntl.flock(tmp, fcntl.LOCK_EX)
        os.link(f"/proc/self/fd/{tmp}", cid + ".lock", dst_dir_fd=tree[LOCKS_DIR], follow_symlinks=True)
        return fcntl.fcntl(tmp, fcntl.F_DUPFD_CLOEXEC, LOCK_FD_MIN)
    finally:
        os.close(tmp)


def _take_lock(tree, cid, wait_s=0.0):
    """The container's lock fd, locked by us, when no wrapper or runtime
    process holds it (within wait_s); -1 when there is no lock file; None
    when it stays held."""
    try:
        fd = os.open(cid + ".lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tree[LOCKS_DIR])
    except FileNotFoundError:
        return -1
    end = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= end:
                os.close(fd)
                return None
            time.sleep(0.05)


# --- cgroups ----------------------------------------------------------------------------------------------------

def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_lines(path: str) -> list[str]:
    """The lines of a file (of /proc); [] when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def mounts_under(path: str) -> list[str]:
    """The mount points at or below PATH this process sees, deepest first."""
    out = []
    for line in read_lines("/proc/self/mountinfo"):
        fields = line.split()
        if len(fields) >= 5:
            mp = _unescape(fields[4])
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return sorted(out, key=lambda p: -p.count("/"))


def detach_mounts_under(path: str) -> None:
    """umount2(MNT_DETACH | UMOUNT_NOFOLLOW) of every mount at or below
    PATH, deepest first. For directories only kpc can reach."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for mp in mounts_under(path):
        libc.umount2(mp.encode(), 2 | 8)                                  # MNT_DETACH | UMOUNT_NOFOLLOW


def _cgroup_mounts():
    """[(fstype, mountpoint, root, super options)] of every cgroup and
    cgroup2 mount this process sees."""
    out = []
    for line in read_lines("/proc/self/mountinfo"):
        pre, _, post = line.partition(" - ")
        pre, post = pre.split(), post.split()
        if len(pre) >= 5 and len(post) >= 3 and post[0] in ("cgroup", "cgroup2"):
            out.append((post[0], _unescape(pre[4]), _unescape(pre[3]), set(post[2].split(","))))
    return out


def _own_cgroup_dirs():
    """This process's own cgroup directory in every hierarchy: where runc
    puts a container whose config names no cgroupsPath (the wrapper, the
    runtime and the cleaner share their cgroups)."""
    mounts = _cgroup_mounts()
    out = set()
    for line in read_lines("/proc/self/cgroup"):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        want = set(filter(None, parts[1].split(",")))   # v1 controllers or name=X; none for cgroup2
        for fstype, mountpoint, root, opts in mounts:
            if (fstype == "cgroup2" and not want) or (fstype == "cgroup" and want and want <= opts):
                rel = os.path.relpath(parts[2], root)
                if rel != ".." and not rel.startswith("../"):
                    out.add(os.path.normpath(os.path.join(mountpoint, rel)))
    return out


def _state_cgroups(root, cid):
    """The cgroup directories the runtime's state names for the container,
    only those whose last component is the container ID: runc's
    state.json lists them (cgroup_paths); crun's status has one path
    (cgroup-path), relative to each hierarchy's root -- without a
    cgroupsPath crun puts the container at the root ("/ID"), not under its
    caller's cgroup as runc does, so it is not found next to ours. (A crun
    delete that met a busy memory cgroup left /sys/fs/cgroup/memory/ID
    behind, found by test_crun_on_a_hybrid_host_..., 1 selftest in 5.)"""
    found = set()
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            paths = json.load(f).get("cgroup_paths") or {}
        found |= {p for p in paths.values() if isinstance(p, str) and os.path.isabs(p)}
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(root, cid, "status")) as f:
            rel = json.load(f).get("cgroup-path")
        if isinstance(rel, str) and os.path.isabs(rel) and ".." not in rel.split("/"):
            for _fstype, mountpoint, mroot, _opts in _cgroup_mounts():
                inside = os.path.relpath(rel, mroot)
                if inside != ".." and not inside.startswith("../"):
                    found.add(os.path.join(mountpoint, inside))
    except (OSError, ValueError, AttributeError):
        pass
    return {os.path.normpath(p) for p in found
            if os.path.basename(os.path.normpath(p)) == cid and ".." not in p.split("/")}


def _cgroup_dirs(root, cid):
    found = _state_cgroups(root, cid) if root else set()
    for own in _own_cgroup_dirs():
        path = os.path.join(own, cid)
        if os.path.isdir(path):
            found.add(path)
    return found


def _kpc_cgroup_names():
    """Container IDs that have a cgroup directory next to our own cgroup."""
    out = set()
    for own in _own_cgroup_dirs():
        try:
            out |= {n for n in os.listdir(own) if CONTAINER_ID.fullmatch(n)}
        except OSError:
            pass
    return out


def _in_cgroup(pid, cid):
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.rstrip("\n").endswith("/" + cid) for line in f)
    except OSError:
        return False


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except (OSError, IndexError):
        return True


def kill_cgroup_procs(paths: Iterable[str], member: Callable[[int], bool]) -> bool:
    """SIGKILL every live process listed in the cgroup directories PATHS
    that MEMBER(pid) says is ours; True if there was any. Each PID is
    pinned with a pidfd first and its membership checked after: a PID
    reused before the pidfd was opened is in no cgroup of ours, one reused
    after it is not the pidfd's. (engine_run.py's cleanup uses it too.)"""
    any_left = False
    for path in paths:
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            try:
                pfd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if member(pid) and not _zombie(pid):
                    any_left = True
                    signal.pidfd_send_signal(pfd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(pfd)
    return any_left


def _kill_tasks(paths, cid):
    """SIGKILL every live process in the container's cgroups; True if there
    was any."""
    return kill_cgroup_procs(paths, lambda pid: _in_cgroup(pid, cid))


def _populated(paths):
    """True while a cgroup2 directory of the container still has processes
    (cgroup.events counts them in every namespace; cgroup.procs shows only
    the ones the reader's PID namespace can see)."""
    for path in paths:
        try:
            with open(os.path.join(path, "cgroup.events")) as f:
                if "populated 1" in f.read():
                    return True
        except OSError:
            pass
    return False


def _rmdir_cgroup(path):
    """rmdir one container cgroup (no symlink followed: its parent is
    opened O_NOFOLLOW); True when it is gone."""
    parent, name = os.path.split(path)
    try:
        fd = _open_dir(parent)
    except OSError:
        return not os.path.lexists(path)
    try:
        os.rmdir(name, dir_fd=fd)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --- removal ----------------------------------------------------------------------------------------------------

def _remove(tree, runtime, cid, deadline):
    """Delete one container: its processes (through its cgroups), the
    runtime's state, its cgroup directories, bundle and lock. Idempotent.
    Returns what is left, for the message ('' when everything is gone)."""
    root = _state_root(tree, runtime)
    cgroups = _cgroup_dirs(root, cid)
    while (_kill_tasks(cgroups, cid) or _populated(cgroups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.lexists(os.path.join(root, cid)) and not _populated(cgroups):
        # runc 1.1 (nsexec's try_bindfd) bind-mounts its own binary on a
        # file of the state directory (runc.XXXXXX) while it starts a
        # container and unmounts it a moment later: a runc killed in between
        # leaves that mount on the host, and `delete` then fails on it
        # (EBUSY). The directory is in kpc's private tree, made for this
        # container: whatever is mounted in it, kpc's runtime mounted.
        detach_mounts_under(os.path.join(root, cid))
        left = max(1.0, deadline - time.monotonic())
        try:
            subprocess.run(_runtime_cmd(root, runtime, "delete", cid), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=min(10.0, left))
        except (OSError, subprocess.TimeoutExpired):
            pass
    busy = set(cgroups)
    while busy:
        _kill_tasks(busy, cid)
        busy = {p for p in busy if not _rmdir_cgroup(p)}
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    left = sorted(busy)
    if os.path.lexists(os.path.join(root, cid)):
        left.append(os.path.join(root, cid))
    if not _rmtree_at(tree[BUNDLES_DIR], cid):
        left.append(f"{KPC_OCI}/{BUNDLES_DIR}/{cid}")
    if not left:
        try:
            os.unlink(cid + ".lock", dir_fd=tree[LOCKS_DIR])
        except FileNotFoundError:
            pass
    return ", ".join(left)


def _container_ids(tree, runtime):
    """Every kpc container ID that has a lock, a bundle, runtime state or a
    cgroup directory."""
    ids = {n[:-len(".lock")] for n in os.listdir(tree[LOCKS_DIR]) if n.endswith(".lock")}
    ids |= set(os.listdir(tree[BUNDLES_DIR]))
    name = _runtime_name(runtime)
    try:
        ids |= set(os.listdir(os.path.join(f"{KPC_OCI}/{STATE_DIR}", name)))
    except FileNotFoundError:
        pass
    ids |= _kpc_cgroup_names()
    return {i for i in ids if CONTAINER_ID.fullmatch(i)}


def sweep(runtime: str, budget_s: float = 10.0, tree: dict[str, int] | None = None) -> str:
    """Delete the containers whose wrapper and runtime process are both
    gone (their lock can be taken): the second line behind the launcher's
    per-run cleanup. Quiet; returns what could not be removed."""
    own = tree is None
    tree = _open_tree(create=False) if own else tree
    if tree is None:
        return ""
    left = []
    try:
        deadline = time.monotonic() + budget_s
        for cid in sorted(_container_ids(tree, runtime)):
            fd = _take_lock(tree, cid)
            if fd is None:
                continue
            try:
                what = _remove(tree, runtime, cid, min(deadline, time.monotonic() + 3.0))
                if what:
                    left.append(what)
            finally:
                if fd >= 0:
                    os.close(fd)
    finally:
        if own:
            _close_tree(tree)
    return ", ".join(left)


def cleanup(runtime: str, run_id: str, budget_s: float = 15.0) -> str:
    """Delete every container of one run (ID-*), however the run ended.
    The launcher calls this after the run's process tree is gone, so a lock
    still held is waited for only briefly (a sweep may be removing the same
    container) and then ignored. Returns what could not be removed."""
    tree = _open_tree(create=False)
    if tree is None:
        return ""
    left = []
    try:
        deadline = time.monotonic() + budget_s
        for cid in sorted(i for i in _container_ids(tree, runtime) if i.startswith(run_id + "-")):
            fd = _take_lock(tree, cid, wait_s=2.0)
            try:
                what = _remove(tree, runtime, cid, deadline)
                if what:
                    left.append(what)
            finally:
                if fd is not None and fd >= 0:
                    os.close(fd)
    finally:
        _close_tree(tree)
    return ", ".join(left)


# --- crun on a hybrid host -----------------------------------------------------------------------------------------

UNIFIED = "/sys/fs/cgroup/unified"


def hybrid_with_v2_controllers() -> bool:
    """True on a host crun refuses: /sys/fs/cgroup a tmpfs (v1), a cgroup2
    mount at /sys/fs/cgroup/unified, and controllers in it."""
    mounts = {(mp, fstype) for fstype, mp, _, _ in _cgroup_mounts()}
    if ("/sys/fs/cgroup", "cgroup2") in mounts or (UNIFIED, "cgroup2") not in mounts:
        return False
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
            return bool(f.read().strip())
    except OSError:
        return False


def _detach_unified():
    """preexec_fn for crun's `run`: a private mount namespace without the
    hybrid cgroup2 mount. Async-signal-safe enough: the wrapper has one
    thread, and this touches no signal state (the runtime must see the
    caller's)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:                                   # CLONE_NEWNS
        os._exit(125)
    if libc.mount(None, b"/", None, ctypes.c_ulong(0x4000 | 0x40000), None) != 0:   # MS_REC|MS_PRIVATE
        os._exit(125)
    libc.umount2(UNIFIED.encode(), 2)                                    # MNT_DETACH


# --- running ----------------------------------------------------------------------------------------------------

# --- shared with engine_run.py: the observation fd, signals, the kill series, usage --------------------------------

# SIGCONT, SIGTSTP, SIGTTIN, SIGTTOU: sent alone, after the others (signal(7):
# generating SIGCONT discards pending stop signals, and a stop signal a
# pending SIGCONT -- two of them sent at once can lose one)
JOB_CONTROL = (18, 20, 21, 22)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)


def obs_fd() -> int:
    """The observation fd the launcher gave the wrapper (KPC_OBS_FD, 3)."""
    return int(os.environ.get("KPC_OBS_FD", "3"))


def record_skip(reason: str, who: str = "kpc-oci") -> None:
    """A `skip` record on the observation fd (stderr when it is gone)."""
    try:
        os.write(obs_fd(), (json.dumps({"skip": reason[:900]}) + "\n").encode())
    except OSError:
        sys.stderr.write(f"{who}: skip: {reason}\n")


def report_lines(lines: list[str], fd: int | None = None) -> None:
    """Plain lines for the probe on the observation fd (facts about the
    runtime or engine, after the fact); a closed fd is not an error."""
    for line in lines:
        try:
            os.write(obs_fd() if fd is None else fd, (line + "\n").encode())
        except OSError:
            pass


def forward_signals(proc: subprocess.Popen) -> None:
    """What the engine sends the wrapper goes on to PROC (the runtime or the
    engine client, which proxies it into the container). Installed after
    the spawn: a handler set before it would reset an ignored disposition
    the runtime must see."""
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))


def kill_signals() -> list[int]:
    """KPC_KILL_SIGNALS=1,2,... (runtime_delivers_every_signal sets it):
    SIGUSR2 to the wrapper means `kill` of its container with each signal
    N in turn, each reported as "kill N RC" on the observation fd, then
    "kills done" (podman's test/system/130-kill.bats). [] when not asked."""
    return [int(w) for w in os.environ.get("KPC_KILL_SIGNALS", "").split(",") if w.isdigit() and 1 <= int(w) <= 64]


def kill_in_series(signals: list[int], kill_one: Callable[[int], None], jobs: int) -> None:
    """KILL_ONE(n) for every signal: a few at a time (each signal is
    distinct: the order does not matter), then SIGCONT and the stop
    signals one at a time, last (JOB_CONTROL)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(kill_one, [n for n in signals if n not in JOB_CONTROL]))
    for n in signals:
        if n in JOB_CONTROL:
            kill_one(n)


def parse_wrapper_argv(argv: list[str], flags: Iterable[str], valued: Iterable[str], usage: str,
                       error: type[Exception]) -> tuple[dict, list[str]]:
    """A wrapper's words: FLAGS (True when given), VALUED options (their
    value), then `--` and the probe. -> (options, probe argv); ERROR(message)
    is raised for a word it does not know or a missing value."""
    opts, rest = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest = argv[i + 1:]
            break
        if a in flags:
            opts[a] = True
            i += 1
        elif a in valued:
            if i + 1 >= len(argv):
                raise error(f"{a} needs a value ({usage})")
            opts[a] = argv[i + 1]
            i += 2
        else:
            raise error(f"unknown argument '{a}' ({usage})")
    return opts, rest


def wrapper_main(name: str, errors: type[Exception] | tuple[type[Exception], ...], body: Callable[[], int]) -> int:
    """BODY() as a wrapper's main: its errors (ERRORS: bad usage) are one
    line and exit 2, an OSError one line and exit 1."""
    try:
        return body()
    except errors as e:
        sys.stderr.write(f"kpc: {name}: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"kpc: {name}: {e}\n")
        return 1


def cleanup_status(what: str, run_id: str, left: str) -> int:
    """The exit status of `--cleanup`: 1, said on stderr, when something
    of the run could not be removed."""
    if left:
        sys.stderr.write(f"kpc: {what} cleanup of {run_id}: could not remove {left}\n")
        return 1
    return 0


def _read_at(dir_fd, name, limit=65536):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _logged_error(text):
    """The last error the runtime wrote to its own --log (JSON lines)."""
    msg = ""
    for line in (text or "").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal") and rec.get("msg"):
            msg = str(rec["msg"]).strip().splitlines()[-1]
    return msg


def _write_bundle(bundle_fd, probe_argv):
    os.mkdir("rootfs", 0o755, dir_fd=bundle_fd)
    fd = os.open("config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=bundle_fd)
    with os.fdopen(fd, "w") as f:
        json.dump(config(probe_argv, _build_dir()), f, indent=1)


def run(runtime: str, run_id: str, probe_argv: list[str]) -> int:
    name = os.path.basename(runtime)
    tree = _open_tree(create=True)
    root = _state_root(tree, runtime)
    if os.getpid() != 1:
        # As PID 1 of its own namespace (runtime_pid1_duties:pid1_*) the
        # wrapper cannot see, let alone kill, other containers' processes.
        sweep(runtime, budget_s=5.0, tree=tree)
    cid = f"{run_id}-{secrets.token_hex(4)}"
    lock_fd = _hold_lock(tree, cid)
    bundle = f"{KPC_OCI}/{BUNDLES_DIR}/{cid}"
    rc = 1
    try:
        os.mkdir(cid, 0o700, dir_fd=tree[BUNDLES_DIR])
        bundle_fd = _open_dir(cid, tree[BUNDLES_DIR])
        try:
            _write_bundle(bundle_fd, probe_argv)
            fd3 = obs_fd()
            proc = subprocess.Popen(_runtime_cmd(root, runtime, *_runtime_log_args(runtime, bundle + "/runtime.log"),
                                                 "run", "--bundle", bundle, "--pid-file", bundle + "/pid",
                                                 "--preserve-fds", "1", cid),
                                    pass_fds=((fd3,) if fd3 == 3 else ()) + (lock_fd,),
                                    stdin=subprocess.DEVNULL, restore_signals=True,
                                    preexec_fn=_detach_unified if name.startswith("crun") and
                                    hybrid_with_v2_controllers() else None)
            forward_signals(proc)
            series = _kill_series(root, runtime, cid, fd3)
            if series:
                signal.signal(signal.SIGUSR2, series)
            rc = proc.wait()
            for t in (series.threads if series else ()):
                t.join(timeout=30)   # its last lines ("kills done") before we are gone
            started = _read_at(bundle_fd, "pid") is not None
            error = _logged_error(_read_at(bundle_fd, "runtime.log"))
            if rc > 0 and not started and error:
                record_skip(f"{name} cannot run a container here: {error}")
                rc = 0
        finally:
            os.close(bundle_fd)
    finally:
        _remove(tree, runtime, cid, time.monotonic() + 10.0)
        os.close(lock_fd)
        _close_tree(tree)
    return rc if rc >= 0 else 128 - rc


def _kill_series(root, runtime, cid, fd):
    """KPC_KILL_SIGNALS=1,2,... (runtime_delivers_every_signal): a SIGUSR2
    handler that runs `RUNTIME kill ID N` for each N in turn (from the
    host's namespace: crun too), writing "kill N RC" per signal and then
    "kills done" on the observation fd FD. None when not asked."""
    sigs = kill_signals()
    if not sigs:
        return None

    def one(n):
        try:
            rc = subprocess.run(_runtime_cmd(root, runtime, "kill", cid, str(n)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode
        except subprocess.TimeoutExpired:   # killed by run(): reported as a refusal
            rc = -1
        report_lines([f"kill {n} {rc}"], fd)

    def series():
        kill_in_series(sigs, one, jobs=4)
        report_lines(["kills done"], fd)

    def handler(_signum, _frame):
        t = threading.Thread(target=series, daemon=True)
        t.start()
        handler.threads.append(t)
    handler.threads = []
    return handler


USAGE = ("usage: oci_run.py --runtime PATH [--id kpc-<16 hex>] -- PROBE [ARGS...] | "
         "oci_run.py --cleanup --runtime PATH --id kpc-<16 hex>")


def _parse(argv):
    """-> (mode, runtime, run_id, probe_argv); OciError for bad usage."""
    opts, rest = parse_wrapper_argv(argv, ("--cleanup",), ("--runtime", "--id"), USAGE, OciError)
    mode = "cleanup" if opts.get("--cleanup") else "run"
    runtime, run_id = opts.get("--runtime"), opts.get("--id")
    if not runtime or not os.path.isabs(runtime):
        raise OciError(f"--runtime needs an absolute path ({USAGE})")
    _runtime_name(runtime)
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise OciError(f"--id '{run_id}': expected kpc- and 16 lowercase hex digits")
    if mode == "cleanup":
        if run_id is None or rest:
            raise OciError(f"--cleanup needs --id and no probe ({USAGE})")
    elif not rest:
        raise OciError(f"no probe after -- ({USAGE})")
    return mode, runtime, run_id, rest


def main(argv: list[str]) -> int:
    def body():
        mode, runtime, run_id, probe_argv = _parse(argv)
        if mode == "cleanup":
            return cleanup_status("oci", run_id, cleanup(runtime, run_id))
        return run(runtime, run_id or "kpc-" + secrets.token_hex(8), probe_argv)
    return wrapper_main("oci_run", OciError, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
