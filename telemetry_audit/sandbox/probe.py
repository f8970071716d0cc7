"""Can this machine seal a run? Checked cheaply, then tried for real once.

The trial namespace's success is remembered (`_VerdictCache`) for as long as nothing it depends on changes: the
same boot, user, kernel, `unshare` binary and namespace sysctls. A remembered verdict that has become wrong only
costs the sealed start, which then fails before the supervisor starts; the launcher forgets the verdict and the
run falls back exactly as a fresh probe would have made it (`forget_verdict`).

A sealed run needs Linux, user namespaces an unprivileged user may create (some kernels and AppArmor/sysctl
policies forbid them), the `unshare` binary (util-linux), `ip` (iproute2) inside the namespace, and read/write
access to `/dev/net/tun` for the proxy's tun interface. The reason names the first thing missing, in words a
user can act on.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import NamedTuple

TUN_DEVICE = "/dev/net/tun"

UNSHARE_VARIABLE = "TELEMETRY_AUDIT_UNSHARE"
"""Overrides the `unshare` binary (tests point it at one that fails to simulate a kernel that forbids sealing)."""

UNSHARE_FLAGS: tuple[str, ...] = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--mount", "--mount-proc",
                                  "--kill-child")
"""A user namespace (root inside, the caller outside), its own network, PID tree, mounts and /proc."""


class SealSupport(NamedTuple):
    """Whether a run can be sealed here, and if not, why.

    A named tuple, not a dataclass: `run` probes before it spawns the sandbox (`cli.early`), and importing
    `dataclasses` (with `inspect`) there cost ~10 ms of CPU on the way of every sealed start.
    """

    ok: bool
    """True when every check passed, including a real trial namespace."""
    reason: str
    """Empty when `ok`; otherwise one line naming what is missing."""
    unshare: str = ""
    """Path of the `unshare` binary to use."""
    ip: str = ""
    """Path of the `ip` binary to use inside the namespace."""
    remembered: bool = False
    """The trial namespace was skipped: an earlier one succeeded on this boot, as this user, with this kernel."""


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
        cache = _VerdictCache.for_user(unshare)
        if cache is not None and cache.holds():
            return SealSupport(True, "", unshare=unshare, ip=ip, remembered=True)
        failure = _trial_namespace(unshare)
        if failure:
            return SealSupport(False, failure)
        if cache is not None:
            cache.remember()
    return SealSupport(True, "", unshare=unshare, ip=ip)


def forget_verdict(support: SealSupport) -> None:
    """Drop a remembered verdict (a sealed start failed): the next probe tries a namespace again."""
    cache = _VerdictCache.for_user(support.unshare) if support.unshare else None
    if cache is not None:
        cache.forget()


CACHE_VARIABLE = "TELEMETRY_AUDIT_SEAL_CACHE"
"""A directory for the remembered verdict instead of $XDG_RUNTIME_DIR or ~/.cache; `off` remembers nothing."""

_NAMESPACE_SYSCTLS = ("/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone",
                      "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")


class _VerdictCache(NamedTuple):
    """A private file (0600, in a 0700 directory of the user's) holding the key of the last successful trial (a
    named tuple, as `SealSupport`)."""

    path: str
    key: str

    @classmethod
    def for_user(cls, unshare: str) -> _VerdictCache | None:
        directory = os.environ.get(CACHE_VARIABLE, "")
        if directory == "off":
            return None
        if not directory:
            runtime = os.environ.get("XDG_RUNTIME_DIR", "")
            base = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".cache")
            directory = os.path.join(base, "telemetry-audit")
        try:
            binary = os.stat(unshare)
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as stream:
                boot = stream.read().strip()
        except OSError:
            return None
        system = os.uname()
        parts = [boot, str(os.geteuid()), str(os.getegid()), system.release, system.version, unshare,
                 f"{binary.st_dev}:{binary.st_ino}:{binary.st_mtime_ns}:{binary.st_size}",
                 *(str(_read_int(path)) for path in _NAMESPACE_SYSCTLS)]
        return cls(os.path.join(directory, "seal-probe"), "|".join(parts))

    def holds(self) -> bool:
        """The file is ours, private, and names this very key."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return False
            return os.read(fd, 4096).decode("utf-8", "replace").strip() == self.key
        finally:
            os.close(fd)

    def remember(self) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            temp = f"{self.path}.{os.getpid()}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(self.key + "\n")
            os.replace(temp, self.path)
        except OSError:  # nothing remembered: the next run probes again
            pass

    def forget(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _tun_usable(path: str) -> bool:
    """Whether the device opens for read and write: the kernel checks the caller's real credentials, even as
    "root" inside a user namespace, so asking outside is asking the same question."""
    return os.access(path, os.R_OK | os.W_OK)


def _trial_namespace(unshare: str) -> str:
    """Create the namespaces a sealed run uses and run `true` in them; '' on success, else the reason."""
    import subprocess  # only when no verdict is remembered: not on the way of a sealed start that has one

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
