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
    reaches_fail_on,
    stderr_console,
)


def register(commands: Any) -> argparse.ArgumentParser:
    check = commands.add_parser("check", help="audit recorded requests (captures, HAR, mitmproxy flows, raw bodies)")
    check.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="capture (.json), HAR (.har), mitmproxy flow file (.mitm), a directory of them "
                            "(recursively) or - for standard input; a raw body needs --url")
    add_policy_options(check)
    add_report_options(check)
    check.add_argument("--url", default=None,
                       help="treat inputs that are not captures as raw request bodies sent to this URL")
    check.add_argument("--method", default="POST", help="method to assume for raw body files")
    check.add_argument("--known-only", action="store_true",
                       help="audit only requests recognised as telemetry (default: every input is audited)")
    check.set_defaults(handler=cmd_check)
    return check


def cmd_check(args: argparse.Namespace) -> int:
    from telemetry_audit.captures import CaptureError, InputReaders, load_inputs
    from telemetry_audit.detectors.base import AuditEnvironment
    from telemetry_audit.engine import Auditor
    from telemetry_audit.proxy.flowfile import read_flow_file, wants_own_har_reader
    from telemetry_audit.report.build import AuditedRequest, build_report
    from telemetry_audit.report.conformance import conformance, render_conformance
    from telemetry_audit.report.table import summary_text as summary_line

    targets = check_report_options(args)
    policy = load_policy_or_exit(args)
    try:
        requests = load_inputs(args.inputs, raw_url=args.url, raw_method=args.method,
                               readers=InputReaders(read_flow_file, wants_own_har_reader))
    except CaptureError as e:
        fatal(str(e))
    auditor = Auditor(policy, AuditEnvironment.current(), audit_all=not args.known_only)
    items = [AuditedRequest(request, auditor.evaluate(request)) for _, request in requests]
    report = build_report(items, policy, with_payload=True)
    sources = [path for (path, _), item in zip(requests, items, strict=True) if item.decision.telemetry]
    for entry, path in zip(report["requests"], sources, strict=True):
        entry["source"] = path
    emit_reports(args, report, targets)
    console = stderr_console()
    console.print(summary_line(report), markup=False)
    render_conformance(conformance(report), console)
    return EXIT_FINDINGS if reaches_fail_on(args, report) else EXIT_CLEAN
