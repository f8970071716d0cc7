"""A Markdown summary, written for `$GITHUB_STEP_SUMMARY` and pull-request comments.

Every value that comes from audited traffic (hosts, paths, field names,
previews) is escaped, so a payload cannot break the tables or inject markup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from telemetry_audit.model import Action
from telemetry_audit.report.json_report import (
    FindingRecord,
    RequestRecord,
    Summary,
    action_of,
    active_findings,
    as_report,
    request_target,
    suppressed_findings,
    telemetry_requests,
)

COLLAPSE_AFTER = 10
"""Tables with more rows than this are folded into a `<details>` block."""

_SPECIAL = re.compile(r"([\\`*_\[\]|~#!])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(value: object) -> str:
    """`value` as literal text inside a Markdown table cell (GitHub Flavored Markdown)."""
    text = " ".join(str(value).split())  # newlines would end the table row
    text = "".join(_HTML.get(c, c) for c in text)
    return _SPECIAL.sub(r"\\\1", text)


def write_markdown(data: Mapping[str, Any]) -> str:
    """The report as a Markdown summary: counts, per-tool table, findings table."""
    report = as_report(data)
    summary = report.get("summary", {})
    tool = report.get("tool", {})
    requests = telemetry_requests(report)
    lines = [f"## {escape(tool.get('name', 'telemetry-audit'))} report", ""]
    lines += [_verdict(summary), ""]
    columns = [("Requests", "requests"), ("Telemetry", "telemetry"), ("Blocked", "blocked"),
               ("Redacted", "redacted"), ("Logged", "logged"), ("Findings", "findings"), ("Suppressed", "suppressed")]
    if summary.get("audited_only"):  # `--audit-all`: audited, not telemetry
        columns.insert(2, ("Other audited", "audited_only"))
    lines += _table([title for title, _ in columns], [[str(summary.get(key, 0)) for _, key in columns]],
                    right=range(len(columns)))

    if requests:
        lines += ["", "### By tool", ""]
        lines += _collapse(_tool_table(requests), "tools")

    rows = _finding_rows(requests)
    lines += ["", "### Findings", ""]
    if rows:
        lines += _collapse(_table(["Decision", "Request", "Rule", "Severity", "Field", "Preview"], rows), "findings")
    else:
        lines.append("No findings.")

    suppressed = sum(len(suppressed_findings(r)) for r in requests)
    if suppressed:
        lines += ["", f"{_plural(suppressed, 'finding')} suppressed by the baseline or an allowlist (not acted on)."]

    files = report.get("policy", {}).get("files", [])
    version = tool.get("version", "")
    footer = f"{escape(tool.get('name', 'telemetry-audit'))} {escape(version)}".strip()
    if files:
        footer += " · policy: " + ", ".join(escape(f) for f in files)
    lines += ["", f"<sub>{footer}</sub>"]
    return "\n".join(lines) + "\n"


def _verdict(summary: Summary) -> str:
    blocked, redacted, telemetry = summary.get("blocked", 0), summary.get("redacted", 0), summary.get("telemetry", 0)
    if blocked or redacted:
        return f"**{blocked} blocked, {redacted} redacted** of {_plural(telemetry, 'telemetry request')}."
    if summary.get("findings", 0):
        return f"**{_plural(summary['findings'], 'finding')}**, nothing blocked or redacted."
    return f"No findings in {_plural(telemetry, 'telemetry request')}."


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(header: list[str], rows: list[list[str]], right: range | tuple[int, ...] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _collapse(table: list[str], what: str) -> list[str]:
    """Fold a long table into `<details>`; GitHub needs the blank lines around it to render Markdown inside."""
    rows = len(table) - 2
    if rows <= COLLAPSE_AFTER:
        return table
    return ["<details>", f"<summary>{rows} {what}</summary>", "", *table, "", "</details>"]


def _tool_table(requests: list[RequestRecord]) -> list[str]:
    keys = ("requests", Action.BLOCK.value, Action.REDACT.value, Action.LOG.value, Action.ALLOW.value, "findings",
            "suppressed")
    per_tool: dict[str, dict[str, int]] = {}
    for request in requests:
        counts = per_tool.setdefault(request.get("tool") or "(unknown)", dict.fromkeys(keys, 0))
        counts["requests"] += 1
        counts[action_of(request.get("decision", "allow")).value] += 1
        counts["findings"] += len(active_findings(request))
        counts["suppressed"] += len(suppressed_findings(request))
    header = ["Tool", "Requests", "Blocked", "Redacted", "Logged", "Allowed", "Findings", "Suppressed"]
    rows = [[escape(name), *(str(c[k]) for k in keys)] for name, c in sorted(per_tool.items())]
    return _table(header, rows, right=range(1, len(header)))


def _finding_rows(requests: list[RequestRecord]) -> list[list[str]]:
    pairs: list[tuple[int, int, RequestRecord, FindingRecord]] = []
    for position, request in enumerate(requests):
        for finding in active_findings(request):
            pairs.append((-action_of(request.get("decision", "allow")).rank, position, request, finding))
    pairs.sort(key=lambda p: (p[0], p[1]))  # strictest decision first, then traffic order
    return [
        [
            _decision(request.get("decision", "")),
            escape(f"{request.get('method', '').upper()} {request_target(request)}"),
            escape(finding.get("rule_id", "")),
            escape(finding.get("severity", "")),
            escape(finding.get("field", "")),
            escape(finding.get("preview", "")),
        ]
        for _, _, request, finding in pairs
    ]


def _decision(value: str) -> str:
    text = escape(value)
    return f"**{text}**" if action_of(value) is Action.BLOCK else text
