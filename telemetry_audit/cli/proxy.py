"""`telemetry-audit proxy`: the auditing proxy until Ctrl-C, with a live view of what it decides."""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from telemetry_audit.cli.common import (
    EXIT_AUDIT_FAILED,
    EXIT_CLEAN,
    EXIT_FINDINGS,
    UsageError,
    add_policy_options,
    add_proxy_options,
    add_report_options,
    check_listen_free,
    check_report_options,
    check_writable,
    emit_reports,
    listen_argument,
    load_policy_or_exit,
    proxy_settings,
    reaches_fail_on,
    stderr_console,
)

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.text import Text

DECISION_STYLE = {"block": "bold red", "redact": "yellow", "log": "cyan", "allow": "green"}
LAST_REQUESTS = 12


def register(commands: Any) -> argparse.ArgumentParser:
    proxy = commands.add_parser("proxy", help="run the auditing proxy until Ctrl-C, with a live view",
                                description="Run the auditing proxy until Ctrl-C. Offline by default, like `run`: "
                                            "telemetry is answered by the emulated collectors.")
    add_policy_options(proxy)
    add_report_options(proxy, default_format="table")
    add_proxy_options(proxy)
    proxy.add_argument("--listen", type=listen_argument, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                       help="address to listen on (default: 127.0.0.1:8080)")
    proxy.set_defaults(handler=cmd_proxy, table_to_stderr=True)
    return proxy


def cmd_proxy(args: argparse.Namespace) -> int:
    from rich.live import Live

    from telemetry_audit.report.table import summary_text as summary_line
    from telemetry_audit.session import ProxySession, ProxyStartError

    targets = check_report_options(args) if (args.formats or args.outputs) else []
    if args.log:
        check_writable(args.log, "--log")
    host, port = args.listen
    check_listen_free(host, port)
    policy = load_policy_or_exit(args)
    console = stderr_console()
    session = ProxySession(proxy_settings(args), listen=(host, port), confdir=args.confdir, verbose=args.verbose)
    try:
        try:
            session.start(policy=policy)  # handed over: the proxy child need not load it again
        except ProxyStartError as e:
            raise UsageError(str(e)) from None
        print_usage(console, session, args.online, host)
        stop = False

        def request_stop(signum: int, frame: Any) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        view = LiveView(session.log_path, session.settings.session)
        if console.is_terminal:
            with Live(view.render(), console=console, refresh_per_second=4, transient=False) as live:
                while not stop and session.alive():
                    view.poll()
                    live.update(view.render())
                    time.sleep(0.25)
        else:  # CI logs: one line per request, as it is decided
            while not stop and session.alive():
                for line in view.poll():
                    console.print(line)
                time.sleep(0.25)
        status = session.stop()
        report = session.report(policy)
    finally:
        session.close()
    if targets:
        emit_reports(args, report, targets)
    console.print(summary_line(report), markup=False)
    if status not in (0, -signal.SIGTERM):
        console.print(f"[bold red]telemetry-audit:[/] the proxy stopped on its own (exit {status})")
        return EXIT_AUDIT_FAILED
    return EXIT_FINDINGS if reaches_fail_on(args, report) else EXIT_CLEAN


def print_usage(console: Console, session: Any, online: bool, listen_host: str) -> None:
    from telemetry_audit.session.child_env import combined_ca_bundle, preload_path

    # The bundle beside the CA (it outlives this proxy: shells that exported it keep working next time).
    url, ca_cert = session.url, session.ca_cert
    bundle = combined_ca_bundle(ca_cert, session.confdir)
    console.print(f"[bold]telemetry-audit proxy[/] listening on {url} "
                  f"({'online' if online else 'offline: collectors are emulated'})")
    if listen_host in ("0.0.0.0", "::", ""):
        console.print(f"[yellow]warning:[/] listening on every interface ({listen_host or '*'}:{session.port}): "
                      "other machines can use this proxy")
    console.print(f"CA certificate: {ca_cert}  (system CAs + this one: {bundle})")
    console.print(f"Inspection API: http://telemetry-audit.local/micro/all through {url} "
                  f"(other local users: header X-Telemetry-Audit-Token: {session.settings.inspection_token})")
    console.print("Use it from a shell:")
    for line in (f"export HTTP_PROXY={url} HTTPS_PROXY={url} http_proxy={url} https_proxy={url}",
                 f"export SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle} CURL_CA_BUNDLE={bundle} "
                 f"GIT_SSL_CAINFO={bundle} NODE_EXTRA_CA_CERTS={ca_cert}",
                 f"export NODE_OPTIONS=\"${{NODE_OPTIONS:+$NODE_OPTIONS }}--require {preload_path()}\""
                 "  # Node 20 ignores HTTPS_PROXY"):
        console.print(f"  {line}", markup=False, highlight=False)
    console.print("Or let `telemetry-audit run -- CMD` set all of this for one command. Ctrl-C stops.")


class LiveView:
    """Running totals per decision and per tool, and the last requests, read from the audit log as it grows."""

    def __init__(self, log_path: str, session: str) -> None:
        self.log_path = log_path
        self.session = session
        self.offset = 0
        self.decisions: Counter[str] = Counter()
        self.tools: Counter[str] = Counter()
        self.last: deque[dict[str, Any]] = deque(maxlen=LAST_REQUESTS)

    def poll(self) -> list[Text]:
        """Read the records added since the last call; one line of text for each."""
        lines: list[Text] = []
        try:
            with open(self.log_path, encoding="utf-8") as stream:
                stream.seek(self.offset)
                while True:
                    line = stream.readline()
                    if not line.endswith("\n"):
                        break
                    self.offset = stream.tell()
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("record") != "request" or record.get("session", self.session) != self.session:
                        continue
                    self.decisions[record.get("decision", "")] += 1
                    self.tools[record.get("tool") or "-"] += 1
                    self.last.append(record)
                    lines.append(request_line(record))
        except FileNotFoundError:
            pass
        return lines

    def render(self) -> Group:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        totals = Text("requests: ")
        for decision in ("block", "redact", "log", "allow"):
            totals.append(f"{decision} {self.decisions.get(decision, 0)}  ", style=DECISION_STYLE[decision])
        tools = Text("tools: " + (", ".join(f"{t} {n}" for t, n in self.tools.most_common(6)) or "none yet"),
                     style="dim")
        table = Table(show_edge=False, pad_edge=False, box=None)
        table.add_column("decision", no_wrap=True)
        table.add_column("request", overflow="fold")
        table.add_column("tool", no_wrap=True)
        table.add_column("findings", overflow="fold")
        for record in self.last:
            decision = record.get("decision", "")
            findings = record.get("findings", [])
            table.add_row(Text(decision, style=DECISION_STYLE.get(decision, "")),
                          f"{record.get('method')} {record.get('host')}{record.get('path')}",
                          record.get("tool") or "", "; ".join(f"{f['kind']} {f['field']}" for f in findings[:3]))
        return Group(totals, tools, table)


def request_line(record: dict[str, Any]) -> Text:
    from rich.text import Text

    decision = record.get("decision", "")
    findings = record.get("findings", [])
    top = "; ".join(f"{f['kind']} {f['field']} {f['preview']}" for f in findings[:3])
    text = Text(f"{decision:>6}", style=DECISION_STYLE.get(decision, ""))
    text.append(f" {record.get('method')} {record.get('host')}{record.get('path')} ")
    text.append(record.get("tool") or "", style="dim")
    if top:
        text.append(f" {top}")
    return text
