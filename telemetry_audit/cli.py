"""The `telemetry-audit` command line.

Exit codes mean one thing each: 0 clean, 1 findings at or above `--fail-on`,
2 usage or policy-file error. Domain errors are caught here and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from telemetry_audit import __version__
from telemetry_audit.model import Action, Severity

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

FAIL_ON_CHOICES = [a.value for a in Action if a is not Action.ALLOW] + [s.value for s in Severity] + ["never"]


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fatal(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Report a user error (bad input, broken policy) and exit."""
    _stderr().print(f"[bold red]telemetry-audit:[/] {message}", markup=True, highlight=False)
    raise SystemExit(code)


def fails(report: dict[str, Any], threshold: str) -> bool:
    """True when an active finding reaches `threshold` (an action or a severity name; `never` for none)."""
    if threshold == "never":
        return False
    findings = [f for r in report["requests"] for f in r["findings"] if not f.get("suppressed")]
    if threshold in Action._value2member_map_:
        rank = Action(threshold).rank
        return any(Action(f["action"]).rank >= rank for f in findings)
    rank = Severity(threshold).rank
    return any(Severity(f["severity"]).rank >= rank for f in findings)


# --- shared options ----------------------------------------------------------------------------------------------


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy", "-p", action="append", default=None, metavar="FILE|NAME",
        help="policy file or built-in pack name (repeatable; later files override earlier ones; default: `default` "
        "plus every built-in tool pack; `--policy default` alone is the bare default)",
    )
    parser.add_argument("--baseline", metavar="FILE", default=os.environ.get("TELEMETRY_AUDIT_BASELINE"),
                        help="accept findings whose fingerprints are in this baseline file")


def add_report_options(parser: argparse.ArgumentParser, default_format: str = "table") -> None:
    from telemetry_audit.report import FORMATS, TERMINAL_FORMAT

    parser.add_argument(
        "--format", "-f", action="append", dest="formats", choices=[TERMINAL_FORMAT, *FORMATS], metavar="FORMAT",
        help=f"report format: {', '.join([TERMINAL_FORMAT, *FORMATS])} (repeatable, paired with --output in order)",
    )
    parser.add_argument("--output", "-o", action="append", dest="outputs", metavar="FILE",
                        help="write the report in the matching --format to FILE (default: standard output)")
    parser.add_argument("--fail-on", choices=FAIL_ON_CHOICES,
                        default=os.environ.get("TELEMETRY_AUDIT_FAIL_ON", "redact"),
                        help="exit 1 when a finding reaches this action or severity (default: redact)")
    parser.add_argument("--write-baseline", metavar="FILE", help="write the findings' fingerprints as a baseline")
    parser.set_defaults(default_format=default_format, table_to_stderr=False)


def load_policy_or_exit(args: argparse.Namespace) -> Any:
    from telemetry_audit.policy import PolicyError, load_policy

    fingerprints: frozenset[str] = frozenset()
    if getattr(args, "baseline", None):
        from telemetry_audit.report.baseline import BaselineError, load_baseline

        try:
            fingerprints = load_baseline(args.baseline)
        except BaselineError as e:
            _fatal(str(e))
    try:
        return load_policy(args.policy or None, extra_allowlist=fingerprints)
    except PolicyError as e:
        _fatal(f"invalid policy\n{e}")


def format_targets(args: argparse.Namespace, default_format: str) -> list[tuple[str, str]]:
    """(format, output) pairs from repeated `--format`/`--output` options; `-` is standard output."""
    formats = args.formats or [default_format]
    outputs = args.outputs or []
    if len(outputs) > len(formats):
        _fatal("more --output than --format options: pair each --output with a --format")
    targets = [(fmt, outputs[i] if i < len(outputs) else "-") for i, fmt in enumerate(formats)]
    if sum(1 for _, target in targets if target == "-") > 1:
        _fatal("only one --format may go to standard output: give the others an --output FILE")
    return targets


def emit_reports(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Write every requested format to its output; the terminal view goes to stdout."""
    from telemetry_audit.report import WRITERS
    from telemetry_audit.report.table import render_table

    for fmt, target in format_targets(args, args.default_format):
        if fmt == "table":
            if target == "-":
                # `run` keeps the audited command's stdout clean: its terminal view goes to stderr.
                render_table(report, Console(highlight=False, soft_wrap=False, stderr=args.table_to_stderr))
            else:
                with open(target, "w", encoding="utf-8") as stream:
                    render_table(report, Console(file=stream, width=140, no_color=True))
            continue
        text = WRITERS[fmt](report)
        if target == "-":
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        else:
            Path(target).write_text(text, encoding="utf-8")
    if getattr(args, "write_baseline", None):
        from telemetry_audit.report.baseline import write_baseline

        Path(args.write_baseline).write_text(write_baseline(report), encoding="utf-8")


def summary_line(report: dict[str, Any]) -> str:
    s = report["summary"]
    text = (f"{s['telemetry']} telemetry request(s) of {s['requests']}: {s['blocked']} blocked, "
            f"{s['redacted']} redacted, {s['logged']} logged; {s['findings']} finding(s)")
    if s.get("suppressed"):
        text += f", {s['suppressed']} suppressed by allowlist/baseline"
    return text


# --- check -------------------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from telemetry_audit.captures import CaptureError, load_requests
    from telemetry_audit.detectors.base import AuditEnvironment
    from telemetry_audit.engine import Auditor
    from telemetry_audit.model import Request
    from telemetry_audit.report.build import AuditedRequest, build_report

    policy = load_policy_or_exit(args)
    requests: list[tuple[str, Request]] = []
    for path in args.inputs:
        try:
            requests.extend((path, r) for r in load_requests(path, raw_url=args.url, raw_method=args.method))
        except CaptureError as e:
            _fatal(str(e))
    auditor = Auditor(policy, AuditEnvironment.current(), audit_all=not args.known_only)
    items = [AuditedRequest(request, auditor.evaluate(request)) for _, request in requests]
    report = build_report(items, policy)
    sources = [path for (path, _), item in zip(requests, items, strict=True) if item.decision.telemetry]
    for entry, path in zip(report["requests"], sources, strict=True):
        entry["source"] = path
    emit_reports(args, report)
    _stderr().print(summary_line(report))
    from telemetry_audit.report.conformance import conformance, render_conformance

    render_conformance(conformance(report), _stderr())
    return EXIT_FINDINGS if fails(report, args.fail_on) else EXIT_CLEAN


# --- rules -------------------------------------------------------------------------------------------------------


def cmd_rules_validate(args: argparse.Namespace) -> int:
    from telemetry_audit.policy import PolicyError, load_policy

    failed = False
    console = _stderr()
    for file in args.files:
        try:
            policy = load_policy([file])
        except PolicyError as e:
            console.print(str(e), markup=False)
            failed = True
            continue
        console.print(f"{file}: ok ({len(policy.rules)} rule(s) after composition)", markup=False)
    return EXIT_USAGE if failed else EXIT_CLEAN


def cmd_rules_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from telemetry_audit.policy import builtin_pack_names

    if args.detectors:
        from telemetry_audit.detectors import detector_rows

        rows = detector_rows()
        if args.json:
            print(json.dumps([{"id": i, "family": f, "description": d} for i, f, d in rows], indent=2))
        else:
            for detector_id, family, description in rows:
                print(f"{detector_id:<40} {family:<11} {description}")
        return EXIT_CLEAN
    policy = load_policy_or_exit(args)
    if args.json:
        rules = [{"id": r.id, "tool": r.tool, "severity": r.severity.value, "file": r.file, "line": r.line,
                  "description": r.description} for r in policy.rules]
        print(json.dumps({"packs": builtin_pack_names(), "files": list(policy.files), "rules": rules}, indent=2))
        return EXIT_CLEAN
    table = Table(title=f"Rules from {', '.join(policy.files)}")
    for column in ("id", "tool", "severity", "detectors / fields", "where"):
        table.add_column(column)
    for rule in policy.rules:
        what = ", ".join(s.detector_id or s.family if s.family != "custom" else s.custom_id for s in rule.forbid)
        if rule.fields is not None:
            what = ", ".join(filter(None, [what, f"{len(rule.fields.allow)} documented field(s)"]))
        table.add_row(rule.id, rule.tool, rule.severity.value, what, f"{rule.file}:{rule.line}")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"built-in packs: {', '.join(builtin_pack_names())}")
    return EXIT_CLEAN


def cmd_rules_schema(args: argparse.Namespace) -> int:
    from telemetry_audit.policy import policy_schema

    print(json.dumps(policy_schema(), indent=2))
    return EXIT_CLEAN


# --- parser ------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-audit",
        description="Audit what CLI tools send as telemetry: decode it, check it against policy, "
        "block or redact leaks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser("check", help="audit recorded requests (JSON captures, HAR files, raw bodies)")
    check.add_argument("inputs", nargs="+", metavar="INPUT", help="capture (.json), HAR (.har) or raw body file")
    add_policy_options(check)
    add_report_options(check)
    check.add_argument("--url", default="http://capture.invalid/", help="URL to assume for raw body files")
    check.add_argument("--method", default="POST", help="method to assume for raw body files")
    check.add_argument("--known-only", action="store_true",
                       help="audit only requests recognised as telemetry (default: every input is audited)")
    check.set_defaults(handler=cmd_check)

    rules = commands.add_parser("rules", help="validate and list policy rules")
    rules_commands = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    validate = rules_commands.add_parser("validate", help="validate policy files (exit 2 on the first broken one)")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=cmd_rules_validate)
    listing = rules_commands.add_parser("list", help="list the rules of a policy (default: the built-in one)")
    add_policy_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--detectors", action="store_true",
                         help="list every detector id with its family and a one-line description")
    listing.set_defaults(handler=cmd_rules_list)
    schema = rules_commands.add_parser("schema", help="print the policy JSON Schema (for editors)")
    schema.set_defaults(handler=cmd_rules_schema)

    from telemetry_audit.proxy.commands import register as register_proxy_commands

    register_proxy_commands(commands)
    from telemetry_audit.proxy.optout import register_optout

    register_optout(commands)

    collector = commands.add_parser(
        "collector", help="serve the emulated analytics collectors and the /micro inspection API on loopback")
    from telemetry_audit.collectors import server as collector_server

    collector_server.add_arguments(collector)
    add_policy_options(collector)
    collector.set_defaults(handler=cmd_collector)
    return parser


def cmd_collector(args: argparse.Namespace) -> int:
    """The standalone collector; each request is also evaluated so stored events carry their decision."""
    from telemetry_audit.collectors import server as collector_server
    from telemetry_audit.detectors.base import AuditEnvironment
    from telemetry_audit.engine import Auditor
    from telemetry_audit.model import Request

    policy = load_policy_or_exit(args)
    auditor = Auditor(policy, AuditEnvironment.current(), audit_all=True)

    def decide(request: Request) -> dict[str, Any]:
        decision = auditor.evaluate(request)
        return {"decision": decision.action.value, "rule_ids": list(decision.rule_ids),
                "findings": [f.to_dict() for f in decision.findings]}

    try:
        return collector_server.main(args, on_request=decide)
    except collector_server.CollectorServerError as e:
        _fatal(str(e))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN
