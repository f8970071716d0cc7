"""`telemetry-audit collector`: the emulated collectors and the inspection API on one local port.

It is the auditing proxy's own child (`ProxySession.collector`): the same addon and the same offline dispatcher
answer, so a tool pointed here gets the answers and leaves the rows it would through `run` or `proxy`.
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from telemetry_audit.cli.common import (
    EXIT_AUDIT_FAILED,
    EXIT_CLEAN,
    UsageError,
    add_policy_options,
    check_listen_free,
    listen_argument,
    stderr_console,
)
from telemetry_audit.proxy.settings import MODES

DEFAULT_LISTEN = "127.0.0.1:9090"
LISTEN_VARIABLE = "TELEMETRY_AUDIT_COLLECTOR_LISTEN"
STORE_VARIABLE = "TELEMETRY_AUDIT_STORE"
MEMORY_STORE = ":memory:"


def register(commands: Any) -> argparse.ArgumentParser:
    collector = commands.add_parser(
        "collector", help="serve the emulated analytics collectors and the /micro inspection API on loopback",
        description="Serve every emulated collector and the /micro inspection API on one port, until Ctrl-C: "
                    "point a tool's endpoint (SLS_ANALYTICS_URL, an SDK's host option) here, or use it as its "
                    "HTTP proxy. Each stored event carries the policy's decision; nothing is blocked or forwarded.")
    collector.add_argument(
        "--listen", type=listen_argument, default=os.environ.get(LISTEN_VARIABLE, DEFAULT_LISTEN),
        metavar="HOST:PORT", help=f"address to serve on (default {DEFAULT_LISTEN}, env {LISTEN_VARIABLE})")
    collector.add_argument(
        "--store", default=os.environ.get(STORE_VARIABLE, MEMORY_STORE), metavar="FILE",
        help=f"SQLite file that keeps received events across restarts (default: in memory, env {STORE_VARIABLE})")
    collector.add_argument(
        "--mode", choices=MODES, default="audit",
        help="audit: store what was sent, each event with the policy's decision (default); enforce: block and "
             "redact as `proxy` does, so the same request leaves the same rows")
    add_policy_options(collector)
    collector.set_defaults(handler=cmd_collector)
    return collector


def cmd_collector(args: argparse.Namespace) -> int:
    """Start the collector child, say where it listens and how to inspect it, and serve until Ctrl-C.

    The policy is loaded by the child alone (nothing here needs it): a policy, baseline or store it refuses is
    its one-line error, exit 2.
    """
    from telemetry_audit.proxy.settings import ProxySettings
    from telemetry_audit.session import TOKEN_VARIABLE, ProxySession, ProxyStartError

    host, port = args.listen
    check_listen_free(host, port)
    settings = ProxySettings(
        policy=tuple(args.policy or ()),
        mode=args.mode,
        baseline=os.path.abspath(args.baseline) if args.baseline else "",
        store="" if args.store == MEMORY_STORE else os.path.abspath(args.store),
        inspection_token=os.environ.get(TOKEN_VARIABLE, ""),
    )
    console = stderr_console()
    session = ProxySession.collector(settings, listen=(host, port))
    try:
        try:
            session.start()
        except ProxyStartError:
            said = session.stderr_text().strip().removeprefix("telemetry-audit: ") or "it did not start"
            raise UsageError(f"cannot start the collector on {host}:{port}: {said}") from None
        print_usage(console, session)
        status = serve_until_stopped(session)
    finally:
        session.close()
    if status not in (0, -signal.SIGTERM):
        console.print(f"[bold red]telemetry-audit:[/] the collector stopped on its own (exit {status})")
        return EXIT_AUDIT_FAILED
    return EXIT_CLEAN


def print_usage(console: Any, session: Any) -> None:
    """Where it listens (the address it really bound), where to inspect it, and the token other users need."""
    bound = session.bound_host or session.host
    shown = f"[{bound}]" if ":" in bound else bound
    url = f"http://{shown}:{session.port}"
    console.print(f"telemetry-audit collector on {url} (inspect: {session.url}/micro/all)", markup=False)
    if bound not in ("127.0.0.1", "::1", "localhost") and not bound.startswith("127."):
        console.print(f"[yellow]warning:[/] serving on {bound}:{session.port}, reachable from other machines "
                      "(the inspection API needs the token below for anyone but this user)")
    console.print(f"inspection API: this user, or header X-Telemetry-Audit-Token: {session.settings.inspection_token}",
                  markup=False)


def serve_until_stopped(session: Any) -> int:
    """Wait for Ctrl-C or SIGTERM (then stop the child, which flushes the store) or for the child to die; its
    exit status. The wait is the child's exit or a signal, whichever comes first (no polling)."""
    from telemetry_audit.sandbox.descendants import wait_for_exit_or_signal

    stop = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    try:
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop and session.process.poll() is None:
            wait_for_exit_or_signal([session.process])
        crashed = not stop
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping now: a second Ctrl-C must not leave the store open
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    status = int(session.stop())
    if crashed:
        message = session.stderr_text().strip()
        if message:
            stderr_console().print(message, markup=False, highlight=False)
    return status
