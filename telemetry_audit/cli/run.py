"""`telemetry-audit run -- CMD`: run one command behind the auditing proxy and report what it sent."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from typing import Any

from telemetry_audit.cli.common import (
    EXIT_AUDIT_FAILED,
    EXIT_FINDINGS,
    UsageError,
    add_policy_options,
    add_proxy_options,
    add_report_options,
    check_report_options,
    check_writable,
    command_after_dashes,
    emit_reports,
    fatal,
    load_policy_or_exit,
    proxy_settings,
    reaches_fail_on,
    stderr_console,
)


def register(commands: Any) -> argparse.ArgumentParser:
    run = commands.add_parser(
        "run", help="run a command through the auditing proxy (offline by default)",
        description="Run CMD with every HTTP(S) request routed through the auditing proxy. Offline by default: "
                    "telemetry is answered by emulated collectors and nothing leaves the machine.",
    )
    add_policy_options(run)
    add_report_options(run, default_format="table")
    add_proxy_options(run)
    run.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    run.add_argument("--exit-code", type=int, default=EXIT_FINDINGS,
                     help="exit status when findings reach --fail-on (default: 1)")
    run.add_argument("--proxy-loopback", action="store_true",
                     help="route requests to localhost through the proxy too (default: loopback goes direct)")
    run.add_argument("--no-proxy-for", action="append", default=[], metavar="HOST",
                     help="let HOST (a NO_PROXY entry) bypass the proxy; refused for telemetry hosts (repeatable). "
                          "Your own NO_PROXY keeps only its loopback entries, so nothing skips the audit by accident")
    run.add_argument("--canary", action="store_true",
                     help="plant unique marker values (fake token, path, user name) and report any that leave")
    run.add_argument("--seal", choices=("auto", "on", "off"), default="auto",
                     help="run CMD in a sandbox whose only way out is the proxy: auto (default: where the kernel "
                          "allows it, else proxy variables with a notice), on (exit 2 when it cannot), off")
    run.add_argument("--linger", type=_seconds, default=15.0, metavar="SECONDS",
                     help="after CMD exits, wait this long for processes it started (late telemetry flushers) "
                          "before ending them (default: 15)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(handler=cmd_run, table_to_stderr=True)
    return run


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {value!r}")
    return seconds


def seal_support(seal: str) -> Any:
    """`--seal`: off -> not sealed; on -> sealed or a usage error with the reason; auto -> whatever the kernel
    allows. The probe runs before anything starts."""
    from telemetry_audit.sandbox.probe import SealSupport, probe_seal

    if seal == "off":
        return SealSupport(False, "")
    support = probe_seal()
    if not support.ok and seal == "on":
        raise UsageError(f"cannot seal the run (--seal on): {support.reason}")
    return support


def report_targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The report outputs, `--report FILE` being one more JSON output."""
    targets = check_report_options(args)
    if args.report:
        check_writable(args.report, "--report")
        targets.append(("json", args.report))
    return targets


def cmd_run(args: argparse.Namespace) -> int:
    """Check every option, then adopt the proxy `main` started before parsing (sealed: the sandbox, which starts
    its proxy first; see `cli.early`), or start it now, so that it imports mitmproxy while this process loads the
    policy (for the report, and handed to the proxy so that it need not load it again) and prepares the command's
    environment; run the command, report."""
    from telemetry_audit.session import ProxySession, ProxyStartError

    command = command_after_dashes(args, "telemetry-audit run -- sst version")
    targets = report_targets(args)
    if args.log:
        check_writable(args.log, "--log")
    early = getattr(args, "early_start", None)
    if early is not None and early.seal == args.seal and early.support is not None:
        support = early.support  # probed a moment ago, before parsing
    else:
        support = seal_support(args.seal)
    base_env = dict(os.environ)
    workdir = early.workdir if early is not None else tempfile.mkdtemp(prefix="telemetry-audit-")
    planted = None
    if args.canary:
        from telemetry_audit.canary import plant_canaries

        planted = plant_canaries(base_env, workdir)
        base_env = planted.env
    session = ProxySession(proxy_settings(args, client_process=True), confdir=args.confdir, audited_env=base_env,
                           canaries=planted.markers if planted else (), workdir=workdir, verbose=args.verbose)
    where = f"{'online' if args.online else 'offline'}, {args.mode} mode"
    program = os.path.basename(command[0]) + (f" with {len(command) - 1} argument(s)" if len(command) > 1 else "")
    capture: dict[str, Any] = {}
    try:
        # The proxy is starting (sealed: the sandbox, its proxy first); everything below runs while it does.
        # From here on this function ends what was started early, and removes its working directory.
        started = early.adopt(sealed=support.ok) if early is not None else None
        outcome = None
        if support.ok:
            sandbox = started or session.spawn_sealed(support)
            try:
                # A policy that does not load ends the sandbox before its proxy listens: the command never runs.
                policy = load_policy_or_exit(args)
                sealed = session.start_sealed(command, base_env, support, linger=args.linger, online=args.online,
                                              audit_loopback=args.proxy_loopback, started=sandbox, policy=policy)
                console = stderr_console()
                _print_canaries(console, planted)
                console.print(f"telemetry-audit: sealed run ({where}); running {program}", markup=False)
            except BaseException:
                sandbox.abort()
                raise
            import_report_modules()
            outcome = sealed.wait()
            if outcome.setup_failed:  # the command never ran: unsealed is still possible
                if args.seal == "on":
                    raise UsageError(f"cannot seal the run (--seal on): {outcome.error}")
                support = type(support)(False, outcome.error)
                console.print(f"telemetry-audit: not sealed ({support.reason}); capturing through proxy variables",
                              markup=False)
                outcome = None
                session.launch(upstream_proxy=_upstream_proxy(args, base_env), policy=policy)
        else:
            session.spawn(started)
            policy = load_policy_or_exit(args)
            session.hand_over(upstream_proxy=_upstream_proxy(args, base_env), policy=policy)
            console = stderr_console()
            _print_canaries(console, planted)
            if args.seal != "off":
                console.print(f"telemetry-audit: not sealed ({support.reason}); capturing through proxy variables",
                              markup=False)
        if outcome is not None:
            from telemetry_audit.sandbox.launcher import CAPTURE_SEALED

            status, lingering = outcome.status, outcome.lingering
            failure = outcome.error or proxy_failure(outcome.proxy_status, session.stderr_text())
            proxy_lost = outcome.proxy_lost
            capture["mode"] = CAPTURE_SEALED
        else:
            from telemetry_audit.sandbox.launcher import CAPTURE_PROXY_VARIABLES

            status, lingering, policy, proxy_lost = _run_unsealed(args, session, command, base_env, console, where,
                                                                  program, policy)
            failure = ""
            capture["mode"] = CAPTURE_PROXY_VARIABLES
            if support.reason:
                capture["not_sealed_because"] = support.reason
        report = session.report(policy)
        connections = session.connections()
        failure = failure or proxy_failure(session.stop(), session.stderr_text())
        if proxy_lost and not failure:  # it stopped while the command ran, however it exited: a failure
            failure = "the auditing proxy stopped on its own"
    except ProxyStartError as e:
        raise UsageError(str(e)) from None
    finally:
        session.close()
        shutil.rmtree(workdir, ignore_errors=True)
    capture["lingering"] = [{"name": p.name, "pid": p.pid, "seconds": p.seconds, "outcome": p.outcome}
                            for p in lingering]
    capture["connections"] = connections
    report["capture"] = capture
    report["command"] = {"program": os.path.basename(command[0]), "argv_length": len(command), "exit_code": status}
    emit_reports(args, report, targets)
    if connections:
        console.print(f"telemetry-audit: {len(connections)} non-HTTP connection(s): " + ", ".join(
            f"{c.get('protocol')} {c.get('host')}:{c.get('port')} {c.get('outcome')}" for c in connections[:5])
            + (" ..." if len(connections) > 5 else ""), markup=False)
    for item in lingering:
        console.print(f"telemetry-audit: {item.name}[{item.pid}] outlived the command: {item.outcome} after "
                      f"{item.seconds:g} s", markup=False)
    from telemetry_audit.report.table import summary_text

    console.print(summary_text(report), markup=False)
    if failure:
        console.print(f"[bold red]telemetry-audit:[/] {failure}; {report['summary']['requests']} request(s) were "
                      "audited before it stopped, later ones were refused, not passed"
                      + ("; the command and everything it started were ended with it" if proxy_lost else ""),
                      highlight=False)
        return EXIT_AUDIT_FAILED
    if reaches_fail_on(args, report):
        return int(args.exit_code)
    return status


REPORT_MODULES = ("telemetry_audit.proxy.auditlog", "telemetry_audit.report.build", "telemetry_audit.report.table")
"""What reading the audit log and writing the report import."""


def import_report_modules() -> None:
    """Import what the report needs while the proxy starts, when this process only waits, rather than after the
    command has exited, when the user waits for it."""
    import importlib

    for name in REPORT_MODULES:
        importlib.import_module(name)


def _print_canaries(console: Any, planted: Any) -> None:
    if planted is not None:
        console.print("telemetry-audit: canaries planted: $TELEMETRY_AUDIT_CANARY_API_TOKEN, "
                      f"USER={planted.user}, HOME={planted.home}", markup=False)


def _upstream_proxy(args: argparse.Namespace, base_env: dict[str, str]) -> str:
    """Online behind the user's own proxy: the proxy child forwards through it."""
    if not args.online:
        return ""
    from telemetry_audit.session.sealed_env import upstream_proxy_from

    return upstream_proxy_from(base_env)


def _run_unsealed(args: argparse.Namespace, session: Any, command: list[str], base_env: dict[str, str],
                  console: Any, where: str, program: str, policy: Any) -> tuple[int, list[Any], Any, bool]:
    """Proxy variables (and the Node preload): the command's descendants are followed by an environment marker.
    The session's child is already starting, its configuration handed over."""
    from telemetry_audit.sandbox.descendants import linger_for_marked
    from telemetry_audit.session import audited_hosts
    from telemetry_audit.session.child_env import no_proxy_plan
    from telemetry_audit.session.sealed_env import RUN_MARKER

    hosts = audited_hosts(policy)
    plan = no_proxy_plan(base_env, audited_hosts=hosts, no_proxy_for=args.no_proxy_for,
                         bypass_loopback=not args.proxy_loopback)
    import_report_modules()
    session.wait_ready()
    env = session.client_environment(base_env, bypass_loopback=not args.proxy_loopback, audited_hosts=hosts,
                                     no_proxy_for=args.no_proxy_for)
    for entry, reason in plan.dropped:
        console.print(f"telemetry-audit: NO_PROXY entry {entry!r} not kept: {reason}", markup=False)
    marker = uuid.uuid4().hex[:16]
    env[RUN_MARKER] = marker
    console.print(f"telemetry-audit: proxy on {session.url} ({where}, captured through proxy variables); "
                  f"running {program}", markup=False)
    status, proxy_gone = run_foreground(command, env, proxy=session.process, marker=marker)
    # The proxy gone, the command and everything marked were ended with it: nothing lingers unaudited.
    lingering = [] if proxy_gone else linger_for_marked(marker, args.linger, proxy_gone=lambda: not session.alive())
    return status, lingering, policy, proxy_gone


def proxy_failure(status: int, stderr: str) -> str:
    """Why the proxy stopped on its own ('' when it stopped because we asked it to)."""
    if status in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        return ""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    ours = [line.removeprefix("telemetry-audit: ") for line in lines if line.startswith("telemetry-audit:")]
    last = (ours or lines or [""])[-1]
    reason = "the audit log could not be written" if status == EXIT_AUDIT_FAILED else f"exit status {status}"
    return f"the auditing proxy failed ({reason})" + (f": {last.strip()[:300]}" if last else "")


def run_foreground(command: list[str], env: dict[str, str], *, proxy: subprocess.Popen[bytes] | None = None,
                   marker: str = "") -> tuple[int, bool]:
    """Run the audited command in the foreground; Ctrl-C reaches it directly, SIGTERM is forwarded.

    (exit status, whether `proxy` is gone): when the proxy dies first, the command and every process carrying
    the run `marker` are ended at once (fail closed: a connection the command holds would wait on a dead proxy,
    and what it starts next would find none)."""
    from telemetry_audit.sandbox.descendants import end_marked, wait_command_or_proxy

    try:
        child = subprocess.Popen(command, env=env)
    except OSError as e:
        fatal(f"cannot run {command[0]}: {e.strerror or e}")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def forward(signum: int, frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in previous:
        signal.signal(sig, forward)
    try:
        proxy_gone = wait_command_or_proxy(child, proxy)
        if proxy_gone:
            if marker:
                end_marked(marker)  # the command too: it carries the marker
            if child.poll() is None:
                child.kill()
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return (128 - code if code < 0 else code), proxy_gone  # a signal death reads like a shell's 128+N
