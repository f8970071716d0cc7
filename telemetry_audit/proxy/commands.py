"""`telemetry-audit proxy`, `run` and `ca`: the CLI side of the proxy.

Both commands start `telemetry_audit.proxy.server` as a child process in its
own session (so the terminal's Ctrl-C reaches the audited command first and
the proxy stays up to record its last requests), wait until it listens, and
read the audit log it writes to build the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from telemetry_audit.cli import (
    EXIT_FINDINGS,
    EXIT_USAGE,
    _fatal,
    _stderr,
    add_policy_options,
    add_report_options,
    emit_reports,
    fails,
    load_policy_or_exit,
    summary_line,
)
from telemetry_audit.proxy.auditlog import read_log
from telemetry_audit.proxy.child_env import child_environment, combined_ca_bundle, preload_path
from telemetry_audit.sandbox import (
    CAPTURE_PROXY_VARIABLES,
    CAPTURE_SEALED,
    SEAL_CHOICES,
    LingeringProcess,
    SealedRun,
    SealSupport,
    probe_seal,
    run_sealed,
)
from telemetry_audit.sandbox.descendants import linger_for_marked
from telemetry_audit.sandbox.environment import RUN_MARKER, sealed_environment, upstream_proxy_from

CA_CERT_NAME = "mitmproxy-ca-cert.pem"
READY_TIMEOUT = 60.0


def default_confdir() -> str:
    """Where the per-user CA lives: `$TELEMETRY_AUDIT_HOME` or `~/.telemetry-audit`."""
    return os.environ.get("TELEMETRY_AUDIT_HOME") or os.path.join(os.path.expanduser("~"), ".telemetry-audit")


def ensure_ca(confdir: str) -> str:
    """Create the CA once per user (private key readable by the owner only); return the certificate path."""
    from mitmproxy import certs

    os.makedirs(confdir, mode=0o700, exist_ok=True)
    certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    for name in os.listdir(confdir):
        if name.endswith(".pem") and "cert" not in name or name.endswith(".p12"):
            os.chmod(os.path.join(confdir, name), 0o600)
    return os.path.join(confdir, CA_CERT_NAME)


class ProxyStartError(RuntimeError):
    """The proxy child exited or never listened; the message carries its own error output."""


@dataclass
class ProxyProcess:
    """A running proxy child and where it listens."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    stderr_path: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 20.0) -> int:
        """Ask the proxy to shut down (it flushes its log) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode or 0)

    def stderr_text(self) -> str:
        try:
            return Path(self.stderr_path).read_text("utf-8", "replace")
        except OSError:
            return ""


def start_proxy_or_exit(workdir: str, **options: Any) -> ProxyProcess:
    """`start_proxy` for the CLI: a proxy that cannot start is a usage error (exit 2) with its own message."""
    try:
        return start_proxy(workdir, **options)
    except ProxyStartError as e:
        _fatal(str(e))


def start_proxy(
    workdir: str,
    *,
    listen: str,
    confdir: str,
    policies: Sequence[str],
    log_path: str,
    mode: str,
    offline: bool,
    offline_unknown: str = "fail",
    audit_all: bool = False,
    block_style: str = "empty",
    env_file: str = "",
    store: str = "",
    baseline: str = "",
    verbose: bool = False,
    client_process: bool = False,
    upstream_proxy: str = "",
) -> ProxyProcess:
    """Start the proxy child and wait until it listens (or fail with its own error message)."""
    ready_file = os.path.join(workdir, "ready.json")
    stderr_path = os.path.join(workdir, "proxy.stderr")
    command = proxy_server_argv(
        listen=listen, confdir=confdir, policies=policies, log_path=log_path, mode=mode, offline=offline,
        offline_unknown=offline_unknown, audit_all=audit_all, block_style=block_style, env_file=env_file,
        store=store, baseline=baseline, verbose=verbose, client_process=client_process,
    ) + ["--ready-file", ready_file, "--parent-pid", str(os.getpid())]
    if upstream_proxy:
        command += ["--upstream-proxy", upstream_proxy]
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                   start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(ready_file):
            with open(ready_file, encoding="utf-8") as stream:
                ready = json.load(stream)
            return ProxyProcess(process, "127.0.0.1" if ready["host"] in ("", "0.0.0.0") else ready["host"],
                                int(ready["port"]), stderr_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    proxy = ProxyProcess(process, "", 0, stderr_path)
    proxy.stop()
    message = proxy.stderr_text().strip() or "the proxy did not start"
    raise ProxyStartError(f"cannot start the proxy on {listen}:\n{message}")


def proxy_server_argv(
    *,
    listen: str,
    confdir: str,
    policies: Sequence[str],
    log_path: str,
    mode: str,
    offline: bool,
    offline_unknown: str = "fail",
    audit_all: bool = False,
    block_style: str = "empty",
    env_file: str = "",
    store: str = "",
    baseline: str = "",
    verbose: bool = False,
    client_process: bool = False,
) -> list[str]:
    """The proxy server's command line (shared by `start_proxy` and the sealed launcher, which runs it inside)."""
    # -P: never import from the current directory (a source checkout there would shadow the installed package).
    command = [sys.executable, "-P", "-m", "telemetry_audit.proxy.server", "--listen", listen, "--confdir", confdir,
               "--mode", mode, "--log", log_path, "--block-style", block_style, "--offline-unknown", offline_unknown]
    for policy in policies:
        command += ["--policy", policy]
    flags = {"--offline": offline, "--audit-all": audit_all, "--verbose": verbose, "--client-process": client_process}
    command += [flag for flag, enabled in flags.items() if enabled]
    for option, path in (("--env-file", env_file), ("--store", store), ("--baseline", baseline)):
        if path:
            command += [option, path]
    return command


def free_loopback_listen() -> str:
    """`127.0.0.1:0`: the proxy picks a free port itself and reports it, so there is no race."""
    return "127.0.0.1:0"


@contextmanager
def private_workdir() -> Iterator[str]:
    """A temporary directory only the user can read (it holds the audited environment)."""
    path = tempfile.mkdtemp(prefix="telemetry-audit-")
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_environment_file(workdir: str, env: dict[str, str], canaries: Sequence[str] = ()) -> str:
    """The audited process's environment for the env-value detector, in a private file."""
    from telemetry_audit.detectors.base import AuditEnvironment

    current = AuditEnvironment.current(env)
    path = os.path.join(workdir, "environment.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump({"env": env, "home": current.home, "cwd": current.cwd, "user": current.user,
                   "hostname": current.hostname, "canaries": list(canaries)}, stream)
    return path


def audited_hosts(policy: Any) -> list[str]:
    """Host names that a user's NO_PROXY must not let bypass the proxy: known collectors and the packs' hosts."""
    from telemetry_audit.endpoints import TELEMETRY_HOSTS

    names = [h[2:] if h.startswith("*.") else h for h in TELEMETRY_HOSTS]
    for rule in policy.rules:
        for match in rule.match:
            names += [h[2:] if h.startswith("*.") else h for h in match.hosts if h != "*"]
    names += [h[2:] if h.startswith("*.") else h for h in policy.settings.telemetry_hosts]
    return sorted(set(names))


def _proxy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("enforce", "audit"), default="enforce",
                        help="enforce: block and redact as the policy says; audit: record only, modify nothing")
    parser.add_argument("--log", metavar="FILE", help="append the audit log (JSON lines) to FILE")
    parser.add_argument("--block-style", choices=("empty", "kill", "403"), default="empty",
                        help="how blocked requests are answered (default: an empty success, so tools don't retry)")
    parser.add_argument("--audit-all", action="store_true", help="audit every request, not only telemetry")
    parser.add_argument("--store", metavar="FILE", help="keep received events in this SQLite file")
    parser.add_argument("--confdir", default=default_confdir(), help="where the proxy CA lives")
    parser.add_argument("--verbose", action="store_true", help="show mitmproxy's own log")


# --- run ---------------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _fatal("nothing to run: give the command after `--`, e.g. `telemetry-audit run -- sst version`")
    if shutil.which(command[0]) is None and not os.path.exists(command[0]):
        _fatal(f"command not found: {command[0]}")
    policy = load_policy_or_exit(args)
    console = _stderr()
    support = seal_support_or_exit(args.seal, console)
    ca_cert = ensure_ca(args.confdir)
    base_env = dict(os.environ)
    canaries: list[str] = []
    with private_workdir() as workdir:
        if args.canary:
            from telemetry_audit.canary import plant_canaries

            planted = plant_canaries(base_env, workdir)
            base_env, canaries = planted.env, list(planted.markers)
            console.print("telemetry-audit: canaries planted: $TELEMETRY_AUDIT_CANARY_API_TOKEN, "
                          f"USER={planted.user}, HOME={planted.home}", markup=False)
        log_path = args.log or os.path.join(workdir, "audit.jsonl")
        env_file = write_environment_file(workdir, base_env, canaries)
        server_options: dict[str, Any] = dict(
            confdir=args.confdir, policies=args.policy or [], log_path=log_path, mode=args.mode,
            offline=not args.online, offline_unknown="pass" if args.online else args.offline_unknown,
            audit_all=args.audit_all, block_style=args.block_style, env_file=env_file, store=args.store or "",
            baseline=args.baseline or "", verbose=args.verbose,
        )
        bundle = combined_ca_bundle(ca_cert, workdir)
        where = f"{'online' if args.online else 'offline'}, {args.mode} mode"
        capture: RunCapture | None = None
        if support.ok:
            capture = sealed_capture(args, command, base_env, workdir, server_options, ca_cert, bundle, support,
                                     banner=f"telemetry-audit: sealed run ({where}); running: {' '.join(command)}")
            if capture.setup_failed and args.seal == "on":
                _fatal(f"cannot seal the run (--seal on): {capture.error}\n{_proxy_stderr(workdir)}".rstrip())
            if capture.setup_failed and args.seal == "auto":  # the command never ran: run it unsealed instead
                console.print(f"telemetry-audit: not sealed ({capture.error}); capturing through proxy variables",
                              markup=False)
                support, capture = SealSupport(False, capture.error), None
        proxy_failed = False
        if capture is None:
            proxy = start_proxy_or_exit(workdir, listen=free_loopback_listen(), client_process=True,
                                        upstream_proxy=upstream_proxy_from(base_env) if args.online else "",
                                        **server_options)
            marker = os.urandom(8).hex()
            env = child_environment(base_env, proxy_url=proxy.url, ca_cert_path=ca_cert, ca_bundle_path=bundle,
                                    preload_path=preload_path(), bypass_loopback=not args.proxy_loopback,
                                    audited_hosts=audited_hosts(policy))
            env[RUN_MARKER] = marker
            console.print(f"telemetry-audit: proxy on {proxy.url} ({where}, captured through proxy variables); "
                          f"running: {' '.join(command)}", markup=False)
            status = _run_child(command, env)
            lingering = linger_for_marked(marker, args.linger)
            capture = RunCapture(status, CAPTURE_PROXY_VARIABLES, support.reason, tuple(lingering))
            proxy_failed = proxy.stop() not in (0, -signal.SIGTERM)
        records, total = read_log(log_path)
        if (proxy_failed if capture.mode == CAPTURE_PROXY_VARIABLES else bool(capture.error)) and not records:
            console.print(_proxy_stderr(workdir), markup=False)
        connections = _connection_records(log_path)
        if connections:
            capture = replace(capture, connections=tuple(connections))
            console.print(f"telemetry-audit: {len(connections)} non-HTTP connection(s): " + ", ".join(
                f"{c.get('protocol')} {c.get('host')}:{c.get('port')} {c.get('outcome')}" for c in connections[:5])
                + (" ..." if len(connections) > 5 else ""), markup=False)
        for item in capture.lingering:
            console.print(f"telemetry-audit: {item.name}[{item.pid}] outlived the command: {item.outcome} after "
                          f"{item.seconds:g} s", markup=False)
        if capture.error:
            console.print(f"telemetry-audit: {capture.error}", markup=False)
        status = capture.status
    from telemetry_audit.report.build import report_from_entries

    report = report_from_entries(records, policy, total_requests=total)
    report["command"] = {"argv_length": len(command), "exit_code": status}
    report["capture"] = capture.to_report()
    emit_reports(args, report)
    console.print(summary_line(report), markup=False)
    if fails(report, args.fail_on):
        return int(args.exit_code)
    return status


@dataclass(frozen=True)
class RunCapture:
    """How `run` captured the command's traffic and how the command ended."""

    status: int
    mode: str
    """`sealed` or `proxy variables`."""
    reason: str = ""
    """Why the run was not sealed (empty when sealed or when sealing was turned off)."""
    lingering: tuple[LingeringProcess, ...] = ()
    error: str = ""
    setup_failed: bool = False
    connections: tuple[dict[str, Any], ...] = ()
    """Sealed: the audit log's non-HTTP connection records (raw TCP, refused UDP)."""

    def to_report(self) -> dict[str, Any]:
        report: dict[str, Any] = {"mode": self.mode}
        if self.reason:
            report["not_sealed_because"] = self.reason
        report["lingering"] = [{"name": p.name, "pid": p.pid, "seconds": p.seconds, "outcome": p.outcome}
                               for p in self.lingering]
        report["connections"] = [dict(c) for c in self.connections]
        return report


def _connection_records(log_path: str) -> list[dict[str, Any]]:
    """The sealed proxy's `"record": "connection"` lines (raw TCP, UDP) from the audit log."""
    found: list[dict[str, Any]] = []
    try:
        with open(log_path, encoding="utf-8") as stream:
            for line in stream:
                if '"record":"connection"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                record.pop("record", None)
                found.append(record)
    except OSError:
        pass
    return found


def _proxy_stderr(workdir: str) -> str:
    try:
        return Path(workdir, "proxy.stderr").read_text("utf-8", "replace")
    except OSError:
        return ""


def seal_support_or_exit(seal: str, console: Console) -> SealSupport:
    """`--seal`: off -> not sealed; on -> sealed or exit 2 with the reason; auto -> sealed, else a notice."""
    if seal == "off":
        return SealSupport(False, "")
    support = probe_seal()
    if support.ok:
        return support
    if seal == "on":
        _fatal(f"cannot seal the run (--seal on): {support.reason}")
    console.print(f"telemetry-audit: not sealed ({support.reason}); capturing through proxy variables",
                  markup=False)
    return support


def sealed_capture(args: argparse.Namespace, command: list[str], base_env: dict[str, str], workdir: str,
                   server_options: dict[str, Any], ca_cert: str, bundle: str, support: SealSupport,
                   *, banner: str) -> RunCapture:
    """Run the command and its proxy sealed (see `telemetry_audit.sandbox`)."""
    argv = proxy_server_argv(listen=free_loopback_listen(), client_process=True, **server_options)
    env = sealed_environment(base_env, ca_cert_path=ca_cert, ca_bundle_path=bundle, marker=os.urandom(8).hex())
    _stderr().print(banner, markup=False)
    upstream = upstream_proxy_from(base_env) if args.online else ""
    outcome = run_sealed(SealedRun(argv, command, env, workdir, linger=args.linger, online=args.online,
                                   audit_loopback=args.proxy_loopback, upstream_proxy=upstream), support)
    return RunCapture(outcome.status, CAPTURE_SEALED, "", outcome.lingering, outcome.error, outcome.setup_failed)


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run the audited command in the foreground; Ctrl-C reaches it directly, SIGTERM is forwarded."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as e:
        _fatal(f"cannot run {command[0]}: {e.strerror or e}")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def forward(signum: int, frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in previous:
        signal.signal(sig, forward)
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - the handler above replaces the default
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code  # a signal death reads like a shell's 128+N


# --- proxy -------------------------------------------------------------------------------------------------------


def cmd_proxy(args: argparse.Namespace) -> int:
    policy = load_policy_or_exit(args)
    console = _stderr()
    ca_cert = ensure_ca(args.confdir)
    with private_workdir() as workdir:
        log_path = args.log or os.path.join(workdir, "audit.jsonl")
        proxy = start_proxy_or_exit(
            workdir, listen=args.listen, confdir=args.confdir, policies=args.policy or [], log_path=log_path,
            mode=args.mode, offline=args.offline, audit_all=args.audit_all, block_style=args.block_style,
            store=args.store or "", baseline=args.baseline or "", verbose=args.verbose,
        )
        _print_usage(console, proxy, ca_cert, combined_ca_bundle(ca_cert, args.confdir), args.offline)
        stop = False

        def request_stop(signum: int, frame: Any) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        offset = 0
        while not stop and proxy.process.poll() is None:
            offset = _print_new_records(console, log_path, offset)
            time.sleep(0.2)
        proxy.stop()
        _print_new_records(console, log_path, offset)
        records, total = read_log(log_path)
    from telemetry_audit.report.build import report_from_entries

    report = report_from_entries(records, policy, total_requests=total)
    if args.formats or args.outputs:
        emit_reports(args, report)
    console.print(summary_line(report), markup=False)
    return EXIT_FINDINGS if fails(report, args.fail_on) else 0


def _print_usage(console: Console, proxy: ProxyProcess, ca_cert: str, bundle: str, offline: bool) -> None:
    console.print(f"[bold]telemetry-audit proxy[/] listening on {proxy.url} "
                  f"({'offline: collectors are emulated' if offline else 'online'})")
    console.print(f"CA certificate: {ca_cert}  (system CAs + this one: {bundle})")
    console.print("Use it from a shell:")
    for line in (f"export HTTP_PROXY={proxy.url} HTTPS_PROXY={proxy.url} http_proxy={proxy.url} "
                 f"https_proxy={proxy.url}",
                 f"export SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle} CURL_CA_BUNDLE={bundle} "
                 f"GIT_SSL_CAINFO={bundle} NODE_EXTRA_CA_CERTS={ca_cert}",
                 f"export NODE_OPTIONS=\"${{NODE_OPTIONS:+$NODE_OPTIONS }}--require {preload_path()}\""
                 "  # Node 20 ignores HTTPS_PROXY"):
        console.print(f"  {line}", markup=False, highlight=False)
    console.print("Or let `telemetry-audit run -- CMD` set all of this for one command. Ctrl-C stops.")


_DECISION_STYLE = {"block": "bold red", "redact": "yellow", "log": "cyan", "allow": "green"}


def _print_new_records(console: Console, path: str, offset: int) -> int:
    """The live view: one line per audited request as the proxy logs it."""
    try:
        with open(path, encoding="utf-8") as stream:
            stream.seek(offset)
            while True:
                line = stream.readline()
                if not line.endswith("\n"):
                    break
                offset = stream.tell()
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("record") != "request":
                    continue
                decision = record.get("decision", "")
                style = _DECISION_STYLE.get(decision, "")
                findings = record.get("findings", [])
                top = "; ".join(f"{f['kind']} {f['field']} {f['preview']}" for f in findings[:3])
                console.print(f"[{style}]{decision:>6}[/] {record.get('method')} {record.get('host')}"
                              f"{record.get('path')} [dim]{record.get('tool') or ''}[/] {top}", highlight=False)
    except FileNotFoundError:
        pass
    return offset


# --- ca ----------------------------------------------------------------------------------------------------------


def cmd_ca(args: argparse.Namespace) -> int:
    cert = ensure_ca(args.confdir)
    if args.path_only:
        print(cert)
        return 0
    print(f"CA certificate: {cert}")
    print(f"Private key:    {os.path.join(args.confdir, 'mitmproxy-ca.pem')} (owner-only)")
    print("`telemetry-audit run` trusts it for the command it runs; nothing to install for that.")
    print("To trust it yourself:")
    print(f"  curl / Python / Go: export SSL_CERT_FILE={cert} REQUESTS_CA_BUNDLE={cert}")
    print(f"  Node:               export NODE_EXTRA_CA_CERTS={cert}")
    print(f"  git:                export GIT_SSL_CAINFO={cert}")
    print(f"  Debian/Ubuntu:      sudo cp {cert} /usr/local/share/ca-certificates/telemetry-audit.crt "
          "&& sudo update-ca-certificates")
    print(f"  macOS:              sudo security add-trusted-cert -d -r trustRoot "
          f"-k /Library/Keychains/System.keychain {cert}")
    return 0


# --- registration ------------------------------------------------------------------------------------------------


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="run a command through the auditing proxy (offline by default)",
        description="Run CMD with every HTTP(S) request routed through the auditing proxy. Offline by default: "
                    "telemetry is answered by emulated collectors and nothing leaves the machine.",
    )
    add_policy_options(run)
    add_report_options(run, default_format="table")
    _proxy_options(run)
    run.add_argument("--online", action="store_true", help="forward allowed and redacted requests upstream")
    run.add_argument("--offline-unknown", choices=("fail", "pass"), default="fail",
                     help="offline: requests to hosts nobody emulates fail as with no network (default) or pass")
    run.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    run.add_argument("--exit-code", type=int, default=EXIT_FINDINGS,
                     help="exit status when findings reach --fail-on (default: 1)")
    run.add_argument("--proxy-loopback", action="store_true",
                     help="route requests to localhost through the proxy too (default: loopback goes direct)")
    run.add_argument("--canary", action="store_true",
                     help="plant unique marker values (fake token, path, user name) and report any that leave")
    run.add_argument("--seal", choices=SEAL_CHOICES, default="auto",
                     help="run the command in its own network namespace whose only way out is the proxy: auto "
                          "(default: when the kernel allows, else proxy variables with a notice), on (or exit 2), off")
    run.add_argument("--linger", type=_seconds, default=15.0, metavar="SECONDS",
                     help="after the command exits, keep capturing while processes it started still run, up to "
                          "SECONDS (default: 15), then end them (sealed) or warn (proxy variables)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(handler=_with_report_file(cmd_run), table_to_stderr=True)

    proxy = commands.add_parser("proxy", help="run the auditing proxy until Ctrl-C, with a live view")
    add_policy_options(proxy)
    add_report_options(proxy, default_format="table")
    _proxy_options(proxy)
    proxy.add_argument("--listen", default="127.0.0.1:8080", help="address to listen on (default: 127.0.0.1:8080)")
    proxy.add_argument("--offline", action="store_true", help="answer telemetry with the emulated collectors")
    proxy.set_defaults(handler=cmd_proxy, table_to_stderr=True)

    ca = commands.add_parser("ca", help="print the proxy CA's path and how to trust it")
    ca.add_argument("--confdir", default=default_confdir())
    ca.add_argument("--path-only", action="store_true", help="print only the certificate path")
    ca.set_defaults(handler=cmd_ca)


def _seconds(value: str) -> float:
    """A duration for `--linger`: a finite number of seconds, zero or more."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {value!r}")
    return seconds


def _with_report_file(handler: Any) -> Any:
    """`--report FILE` is shorthand for one more `--format json --output FILE`."""

    def wrapped(args: argparse.Namespace) -> int:
        if getattr(args, "report", None):
            formats = args.formats or [args.default_format]
            outputs = list(args.outputs or [])
            outputs += ["-"] * (len(formats) - len(outputs))
            args.formats, args.outputs = [*formats, "json"], [*outputs, args.report]
        return int(handler(args))

    return wrapped


__all__ = ["EXIT_USAGE", "cmd_ca", "cmd_proxy", "cmd_run", "ensure_ca", "register", "start_proxy"]
