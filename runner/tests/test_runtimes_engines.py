"""--runtime podman, podman:init, docker, docker:init (issue 19): kpc runs
its probes in containers of real engines, in private state, and leaves
nothing behind -- after a normal run, after kill -9 of the wrapper and the
engine client, after kill -9 of kpc itself. An engine that is not installed
is a skip saying which Debian package is missing."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import make_case, processes, needs_root, Scope
from kpc import engine_run, launch, oci_run, paths, runtimes
from test_cli import kpc
from test_runtimes import read_ready, run_id
from test_kill_anytime import ContainerIds

PODMAN_OK = os.access("/usr/bin/podman", os.X_OK) and os.access("/usr/bin/conmon", os.X_OK)
DOCKER_OK = os.access("/usr/bin/docker", os.X_OK) and os.access("/usr/sbin/dockerd", os.X_OK)
HAVE = {"podman": PODMAN_OK, "docker": DOCKER_OK}


def needs(engine):
    pkg = {"podman": "podman", "docker": "docker.io"}[engine]
    return pytest.mark.skipif(not HAVE[engine], reason=f"{engine} is not installed (Debian package {pkg})")


# What an engine would create in the host's fixed places if kpc's private
# state leaked (research engines.md: default store, runtime state, shim
# sockets, plugins, the daemon's key).
HOST_PLACES = ["/var/lib/containers", "/run/containers", "/run/libpod", "/etc/containers/networks", "/run/runc",
               "/run/crun", "/run/containerd", "/run/docker", "/var/lib/docker", "/etc/docker/key.json",
               "/run/netns", "/dev/shm/libpod_lock"]


def host_state():
    """{place: its entries} for the places above that exist."""
    out = {}
    for p in HOST_PLACES:
        if os.path.isdir(p) and not os.path.islink(p):
            out[p] = sorted(os.listdir(p))
        elif os.path.lexists(p):
            out[p] = "file"
    return out


def engine_leftovers(rid):
    """The run's directory, its cgroups, and processes naming the run."""
    hexid = rid[len("kpc-"):]
    found = glob.glob(engine_run.run_dir(rid)) + glob.glob(f"/sys/fs/cgroup/*/kpc-engine-{hexid}")
    for pid in processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if hexid.encode() in f.read():
                    found.append(f"process {pid}")
        except OSError:
            pass
    return found


@pytest.fixture(autouse=True)
def _end_as_a_session_does():
    """Tests that start the engine wrapper themselves (no kpc session
    around it) end as a session does: the empty /run/kpc-oci layout the
    wrapper made is removed (rmdir only, never while a kpc holds it)."""
    yield
    if os.geteuid() == 0:
        oci_run.remove_empty_layout()


def cleanup(rid):
    return subprocess.run([runtimes.PYTHON, runtimes.ENGINE_WRAPPER, "--cleanup", "--id", rid], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def start_engine(engine, rid, argv, init=False, env_extra=None):
    """The wrapper as the launcher starts it: fd 3 is a pipe back to us."""
    r, w = os.pipe()
    env = dict(os.environ, KPC_OBS_FD="3", **(env_extra or {}))
    p = subprocess.Popen([runtimes.PYTHON, runtimes.ENGINE_WRAPPER, "--engine", engine] + (["--init"] if init else [])
                         + ["--id", rid, "--", *argv], env=env, preexec_fn=lambda: os.dup2(w, 3), close_fds=False,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    os.close(w)
    return p, r


def workloads(token):
    out = []
    for pid, (_, state, comm) in processes().items():
        if comm == "pid1_workload" and state != "Z":
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        out.append(pid)
            except OSError:
                pass
    return out


# --- without an engine ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(runtimes.ENGINES))
def test_an_engine_resolves_to_kpcs_wrapper_with_a_cleanup(name):
    rt = runtimes.resolve(name)
    engine = name.split(":")[0]
    assert rt.name == name and rt.engine == engine and rt.profile == "mask-through"
    assert rt.prefix[1] == runtimes.ENGINE_WRAPPER and rt.oci_runtime.startswith("runc")
    assert ("--init" in rt.prefix) == name.endswith(":init")
    assert rt.describe()["engine"] == engine
    if rt.unavailable:
        assert "not installed (Debian package" in rt.unavailable or "needs root" in rt.unavailable, rt.unavailable
        return
    prefix, clean = rt.for_run()
    rid = prefix[prefix.index("--id") + 1]
    assert re.fullmatch(r"kpc-[0-9a-f]{16}", rid) and prefix[-1] == "--"
    assert prefix[:4] == [runtimes.PYTHON, runtimes.ENGINE_WRAPPER, "--engine", engine]
    assert ("--init" in prefix) == name.endswith(":init")
    assert clean == [runtimes.PYTHON, runtimes.ENGINE_WRAPPER, "--cleanup", "--id", rid]


@pytest.mark.parametrize("name,pkg", [("podman", "podman"), ("podman:init", "podman"), ("docker", "docker.io"),
                                      ("docker:init", "docker.io")])
def test_a_missing_engine_says_which_package(name, pkg, monkeypatch):
    monkeypatch.setattr(runtimes.os, "access", lambda path, mode: False)
    rt = runtimes.resolve(name)
    assert rt.unavailable.endswith(f"not installed (Debian package {pkg}" + (", catatonit)" if name == "podman:init"
                                                                             else ")")), rt.unavailable


def test_an_engine_start_extends_the_deadline():
    rt = runtimes.resolve("docker")
    rt.unavailable = ""
    case = make_case("inherited_signal_state", area="runtimes", flavors=("host",))
    e = launch.plan_entry("r1", case, None, "host", runtime=rt)
    assert e["timeout_ms"] == case.timeout_ms + runtimes.ENGINE_START_MS["docker"]
    assert e["cleanup"][:3] == [runtimes.PYTHON, runtimes.ENGINE_WRAPPER, "--cleanup"]
    wl = make_case("runtime_pid1_duties", area="runtimes", flavors=("host",))
    wl.runtime_workload = True
    e = launch.plan_entry("r2", wl, "child_exit_status", "host", runtime=rt)
    assert e["timeout_ms"] == wl.timeout_ms + 5 * runtimes.ENGINE_START_MS["docker"]
    tini = runtimes.Runtime("tini", ["/usr/bin/tini", "-s", "--"], "pass-through")
    assert launch.plan_entry("r3", case, None, "host", runtime=tini)["timeout_ms"] == case.timeout_ms


def test_run_help_names_the_engines(built):
    p = kpc("run", "--help")
    assert p.returncode == 0 and "podman:init" in p.stdout.replace("\n", " ") and "docker:init" in p.stdout


@pytest.mark.parametrize("args,message", [
    (["--engine", "podman", "--id", "kpc-xyz", "--", "/bin/true"], "--id 'kpc-xyz'"),
    (["--engine", "containerd", "--id", "kpc-0123456789abcdef", "--", "/bin/true"], "podman or docker"),
    (["--engine", "podman", "--", "/bin/true"], "--id is required"),
    (["--engine", "podman", "--id", "kpc-0123456789abcdef"], "no probe"),
    (["--cleanup", "--engine", "docker", "--id", "kpc-0123456789abcdef"], "--cleanup takes only --id"),
    (["--engine"], "--engine needs a value"),
    (["--frobnicate"], "unknown argument"),
])
def test_bad_engine_wrapper_arguments_are_one_line_and_exit_2(args, message):
    p = subprocess.run([runtimes.PYTHON, runtimes.ENGINE_WRAPPER, *args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and p.stderr.startswith("kpc: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr


# --- with an engine ---------------------------------------------------------------------------------------------

@needs_root
@needs("podman")
def test_an_engine_that_refuses_is_a_skip_in_its_own_words():
    """podman fails before any container starts (here: the build directory
    to bind-mount is missing): a skip whose reason is podman's own line."""
    rid = run_id()
    before = host_state()
    p, r = start_engine("podman", rid, ["/bin/true"], env_extra={"KPC_BUILD_DIR": "/nonexistent-kpc-build-dir"})
    try:
        out, err = p.communicate(timeout=60)
        obs = os.read(r, 4096).decode()
    finally:
        os.close(r)
    assert p.returncode == 0, err
    reason = json.loads(obs)["skip"]
    assert reason.startswith("podman cannot run a container here: Error: ")
    assert reason[len("podman cannot run a container here: "):] in err.decode()   # podman said it
    c = cleanup(rid)
    assert (c.returncode, c.stderr) == (0, ""), c.stderr
    assert engine_leftovers(rid) == [] and host_state() == before


@needs_root
@pytest.mark.parametrize("engine,init", [pytest.param("podman", False, marks=needs("podman")),
                                         pytest.param("podman", True, marks=needs("podman")),
                                         pytest.param("docker", False, marks=needs("docker")),
                                         pytest.param("docker", True, marks=needs("docker"))])
def test_kill_9_of_wrapper_and_client_then_cleanup_leaves_nothing(engine, init, built):
    """The wrapper and the engine client are SIGKILLed while the container
    runs (conmon, dockerd, containerd and its shim live on, outside their
    process group): the container runs on; the cleanup argv kills it and
    the engine through the run's cgroups and removes the run's directory.
    The host's engine places are as they were (kpc's state was private)."""
    rid = run_id()
    token = "kpc-token-" + rid
    before = host_state()
    p, r = start_engine(engine, rid, [os.path.join(paths.probe_dir(), "pid1_workload"), "sleep", token], init=init)
    try:
        ready = read_ready(r, 60)
        assert ready.startswith("ready"), (ready, p.stderr.read1().decode() if p.poll() is not None else "")
        assert os.path.isdir(engine_run.run_dir(rid)) and glob.glob(f"/sys/fs/cgroup/*/kpc-engine-{rid[4:]}")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(0.5)
        assert workloads(token), "the container should outlive its client"
        c = cleanup(rid)
        assert (c.returncode, c.stdout, c.stderr) == (0, "", ""), c.stderr
        assert not workloads(token)
        end = time.monotonic() + 10
        while engine_leftovers(rid) and time.monotonic() < end:   # zombies being reaped by their parents
            time.sleep(0.1)
        assert engine_leftovers(rid) == []
        assert host_state() == before
        again = cleanup(rid)
        assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    finally:
        os.close(r)
        cleanup(rid)


@needs_root
@pytest.mark.skipif(not (PODMAN_OK and DOCKER_OK), reason="podman and docker.io are not both installed")
def test_engines_give_verdicts_judged_by_their_rows_and_leave_nothing(tmp_path, built, scope):
    """Every runtime case through each engine: verdicts, not skips. The
    podman rows do not depend on 4.3.1's sig-proxy race (reported)."""
    before = host_state()
    ids = ContainerIds(scope)   # the run IDs in the wrappers' command lines: their state is looked for
    ids.start()
    out = tmp_path / "e.json"
    try:
        # the runtime cases of issue 19's first round (story 002 and the 64
        # signals have tests of their own below: together they outlast a
        # kpc() call); of the PID-1 duties every one as the engine's child,
        # and as PID 1 the orphans (the one row of its own for the engines)
        cases = [a for c in ("inherited_signal_state", "runtime_pid1_duties:child_*",
                             "runtime_pid1_duties:pid1_orphan_reaping", "engine_stop_grace",
                             "runtime_closes_leaked_fds") for a in ("--case", c)]
        p = kpc("run", "--no-build", "--runtime", "podman,podman:init,docker,docker:init", *cases, "--json", str(out),
                env={"TMPDIR": scope.tmp})
    finally:
        ids.stop.set()
        ids.join()
    doc = json.loads(out.read_text())
    got = {(x["case"], x["variant"] or None, x["runtime"]): x for x in doc["results"]}
    verdicts = {k: v["verdict"] for k, v in got.items()}
    want = {("inherited_signal_state", None, "podman"): "pass", ("inherited_signal_state", None, "docker"): "pass",
            ("inherited_signal_state", None, "docker:init"): "pass",
            # catatonit adds SIGTSTP|SIGTTIN|SIGTTOU to the mask, as it does outside podman
            ("inherited_signal_state", None, "podman:init"): "fail"}
    for case in ("engine_stop_grace", "runtime_closes_leaked_fds"):
        want.update({(case, None, e): "pass" for e in ("podman", "podman:init", "docker", "docker:init")})
    # Without an init the workload is the container's PID 1: it cannot die of
    # its own SIGUSR2 and leaves its orphans as zombies (xfail); each other
    # duty passes. With the engine's init every duty passes.
    for v in ("child_exit_status", "child_signal_death", "child_forwarding", "child_orphan_reaping",
              "child_runtime_sigkill", "pid1_orphan_reaping"):
        no_init = "xfail" if v.endswith(("_signal_death", "_orphan_reaping")) else "pass"
        want.update({("runtime_pid1_duties", v, "podman"): no_init, ("runtime_pid1_duties", v, "docker"): no_init,
                     ("runtime_pid1_duties", v, "podman:init"): "pass",
                     ("runtime_pid1_duties", v, "docker:init"): "pass"})
    assert verdicts == want, {k: (v["verdict"], v["reason"]) for k, v in got.items() if v["verdict"] != want.get(k)}
    assert p.returncode == 1   # the podman:init fail
    isn = {k[2]: v["observations"] for k, v in got.items() if k[0] == "inherited_signal_state"}
    assert isn["podman"]["self.blocked"] == "SIGUSR1|SIGALRM"   # podman+runc: mask-through
    assert isn["docker"]["self.blocked"] == "SIGUSR1|SIGALRM"   # the daemon kpc started dirty
    assert isn["docker:init"]["self.session_leader"] == "false"
    duty = {(v, rt): got[("runtime_pid1_duties", v, rt)] for v in ("child_orphan_reaping", "child_forwarding")
            for rt in ("docker", "podman")}
    assert duty[("child_orphan_reaping", "docker")]["observations"]["orphan.after_exit"] == "zombie"
    assert duty[("child_forwarding", "docker")]["observations"]["forwards.sigterm"] == "true"
    assert duty[("child_forwarding", "podman")]["expected"]["forwards.sigterm"]["value"] == "*"
    envr = doc["environment"]["runtimes"]
    assert envr["docker"]["engine"] == "docker" and envr["podman"]["oci_runtime"].startswith("runc")
    assert not scope.settle(), scope.leftovers()
    assert len(ids.ids) >= 16   # 36 runs, each with its run ID (sampled)
    assert not [(i, engine_leftovers(i)) for i in ids.ids if engine_leftovers(i)]
    assert host_state() == before


@needs_root
@pytest.mark.skipif(not (PODMAN_OK and DOCKER_OK), reason="podman and docker.io are not both installed")
@pytest.mark.parametrize("what", ["runner", "both"])
def test_kill_9_of_kpc_during_engine_runs_leaves_nothing(what, tmp_path, built):
    """kill -9 of kpc (and of kpc-launch) while podman and docker
    containers run: the shims kill the trees and run each run's cleanup."""
    scope = Scope()
    before = host_state()
    ids = ContainerIds(scope)
    ids.start()
    try:
        # (the duty whose container outlives its client: 4 runs, 2 per engine)
        runner = subprocess.Popen([os.path.join(paths.ROOT, "kpc"), "run", "--no-build", "--runtime", "podman,docker",
                                   "--case", "runtime_pid1_duties:*_runtime_sigkill", "--json",
                                   str(tmp_path / "k.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=paths.ROOT,
                                  env=scope.env())
        # wait until both engines have containers running
        end = time.monotonic() + 60
        seen = set()
        while time.monotonic() < end and seen != {"conmon", "containerd-shim"}:
            seen |= {comm for pid, (_, _, comm) in scope.processes().items()
                     if comm in ("conmon", "containerd-shim")}
            time.sleep(0.1)
        assert seen == {"conmon", "containerd-shim"}, seen
        if what == "both":
            for pid, (ppid, _, comm) in processes().items():
                if ppid == runner.pid and comm == "kpc-launch":
                    os.kill(pid, signal.SIGKILL)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        left = scope.settle(60)
        ids.stop.set()
        ids.join()
        assert not left, left
        assert ids.ids
        end = time.monotonic() + 20
        while time.monotonic() < end and any(engine_leftovers(i) for i in ids.ids):
            time.sleep(0.1)
        assert not [(i, engine_leftovers(i)) for i in ids.ids if engine_leftovers(i)]
        assert host_state() == before
    finally:
        ids.stop.set()
        scope.close()


@needs_root
@needs("podman")
def test_a_sweep_removes_dead_runs_and_spares_a_running_container(monkeypatch, built):
    """The session's sweep (behind each run's cleanup): a run whose wrapper
    and client were killed but whose container still runs is spared; once
    nothing runs, the sweep removes it."""
    monkeypatch.setattr(engine_run, "SWEEP_MIN_AGE_S", 0)
    dead = run_id()
    token = "kpc-token-" + dead
    p, r = start_engine("podman", dead, [os.path.join(paths.probe_dir(), "pid1_workload"), "sleep", token])
    try:
        assert read_ready(r, 60).startswith("ready")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        engine_run.sweep()
        assert workloads(token) and os.path.isdir(engine_run.run_dir(dead))   # still running: spared
        for pid in workloads(token):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 20
        while time.monotonic() < end and os.path.isdir(engine_run.run_dir(dead)):
            engine_run.sweep()   # conmon exits once its container is gone
            time.sleep(0.2)
        assert engine_leftovers(dead) == []
    finally:
        os.close(r)
        cleanup(dead)


@needs_root
def test_a_sweep_spares_a_run_whose_wrapper_holds_its_lock(monkeypatch):
    """A wrapper holds a shared lock on its run's directory for its life
    (before any container or cgroup exists, e.g. while dockerd starts)."""
    monkeypatch.setattr(engine_run, "SWEEP_MIN_AGE_S", 0)
    rid = run_id()
    efd = engine_run._open_engines(create=True)
    try:
        top = engine_run._subdirs(efd, f"{engine_run.oci_run.KPC_OCI}/engines", rid)
    finally:
        os.close(efd)
    held = engine_run._lock(top, engine_run.fcntl.LOCK_SH)
    try:
        engine_run.sweep()
        assert os.path.isdir(top)
    finally:
        os.close(held)
    engine_run.sweep()
    assert not os.path.exists(top)


@needs_root
@pytest.mark.skipif(not (PODMAN_OK and DOCKER_OK), reason="podman and docker.io are not both installed")
def test_story_004_through_the_engines_is_the_grace_period_then_sigkill(tmp_path, built, scope):
    out = tmp_path / "s.json"
    p = kpc("run", "--no-build", "--runtime", "podman,docker:init,tini", "--case", "engine_stop_grace", "--json",
            str(out), env={"TMPDIR": scope.tmp})
    assert p.returncode == 0, p.stdout + p.stderr
    res = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    for name in ("podman", "docker:init"):
        r = res[name]
        assert r["verdict"] == "pass", (name, r["reason"])
        assert r["observations"]["stop.client_status"] == "exited 137"
        assert int(r["notes"]["stop.ms"]) >= 1900
    # not an engine: nothing to ask for a stop
    assert res["tini"]["verdict"] == "skip" and "container engine" in res["tini"]["reason"]
    assert not scope.settle(), scope.leftovers()


@needs_root
@needs("podman")
@pytest.mark.parametrize("grace", [0, 2])
def test_the_wrappers_stop_request_is_the_engines_stop_with_that_grace(grace, built):
    """SIGUSR2 to the wrapper with KPC_ENGINE_STOP_GRACE=N is `podman stop
    -t N`: with 0 the stubborn workload is killed at once, with 2 after 2 s
    (so engine_stop_grace's timing tells a grace period from none)."""
    rid = run_id()
    p, r = start_engine("podman", rid, [os.path.join(paths.probe_dir(), "pid1_workload"), "stubborn",
                                        "kpc-token-" + rid], env_extra={"KPC_ENGINE_STOP_GRACE": str(grace)})
    try:
        assert read_ready(r, 60).startswith("ready")
        t0 = time.monotonic()
        p.send_signal(signal.SIGUSR2)
        assert p.wait(timeout=30) == 137
        took = time.monotonic() - t0
        assert (took >= grace - 0.1) and (took < grace + 1.5), took
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        os.close(r)
        cleanup(rid)
    assert engine_leftovers(rid) == []


@needs_root
@pytest.mark.parametrize("engine,daemon", [pytest.param("docker", "dockerd", marks=needs("docker")),
                                           pytest.param("podman", "conmon", marks=needs("podman"))])
def test_an_engine_crash_leaves_nothing_after_the_cleanup(engine, daemon, built):
    """kill -9 of the engine's daemon (dockerd; podman's conmon) while the
    container runs: the wrapper ends, and the cleanup removes the container,
    whatever the engine left running (containerd, its shim), the cgroups and
    the run's directory."""
    rid = run_id()
    token = "kpc-token-" + rid
    before = host_state()
    p, r = start_engine(engine, rid, [os.path.join(paths.probe_dir(), "pid1_workload"), "sleep", token])
    try:
        assert read_ready(r, 60).startswith("ready")
        hexid = rid[len("kpc-"):].encode()
        victims = []
        for pid, (_, _, comm) in processes().items():
            if comm == daemon:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read()
                    if hexid in cmd:
                        victims.append(pid)
                except OSError:
                    pass
        assert victims, f"no {daemon} of run {rid}"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        p.wait(timeout=60)   # the wrapper ends (its client lost the engine)
        c = cleanup(rid)
        assert (c.returncode, c.stderr) == (0, ""), c.stderr
        assert not workloads(token)
        end = time.monotonic() + 10
        while engine_leftovers(rid) and time.monotonic() < end:
            time.sleep(0.1)
        assert engine_leftovers(rid) == []
        assert host_state() == before
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.close(r)
        cleanup(rid)


def _fuse_connection(path):
    return os.minor(os.stat(path).st_dev)


@needs_root
@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
@pytest.mark.skipif(not (PODMAN_OK or DOCKER_OK), reason="neither podman nor docker.io is installed")
def test_story_002_through_the_engines_hangs_aborts_only_its_connection_and_the_engine_reaps(tmp_path, built, scope):
    """A container serving its own FUSE mount, killed by its engine: kpc
    reports the hang with the stuck task's stack (fuse_flush), aborts the
    container's connection and no other (a bystander FUSE mount made on
    the host before the run still answers afterwards), and the engine then
    finishes by itself: its kill returns, its `run` client says 137, it
    lists no container. Nothing is left (processes, mounts, cgroups, the
    run directories, the host's engine places)."""
    from conftest import helper_probe
    engines = [n for n in runtimes.ENGINES if HAVE[n.split(":")[0]]]
    mnt = tmp_path / "bystander"
    mnt.mkdir()
    fs = subprocess.Popen([helper_probe("bystander_fs"), str(mnt)], stdout=subprocess.PIPE, text=True)
    before = host_state()
    ids = ContainerIds(scope)
    try:
        assert fs.stdout.readline().strip() == "ready"
        hello = mnt / "hello"
        assert hello.read_text() == "hello from a bystander\n"
        bystander = _fuse_connection(mnt)
        ids.start()
        out = tmp_path / "f.json"
        t0 = time.monotonic()
        p = kpc("run", "--no-build", "--runtime", ",".join(engines), "--case", "engine_fuse_kill", "--json", str(out),
                env={"TMPDIR": scope.tmp})
        took = time.monotonic() - t0
        ids.stop.set()
        ids.join()
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        res = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
        assert set(res) == set(engines)
        for name, r in res.items():
            assert r["verdict"] == "xfail", (name, r["verdict"], r["reason"])
            h = r["hang"]
            stuck = [t for t in h["tasks"] if t.get("stuck")]
            assert stuck and all("fuse_flush" in "".join(t["stack"]) for t in stuck), (name, stuck)
            assert h["recovered"] is True
            assert h["aborted_fuse_connections"] == [int(r["notes"]["container.fuse_connection"])], (name, h)
            assert bystander not in h["aborted_fuse_connections"]
            o = r["observations"]
            assert (o["kill.engine_kill"], o["kill.client_status"], o["kill.containers_listed_after"],
                    o["kill.workload_left"]) == ("exited 0", "exited 137", "0", "false"), (name, o)
            if name.endswith(":init"):   # the story's picture: the init waits for the stuck process
                assert any("zap_pid_ns_processes" in "".join(t["stack"]) for t in h["tasks"]), name
        assert hello.read_text() == "hello from a bystander\n", "kpc broke a FUSE mount it did not make"
        assert _fuse_connection(mnt) == bystander
        assert not scope.settle(), scope.leftovers()
        assert ids.ids
        end = time.monotonic() + 20
        while time.monotonic() < end and any(engine_leftovers(i) for i in ids.ids):
            time.sleep(0.1)
        assert not [(i, engine_leftovers(i)) for i in ids.ids if engine_leftovers(i)]
        assert host_state() == before
        print(f"engine_fuse_kill through {', '.join(engines)}: {took:.1f} s")
    finally:
        ids.stop.set()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        fs.kill()
        fs.wait()


def test_the_signal_trap_workload_cannot_trap_a_signal_ignored_on_entry(built):
    """crun#2058's class, without a runtime: started with SIGPIPE ignored
    (what the regression passed into containers), sigtrap_workload says so
    and does not trap it -- as a shell's `trap ... 13` would not -- while
    every other catchable signal arrives."""
    r, w = os.pipe()
    p = subprocess.Popen([os.path.join(paths.probe_dir(), "sigtrap_workload")], env={"KPC_OBS_FD": "3"},
                         preexec_fn=lambda: (os.dup2(w, 3), signal.signal(signal.SIGPIPE, signal.SIG_IGN)),
                         close_fds=False, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        f = os.fdopen(r, "r")
        ign = f.readline().split()
        assert ign[0] == "ignored" and int(ign[1], 16) == 1 << (signal.SIGPIPE - 1), ign
        assert f.readline().startswith("ready ")
        sent = [s for s in range(1, 65) if s not in (9, 19, 32, 33)]
        for s in sent:
            os.kill(p.pid, s)
            time.sleep(0.002)
        assert p.wait(timeout=30) == 0
        got = {int(ln.split()[1]) for ln in f.read().splitlines() if ln.startswith("sig ")}
        assert got == set(sent) - {signal.SIGPIPE}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_root
@pytest.mark.skipif(not (PODMAN_OK and DOCKER_OK), reason="podman and docker.io are not both installed")
def test_every_signal_reaches_the_workload_through_each_engine_and_oci_runtime(tmp_path, built, scope):
    """podman's 130-kill.bats through podman, docker (with and without
    their init), runc and crun, with a clean caller and with one ignoring
    what Go keeps ignored for its children: every signal arrives without an
    init; the inits hold back the synchronous signals, SIGCHLD and job
    control (xfail rows); nothing the caller ignored reaches the workload."""
    rts = ["podman", "podman:init", "docker", "docker:init", "runc", "crun"]
    out = tmp_path / "s.json"
    t0 = time.monotonic()
    p = kpc("run", "--no-build", "--runtime", ",".join(rts), "--case", "runtime_delivers_every_signal", "--json",
            str(out), env={"TMPDIR": scope.tmp})
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = {(r["runtime"], r["variant"]): r for r in json.loads(out.read_text())["results"]}
    for (rt, variant), r in res.items():
        if rt == "crun" and r["verdict"] == "skip":
            continue   # crun not installed here
        want = "xfail" if rt.endswith(":init") else "pass"
        assert r["verdict"] == want, (rt, variant, r["verdict"], r["reason"])
        o = r["observations"]
        assert o["workload.ignored_on_entry"] == "none" and o["kills.sent_all"] == "true"
        if want == "pass":
            assert o["delivered.missing"] == "none"
        else:
            assert "SIGSEGV" in o["delivered.missing"] and "SIGTERM" not in o["delivered.missing"]
        if variant == "go_ignored_caller":
            assert o["go_ignores.kept"] == "none"
    assert len(res) == 12
    assert not scope.settle(), scope.leftovers()
    print(f"runtime_delivers_every_signal through {', '.join(rts)}: {took:.1f} s")


# --- the empty layout in /run/kpc-oci ----------------------------------------------------------------------------

@pytest.fixture
def layout_at(tmp_path, monkeypatch):
    """kpc's /run/kpc-oci, moved under tmp_path."""
    base = tmp_path / "run"
    base.mkdir(mode=0o755)
    monkeypatch.setattr(oci_run, "KPC_OCI", str(base / "kpc-oci"))
    return str(base / "kpc-oci")


def _make_layout():
    """What a session with runc, crun and an engine leaves: state/{runc,crun}, bundles, locks, engines."""
    tree = oci_run._open_tree(create=True)
    try:
        for rt in ("/usr/sbin/runc", "/usr/bin/crun"):
            oci_run._state_root(tree, rt)
    finally:
        oci_run._close_tree(tree)
    os.close(engine_run._open_engines(create=True))


def test_an_empty_layout_is_removed_at_the_end(layout_at):
    _make_layout()
    assert sorted(os.listdir(layout_at)) == ["bundles", "engines", "locks", "state"]
    assert sorted(os.listdir(layout_at + "/state")) == ["crun", "runc"]
    assert oci_run.remove_empty_layout() is True
    assert not os.path.lexists(layout_at)
    assert oci_run.remove_empty_layout() is True   # nothing left to do


def test_only_empty_directories_of_kpcs_go_never_through_a_symlink(layout_at, tmp_path):
    _make_layout()
    (tmp_path / "run" / "kpc-oci" / "bundles" / "keep").write_text("x")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(mode=0o700, parents=True)
    os.chmod(elsewhere, 0o700)
    os.rmdir(layout_at + "/locks")
    os.symlink(elsewhere, layout_at + "/locks")
    os.symlink(elsewhere / "inner", layout_at + "/state/linked")
    os.chmod(layout_at + "/state/crun", 0o755)   # not as kpc makes them: not kpc's to remove
    assert oci_run.remove_empty_layout() is False
    assert (elsewhere / "inner").is_dir() and os.path.islink(layout_at + "/locks")
    assert os.path.islink(layout_at + "/state/linked")
    assert (tmp_path / "run" / "kpc-oci" / "bundles" / "keep").read_text() == "x"
    assert os.path.isdir(layout_at + "/state/crun")
    assert not os.path.exists(layout_at + "/state/runc") and not os.path.exists(layout_at + "/engines")


def test_a_layout_some_kpc_holds_is_left_alone(layout_at):
    _make_layout()
    held = oci_run.open_top(create=False)
    try:
        assert oci_run.remove_empty_layout() is False
        assert sorted(os.listdir(layout_at)) == ["bundles", "engines", "locks", "state"]
    finally:
        os.close(held)
    assert oci_run.remove_empty_layout() is True


def test_a_symlink_in_place_of_the_layout_is_not_followed(layout_at, tmp_path):
    target = tmp_path / "target"
    (target / "state").mkdir(mode=0o700, parents=True)
    os.chmod(target, 0o700)
    os.symlink(target, layout_at)
    assert oci_run.remove_empty_layout() is False
    assert (target / "state").is_dir() and os.path.islink(layout_at)


def test_a_layout_removed_between_mkdir_and_lock_is_made_again(layout_at, monkeypatch):
    """A kpc starting while another one removes the empty layout: open_top
    makes it again instead of failing."""
    real = oci_run._private_dir
    calls = []

    def racing(parent_fd, name, shown):
        fd = real(parent_fd, name, shown)
        if shown == layout_at and not calls:
            calls.append(1)
            assert oci_run.remove_empty_layout() is True   # the other kpc wins the race once
        return fd
    monkeypatch.setattr(oci_run, "_private_dir", racing)
    top = oci_run.open_top(create=True)
    try:
        assert os.fstat(top).st_nlink > 0 and os.path.isdir(layout_at)
    finally:
        os.close(top)


@needs_root
@needs("podman")
def test_a_session_with_runtimes_leaves_no_empty_layout_in_run(tmp_path, built, scope):
    """After `kpc run --runtime runc,podman` nothing of kpc's is left in
    /run: the session removes its empty layout (another kpc still using it
    holds its lock, and then it stays for that kpc to remove)."""
    rts = "runc,podman" if shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin") else "podman"
    p = kpc("run", "--no-build", "--runtime", rts, "--case", "inherited_signal_state", "--json",
            str(tmp_path / "l.json"), env={"TMPDIR": scope.tmp})
    assert p.returncode in (0, 1), p.stdout[-2000:] + p.stderr[-2000:]
    existed = os.path.lexists(oci_run.KPC_OCI)
    assert not (existed and oci_run.remove_empty_layout()), "the session left its empty layout in /run"


def test_a_run_under_an_engine_or_oci_runtime_waits_longer_before_calling_no_progress_a_hang():
    """runc in synchronize_rcu for 1.3 s under docker made a false hang with
    the default 1000 ms; the runtime's own tasks are in the run's tree."""
    case = make_case("inherited_signal_state", area="runtimes", flavors=("host",))
    docker = runtimes.resolve("docker")
    docker.unavailable = ""
    runc = runtimes.Runtime("runc", [runtimes.PYTHON, runtimes.OCI_WRAPPER, "--runtime", "/usr/sbin/runc", "--"],
                            "mask-through", oci="/usr/sbin/runc")
    tini = runtimes.Runtime("tini", ["/usr/bin/tini", "-s", "--"], "pass-through")
    assert launch.plan_entry("r1", case, None, "host", runtime=docker)["hang_ms"] == launch.ENGINE_HANG_MS
    assert launch.plan_entry("r2", case, None, "host", runtime=runc)["hang_ms"] == launch.ENGINE_HANG_MS
    assert launch.plan_entry("r3", case, None, "host", runtime=tini)["hang_ms"] == case.hang_ms
    assert launch.plan_entry("r4", case, None, "host")["hang_ms"] == case.hang_ms
