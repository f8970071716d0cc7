"""The sealed run's first process inside its namespaces (PID 1 there): network up, proxy, command, linger.

Started by `launcher.spawn_sealed` through `unshare` as `python -m telemetry_audit.sandbox SPEC_FD PROXY_STDERR`.
It starts the proxy at once (its imports are most of a sealed run's start-up), then reads the spec the launcher
writes to the pipe SPEC_FD meanwhile, and hands the proxy its configuration once the network is ready. As PID 1
of the run's PID namespace every process the command leaves behind becomes its child, so after the command exits
it can see (in the namespace's own /proc) which are still running, give them `linger` seconds to finish their
work (telemetry flushed by detached children), then end them. When it exits, the kernel ends whatever is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from telemetry_audit.sandbox.procfs import read_stat
from telemetry_audit.sandbox.proxy_start import ProxyTimeout, StartedProxy, spawn_proxy

if TYPE_CHECKING:
    from telemetry_audit.sandbox.relay import LoopbackBridges

_PROXY_READY_TIMEOUT = 60.0
_STOP_GRACE = 2.0
_MS_BIND = 4096


@dataclass(frozen=True)
class InsideSpec:
    """Everything the supervisor needs, handed over as JSON on a pipe (never on disk: it holds the environment)."""

    proxy_config: dict[str, Any]
    """Its configuration (tun mode included), written to its standard input: it holds the audited environment."""
    proxy_ready_file: str
    """The proxy writes this file once its tun interface is up."""
    tun_name: str
    command: list[str]
    env: dict[str, str]
    cwd: str
    result_file: str
    """Where the outcome (exit status, lingering processes) is written for the launcher."""
    ip: str = "ip"
    linger: float = 15.0
    outer_uid: int = 0
    outer_gid: int = 0
    unshare: str = "unshare"
    """Used once more to give the command back the caller's user id (a nested user namespace, no capabilities)."""
    relay_path: str = ""
    loopback_ports: list[int] = field(default_factory=list)
    audit_loopback: bool = False
    """Send the loopback bridges' traffic through the proxy (`run --proxy-loopback`)."""
    resolv_conf: str = ""
    """A resolv.conf to mount over /etc/resolv.conf (when the host's names a loopback resolver), or ''."""


@dataclass(frozen=True)
class Lingerer:
    """A process the command started that was still running when the command exited."""

    name: str
    pid: int
    """Its pid inside the run's PID namespace."""
    seconds: float
    """How long it ran after the command exited."""
    ended: bool
    """True when the linger time ran out and it was ended; False when it finished on its own."""


def main(argv: Sequence[str] | None = None, proxy: StartedProxy | OSError | None = None,
         spec_text: str | None = None) -> int:
    """`proxy`: already spawned by `__main__` (before this module was imported); spawned here otherwise.
    `spec_text`: the spec `__main__` already read from SPEC_FD (before importing this module); read here otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not args[0].isdigit():
        print("usage: python -m telemetry_audit.sandbox SPEC_FD PROXY_STDERR", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # as `Supervisor.run` does: no command to pass to yet
        signal.signal(sig, lambda *_: None)
    if proxy is None:
        proxy = spawn_proxy(args[1])
    if spec_text is None:
        with os.fdopen(int(args[0]), encoding="utf-8") as stream:
            spec_text = stream.read()
    text = spec_text
    if not text.strip():  # the launcher went away before handing the spec over
        if isinstance(proxy, StartedProxy):
            proxy.kill()
            proxy.wait()
        return 2
    return Supervisor(InsideSpec(**json.loads(text)), proxy).run()


class Supervisor:
    def __init__(self, spec: InsideSpec, proxy: StartedProxy | OSError) -> None:
        self.spec = spec
        self._started: StartedProxy | OSError = proxy
        self.proxy: StartedProxy | None = proxy if isinstance(proxy, StartedProxy) else None
        self.command_pid = 0
        self.command_status: int | None = None
        self.proxy_lost = False
        """The proxy ended on its own while the command or what it left behind ran: all of it was ended."""

    def run(self) -> int:
        spec = self.spec
        signal.signal(signal.SIGINT, lambda *_: None)  # the terminal's Ctrl-C reaches the command itself
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._forward)
        bridges = None
        try:
            if spec.resolv_conf:
                _bind_mount(spec.resolv_conf, "/etc/resolv.conf")
            self._network_up()
            self._configure_proxy()
            # Set up while the proxy starts: nothing in the sandbox can connect to them before the command runs.
            bridges = self._loopback_bridges()
            self._wait_for_proxy()
        except subprocess.CalledProcessError as e:
            if bridges is not None:
                bridges.close()
            detail = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
            self._finish(status=125, error=f"cannot set up the sealed network: `{' '.join(map(str, e.cmd))}` failed"
                                          + (f": {detail[-1]}" if detail else f" with status {e.returncode}"))
            return 125
        except (OSError, RuntimeError) as e:
            if bridges is not None:
                bridges.close()
            self._finish(status=125, error=f"cannot set up the sealed network: {e}")
            return 125
        status = self._run_command()
        lingerers = self._linger() if not self.proxy_lost else []
        if bridges is not None:
            bridges.close()
        proxy_status = self._stop_proxy()
        self._finish(status=status, lingerers=lingerers, proxy_status=proxy_status)
        return status

    # --- setup -------------------------------------------------------------------------------------------------

    def _network_up(self) -> None:
        """Loopback up, the tun interface created (persistent) and up, the default routes through it: one `ip`
        process, before the proxy has its configuration, so none of it waits on the proxy or delays it.

        The proxy then attaches to the interface that already exists. Being persistent, it is not removed when
        the proxy closes it (the kernel takes tens of milliseconds for that, in the exiting proxy, which held up
        the end of every run) but with the namespace, after the run. Until the proxy attaches, packets sent to
        it are dropped; nothing in the sandbox runs before it is up.
        """
        tun = self.spec.tun_name
        commands = [["link", "set", "lo", "up"], ["tuntap", "add", "dev", tun, "mode", "tun"],
                    ["link", "set", tun, "up"], ["route", "add", "default", "dev", tun]]
        # IPv6 literals reach the proxy too (names resolve to IPv4); a kernel without IPv6 has no need: last, and
        # its failure alone is ignored.
        ipv6 = ["route", "add", "::/0", "dev", tun]
        result = subprocess.run([self.spec.ip, "-batch", "-"], capture_output=True,
                                input="".join(" ".join(line) + "\n" for line in [*commands, ipv6]).encode("ascii"))
        if result.returncode == 0:
            return
        failed = _batch_failed_line(result.stderr)
        if failed == len(commands) + 1:
            return
        line = commands[failed - 1] if 0 < failed <= len(commands) else ["-batch", "-"]
        why = b"\n".join(text for text in result.stderr.splitlines() if not text.startswith(b"Command failed -:"))
        raise subprocess.CalledProcessError(result.returncode, [self.spec.ip, *line], result.stdout, why)

    def _loopback_bridges(self) -> LoopbackBridges | None:
        """The host's loopback services inside the sandbox (see `relay.LoopbackBridges`), or None."""
        if not self.spec.relay_path:
            return None
        from telemetry_audit.sandbox.relay import LoopbackBridges  # imported once the proxy is on its way

        bridges = LoopbackBridges(self.spec.relay_path, self.spec.loopback_ports, via_proxy=self.spec.audit_loopback)
        bridges.follow_host()
        return bridges

    def _configure_proxy(self) -> None:
        """Hand the proxy (started by `main`) its configuration, once the network is ready."""
        spec = self.spec
        if isinstance(self._started, OSError):
            raise self._started
        self.proxy = self._started
        self.proxy.send_config(json.dumps(spec.proxy_config).encode("utf-8"))

    def _wait_for_proxy(self) -> None:
        """Until the proxy's tun interface is up: its ready line (it writes the tun-ready file just before), or its
        end, on the pipe of its standard output, noticed at once (a poll of the file every few milliseconds was,
        on average, that much later)."""
        spec = self.spec
        assert self.proxy is not None
        deadline = time.monotonic() + _PROXY_READY_TIMEOUT
        fd, self.proxy.ready_fd = self.proxy.ready_fd, -1
        if fd >= 0:
            try:
                line = b""
                while b"\n" not in line and (remaining := deadline - time.monotonic()) > 0:
                    if not select.select([fd], [], [], remaining)[0]:
                        break
                    chunk = os.read(fd, 4096)
                    if not chunk:  # it exited (or closed its output) without a ready line
                        break
                    line += chunk
            finally:
                os.close(fd)
            if os.path.exists(spec.proxy_ready_file):
                return
            if b"\n" in line:  # it listens, but not on a tun interface
                raise RuntimeError("the proxy did not bring its tun interface up")
        while time.monotonic() < deadline:
            if os.path.exists(spec.proxy_ready_file):
                return
            if self.proxy.poll() is not None:
                raise RuntimeError(f"the proxy exited with status {self.proxy.returncode}")
            time.sleep(0.005)
        raise RuntimeError("the proxy did not bring its tun interface up in time")

    # --- the command -------------------------------------------------------------------------------------------

    def _run_command(self) -> int:
        spec = self.spec
        # A nested user namespace maps the caller's ids back: the command runs as the user, without capabilities.
        wrapper = [spec.unshare, "--user", f"--map-user={spec.outer_uid}", f"--map-group={spec.outer_gid}", "--"]
        try:
            child = subprocess.Popen([*wrapper, *spec.command], env=spec.env, cwd=spec.cwd or None)
        except OSError as e:
            print(f"telemetry-audit: cannot run {spec.command[0]}: {e.strerror or e}", file=sys.stderr)
            return 127
        self.command_pid = child.pid
        child.returncode = 0  # reaped here (`_collected`), keep Popen from waiting again
        while self.command_status is None:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 1
            except InterruptedError:
                continue
            if self._collected(pid, wait_status) == "proxy":
                # The proxy died while the command runs (e.g. its audit log failed): fail closed at once. A
                # connection the command already holds would otherwise wait on a proxy that is gone until the
                # client's own timeout; nothing may go on running unaudited.
                self._end_everything()
        return self.command_status

    def _collected(self, pid: int, wait_status: int) -> str:
        """Note what a reaped child was: "command" (its status kept), "proxy" (the proxy died: its status kept,
        `proxy_lost` set) or "" (an orphan the command left)."""
        if pid == self.command_pid and self.command_status is None:
            self.command_status = _exit_code(wait_status)
            return "command"
        proxy = self.proxy
        if proxy is not None and pid == proxy.pid and proxy.returncode is None:
            proxy.returncode = os.waitstatus_to_exitcode(wait_status)
            self.proxy_lost = True
            return "proxy"
        return ""

    def _end_everything(self) -> None:
        """SIGKILL every other process of the run's PID namespace (the command, its detached descendants, the
        proxy's workers) and reap them: as PID 1, `kill(-1)` reaches exactly the sandbox, and nothing it holds can
        ignore or outlive it (setsid, a SIGTERM handler). Repeated until none is left, for a process that was
        forking meanwhile."""
        deadline = time.monotonic() + _STOP_GRACE
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:  # nothing left to signal
                pass
            self._reap()
            if not self._descendants(include_proxy=True) or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def _reap(self) -> None:
        """Collect every exited child (orphans are re-parented to us, PID 1 of the namespace), keeping the proxy's
        status if it is one of them."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._collected(pid, wait_status)

    def _forward(self, signum: int, frame: object) -> None:
        if self.command_pid:
            try:
                os.kill(self.command_pid, signum)
            except ProcessLookupError:
                pass

    # --- after the command -------------------------------------------------------------------------------------

    def _descendants(self, *, include_proxy: bool = False) -> dict[int, str]:
        """Processes of the namespace other than this one and (unless `include_proxy`) the proxy's session: what
        the command left behind."""
        proxy_pid = self.proxy.pid if self.proxy is not None and not include_proxy else -1
        found: dict[int, str] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in (1, proxy_pid):
                continue
            stat = read_stat(entry)
            if stat is None or stat.session == proxy_pid or stat.state == "Z":
                continue
            found[int(entry)] = stat.name
        return found

    def _linger(self) -> list[Lingerer]:
        started = time.monotonic()
        seen: dict[int, tuple[str, float | None]] = {}
        deadline = started + max(self.spec.linger, 0.0)
        while True:
            self._reap()
            alive = self._descendants()
            now = time.monotonic()
            for pid, name in alive.items():
                seen.setdefault(pid, (name, None))
            for pid, (name, gone) in list(seen.items()):
                if gone is None and pid not in alive:
                    seen[pid] = (name, now)
            if self.proxy_lost:  # the proxy died while they ran: nothing may go on unaudited
                survivors = set(alive)
                self._end_everything()
                break
            if not alive or now >= deadline:
                survivors = set(self._stop_lingerers())
                break
            time.sleep(0.05)
        end = time.monotonic()
        return [Lingerer(name, pid, round((gone or end) - started, 2), pid in survivors)
                for pid, (name, gone) in sorted(seen.items())]

    def _stop_lingerers(self) -> list[int]:
        """SIGTERM what is still running, SIGKILL what is left after a grace period; the pids it found."""
        survivors = list(self._descendants())
        for pid in survivors:
            _signal(pid, signal.SIGTERM)
        grace = time.monotonic() + _STOP_GRACE
        while self._descendants() and time.monotonic() < grace:
            self._reap()
            if self.proxy_lost:
                break
            time.sleep(0.05)
        if self.proxy_lost:
            self._end_everything()
        for pid in self._descendants():
            _signal(pid, signal.SIGKILL)
        self._reap()
        return survivors

    def _stop_proxy(self) -> int:
        if self.proxy is None:
            return 0
        if self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                self.proxy.wait(20)
            except ProxyTimeout:
                self.proxy.kill()
                self.proxy.wait()
        return int(self.proxy.returncode or 0)

    def _finish(self, *, status: int, lingerers: Sequence[Lingerer] = (), proxy_status: int = 0,
                error: str = "") -> None:
        if error:  # the launcher's caller reports it (or falls back to proxy variables)
            self._stop_proxy()
        result = {"status": status, "lingerers": [asdict(item) for item in lingerers], "proxy_status": proxy_status,
                  "error": error, "setup_failed": bool(error), "proxy_lost": self.proxy_lost}
        temp = f"{self.spec.result_file}.tmp"
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump(result, stream)
        os.replace(temp, self.spec.result_file)


def _batch_failed_line(stderr: bytes) -> int:
    """The line `ip -batch` stopped at (`Command failed -:N`), or 0 when it does not say."""
    marker = b"Command failed -:"
    at = stderr.rfind(marker)
    digits = stderr[at + len(marker):].split(b"\n", 1)[0].strip() if at >= 0 else b""
    return int(digits) if digits.isdigit() else 0


def _exit_code(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _bind_mount(source: str, target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot mount {source} on {target}: {os.strerror(errno)}")

