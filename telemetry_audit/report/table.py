"""The terminal view: a summary line and one row per telemetry request (rich).

This is the only report module that uses rich; the file formats are plain
writers in `telemetry_audit.report.WRITERS`. Values from audited traffic are
passed as `Text`, never as markup, so a preview like `…[40 chars]` or a field
called `[bold]` prints literally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from telemetry_audit.model import Action
from telemetry_audit.report.json_report import (
    FindingRecord,
    action_of,
    active_findings,
    as_report,
    request_target,
    severity_of,
    suppressed_findings,
    telemetry_requests,
)

TOP_FINDINGS = 3
"""How many findings a row shows before `+N more`."""

DECISION_STYLES = {
    Action.BLOCK: "bold red",
    Action.REDACT: "yellow",
    Action.LOG: "cyan",
    Action.ALLOW: "green",
}


def summary_line(report: Mapping[str, Any]) -> Text:
    """`12 requests, 5 telemetry: 1 blocked, 1 redacted, 2 logged; 4 findings (1 suppressed)`."""
    s = as_report(report).get("summary", {})
    text = Text(f"{s.get('requests', 0)} requests, {s.get('telemetry', 0)} telemetry: ")
    counts = ((Action.BLOCK, "blocked", s.get("blocked", 0)), (Action.REDACT, "redacted", s.get("redacted", 0)),
              (Action.LOG, "logged", s.get("logged", 0)))
    for action, label, n in counts:
        text.append(f"{n} {label}", style=DECISION_STYLES[action] if n else "")
        text.append("; " if action is Action.LOG else ", ")
    text.append(f"{s.get('findings', 0)} findings")
    if s.get("suppressed", 0):
        text.append(f" ({s['suppressed']} suppressed)", style="dim")
    return text


def render_table(report: Mapping[str, Any], console: Console) -> None:
    """Print the summary line and, when there was telemetry, the per-request table."""
    console.print(summary_line(report))
    requests = telemetry_requests(report)
    if not requests:
        return
    table = Table(show_edge=False, pad_edge=False, expand=False)
    table.add_column("Method", no_wrap=True)
    table.add_column("Request", overflow="fold")
    table.add_column("Tool", no_wrap=True)
    table.add_column("Decision", no_wrap=True)
    table.add_column("Findings", justify="right", no_wrap=True)
    table.add_column("Top findings", overflow="fold")
    for request in requests:
        decision = action_of(request.get("decision", "allow"))
        active = active_findings(request)
        count = Text(str(len(active)))
        hidden = len(suppressed_findings(request))
        if hidden:
            count.append(f" (+{hidden} suppressed)", style="dim")
        table.add_row(
            Text(request.get("method", "").upper()),
            Text(request_target(request)),
            Text(request.get("tool", "")),
            Text(request.get("decision", ""), style=DECISION_STYLES[decision]),
            count,
            _top(active),
        )
    console.print(table)


def _top(findings: list[FindingRecord]) -> Text:
    ranked = sorted(findings, key=lambda f: (-action_of(f.get("action", "")).rank,
                                             -severity_of(f.get("severity", "")).rank))
    text = Text()
    for i, finding in enumerate(ranked[:TOP_FINDINGS]):
        if i:
            text.append("\n")
        text.append(finding.get("rule_id", ""), style="bold")
        text.append(f" {finding.get('field', '')} ")
        text.append(finding.get("preview", ""), style="dim")
    if len(ranked) > TOP_FINDINGS:
        text.append(f"\n+{len(ranked) - TOP_FINDINGS} more", style="dim")
    return text
