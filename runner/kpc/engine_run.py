"""Run a probe in a container of a real container engine (podman, docker):
the --runtime prefix for `podman`, `podman:init`, `docker`, `docker:init`.

    /usr/bin/python3 runner/kpc/engine_run.py --engine podman [--init] --id kpc-<16 hex> -- PROBE ARGS...
    /usr/bin/python3 runner/kpc/engine_run.py --cleanup --id kpc-<16 hex>

No image registry, no user state. The engine runs in a private mount
namespace whose /run is an empty tmpfs, with the run's directory
/run/kpc-oci/engines/ID (0700, root's, entered without following symlinks:
rootfs directories, logs, pid files, the lock) carried over at its own
path. The engine's state lives in that namespace's /run/kpc (podman's
store, run root and tmpdir; dockerd's data root, exec root and socket),
and so does what an engine writes to fixed places in /run -- runc's state
in /run/runc, containerd's shim sockets in /run/containerd/s,
/run/docker/plugins, podman's /run/libpod: none of it is the host's, and
all of it vanishes with the namespace. /etc/docker is hidden by a tmpfs
(dockerd writes key.json there). Its cgroups are under
/kpc-engine-<16 hex> in every hierarchy (--cgroup-parent; dockerd enters
there before it execs, its containerd and shims follow).

podman 4.3.1 (research notes, engines.md s.1):
  podman --root/--runroot/--tmpdir /run/kpc/podman/... (the runroot must
  be under 50 characters) with CONTAINERS_CONF and CONTAINERS_STORAGE_CONF
  pointing at kpc's own files (file locks in the private tmpdir, not the
  host's /dev/shm/libpod_lock; no events log),
  `run --rm --network none --runtime runc --cgroup-manager cgroupfs`, the
  rlimits given explicitly (podman's defaults need CAP_SYS_RESOURCE, and
  podman caps its own RLIMIT_NPROC at 32768), an empty rootfs directory
  (--rootfs), kpc's build directory bind-mounted read-only, and the
  observation fd 3 passed with --preserve-fds 1. `--init` = catatonit.
docker 20.10 (s.2): a private dockerd per container (no bridge, no
  iptables, no ip_forward, the vfs storage driver, its own data root, exec
  root, socket, config file), an image made by `docker import` of an empty
  tar, the build bind-mounted read-only, /tmp a tmpfs. Docker cannot pass a
  file descriptor into a container: the workload writes its observations
  to its stdout (KPC_OBS_FD=1), which `docker run` writes to kpc's fd 3.
  `--init` = tini (docker-init). The daemon is started with the signal
  state the wrapper inherited (the launcher's dirty caller): it is the
  daemon's state, not the client's, that a container gets.

The engine client is the wrapper's child; signals sent to the wrapper are
forwarded to it (both clients proxy them into the container). SIGUSR2 is
a request to the engine instead when the probe set one of:
KPC_ENGINE_STOP_GRACE=N (`ENGINE stop -t N`, engine_stop_grace),
KPC_ENGINE_KILL=1 (`ENGINE kill`, engine_fuse_kill; once the client has
ended the wrapper reports "engine request exited RC MS" and "engine ps_a N"
on the observation fd), KPC_KILL_SIGNALS=1,2,... (`ENGINE kill -s N` for
each, reported "kill N RC" and "kills done"; runtime_delivers_every_signal).
KPC_ENGINE_FUSE=1 gives the container /dev/fuse and CAP_SYS_ADMIN (its
process mounts FUSE itself: story 002). The engine's
output is the wrapper's own stderr; a run that fails before any container
started (exit 125-127 and no container pid) is a `skip` whose reason is the
engine's own last error line.

Cleanup. `--cleanup --id ID` (the launcher runs it once the run's process
tree is gone, however the run ended) SIGKILLs every process left in the
run's cgroups (each checked through a pidfd), detaches what is still
mounted under the run's directory, removes the cgroups and the directory.
Nothing of the engine lives anywhere else.

Sweep. Each wrapper holds a shared flock on the run directory's `lock`
for its life; `sweep()` (the runner, at the end of a session) removes the
run directories nobody holds whose cgroups have no process left -- runs
whose cleanup never ran. A container whose wrapper was killed but which
still runs (runtime_pid1_duties:child_runtime_sigkill watches one) is
left alone.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import os
import resource
import re
import secrets
import signal
import subprocess
import sys
import tarfile
import io
import threading
import time

try:
    from . import oci_run
except ImportError:   # run as a script (the --runtime prefix): runner/kpc is sys.path[0]
    import oci_run

ENGINES_DIR = "engines"
ENGINES = {"podman": "/usr/bin/podman", "docker": "/usr/bin/docker"}
DOCKERD = "/usr/sbin/dockerd"
RUN_ID = oci_run.RUN_ID
PRIVATE_STATE = "/run/kpc"   # inside the private mount namespace only (private_run)
SWEEP_MIN_AGE_S = 30
KILL_SERIES_JOBS = 6   # engine kill commands at a time (runtime_delivers_every_signal)
PODMAN_NPROC_CAP = 32768   # podman lowers its own RLIMIT_NPROC to this at start (strace, research s.1)


class EngineError(Exception):
    """A message for the user (one line)."""


def cgroup_parent(run_id: str) -> str:
    return "/kpc-engine-" + run_id[len("kpc-"):]


def run_dir(run_id: str) -> str:
    return f"{oci_run.KPC_OCI}/{ENGINES_DIR}/{run_id}"


# --- directories ------------------------------------------------------------------------------------------------

def _open_engines(create, keep_top=None):
    """fd of /run/kpc-oci/engines (None if absent and create is False).
    KEEP_TOP: a list that gets the top's fd, left open -- its shared lock
    keeps remove_empty_layout away until the caller has made its entry."""
    top = oci_run.open_top(create)
    if top is None:
        return None
    if keep_top is not None:
        keep_top.append(os.dup(top))
    try:
        return oci_run.private_dir_if(top, ENGINES_DIR, f"{oci_run.KPC_OCI}/{ENGINES_DIR}", create)
    finally:
        os.close(top)


def _subdirs(base_fd, base, *names):
    """Create (0700) or enter base/NAME/... one level at a time, without
    following symlinks; returns the path."""
    fd = os.dup(base_fd)
    path = base
    try:
        for n in names:
            path = f"{path}/{n}"
            nfd = oci_run._private_dir(fd, n, path)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    return path


def _write_new(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _write_once(path, text):
    try:
        _write_new(path, text)
    except FileExistsError:
        pass


# --- a private mount namespace ----------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MS_BIND, MS_NOSUID, MS_NODEV = 0x4000, 0x40000, 0x1000, 0x2, 0x4
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429            # the same number on every architecture
AT_FDCWD = ctypes.c_int(-100)
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise EngineError(f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None):
    _check(_libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags),
                       data and data.encode()), f"mount {target}")


def private_run(keep: str) -> None:
    """Enter a new mount namespace in which /run is an empty tmpfs and KEEP
    (the run's directory, under /run) is bound back at its own path; the
    host's /run is not touched. /etc/docker, when present, is hidden too
    (dockerd writes key.json there). The directory is carried over the
    tmpfs as a detached copy of its mount (open_tree, Linux 5.2): a bind
    from the old namespace's fd is refused (EINVAL)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    fd = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, keep.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    if fd < 0:
        _check(-1, f"open_tree {keep}")
    try:
        _mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        os.makedirs(keep, 0o700)
        _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, keep.encode(), MOVE_MOUNT_F_EMPTY_PATH),
               f"move_mount {keep}")
        if os.path.isdir("/etc/docker") and not os.path.islink("/etc/docker"):
            _mount("tmpfs", "/etc/docker", "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
    finally:
        os.close(fd)


# --- cgroups ----------------------------------------------------------------------------------------------------

def _hierarchies():
    """Mount points of the host's cgroup hierarchies (root '/' mounts)."""
    return sorted({mp for fstype, mp, root, _ in oci_run._cgroup_mounts() if root == "/"})


def _cgroup_tree(run_id):
    """Every directory of the run's cgroup parent, deepest first."""
    name = cgroup_parent(run_id).lstrip("/")
    out = []
    for h in _hierarchies():
        top = os.path.join(h, name)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for dirpath, dirnames, _ in os.walk(top, followlinks=False):
            out.append(dirpath)
    return sorted(out, key=lambda p: -p.count("/"))


def _kill_cgroups(run_id, deadline):
    """SIGKILL every process in the run's cgroups until none is left."""
    mark = cgroup_parent(run_id)
    while True:
        dirs = _cgroup_tree(run_id)
        if not _kill_in(dirs, mark) and not oci_run._populated(dirs):
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def _in_run_cgroup(pid, mark):
    """PID is in the cgroup MARK (the run's cgroup parent) or below it."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any((":" + mark + "/") in line or line.rstrip("\n").endswith(":" + mark) for line in f)
    except OSError:
        return False


def _kill_in(dirs, mark):
    return oci_run.kill_cgroup_procs(dirs, lambda pid: _in_run_cgroup(pid, mark))


def _daemon_cgroups(run_id, leaf):
    """The run's cgroup LEAF in every hierarchy, created: where dockerd
    goes (its containerd and shims follow), so the cleanup finds them all."""
    out = []
    for h in _hierarchies():
        path = os.path.join(h, cgroup_parent(run_id).lstrip("/"), leaf)
        try:
            os.makedirs(path, exist_ok=True)
            out.append(os.path.join(path, "cgroup.procs"))
        except OSError:
            pass
    return out


def _enter_cgroups(procs_files):
    """preexec_fn: the child moves itself in before it execs (nothing it
    starts can be born outside)."""
    def enter():
        me = str(os.getpid()).encode()
        for path in procs_files:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, me)
                finally:
                    os.close(fd)
            except OSError:
                pass   # a hierarchy that refuses (a cpuset without cpus): the shim kills the tree anyway
    return enter


# --- cleanup ----------------------------------------------------------------------------------------------------

def cleanup(run_id: str, budget_s: float = 20.0) -> str:
    """Remove everything of one run; returns what is left ('' if nothing)."""
    deadline = time.monotonic() + budget_s
    _kill_cgroups(run_id, deadline)
    top = run_dir(run_id)
    oci_run.detach_mounts_under(top)
    left = []
    busy = _cgroup_tree(run_id)
    while busy:
        busy = [d for d in busy if not oci_run._rmdir_cgroup(d)]
        if not busy or time.monotonic() >= deadline:
            break
        _kill_in(busy, cgroup_parent(run_id))
        time.sleep(0.05)
    if busy:
        left.append(f"{len(busy)} cgroup directories ({busy[-1]} and below)" if len(busy) > 1 else busy[0])
    efd = _open_engines(create=False)
    if efd is not None:
        try:
            if not oci_run._rmtree_at(efd, run_id):
                left.append(top)
        finally:
            os.close(efd)
    return ", ".join(left)


# --- running ----------------------------------------------------------------------------------------------------

def _kpc_env():
    env = {"PATH": "/usr/bin:/bin", "KPC_TMPDIR": "/tmp"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("KPC_") and k != "KPC_TMPDIR"})
    return env


def _engine_env(home):
    """The engine client's environment: no user configuration reaches it."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8"}


def _last_error(text):
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "rror" in ln:
            return ln[:400]
    return lines[-1][:400] if lines else ""


def _record_skip(reason):
    oci_run.record_skip(reason, "kpc-engine")


def _stop_grace():
    """KPC_ENGINE_STOP_GRACE=N (engine_stop_grace sets it): SIGUSR2 to the
    wrapper means `ENGINE stop -t N` of its container, not a signal to
    forward."""
    value = os.environ.get("KPC_ENGINE_STOP_GRACE", "")
    return int(value) if value.isdigit() and 0 <= int(value) <= 300 else None


def _kill_request():
    """KPC_ENGINE_KILL=1 (engine_fuse_kill sets it): SIGUSR2 to the wrapper
    means `ENGINE kill` of its container (SIGKILL), not a signal to forward."""
    return os.environ.get("KPC_ENGINE_KILL", "") == "1"


# KPC_KILL_SIGNALS=1,2,...: SIGUSR2 to the wrapper means `ENGINE kill -s N`
# of its container for each N in turn (runtime_delivers_every_signal)
kill_signals = oci_run.kill_signals


def _request(cid):
    """What SIGUSR2 asks of the engine: a list of the engine's argument
    lists, run in turn, or None."""
    if kill_signals():
        return [["kill", "-s", str(n), cid] for n in kill_signals()]
    if _kill_request():
        return [["kill", cid]]
    grace = _stop_grace()
    return [["stop", "-t", str(grace), cid]] if grace is not None else None


def _fuse_options():
    """KPC_ENGINE_FUSE=1 (engine_fuse_kill): the container may mount FUSE
    itself -- /dev/fuse, and CAP_SYS_ADMIN (the engines' default seccomp
    profiles allow mount and unshare with it)."""
    if os.environ.get("KPC_ENGINE_FUSE", "") != "1":
        return []
    return ["--device", "/dev/fuse", "--cap-add", "SYS_ADMIN"]


def _report(lines):
    """Facts about the engine for the probe that plays its user (after the
    client ended): one line each on the observation fd."""
    oci_run.report_lines(lines)


def _after_request(requests, ps_argv, env):
    """Once the client has ended, when the probe made a request: how the
    engine's own command ended and how long it took, and how many
    containers the engine still lists (`ps -a`)."""
    if not requests or kill_signals():
        return
    out = []
    for rq in requests:
        out.append(f"engine request {'exited ' + str(rq.rc) if rq.rc is not None else 'still running'} {rq.ms}")
    p = subprocess.run(ps_argv, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    listed = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
    out.append(f"engine ps_a {len(listed) if p.returncode == 0 else 'failed ' + str(p.returncode)}")
    _report(out)


@dataclasses.dataclass
class _Request:
    """One SIGUSR2 request to the engine (a stop, a kill, a kill series)."""
    rc: int | None = None                 # how the engine's command ended (None: still running when given up)
    ms: int | None = None                 # how long it took
    running: subprocess.Popen | None = None   # the engine command now running


def _spawn_and_wait(argv, env, pass_fds, stdout=None, stderr_path=None, stop_argv=None, requests=None):
    """Start the engine client with the wrapper's signal state (SIGPIPE and
    SIGXFSZ back to default: Python ignores them), forward what the probe
    sends us, wait. STOP_ARGV: the engine command SIGUSR2 runs instead (a
    stop or a kill); a _Request for each is appended to REQUESTS. Returns (rc,
    its stderr text)."""
    errf = open(stderr_path, "w+b") if stderr_path else None
    stops = []
    series = bool(kill_signals())

    def request(_signum, _frame):
        t0 = time.monotonic()
        slot = _Request()

        def one_kill(one):
            try:
                rc = subprocess.run(one, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, timeout=60).returncode
            except subprocess.TimeoutExpired:   # killed by run(): reported as a refusal
                rc = -1
            _report([f"kill {one[one.index('-s') + 1]} {rc}"])

        def waiter():
            if series:
                # 60 engine commands one after the other took ~1 s each
                # (podman 4.3.1 here): a few at a time
                signals = [int(a[a.index("-s") + 1]) for a in stop_argv]
                by_signal = dict(zip(signals, stop_argv))
                oci_run.kill_in_series(signals, lambda n: one_kill(by_signal[n]), KILL_SERIES_JOBS)
                slot.ms = round((time.monotonic() - t0) * 1000)
                _report(["kills done"])
                return
            for one in stop_argv:
                slot.running = subprocess.Popen(one, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
                slot.rc = slot.running.wait()
            slot.ms = round((time.monotonic() - t0) * 1000)
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        stops.append((t, slot))

    try:
        proc = subprocess.Popen(argv, env=env, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=errf, restore_signals=True)
        oci_run.forward_signals(proc)
        if stop_argv:
            signal.signal(signal.SIGUSR2, request)
        rc = proc.wait()
        for t, slot in stops:
            t.join(timeout=30)
            if t.is_alive() and slot.running is not None:   # the engine's own kill/stop is stuck: report it, end it
                slot.running.kill()
                t.join(timeout=30)
                slot.rc = None
            if requests is not None:
                requests.append(slot)
        text = ""
        if errf:
            errf.seek(0)
            raw = errf.read()
            text = raw.decode("utf-8", "replace")
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
        return rc, text
    finally:
        if errf:
            errf.close()


def _rlimits():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = hard if hard != resource.RLIM_INFINITY else 1048576
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    nproc = PODMAN_NPROC_CAP if hard == resource.RLIM_INFINITY else min(hard, PODMAN_NPROC_CAP)
    return nofile, nproc


def run_podman(run_id: str, top: str, use_init: bool, probe_argv: list[str]) -> int:
    cid = f"{run_id}-{secrets.token_hex(4)}"
    cdir = f"{top}/{cid}"
    os.mkdir(cdir, 0o700)
    # podman's state is in the namespace's own /run (its runroot must be
    # under 50 characters): gone with the namespace
    base = PRIVATE_STATE + "/podman"
    os.makedirs(base, 0o700)
    rootfs = f"{cdir}/rootfs"
    os.mkdir(rootfs, 0o755)
    # kpc's own configuration (the run's containers share it): file locks
    # in the run's directory, no events log, nothing from /etc/containers
    _write_once(f"{base}/containers.conf",
                '[engine]\nlock_type = "file"\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n'
                f'runtime = "runc"\nnetwork_config_dir = "{base}/net"\nvolume_path = "{base}/volumes"\n'
                f'tmp_dir = "{base}/tmp"\n')
    _write_once(f"{base}/storage.conf",
                f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/root"\nrunroot = "{base}/run"\n')
    _write_once(f"{base}/registries.conf", "")
    env = _engine_env(base)
    env.update(CONTAINERS_CONF=f"{base}/containers.conf", CONTAINERS_STORAGE_CONF=f"{base}/storage.conf",
               CONTAINERS_REGISTRIES_CONF=f"{base}/registries.conf")
    nofile, nproc = _rlimits()
    build = oci_run._build_dir()
    argv = [ENGINES["podman"], "--root", f"{base}/root", "--runroot", f"{base}/run", "--tmpdir", f"{base}/tmp",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc",
            "run", "--rm", "--name", cid, "--label", f"kpc.run={run_id}", "--network", "none",
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}",
            "--cgroup-parent", cgroup_parent(run_id), "--pidfile", f"{cdir}/pid",
            "--preserve-fds", "1", "--read-only", "-v", f"{build}:{build}:ro", "--hostname", "kpc"]
    for k, v in _kpc_env().items():
        argv += ["-e", f"{k}={v}"]
    if use_init:
        argv += ["--init"]
    argv += _fuse_options()
    # --rootfs: the next argument is the rootfs, everything after it the command
    argv += ["--rootfs", rootfs, *probe_argv]
    obs_fd = oci_run.obs_fd()
    engine = argv[:argv.index("run")]
    stop = [engine + r for r in _request(cid)] if _request(cid) else None
    requests = []
    rc, err = _spawn_and_wait(argv, env, (3,) if obs_fd == 3 else (), stderr_path=f"{cdir}/stderr", stop_argv=stop,
                              requests=requests)
    if rc in (125, 126, 127) and not os.path.exists(f"{cdir}/pid"):
        _record_skip(f"podman cannot run a container here: {_last_error(err) or f'exit {rc}'}")
        return 0
    _after_request(requests, engine + ["ps", "-a", "-q"], env)
    return rc


def _empty_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return buf.getvalue()


def _wait_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(0.05)
    return False


def run_docker(run_id: str, top: str, use_init: bool, probe_argv: list[str]) -> int:
    did = secrets.token_hex(4)
    d = f"{top}/{run_id}-{did}"      # logs, for the cleanup's eyes
    os.mkdir(d, 0o700)
    s = PRIVATE_STATE + "/docker"    # the daemon's state: in the namespace's own /run
    for sub in ("data", "exec", "client", "home"):
        os.makedirs(f"{s}/{sub}", 0o700)
    _write_new(f"{d}/daemon.json", "{}\n")
    sock = f"{s}/docker.sock"
    env = _engine_env(f"{s}/home")
    env["DOCKER_CONFIG"] = f"{s}/client"
    client = [ENGINES["docker"], "-H", f"unix://{sock}"]
    log = open(f"{d}/dockerd.log", "wb")
    daemon = subprocess.Popen(
        [DOCKERD, "--data-root", f"{s}/data", "--exec-root", f"{s}/exec", "--pidfile", f"{s}/dockerd.pid",
         "-H", f"unix://{sock}", "--config-file", f"{d}/daemon.json", "--iptables=false", "--ip6tables=false",
         "--ip-forward=false", "--ip-masq=false", "--bridge=none", "--userland-proxy=false",
         "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs",
         "--cgroup-parent", cgroup_parent(run_id), "--log-level=warn", "--shutdown-timeout", "2"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, restore_signals=True, start_new_session=True,
        preexec_fn=_enter_cgroups(_daemon_cgroups(run_id, f"dockerd-{did}")))
    log.close()
    rc = 0
    try:
        end = time.monotonic() + 30
        while True:
            if daemon.poll() is not None:
                with open(f"{d}/dockerd.log", errors="replace") as f:
                    _record_skip(f"dockerd cannot start here: {_last_error(f.read()) or f'exit {daemon.returncode}'}")
                return 0
            p = subprocess.run(client + ["version", "--format", "{{.Server.Version}}"], env=env,
                               capture_output=True, stdin=subprocess.DEVNULL)
            if p.returncode == 0:
                break
            if time.monotonic() > end:
                _record_skip("dockerd did not answer on its socket within 30 s")
                return 0
            time.sleep(0.1)
        p = subprocess.run(client + ["import", "-", "kpc-empty:0"], env=env, input=_empty_tar(),
                           capture_output=True)
        if p.returncode != 0:
            _record_skip(f"docker cannot import an empty image here: {_last_error(p.stderr.decode(errors='replace'))}")
            return 0
        build = oci_run._build_dir()
        name = f"{run_id}-{did}"
        argv = client + ["run", "--rm", "--name", name, "--label", f"kpc.run={run_id}", "--network", "none",
                         "--read-only", "--tmpfs", "/tmp", "-v", f"{build}:{build}:ro", "--hostname", "kpc"]
        kenv = _kpc_env()
        kenv["KPC_OBS_FD"] = "1"   # no fd can be passed: stdout is the channel
        for k, v in kenv.items():
            argv += ["-e", f"{k}={v}"]
        if use_init:
            argv += ["--init"]
        argv += _fuse_options()
        argv += ["kpc-empty:0", *probe_argv]
        obs_fd = oci_run.obs_fd()
        requests = []
        rc, err = _spawn_and_wait(argv, env, (), stdout=obs_fd, stderr_path=f"{d}/stderr",
                                  stop_argv=[client + r for r in _request(name)] if _request(name) else None,
                                  requests=requests)
        if rc == 125:   # docker run's own failure: no container ran
            _record_skip(f"docker cannot run a container here: {_last_error(err) or 'exit 125'}")
            rc = 0
        else:
            _after_request(requests, client + ["ps", "-a", "-q"], env)
        return rc
    finally:
        if daemon.poll() is None:
            # `run --rm`: the daemon removed the container; one still running
            # (a probe gave up on it) is stopped by the daemon's shutdown
            daemon.send_signal(signal.SIGTERM)
            if not _wait_gone(daemon.pid, 15):
                daemon.kill()
                daemon.wait()
        # what the daemon left mounted is in our private namespace: gone with it


def _lock(dir_path, how):
    """An flock on DIR/lock (created 0600, never through a symlink); the fd,
    or None when LOCK_NB and someone else holds it."""
    fd = os.open(f"{dir_path}/lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def sweep(budget_s: float = 15.0) -> str:
    """Remove the runs of dead wrappers with nothing left running (see
    the module's doc); returns what could not be removed."""
    efd = _open_engines(create=False)
    if efd is None:
        return ""
    try:
        ids = [n for n in os.listdir(efd) if RUN_ID.fullmatch(n)]
    finally:
        os.close(efd)
    hexes = {h[len("/kpc-engine-"):] for h in (cgroup_parent(i) for i in ids)}
    for h in _hierarchies():   # a run whose directory is gone but whose cgroups stayed
        try:
            hexes |= {n[len("kpc-engine-"):] for n in os.listdir(h) if re.fullmatch(r"kpc-engine-[0-9a-f]{16}", n)}
        except OSError:
            pass
    left = []
    deadline = time.monotonic() + budget_s
    for h in sorted(hexes):
        rid = "kpc-" + h
        fd = None
        if os.path.isdir(run_dir(rid)) and not os.path.islink(run_dir(rid)):
            try:
                if time.time() - os.lstat(run_dir(rid)).st_mtime < SWEEP_MIN_AGE_S:
                    continue   # just made: its wrapper may not hold the lock yet
                fd = _lock(run_dir(rid), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            if fd is None:
                continue   # a wrapper of this run lives
        try:
            if oci_run._populated(_cgroup_tree(rid)) or any(_procs(d) for d in _cgroup_tree(rid)):
                continue   # its container still runs (its client was killed: someone watches it)
            what = cleanup(rid, budget_s=max(1.0, min(5.0, deadline - time.monotonic())))
            if what:
                left.append(what)
        finally:
            if fd is not None:
                os.close(fd)
    return ", ".join(left)


def _procs(cgroup_dir):
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return f.read().split()
    except OSError:
        return []


def run(engine: str, use_init: bool, run_id: str, probe_argv: list[str]) -> int:
    held = []
    efd = _open_engines(create=True, keep_top=held)
    try:
        top = _subdirs(efd, f"{oci_run.KPC_OCI}/{ENGINES_DIR}", run_id)
    finally:
        os.close(efd)
        for fd in held:
            os.close(fd)
    # held until the wrapper is gone (close-on-exec: the engine does not keep it)
    _lock(top, fcntl.LOCK_SH)
    private_run(top)
    if engine == "podman":
        rc = run_podman(run_id, top, use_init, probe_argv)
    else:
        rc = run_docker(run_id, top, use_init, probe_argv)
    return rc if rc >= 0 else 128 - rc


USAGE = ("usage: engine_run.py --engine podman|docker [--init] --id kpc-<16 hex> -- PROBE [ARGS...] | "
         "engine_run.py --cleanup --id kpc-<16 hex>")


def _parse(argv):
    opts, rest = oci_run.parse_wrapper_argv(argv, ("--cleanup", "--init"), ("--engine", "--id"), USAGE, EngineError)
    mode = "cleanup" if opts.get("--cleanup") else "run"
    engine, use_init, run_id = opts.get("--engine"), opts.get("--init", False), opts.get("--id")
    if run_id is None or not RUN_ID.fullmatch(run_id):
        raise EngineError(f"--id '{run_id}': expected kpc- and 16 lowercase hex digits" if run_id else
                          f"--id is required ({USAGE})")
    if mode == "cleanup":
        if rest or engine or use_init:
            raise EngineError(f"--cleanup takes only --id ({USAGE})")
    else:
        if engine not in ENGINES:
            raise EngineError(f"--engine must be podman or docker ({USAGE})")
        if not rest:
            raise EngineError(f"no probe after -- ({USAGE})")
    return mode, engine, use_init, run_id, rest


def main(argv: list[str]) -> int:
    def body():
        mode, engine, use_init, run_id, probe_argv = _parse(argv)
        if mode == "cleanup":
            return oci_run.cleanup_status("engine", run_id, cleanup(run_id))
        return run(engine, use_init, run_id, probe_argv)
    return oci_run.wrapper_main("engine_run", (EngineError, oci_run.OciError), body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
