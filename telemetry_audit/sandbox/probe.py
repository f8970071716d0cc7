"""Can this machine seal a run? Checked cheaply, then tried for real once.

A sealed run needs Linux, user namespaces an unprivileged user may create (some kernels and AppArmor/sysctl
policies forbid them), the `unshare` binary (util-linux), `ip` (iproute2) inside the namespace, and read/write
access to `/dev/net/tun` for the proxy's tun interface. The reason names the first thing missing, in words a
user can act on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

TUN_DEVICE = "/dev/net/tun"

UNSHARE_VARIABLE = "TELEMETRY_AUDIT_UNSHARE"
"""Overrides the `unshare` binary (tests point it at one that fails to simulate a kernel that forbids sealing)."""

UNSHARE_FLAGS: tuple[str, ...] = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--mount", "--mount-proc",
                                  "--kill-child")
"""A user namespace (root inside, the caller outside), its own network, PID tree, mounts and /proc."""


@dataclass(frozen=True)
class SealSupport:
    """Whether a run can be sealed here, and if not, why."""

    ok: bool
    """True when every check passed, including a real trial namespace."""
    reason: str
    """Empty when `ok`; otherwise one line naming what is missing."""
    unshare: str = ""
    """Path of the `unshare` binary to use."""
    ip: str = ""
    """Path of the `ip` binary to use inside the namespace."""


def unshare_binary() -> str | None:
    """The `unshare` to use: `$TELEMETRY_AUDIT_UNSHARE` or the one on PATH (also /usr/bin, /bin)."""
    override = os.environ.get(UNSHARE_VARIABLE)
    if override:
        return override
    return shutil.which("unshare") or shutil.which("unshare", path="/usr/bin:/bin")


def probe_seal(*, tun_device: str = TUN_DEVICE, trial: bool = True) -> SealSupport:
    """Check every requirement of a sealed run; with `trial`, also create (and drop) one namespace."""
    if not sys.platform.startswith("linux"):
        return SealSupport(False, f"sealing needs Linux network namespaces (this is {sys.platform})")
    unshare = unshare_binary()
    if not unshare:
        return SealSupport(False, "the `unshare` command (util-linux) is not installed")
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not ip:
        return SealSupport(False, "the `ip` command (iproute2) is not installed")
    limit = _read_int("/proc/sys/user/max_user_namespaces")
    if limit == 0:
        return SealSupport(False, "user namespaces are disabled (sysctl user.max_user_namespaces = 0)")
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0 and os.geteuid() != 0:
        return SealSupport(False, "unprivileged user namespaces are disabled (sysctl "
                                  "kernel.unprivileged_userns_clone = 0)")
    if not os.path.exists(tun_device):
        return SealSupport(False, f"{tun_device} does not exist (no tun device)")
    if not _tun_usable(tun_device):
        return SealSupport(False, f"{tun_device} is not readable and writable by this user "
                                  f"(mode {os.stat(tun_device).st_mode & 0o777:o}; most distributions ship 666)")
    if trial:
        failure = _trial_namespace(unshare)
        if failure:
            return SealSupport(False, failure)
    return SealSupport(True, "", unshare=unshare, ip=ip)


def _tun_usable(path: str) -> bool:
    """Whether the device opens for read and write: the kernel checks the caller's real credentials, even as
    "root" inside a user namespace, so asking outside is asking the same question."""
    return os.access(path, os.R_OK | os.W_OK)


def _trial_namespace(unshare: str) -> str:
    """Create the namespaces a sealed run uses and run `true` in them; '' on success, else the reason."""
    try:
        result = subprocess.run([unshare, *UNSHARE_FLAGS, "--", "true"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create a user + network namespace: {e}"
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        why = detail[-1] if detail else f"`unshare` exited with {result.returncode}"
        return f"cannot create a user + network namespace: {why}"
    return ""


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as stream:
            return int(stream.read().strip())
    except (OSError, ValueError):
        return None
