"""Runtimes and inits kpc can put between its launcher and a probe.

A runtime is a command prefix: the launcher starts `PREFIX probe ARGS` with
a deliberately dirty signal state (DIRTY_CALLER), so a runtime that gives
its child a clean state and one that passes the caller's state through are
told apart. What each runtime promises is its **profile**; the expected
tables key their rows by profile (and by runtime for runtime-specific
facts), never by one rule for all.

Profiles:
  clean         the child starts with nothing blocked and nothing ignored
  pass-through  the child gets exactly the caller's blocked and ignored sets
  mask-through  the child gets the caller's blocked set, but default
                dispositions (runc 1.1.5, measured: the mask leaks, ignores
                are reset)
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import typing

PROFILES = ("clean", "pass-through", "mask-through")

# The dirty caller: what a careless parent (story 000's init, story 001's
# `trap '' HUP`) leaves behind.
DIRTY_CALLER = {"blocked": [int(signal.SIGUSR1), int(signal.SIGALRM)],
                "ignored": [int(signal.SIGUSR2), int(signal.SIGHUP)]}


@dataclasses.dataclass
class Runtime:
    name: str
    prefix: list           # argv before the probe; prefix[0] absolute
    profile: str
    package: str = ""      # Debian package, for the version and the hint
    source: str = ""       # where the profile comes from (docs, source line)
    unavailable: str = ""  # why it cannot run here: the runs are skipped
    version: str = ""
    measured: tuple = ()   # the Debian package versions the profile was checked on
    oci: str = ""          # an OCI runtime's binary: the prefix is kpc's wrapper around it
    engine: str = ""       # a container engine (podman, docker): the prefix is kpc's engine wrapper
    oci_runtime: str = ""  # the OCI runtime the engine uses, with its version (results environment)
    start_ms: int = 0      # added to a case's deadline per container start (an engine's start and stop)

    def for_run(self) -> tuple[list[str], list[str] | None]:
        """(prefix, cleanup argv or None) for one run. An OCI runtime's
        containers are named after a run ID chosen here, so the launcher
        can delete them once the run's process tree is gone, however it
        ended (runner/kpc/oci_run.py --cleanup)."""
        if self.engine and not self.unavailable:
            run_id = "kpc-" + secrets.token_hex(8)
            return ([PYTHON, ENGINE_WRAPPER, "--engine", self.engine] + (["--init"] if self.name.endswith(":init")
                                                                         else []) + ["--id", run_id, "--"],
                    [PYTHON, ENGINE_WRAPPER, "--cleanup", "--id", run_id])
        if not self.oci:
            return list(self.prefix), None
        run_id = "kpc-" + secrets.token_hex(8)
        return ([PYTHON, OCI_WRAPPER, "--runtime", self.oci, "--id", run_id, "--"],
                [PYTHON, OCI_WRAPPER, "--cleanup", "--runtime", self.oci, "--id", run_id])

    @property
    def profile_note(self) -> str:
        """'' when the installed version is one the profile was measured on."""
        if not self.measured or not self.version or self.version in self.measured:
            return ""
        return (f"profile {self.profile} was measured on {', '.join(self.measured)}; installed {self.version} is "
                f"unverified: a fail may mean the runtime changed")

    def describe(self) -> dict:
        """For the results environment."""
        out = {"prefix": self.prefix, "profile": self.profile, "version": self.version, "source": self.source}
        out.update({k: val for k, val in (("profile_measured_on", list(self.measured or ())),
                                          ("profile_note", self.profile_note), ("unavailable", self.unavailable))
                    if val})
        if self.engine:
            out["engine"] = self.engine
            out["oci_runtime"] = self.oci_runtime
        return out


def _package_version(pkg):
    if not pkg:
        return ""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


class Known(typing.NamedTuple):
    """A runtime kpc knows: how to find it and what it promises."""
    binary: str        # looked up in PATH (and /usr/sbin, /sbin)
    args: list         # the prefix after the binary
    profile: str
    package: str       # the Debian package
    source: str        # where the profile comes from


KNOWN = {
    "tini": Known("tini", ["-s", "--"], "pass-through", "tini",
                  "tini.c spawn(): restore_signals() = sigprocmask(SIG_SETMASK, original) + the saved "
                  "SIGTTIN/SIGTTOU actions: the child gets the caller's mask and ignores "
                  "(research notes, runtimes-and-inits.md s.1)"),
    "dumb-init": Known("dumb-init", ["--"], "clean", "dumb-init",
                       "dumb-init.c: signal(i, dummy) for 1..31 in dumb-init, then in the child "
                       "sigprocmask(SIG_UNBLOCK, &all_signals, NULL), setsid(), execvp: mask empty and SIG_DFL for "
                       "1..31 (research s.2)"),
    "catatonit": Known("catatonit", ["--"], "pass-through", "catatonit",
                       "catatonit.c spawn_pid1() -> make_foreground(): restores the caller's mask but adds SIGTSTP, "
                       "SIGTTOU, SIGTTIN to it ('This isn't strictly necessary') (research s.3)"),
    "bwrap": Known("bwrap", ["--dev-bind", "/", "/", "--"], "pass-through", "bubblewrap",
                   "bubblewrap.c: blocks only SIGCHLD for its monitor and unblocks it before exec; nothing else "
                   "touched (research s.3)"),
    "runc": Known("runc", [], "mask-through", "runc",
                  "runc 1.1.5, measured (research s.3, and kpc's own bundle): blocked signals leak into the container, "
                  "ignores are reset"),
    "crun": Known("crun", [], "clean", "crun",
                  "crun src/libcrun/container.c unblock_signals(): SIG_UNBLOCK all and SIG_DFL for every signal "
                  "(research s.3)"),
}
OCI = {"runc", "crun"}
# The profile of each known runtime holds for the versions it was measured
# on (Debian 12's packages, 2026-11); another version is run and judged by
# the same profile, with a note saying so (results environment, and the
# runtime line `./kpc run` prints).
MEASURED = {"tini": ("0.19.0-1+b3",), "dumb-init": ("1.2.5-2",), "catatonit": ("0.1.7-1+b2",),
            "bwrap": ("0.8.0-2+deb12u1",), "runc": ("1.1.5+ds1-1+deb12u1",), "crun": ("1.8.1-1+deb12u1",)}


# Container engines (issue 19; research notes, engines.md): kpc runs
# each container itself through runner/kpc/engine_run.py, in private state.
class Engine(typing.NamedTuple):
    """A container engine kpc runs in private state, with or without its
    --init."""
    engine: str        # podman or docker (engine_run.py --engine)
    init: str          # the init binary `run --init` uses, or "" for none
    profile: str
    package: str       # the Debian package
    source: str        # where the profile comes from


ENGINES = {
    "podman": Engine("podman", "", "mask-through", "podman",
                     "podman 4.3.1 + runc 1.1.5, measured (research s.4): podman (Go) keeps the caller's mask and "
                     "SIGHUP ignore for its children, runc resets the ignores and keeps the mask"),
    "docker": Engine("docker", "", "mask-through", "docker.io",
                     "docker 20.10: the client's state does not matter, the daemon's does; kpc starts its private "
                     "dockerd with the dirty caller's state, and its mask leaks through containerd and runc "
                     "(research s.4)"),
}
ENGINES["podman:init"] = ENGINES["podman"]._replace(
    init="/usr/libexec/podman/catatonit",
    source="podman run --init = catatonit as the container's PID 1, over podman+runc's mask-through: catatonit adds "
           "SIGTSTP|SIGTTIN|SIGTTOU to its child's mask (research s.4)")
ENGINES["docker:init"] = ENGINES["docker"]._replace(
    init="/usr/bin/docker-init",
    source="docker run --init = tini (docker-init) as PID 1, over the daemon's mask-through: tini passes its state "
           "through (research s.4)")
ENGINES = {name: ENGINES[name] for name in ("podman", "podman:init", "docker", "docker:init")}   # this order
MEASURED.update({"podman": ("4.3.1+ds1-8+deb12u1+b3",), "podman:init": ("4.3.1+ds1-8+deb12u1+b3",),
                 "docker": ("20.10.24+dfsg1-1+deb12u1+b6",), "docker:init": ("20.10.24+dfsg1-1+deb12u1+b6",)})
NAMES = tuple(KNOWN) + tuple(ENGINES)
# Measured alone here: podman 1.5 s per container (its store made afresh),
# docker 2.0 s (a private dockerd started and stopped); four engines in
# parallel on 2 cores took 5 s and more. Each start adds this to a deadline.
ENGINE_START_MS = {"podman": 10000, "docker": 15000}
PYTHON = "/usr/bin/python3"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
OCI_WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oci_run.py")
ENGINE_WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine_run.py")


def resolve(spec: str, profile: str | None = None) -> Runtime:
    """'tini' or a command prefix like 'my-init --' -> Runtime. Raises
    ValueError with a message for the user.

    A command prefix is labelled with the whole prefix as given ('my-init
    --', '/usr/bin/tini -s --'), never with a known runtime's name: the
    label is the run's column and the tables' `runtime=`, and a user's
    prefix judged by a profile of its own must not look like the known
    runtime of the same program in a merged matrix."""
    if _CONTROL.search(spec):
        raise ValueError(f"--runtime {spec!r}: control characters in a command prefix")
    if spec in KNOWN:
        return _known(spec, profile)
    if spec in ENGINES:
        return _engine(spec, profile)
    try:
        words = shlex.split(spec)
    except ValueError as e:
        raise ValueError(f"--runtime {spec!r}: {e}") from None
    if not words:
        raise ValueError("an empty --runtime")
    if len(words) == 1 and words[0] in KNOWN:   # a known name in quotes
        return _known(words[0], profile)
    if len(words) == 1 and words[0] in ENGINES:
        return _engine(words[0], profile)
    path = shutil.which(words[0])
    if not path:
        raise ValueError(f"--runtime '{spec}': {words[0]} not found (known runtimes: {', '.join(KNOWN)}, "
                         f"or any command prefix)")
    name = os.path.basename(path)
    if name in OCI and len(words) == 1:
        raise ValueError(f"--runtime '{spec}': {name} needs an OCI bundle, it cannot start a program given as its "
                         f"argument; use --runtime {name} (kpc builds the bundle)")
    label = shlex.join(words)
    if label == "none":
        raise ValueError(f"--runtime '{spec}': 'none' means no runtime in the tables; give the program's path")
    return Runtime(label, [os.path.abspath(path)] + words[1:], profile or "clean",
                   source="a user's command prefix; profile " + (f"asserted with --profile {profile}" if profile
                                                                 else "clean by default (--profile to change)"))


def _known(spec, profile):
    known = KNOWN[spec]
    binary, pkg = known.binary, known.package
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    rt = Runtime(spec, [path] + known.args if path else [], profile or known.profile, pkg, known.source)
    if not path:
        rt.unavailable = f"{binary} is not installed (Debian package {pkg})"
    elif spec in OCI:
        # kpc builds the bundle: runner/kpc/oci_run.py is the prefix
        rt.prefix = [PYTHON, OCI_WRAPPER, "--runtime", path, "--"]
        rt.oci = path
    rt.version = _package_version(pkg)
    rt.measured = MEASURED.get(spec, ())
    return rt


def _engine(spec, profile):
    """podman, podman:init, docker, docker:init: what cannot run here is
    said at once (cheap checks); what the engine itself refuses is a skip
    in its own words, from the wrapper."""
    e = ENGINES[spec]
    engine, init, pkg = e.engine, e.init, e.package
    rt = Runtime(spec, [PYTHON, ENGINE_WRAPPER, "--engine", engine] + (["--init"] if init else []) + ["--"],
                 profile or e.profile, pkg, e.source, engine=engine, start_ms=ENGINE_START_MS[engine])
    needs = {"podman": ["/usr/bin/podman", "/usr/bin/conmon"], "docker": ["/usr/bin/docker", "/usr/sbin/dockerd"]}
    missing = [b for b in needs[engine] + ([init] if init else []) if not os.access(b, os.X_OK)]
    if missing:
        rt.unavailable = f"{', '.join(missing)} not installed (Debian package {pkg}" + \
                         (", catatonit)" if init and "catatonit" in init else ")")
    elif os.geteuid() != 0:
        rt.unavailable = f"kpc runs {engine} rootful, in private state: needs root"
    elif not shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin"):
        rt.unavailable = (f"{engine} runs runc here (crun refuses hybrid cgroups): "
                          f"runc is not installed (Debian package runc)")
    rt.version = _package_version(pkg)
    rt.measured = MEASURED.get(spec, ())
    runc_version = _package_version("runc")
    rt.oci_runtime = "runc" + (f" {runc_version}" if runc_version else "")
    return rt


def parse_list(text: str, profile: str | None = None) -> list[Runtime]:
    """--runtime value: comma-separated known names, or one command prefix
    (which may contain spaces but no comma)."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile '{profile}' ({', '.join(PROFILES)})")
    out = []
    for part in [p.strip() for p in text.split(",")]:
        rt = resolve(part, profile)
        if any(r.name == rt.name for r in out):
            raise ValueError(f"--runtime names {rt.name} twice")
        out.append(rt)
    return out
