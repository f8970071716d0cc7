"""Run a command sealed: it and the auditing proxy in fresh user + network + PID + mount namespaces.

The proxy runs in tun mode inside the namespace and the default route points at its interface, so every packet
the command or any of its descendants sends reaches the proxy, whatever the client and whatever its proxy
settings; there is no other route. Names resolve to synthetic addresses (the proxy answers DNS). The only ways
out are a relay in this (the parent) namespace: to the host's loopback services, and for the proxy alone in
online mode (see `relay`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from telemetry_audit.sandbox.probe import SealSupport
from telemetry_audit.sandbox.proxy_start import StartedProxy
from telemetry_audit.sandbox.spawn import SpawnedSupervisor, spawn_supervisor
from telemetry_audit.sandbox.spawn import ready_file as _ready_file
from telemetry_audit.sandbox.spawn import result_file as _result_file

if TYPE_CHECKING:
    from telemetry_audit.sandbox.relay import Relay

TUN_NAME = "taudit0"
RELAY_SOCKET = "relay.sock"

CAPTURE_SEALED = "sealed"
CAPTURE_PROXY_VARIABLES = "proxy variables"


@dataclass(frozen=True)
class LingeringProcess:
    """A process the command started that outlived it."""

    name: str
    """Its executable name (never its arguments: they can carry tokens)."""
    pid: int
    """Its pid (inside the sandbox when sealed)."""
    seconds: float
    """How long it kept running after the command exited."""
    outcome: str
    """`finished` on its own, `ended` by telemetry-audit when `--linger` ran out (sealed), or `left running`
    (unsealed: outside a sandbox it cannot be told apart from something the user meant to keep)."""

    def describe(self) -> str:
        return f"{self.name}[{self.pid}] {self.outcome} after {self.seconds:g} s"


@dataclass(frozen=True)
class SealedOutcome:
    """How a sealed run ended."""

    status: int
    """The command's exit status (128+N for a signal, 125 when the sandbox could not be set up)."""
    lingering: tuple[LingeringProcess, ...] = ()
    capture: str = CAPTURE_SEALED
    error: str = ""
    """Why the sandbox failed (then `status` is 125), else ''."""
    proxy_status: int = 0
    setup_failed: bool = False
    """The sandbox could not be set up and the command never ran: running it unsealed instead is safe."""
    proxy_lost: bool = False
    """The proxy ended on its own while the command (or what it left running) ran: all of it was ended at once."""


@dataclass(frozen=True)
class SealedRun:
    """What to run sealed."""

    proxy_config: Mapping[str, Any]
    """The proxy server's configuration (`ProxySession.config()`), without the tun part (added here)."""
    command: Sequence[str]
    env: Mapping[str, str]
    workdir: str
    """The run's private directory (spec, relay socket, readiness and result files)."""
    linger: float = 15.0
    online: bool = False
    upstream_proxy: str = ""
    """The user's own proxy for online mode (`http://host:port`), or ''."""
    loopback: bool = True
    """Relay the host's loopback services into the sandbox (reached unaudited, as they are today)."""
    audit_loopback: bool = False
    """Send loopback traffic through the proxy (audited; reaches the host's service only online)."""
    cwd: str = field(default_factory=os.getcwd)


def sealed_proxy_config(workdir: str, *, online: bool, relay_path: str = "") -> dict[str, str]:
    """The server configuration's `sealed` part: tun mode, synthetic DNS, where to forward."""
    config = {"tun": TUN_NAME, "tun_ready_file": _ready_file(workdir)}
    if online:
        config["relay"] = relay_path or os.path.join(workdir, RELAY_SOCKET)
    return config


_UNIX_PATH_MAX = 100
"""A Unix socket path longer than this does not bind (108 bytes on Linux, 104 on macOS, with a margin)."""


def run_sealed(run: SealedRun, support: SealSupport) -> SealedOutcome:
    """Run `run.command` sealed and wait for it (and its lingering descendants, up to `run.linger`)."""
    return start_sealed(run, support).wait()


def start_sealed(run: SealedRun, support: SealSupport) -> StartedSealedRun:
    """Start the sandbox for `run` and return at once; `wait()` (or `abort()`) on the result."""
    started = spawn_sealed(run.workdir, support)
    try:
        started.hand_over(run)
    except BaseException:
        started.abort()
        raise
    return started


def spawn_sealed(workdir: str, support: SealSupport) -> StartedSealedRun:
    """Start the sandbox before its run is known: its supervisor starts the proxy (whose imports are most of a
    start-up) and waits for `hand_over(run)`, which the caller builds meanwhile. The spec travels on a pipe."""
    return started_from(spawn_supervisor(workdir, support.unshare), workdir, support)


def started_from(spawned: SpawnedSupervisor, workdir: str, support: SealSupport) -> StartedSealedRun:
    """The `StartedSealedRun` of a supervisor `spawn_supervisor` started into `workdir` (`cli.early` spawns it
    before importing this module)."""
    status = _failed(spawned.error) if spawned.process is None else 0
    return StartedSealedRun(spawned.process, status, _result_file(workdir), support, spawned.spec_write,
                            spawned.started_read)


class StartedSealedRun:
    """A sealed run whose sandbox is starting (its proxy first, the command once the proxy is up).

    Split in steps so the caller can do its own work while the proxy starts (build the run, then load the policy
    for the report); whatever goes wrong meanwhile, `abort` ends the sandbox before its command can run. Signals
    are handled as while waiting from the start: Ctrl-C goes to the command (same terminal group), SIGTERM/SIGHUP
    are passed on.
    """

    def __init__(self, child: StartedProxy | None, status: int, result_file: str, support: SealSupport,
                 spec_write: int, started_read: int = -1) -> None:
        self._child = child
        self._started_read = started_read
        self._status = status
        self._result_file = result_file
        self._support = support
        self._spec_write = spec_write
        self._relay: Relay | None = None
        self._short_dir = ""
        self._previous_handlers = _forward_signals(child) if child is not None else {}

    def hand_over(self, run: SealedRun) -> None:
        """Give the supervisor its spec (the relay to the host is up before it can be used)."""
        from telemetry_audit.sandbox.inside import InsideSpec
        from telemetry_audit.sandbox.relay import Relay, RelayPolicy, loopback_listening_ports

        workdir = run.workdir
        relay_path = os.path.join(workdir, RELAY_SOCKET)
        if len(os.fsencode(relay_path)) > _UNIX_PATH_MAX:  # a deep working directory (pytest's): a short private one
            self._short_dir = tempfile.mkdtemp(prefix="ta-")
            relay_path = os.path.join(self._short_dir, RELAY_SOCKET)
        # Services listening when the run starts; one started later is not bridged (see the README).
        ports = loopback_listening_ports() if run.loopback else []
        spec = InsideSpec(
            proxy_config={**run.proxy_config, "sealed": sealed_proxy_config(workdir, online=run.online,
                                                                             relay_path=relay_path)},
            proxy_ready_file=_ready_file(workdir),
            tun_name=TUN_NAME,
            command=list(run.command),
            env=dict(run.env),
            cwd=run.cwd,
            result_file=self._result_file,
            ip=self._support.ip or "ip",
            linger=run.linger,
            outer_uid=os.getuid(),
            outer_gid=os.getgid(),
            unshare=self._support.unshare or "unshare",
            relay_path=relay_path if run.loopback else "",
            loopback_ports=ports,
            audit_loopback=run.audit_loopback,
            resolv_conf=_resolv_conf_override(workdir),
        )
        if run.online or run.loopback:
            self._relay = Relay(relay_path, RelayPolicy(allow_remote=run.online, upstream_proxy=run.upstream_proxy))
        if self._spec_write < 0:
            return
        try:
            with os.fdopen(self._spec_write, "w", encoding="utf-8") as stream:
                self._spec_write = -1
                json.dump(asdict(spec), stream)
        except BrokenPipeError:  # the supervisor is gone: `wait` reports how the sandbox ended
            pass

    def wait(self) -> SealedOutcome:
        """Wait for the sandbox to end and read how the run ended."""
        try:
            self._close_spec()
            while self._child is not None:
                try:
                    self._status = self._child.wait()
                    break
                except KeyboardInterrupt:  # pragma: no cover - the SIGINT handler replaces the default
                    continue
            supervisor_started = self._supervisor_started()
        finally:
            self._release()
        outcome = _read_outcome(self._result_file, self._status)
        if outcome.error and not os.path.exists(self._result_file) and not supervisor_started:
            outcome = self._never_started()
        return outcome

    def _supervisor_started(self) -> bool:
        """Whether the supervisor ran at all (its byte is in the pipe; it is read once the sandbox has ended)."""
        if self._started_read < 0:
            return True
        try:
            os.set_blocking(self._started_read, False)
            return os.read(self._started_read, 1) == b"1"
        except BlockingIOError:  # pragma: no cover - every writer is gone once the sandbox has ended
            return False
        finally:
            os.close(self._started_read)
            self._started_read = -1

    def _never_started(self) -> SealedOutcome:
        """`unshare` failed before the supervisor ran, so the command never ran: a setup failure (the caller may
        run it unsealed). A remembered probe verdict was wrong: forgotten, and the probe's reason is the reason."""
        from telemetry_audit.sandbox.probe import forget_verdict, probe_seal

        forget_verdict(self._support)
        reason = ""
        if self._support.remembered:
            fresh = probe_seal()
            reason = fresh.reason
        return SealedOutcome(125, error=reason or f"`unshare` exited with {self._status} before the sandbox started",
                             setup_failed=True)

    def abort(self) -> None:
        """End the sandbox now (its supervisor and everything in it die with `unshare --kill-child`)."""
        try:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
                self._child.wait()
        finally:
            self._release()

    def _close_spec(self) -> None:
        """Without a spec (never handed over) the supervisor ends its proxy and exits."""
        if self._spec_write >= 0:
            os.close(self._spec_write)
            self._spec_write = -1

    def _release(self) -> None:
        self._close_spec()
        if self._started_read >= 0:
            os.close(self._started_read)
            self._started_read = -1
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers = {}
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = ""


def _forward_signals(child: StartedProxy) -> dict[int, Any]:
    """Ctrl-C is left to the command (same terminal group), SIGTERM/SIGHUP are passed on to the sandbox's
    supervisor; the handlers these replace, to restore."""
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def forward(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            return  # the command got it from the terminal too; the supervisor outlives it to flush
        supervisor = _first_child(child.pid)
        if supervisor:
            try:
                os.kill(supervisor, signum)
            except ProcessLookupError:
                pass

    for sig in previous:
        signal.signal(sig, forward)
    return previous


def _failed(message: str) -> int:
    print(f"telemetry-audit: {message}", file=sys.stderr)
    return 125


def _first_child(pid: int) -> int:
    """The supervisor's pid as seen from here (unshare --fork's only child)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as stream:
            children = stream.read().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _read_outcome(path: str, unshare_status: int) -> SealedOutcome:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return SealedOutcome(125, error=f"the sandbox ended without a result (unshare exited with {unshare_status})")
    lingering = tuple(LingeringProcess(str(item["name"]), int(item["pid"]), float(item["seconds"]),
                                       "ended" if item["ended"] else "finished") for item in data.get("lingerers", ()))
    return SealedOutcome(int(data["status"]), lingering, error=str(data.get("error", "")),
                         proxy_status=int(data.get("proxy_status", 0)), setup_failed=bool(data.get("setup_failed")),
                         proxy_lost=bool(data.get("proxy_lost")))


def _resolv_conf_override(workdir: str, resolv_conf: str = "/etc/resolv.conf") -> str:
    """A resolv.conf naming a resolver the tun route reaches, when the host's names a loopback one (or none).

    systemd-resolved's 127.0.0.53 would be the sandbox's own (empty) loopback; any non-loopback address goes
    through the tun and reaches the proxy's DNS answers.
    """
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as stream:
            servers = [line.split()[1] for line in stream if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        servers = []
    if servers and not any(s.startswith("127.") or s == "::1" for s in servers):
        return ""
    path = os.path.join(workdir, "resolv.conf")
    with open(path, "w", encoding="ascii") as stream:
        stream.write("nameserver 198.18.0.1\noptions timeout:2 attempts:2\n")
    os.chmod(path, 0o644)
    return path
