"""`telemetry-audit check`: audit recorded requests (captures, HAR files, raw bodies)."""

from __future__ import annotations

import argparse
from typing import Any

from telemetry_audit.cli.common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    add_policy_options,
    add_report_options,
    check_report_options,
    emit_reports,
    fatal,
    load_policy_or_exit,
    stderr_console,
)


def register(commands: Any) -> argparse.ArgumentParser:
    check = commands.add_parser("check", help="audit recorded requests (JSON captures, HAR files, raw bodies)")
    check.add_argument("inputs", nargs="+", metavar="INPUT", help="capture (.json), HAR (.har) or raw body file")
    add_policy_options(check)
    add_report_options(check)
    check.add_argument("--url", default="http://capture.invalid/", help="URL to assume for raw body files")
    check.add_argument("--method", default="POST", help="method to assume for raw body files")
    check.add_argument("--known-only", action="store_true",
                       help="audit only requests recognised as telemetry (default: every input is audited)")
    check.set_defaults(handler=cmd_check)
    return check


def cmd_check(args: argparse.Namespace) -> int:
    from telemetry_audit.captures import CaptureError, load_requests
    from telemetry_audit.detectors.base import AuditEnvironment
    from telemetry_audit.engine import Auditor
    from telemetry_audit.model import Request
    from telemetry_audit.report.build import AuditedRequest, build_report, reaches, summary_line
    from telemetry_audit.report.conformance import conformance, render_conformance

    targets = check_report_options(args)
    policy = load_policy_or_exit(args)
    requests: list[tuple[str, Request]] = []
    for path in args.inputs:
        try:
            requests.extend((path, r) for r in load_requests(path, raw_url=args.url, raw_method=args.method))
        except CaptureError as e:
            fatal(str(e))
    auditor = Auditor(policy, AuditEnvironment.current(), audit_all=not args.known_only)
    items = [AuditedRequest(request, auditor.evaluate(request)) for _, request in requests]
    report = build_report(items, policy)
    sources = [path for (path, _), item in zip(requests, items, strict=True) if item.decision.telemetry]
    for entry, path in zip(report["requests"], sources, strict=True):
        entry["source"] = path
    emit_reports(args, report, targets)
    console = stderr_console()
    console.print(summary_line(report), markup=False)
    render_conformance(conformance(report), console)
    return EXIT_FINDINGS if reaches(report, args.fail_on) else EXIT_CLEAN
