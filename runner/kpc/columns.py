"""Where a run runs, from the words of `kpc run`: the Debian or user
kernels (--kernels, --kernel, --arch, --kernel-append), the SSH targets
(--target) and the runtimes (--runtime, --profile). What can be told wrong
from the words alone is refused before anything is built or fetched
(InputError: one line, exit 2); then the kernels are fetched, the cross
builds made and the bundles copied.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import build, cross, paths, runtimes
from .messages import InputError, say

if TYPE_CHECKING:
    import argparse
    from . import kernels, sshtarget


def check_kernel_args(args: argparse.Namespace) -> None:
    """--kernels / --kernel / --kernel-append / --no-host: what can be told
    wrong from the words alone, before anything is built or fetched."""
    if args.no_host and not (args.kernels or args.kernel or getattr(args, "target", None)):
        raise InputError("--no-host needs --kernels, --kernel or --target (something has to run)")
    if args.kernel_append is not None:
        if not (args.kernels or args.kernel):
            raise InputError("--kernel-append needs --kernels or --kernel (it is for the guests' kernels)")
        if not args.kernel_append.strip() or any(ord(c) < 32 for c in args.kernel_append):
            raise InputError("--kernel-append: give kernel parameters on one line, e.g. 'lsm=lockdown,yama'")
    if args.kernels and not kernel_requests(args):
        raise InputError("--kernels: give version series or suites, e.g. --kernels 6.1,6.12")
    if any(not spec for spec in args.kernel or []):
        raise InputError("--kernel: give a path, e.g. --kernel arch/x86/boot/bzImage")
    arches = arch_list(args)
    if getattr(args, "arch", None) is not None and not args.kernels:
        raise InputError("--arch needs --kernels (it chooses the Debian kernels' architecture)")
    if args.kernel and "amd64" not in arches:
        raise InputError("--kernel boots an x86_64 bzImage; --arch applies to --kernels (add amd64 to --arch)")


def arch_list(args: argparse.Namespace) -> list[str]:
    """--arch LIST: Debian architecture names, amd64 when not given. Checked
    from the words alone (one line and exit 2)."""
    from .kernels import ARCHES
    from .render import visible
    if getattr(args, "arch", None) is None:
        return ["amd64"]
    out = []
    for spec in args.arch:
        for a in spec.split(","):
            a = a.strip()
            if a not in ARCHES:
                shown = visible(a)[:40] if a else "''"
                raise InputError(f"--arch {shown}: give {' or '.join(ARCHES)} (comma-separated), "
                                 f"e.g. --arch amd64,arm64")
            if a in out:
                raise InputError(f"--arch: {a} given twice")
            out.append(a)
    return out


def kernel_label(req: str, arch: str, arches: list[str]) -> str:
    """A --kernels column's name: the request, with the arch when it is not
    amd64 or when the matrix has more than one (6.1, 6.1-arm64, 6.1-amd64)."""
    return req if arches == ["amd64"] else f"{req}-{arch}"


def kernel_requests(args: argparse.Namespace) -> list[str]:
    return [r.strip() for spec in args.kernels or [] for r in spec.split(",") if r.strip()]


def kernels_for(args: argparse.Namespace) -> list[kernels.Kernel]:
    """--kernels / --kernel: the kernels to boot, fetched and cached (the
    arguments were checked by _check_kernel_args)."""
    from . import guest_image, kernels
    if not (args.kernels or args.kernel):
        return []
    requests = kernel_requests(args)
    try:
        # What can be refused is refused before QEMU (100 MB) is installed as
        # root: a wrong --kernel file, a KPC_DEBIAN_MIRROR that is not one URI,
        # a kernel cache someone else could write
        given = [kernels.from_path(spec) for spec in args.kernel or []]
        if requests:
            kernels.debian_uri()
        kernels.check_cache()
    except kernels.KernelError as e:
        raise InputError(str(e)) from None
    build.ensure_packages(extra=build.VM_PACKAGES)   # a BuildError: main() prints it with apt's output
    arches = arch_list(args)
    foreign = [a for a in arches if a != guest_image.HOST_ARCH] if requests else []
    extra = {}
    for a in foreign:
        extra.update(cross.HOST_PACKAGES.get(a, {}))
    if extra:
        build.ensure_packages(extra=dict(build.VM_PACKAGES, **extra))
    try:
        kernels.check_cache()
        found = []
        for a in arches if requests else []:
            found += kernels.fetch_debian(requests, refresh=args.refresh_kernels, arch=a,
                                          label=lambda r, a=a: kernel_label(r, a, arches))
        found += given
        for a in foreign:
            if a not in cross.TRIPLET:
                raise InputError(f"--arch {a}: kpc cannot cross-build for it on this {os.uname().machine} host")
            say(f"{a}: the suite cross-built in {os.path.relpath(cross.build_dir(a), paths.ROOT)}/")
            guest_image.CROSS[a] = cross.ensure(a, no_build=args.no_build, refresh=args.refresh_kernels)
    except kernels.KernelError as e:
        raise InputError(str(e)) from None
    except cross.CrossError as e:
        raise InputError(f"--arch: {e}") from None
    labels = [k.label for k in found]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"kernel {', '.join(dup)} given twice")
    for k in found:
        say(f"kernel {k.label}: {k.release} ({k.arch}; {k.origin})"
            + (f"; booted with {args.kernel_append}" if args.kernel_append else ""))
    return found


def check_targets(args: argparse.Namespace) -> None:
    """--target URLs, checked from the words alone (before the build)."""
    from . import sshtarget
    for url in args.target or []:
        try:
            sshtarget.parse_url(url)
        except ValueError as e:
            raise InputError(str(e)) from None


def ssh_targets(args: argparse.Namespace, labels: list[str]) -> list[sshtarget.SshTarget]:
    """--target: a bundle copied to each machine, its facts read
    (sshtarget.SshTarget.prepare); the copies are removed again if one fails."""
    from . import sshtarget, targets
    if not args.target:
        return []
    if args.runtime:
        raise InputError("--runtime runs on this machine only; leave out --target")
    try:
        path = sshtarget.bundle_for_targets()
    except (OSError, paths.PrivateDirError) as e:
        raise InputError(f"cannot make the bundle for --target: {e}") from None
    prepared = []
    try:
        for url in args.target:
            t = sshtarget.SshTarget(url, slow=args.slow)
            if t.label in labels + [p.label for p in prepared] or t.label == "host":
                raise InputError(f"--target {url}: {t.label} given twice")
            say(f"target {url}: copying the bundle")
            t.prepare(path)
            say(f"target {url}: {t.env.kernel} ({t.env.distro}), bundle in {t.remote_dir}")
            prepared.append(t)
    except targets.TargetError as e:
        for t in prepared:
            t.join()
        raise InputError(str(e)) from None
    except BaseException:
        for t in prepared:
            t.join()
        raise
    return prepared


def runtimes_for(args: argparse.Namespace) -> list[runtimes.Runtime]:
    """--runtime / --profile -> [runtimes.Runtime] (checked before the build)."""
    if not args.runtime:
        if args.profile:
            raise InputError("--profile asserts a profile for a --runtime: give one")
        return []
    try:
        return runtimes.parse_list(",".join(args.runtime), args.profile)
    except ValueError as e:
        raise InputError(str(e)) from None
