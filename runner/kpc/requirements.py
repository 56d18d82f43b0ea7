"""Why a case cannot run here: the skip reason, or None."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import cases as cases_mod
from . import kver

if TYPE_CHECKING:
    from . import cases, envinfo


def skip_reason(case: cases.Case, flavor: str, env: envinfo.Environment) -> str | None:
    req = case.requires
    if req.root and not env.root:
        return "needs root"
    missing = [c for c in req.caps if c not in env.effective_caps]
    if missing:
        return f"needs capability {', '.join(missing)} (have: {env.capabilities})"
    if req.kernel:
        need = cases_mod.parse_kernel_requirement(req.kernel)
        if env.kernel_version < need:
            return f"needs Linux >= {kver.show(need)} (running {env.kernel})"
    if req.kconfig and env.kconfig is not None:
        off = [opt for opt in req.kconfig if env.kconfig.get(opt) not in ("y", "m")]
        if off:
            return f"needs {', '.join(off)} (not set in {env.kconfig_source})"
    for path in req.files:
        if not env.has_file(path):
            return f"needs {path}"
    for cmd in req.commands:
        if not env.has_command(cmd):
            return f"needs the command {cmd}"
    status = env.flavors.get(flavor, "not checked")
    if status != "ok":
        hint = ""
        if flavor == "userns" and env.chroot and "EPERM" in status:
            return f"userns flavor unavailable here: user namespaces are refused inside a chroot ({status})"
        if flavor == "pidns" and env.root_mount is False:
            return (f"pidns flavor unavailable here: / is not a mount point (a chroot), and the flavor mounts its own "
                    f"/proc in a private mount namespace ({status})")
        if flavor == "pidns" and "EPERM" in status:
            hint = " (a new PID namespace needs CAP_SYS_ADMIN: run as root, or use the userns flavor)"
        elif flavor == "userns" and ("EPERM" in status or "ENOSPC" in status):
            hint = " (unprivileged user namespaces are disabled: see user.max_user_namespaces)"
        return f"{flavor} flavor unavailable here: {status}{hint}"
    return None
