"""`telemetry-audit collector`: the emulated collectors and the inspection API on one local port."""

from __future__ import annotations

import argparse
from typing import Any

from telemetry_audit.cli.common import add_policy_options, fatal, load_policy_or_exit


def register(commands: Any) -> argparse.ArgumentParser:
    collector = commands.add_parser(
        "collector", help="serve the emulated analytics collectors and the /micro inspection API on loopback")
    # Its module imports every emulator: declared when `collector` is used (the policy options after, as ever).
    collector.defer(_server_arguments)
    collector.defer(add_policy_options)
    collector.set_defaults(handler=cmd_collector)
    return collector


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    from telemetry_audit.collectors import server as collector_server

    collector_server.add_arguments(parser)


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
        fatal(str(e))
