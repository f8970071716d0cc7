"""One audited proxy session: what `run`, `proxy`, `collector`, `optout-check` and the pytest plugin share.

A session owns a private working directory, makes sure the CA exists, starts the lean proxy child
(`telemetry_audit.proxy.server`) with its settings and the audited process's environment handed over on a
pipe (never on disk, never on a command line), waits until it listens, gives clients the environment that
routes them through it, and reads its audit log back for the report.

The child runs in its own session (so the terminal's Ctrl-C reaches the audited command first and the proxy
stays up to record its last requests) and shuts itself down if its supervisor dies.

Start-up order matters for `run`'s overhead: the child is spawned before its configuration is built (`run`
spawns it before the CLI has even parsed its arguments, see `spawn_proxy_child`) and imports mitmproxy while the
parent works; the parent hands it the policy it loaded meanwhile, so the child does not load it again. This
module imports at the top only what spawning the child needs, and everything else where a method needs it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from telemetry_audit.proxy.ca import default_confdir, ensure_ca

if TYPE_CHECKING:
    from telemetry_audit.proxy.settings import ProxySettings

READY_TIMEOUT = 60.0
TOKEN_VARIABLE = "TELEMETRY_AUDIT_TOKEN"
"""Carries the session's inspection-API token to the audited command (send it as X-Telemetry-Audit-Token)."""
STOP_TIMEOUT = 20.0
COLLECTOR_MAX_BODY = "32m"
"""The standalone collector answers larger request bodies 413 before any emulator sees them (mitmproxy's
`body_size_limit`; vendors' own limits are lower: OTLP's 20 MiB)."""


PROXY_COMMAND = (sys.executable, "-P", "-m", "telemetry_audit.proxy.server")
"""The proxy child (-P: never import from the current directory, where a source checkout would shadow the
installed package). Its configuration arrives on standard input, its ready line leaves on standard output."""


PROXY_STDERR = "proxy.stderr"
"""The proxy child's error output, in the session's working directory."""


def spawn_proxy_child(workdir: str) -> subprocess.Popen[bytes]:
    """Start the proxy child in its own session, before anything is known of its configuration: it imports
    mitmproxy (most of its start-up) first and then waits for `ProxySession.hand_over`. Its error output goes to
    `PROXY_STDERR` in `workdir` (the session's working directory)."""
    with open(os.path.join(workdir, PROXY_STDERR), "wb") as stderr:
        return subprocess.Popen(PROXY_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)


class ProxyStartError(RuntimeError):
    """The proxy child exited or never listened; the message carries its own error output."""


class ProxyFailedError(RuntimeError):
    """The proxy child stopped on its own (crashed, or the audit log could not be written)."""


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `PORT` (on 127.0.0.1); `ValueError` says what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"expected HOST:PORT or PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range (0-65535)")
    return host, number


def audit_environment_data(env: Mapping[str, str], canaries: Sequence[str] = ()) -> dict[str, Any]:
    """The audited process's environment as the proxy child receives it (for the env-value detector)."""
    from telemetry_audit.detectors.base import AuditEnvironment

    current = AuditEnvironment.current(dict(env))
    return {"env": dict(env), "home": current.home, "cwd": current.cwd, "user": current.user,
            "hostname": current.hostname, "canaries": list(canaries)}


class ProxySession:
    """One proxy child, its files and the environment that routes a client through it."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        confdir: str = "",
        audited_env: Mapping[str, str] | None = None,
        canaries: Sequence[str] = (),
        workdir: str | None = None,
        verbose: bool = False,
        mitmproxy_options: Mapping[str, Any] | None = None,
    ) -> None:
        import secrets
        import uuid
        from dataclasses import replace

        self.confdir = confdir or default_confdir()
        self.listen = listen
        self.audited_env = dict(audited_env) if audited_env is not None else None
        self.canaries = tuple(canaries)
        self.verbose = verbose
        self.mitmproxy_options = dict(mitmproxy_options or {})
        self._own_workdir = workdir is None
        self.workdir = workdir or ""
        self.settings = settings if settings.session else replace(settings, session=uuid.uuid4().hex[:16])
        if not self.settings.inspection_token:
            self.settings = replace(self.settings, inspection_token=secrets.token_urlsafe(24))
        self.process: subprocess.Popen[bytes] | None = None
        self.bound_host = ""
        """The address the child listens on as it said (`0.0.0.0` stays that; `host` is where to reach it)."""
        self.host = ""
        self.port = 0
        self.ca_cert = ""
        self._ca_bundle = ""

    @classmethod
    def collector(cls, settings: ProxySettings, *, listen: tuple[str, int], confdir: str = "",
                  verbose: bool = False) -> ProxySession:
        """The standalone collector: the same child and addon, listening as a regular proxy that also takes plain
        requests (`Host` naming the collector, absolute-form, CONNECT). Every request is audited with the whole
        policy and answered by the offline dispatcher, as `proxy` answers telemetry (blocked and redacted as
        `settings.mode` says, so the same request leaves the same rows); nothing is ever forwarded."""
        from dataclasses import replace

        collector = replace(settings, collector=True, audit_all=True, offline=True, offline_unknown="fail")
        return cls(collector, listen=listen, confdir=confdir, verbose=verbose,
                   mitmproxy_options={"body_size_limit": COLLECTOR_MAX_BODY})

    # --- life cycle ---------------------------------------------------------------------------------------------

    def prepare(self) -> ProxySession:
        """The private working directory, the CA and the log path (idempotent; `hand_over` and `start_sealed` call
        it)."""
        from dataclasses import replace

        self._ensure_workdir()
        self.ca_cert = ensure_ca(self.confdir)
        if not self.settings.log and not self.settings.collector:  # a collector keeps its store, not a log
            self.settings = replace(self.settings, log=os.path.join(self.workdir, "audit.jsonl"))
        return self

    def _ensure_workdir(self) -> None:
        if not self.workdir:
            import tempfile

            self.workdir = tempfile.mkdtemp(prefix="telemetry-audit-")
        os.chmod(self.workdir, 0o700)

    def config(self, *, upstream_proxy: str = "", supervised: bool = True, policy: Any = None) -> dict[str, Any]:
        """What the proxy child receives on standard input (see `telemetry_audit.proxy.server`).

        `supervised`: the child watches this process and stops if it dies (not inside a sealed run, where the
        sandbox's own supervisor is its parent). `policy`: the `Policy` this process loaded from exactly these
        settings' policy files and baseline; the child takes it instead of loading the files again (it would
        otherwise be a tenth of a second of its start-up, while this process loads it anyway for the report).
        """
        config: dict[str, Any] = {
            "listen_host": self.listen[0],
            "listen_port": self.listen[1],
            "confdir": self.confdir,
            "options": self.settings.to_options(),
            "mitmproxy": self.mitmproxy_options,
            "verbose": self.verbose,
        }
        if supervised:
            config["parent_pid"] = os.getpid()
        if upstream_proxy:
            config["upstream_proxy"] = upstream_proxy
        if self.audited_env is not None:
            config["environment"] = audit_environment_data(self.audited_env, self.canaries)
        if policy is not None:
            from telemetry_audit.proxy.handover import encode_policy

            encoded = encode_policy(policy, self.settings.policy, self.settings.baseline)
            if encoded:
                config["policy"] = encoded
        return config

    def launch(self, *, upstream_proxy: str = "", policy: Any = None) -> ProxySession:
        """Start the child and hand it its configuration; `wait_ready()` waits for it to listen."""
        return self.spawn().hand_over(upstream_proxy=upstream_proxy, policy=policy)

    def spawn(self, process: subprocess.Popen[bytes] | None = None) -> ProxySession:
        """Start the child (or adopt `process`, one `spawn_proxy_child` started into this session's working
        directory); it imports mitmproxy until `hand_over` gives it its configuration. Split from `hand_over` so
        the caller can do its own start-up work (load the policy for the report) meanwhile."""
        if self.process is None:
            self._ensure_workdir()
            self.process = process or spawn_proxy_child(self.workdir)
        return self

    def hand_over(self, *, upstream_proxy: str = "", policy: Any = None) -> ProxySession:
        """Give the spawned child its configuration (see `config` for `policy`)."""
        assert self.process is not None, "spawn() first"
        try:
            self.prepare()
            config = json.dumps(self.config(upstream_proxy=upstream_proxy, policy=policy)).encode("utf-8")
        except BaseException:
            self.stop()  # without its configuration the child exits; not left waiting for one
            raise
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(config)
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        return self

    def run_sealed(self, command: Sequence[str], env: Mapping[str, str], support: Any, *, linger: float,
                   online: bool, audit_loopback: bool, cwd: str | None = None) -> Any:
        """Run `command` and this session's proxy together in a sealed sandbox (see `telemetry_audit.sandbox`);
        the `SealedOutcome`. The proxy inside reads the same configuration and writes the same log."""
        return self.start_sealed(command, env, support, linger=linger, online=online, audit_loopback=audit_loopback,
                                 cwd=cwd).wait()

    def start_sealed(self, command: Sequence[str], env: Mapping[str, str], support: Any, *, linger: float,
                     online: bool, audit_loopback: bool, cwd: str | None = None, started: Any = None,
                     policy: Any = None) -> Any:
        """`run_sealed` in two steps: the sandbox starts now; `.wait()` (or `.abort()`) on what this returns.

        The sandbox (and in it the proxy, importing) is spawned first, unless `started` is one already spawned
        into this session's working directory (`spawn_sealed`); its spec is built and handed over after
        (`policy` as in `config`).
        """
        import uuid

        from telemetry_audit.sandbox.launcher import SealedRun

        if started is None:
            started = self.spawn_sealed(support)
        try:
            self.prepare()
            from telemetry_audit.session.sealed_env import sealed_environment, upstream_proxy_from

            child_env = sealed_environment(env, ca_cert_path=self.ca_cert, ca_bundle_path=self.ca_bundle,
                                           marker=uuid.uuid4().hex[:16])
            child_env[TOKEN_VARIABLE] = self.settings.inspection_token
            run = SealedRun(self.config(supervised=False, policy=policy), list(command), child_env, self.workdir,
                            linger=linger, online=online, audit_loopback=audit_loopback,
                            upstream_proxy=upstream_proxy_from(env) if online else "", cwd=cwd or os.getcwd())
            started.hand_over(run)
        except BaseException:
            started.abort()
            raise
        return started

    def spawn_sealed(self, support: Any) -> Any:
        """Start the sandbox (its proxy first) before its run is known; `start_sealed(..., started=)` hands it over,
        `.abort()` ends it."""
        from telemetry_audit.sandbox.launcher import spawn_sealed

        self._ensure_workdir()
        return spawn_sealed(self.workdir, support)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> ProxySession:
        """Block until the child listens; `ProxyStartError` with its own message when it does not."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.process.stdout.fileno()
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            line += chunk
        try:
            announced = json.loads(line.decode("utf-8")) if line else {}
        except ValueError:
            announced = {}
        if not announced.get("port"):
            self.stop()
            message = self.stderr_text().strip() or "the proxy did not start"
            host, port = self.listen
            raise ProxyStartError(f"cannot start the proxy on {host}:{port}:\n{message}")
        self.bound_host = str(announced["host"])
        self.host = "127.0.0.1" if announced["host"] in ("", "0.0.0.0", "::") else announced["host"]
        self.port = int(announced["port"])
        return self

    def start(self, *, policy: Any = None) -> ProxySession:
        """`launch` and `wait_ready` (see `config` for `policy`)."""
        return self.launch(policy=policy).wait_ready()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ask the child to shut down (it flushes its log and store) and wait; its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                wait_for_exit(self.process, timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return int(self.process.returncode or 0)

    def close(self) -> int:
        """Stop the child and remove the private working directory (and with it the default log)."""
        status = self.stop()
        if self._own_workdir and self.workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)
        return status

    def __enter__(self) -> ProxySession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what a client needs ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> str:
        return self.settings.log

    @property
    def stderr_path(self) -> str:
        return os.path.join(self.workdir, PROXY_STDERR)

    def stderr_text(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as stream:
                return stream.read()
        except OSError:
            return ""

    @property
    def ca_bundle(self) -> str:
        """System CAs plus the proxy CA, for variables that replace a client's trust store (written once)."""
        from telemetry_audit.session.child_env import combined_ca_bundle

        if not self._ca_bundle:
            self._ca_bundle = combined_ca_bundle(self.ca_cert, self.workdir)
        return self._ca_bundle

    def client_environment(
        self,
        base: Mapping[str, str],
        *,
        bypass_loopback: bool = True,
        audited_hosts: Iterable[str] = (),
        no_proxy_for: Iterable[str] = (),
        node_preload: bool = True,
    ) -> dict[str, str]:
        """`base` plus every proxy and CA variable (the Node preload, a Java truststore) that routes a client
        through us; see `no_proxy_plan` for what NO_PROXY keeps."""
        from telemetry_audit.session.child_env import child_environment, preload_path

        env = child_environment(base, proxy_url=self.url, ca_cert_path=self.ca_cert, ca_bundle_path=self.ca_bundle,
                                preload_path=preload_path() if node_preload else None,
                                audited_hosts=audited_hosts, bypass_loopback=bypass_loopback,
                                no_proxy_for=no_proxy_for, java_truststore=self.java_truststore())
        env[TOKEN_VARIABLE] = self.settings.inspection_token
        return env

    def java_truststore(self) -> str | None:
        """The JDK's CAs plus ours for JVMs (built once per CA and JDK, cached beside the CA); None without Java."""
        from telemetry_audit.session.child_env import java_truststore

        try:
            return java_truststore(self.ca_cert, self.confdir)
        except (OSError, RuntimeError, ValueError):
            return None

    # --- what it saw --------------------------------------------------------------------------------------------

    def records(self) -> tuple[list[dict[str, Any]], int]:
        """(request records, requests seen) of this session so far."""
        from telemetry_audit.proxy.auditlog import read_log

        return read_log(self.log_path, self.settings.session)

    def connections(self) -> list[dict[str, Any]]:
        """A sealed run's non-HTTP connection records (raw TCP, refused UDP) of this session."""
        found: list[dict[str, Any]] = []
        if not os.path.isfile(self.log_path):
            return found
        with open(self.log_path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if '"record":"connection"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("session", self.settings.session) == self.settings.session:
                    record.pop("record", None)
                    record.pop("session", None)
                    found.append(record)
        return found

    def report(self, policy: Any) -> dict[str, Any]:
        """The JSON report (version 1) of this session's requests."""
        from telemetry_audit.report.build import report_from_entries

        records, total = self.records()
        return report_from_entries(records, policy, total_requests=total)


def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    """`process.wait(timeout)`, noticed as soon as it exits.

    `Popen.wait` with a timeout polls, sleeping twice as long each time (up to 50 ms): a proxy child that takes
    ~16 ms to shut down was noticed up to ~16 ms late, at the end of every `run`. A pidfd (Linux) becomes readable
    the moment the process exits; elsewhere, or without one, this is `Popen.wait`. The process must not have been
    reaped yet (then its pid could name another process): `stop` asks `poll()` first.
    """
    from telemetry_audit.sandbox.proxy_start import pid_exits_within

    exited = pid_exits_within(process.pid, timeout)
    if exited is None:
        return process.wait(timeout)
    if not exited:
        raise subprocess.TimeoutExpired(process.args, timeout)
    return process.wait()


def audited_hosts(policy: Any) -> list[str]:
    """Host names that a user's NO_PROXY must not let bypass the proxy: known collectors and the packs' hosts."""
    from telemetry_audit.endpoints import TELEMETRY_HOSTS

    names = [h[2:] if h.startswith("*.") else h for h in TELEMETRY_HOSTS]
    for rule in policy.rules:
        for match in rule.match:
            names += [h[2:] if h.startswith("*.") else h for h in match.hosts if h != "*"]
    names += [h[2:] if h.startswith("*.") else h for h in policy.settings.telemetry_hosts]
    return sorted(set(names))


__all__ = ["PROXY_COMMAND", "ProxyFailedError", "ProxySession", "ProxyStartError", "audited_hosts", "parse_listen",
           "spawn_proxy_child"]
