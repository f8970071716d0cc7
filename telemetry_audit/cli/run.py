"""`telemetry-audit run -- CMD`: run one command behind the auditing proxy and report what it sent."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
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
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(handler=cmd_run, table_to_stderr=True)
    return run


def report_targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The report outputs, `--report FILE` being one more JSON output."""
    targets = check_report_options(args)
    if args.report:
        check_writable(args.report, "--report")
        targets.append(("json", args.report))
    return targets


def cmd_run(args: argparse.Namespace) -> int:
    from telemetry_audit.report.table import summary_text as summary_line
    from telemetry_audit.session import ProxySession, ProxyStartError, audited_hosts
    from telemetry_audit.session.child_env import no_proxy_plan

    command = command_after_dashes(args, "telemetry-audit run -- sst version")
    targets = report_targets(args)
    if args.log:
        check_writable(args.log, "--log")
    console = stderr_console()
    base_env = dict(os.environ)
    workdir = tempfile.mkdtemp(prefix="telemetry-audit-")
    canaries: tuple[str, ...] = ()
    if args.canary:
        from telemetry_audit.canary import plant_canaries

        planted = plant_canaries(base_env, workdir)
        base_env, canaries = planted.env, planted.markers
        console.print("telemetry-audit: canaries planted: $TELEMETRY_AUDIT_CANARY_API_TOKEN, "
                      f"USER={planted.user}, HOME={planted.home}", markup=False)
    session = ProxySession(proxy_settings(args, client_process=True), confdir=args.confdir, audited_env=base_env,
                           canaries=canaries, workdir=workdir, verbose=args.verbose)
    try:
        # The proxy child starts first; the policy loads here meanwhile (the child loads its own copy).
        session.launch()
        try:
            policy = load_policy_or_exit(args)
            session.wait_ready()
        except ProxyStartError as e:
            raise UsageError(str(e)) from None
        hosts = audited_hosts(policy)
        env = session.client_environment(base_env, bypass_loopback=not args.proxy_loopback, audited_hosts=hosts,
                                         no_proxy_for=args.no_proxy_for)
        for entry, reason in no_proxy_plan(base_env, audited_hosts=hosts, no_proxy_for=args.no_proxy_for,
                                           bypass_loopback=not args.proxy_loopback).dropped:
            console.print(f"telemetry-audit: NO_PROXY entry {entry!r} not kept: {reason}", markup=False)
        console.print(f"telemetry-audit: proxy on {session.url} ({'online' if args.online else 'offline'}, "
                      f"{args.mode} mode); running {os.path.basename(command[0])}"
                      + (f" with {len(command) - 1} argument(s)" if len(command) > 1 else ""), markup=False)
        status = run_foreground(command, env)
        proxy_status = session.stop()
        report = session.report(policy)
        failure = proxy_failure(proxy_status, session.stderr_text())
    finally:
        session.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    report["command"] = {"program": os.path.basename(command[0]), "argv_length": len(command), "exit_code": status}
    emit_reports(args, report, targets)
    console.print(summary_line(report), markup=False)
    if failure:
        console.print(f"[bold red]telemetry-audit:[/] {failure}; {report['summary']['requests']} request(s) were "
                      "audited before it stopped, later ones were refused, not passed", highlight=False)
        return EXIT_AUDIT_FAILED
    if reaches_fail_on(args, report):
        return int(args.exit_code)
    return status


def proxy_failure(status: int, stderr: str) -> str:
    """Why the proxy stopped on its own ('' when it stopped because we asked it to)."""
    if status in (0, -signal.SIGTERM):
        return ""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    ours = [line.removeprefix("telemetry-audit: ") for line in lines if line.startswith("telemetry-audit:")]
    last = (ours or lines or [""])[-1]
    reason = "the audit log could not be written" if status == EXIT_AUDIT_FAILED else f"exit status {status}"
    return f"the auditing proxy failed ({reason})" + (f": {last.strip()[:300]}" if last else "")


def run_foreground(command: list[str], env: dict[str, str]) -> int:
    """Run the audited command in the foreground; Ctrl-C reaches it directly, SIGTERM is forwarded."""
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
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code  # a signal death reads like a shell's 128+N
