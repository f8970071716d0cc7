"""Docs conformance: does each tool send what its documentation says, and nothing it promises not to?

A pure summary over the JSON report (`json_report.Report`), per tool (the
`tool:` of the rule pack that matched a request):

* undocumented fields: `undocumented` findings (a field the tool's pack does not
  list as documented) and `field` findings (a field outside a strict allow-list),
  by generic path (`batch[].properties.args[]`), deduplicated, with counts;
* promise violations: detector findings (`secret`, `path`, `env`, `pii`,
  `canary`) on the tool's requests, whichever rule raised them: the tool packs
  forbid these citing the documentation's promises, and the default rules
  forbid the same content for every tool;
* a verdict: `violates` when anything forbidden was sent, else `incomplete`
  when some body could not be inspected, else `drift` when undocumented fields
  were sent, else `conforms`.

Findings an allowlist or baseline accepted (`suppressed`) are counted apart and
decide nothing. Requests no tool pack matched are only counted. `render_conformance`
is the rich terminal view; `conformance_text` the plain and Markdown forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.text import Text

from telemetry_audit.model import FindingKind
from telemetry_audit.report.json_report import action_of, severity_of, telemetry_requests
from telemetry_audit.report.table import DECISION_STYLES

UNDOCUMENTED_KINDS = frozenset({FindingKind.UNDOCUMENTED.value, FindingKind.FIELD.value})
VIOLATION_KINDS = frozenset(
    {FindingKind.SECRET.value, FindingKind.PATH.value, FindingKind.ENV.value, FindingKind.PII.value,
     FindingKind.CANARY.value}
)
UNINSPECTED_KINDS = frozenset({FindingKind.DECODE.value, FindingKind.SIZE.value, FindingKind.ERROR.value})

_INDEX = re.compile(r"\[\d+\]")


class Verdict(StrEnum):
    """How a tool's traffic compares with its documentation (worst first)."""

    VIOLATES = "violates"
    """Something the documentation promises is never sent was sent."""
    INCOMPLETE = "incomplete"
    """Some bodies could not be inspected; nothing forbidden was found in the rest."""
    DRIFT = "drift"
    """Nothing forbidden, but fields the documentation does not list were sent."""
    CONFORMS = "conforms"
    """Only documented fields, nothing forbidden."""


@dataclass(frozen=True)
class FieldDrift:
    """One undocumented field, by generic path."""

    path: str
    """Generic path: indices become `[]` (`[].npmDependencies[]`)."""
    occurrences: int
    """How many values were sent under this path."""
    requests: int
    """In how many of the tool's requests."""


@dataclass(frozen=True)
class PromiseViolation:
    """Forbidden content found by one detector (or custom pattern) under one generic path."""

    rule_id: str
    detector: str
    """Detector id (`secrets.github-pat`) or a pack's custom pattern id (`localstack.auth-token`)."""
    kind: str
    path: str
    action: str
    """The strictest action taken on these findings."""
    severity: str
    """The highest severity among them."""
    occurrences: int
    requests: int


@dataclass(frozen=True)
class ToolConformance:
    """One tool's requests measured against its documentation."""

    tool: str
    requests: int
    undocumented: tuple[FieldDrift, ...]
    violations: tuple[PromiseViolation, ...]
    uninspected: int
    """Requests with a body that could not be fully inspected (decode, size or audit errors)."""
    accepted: int
    """Findings an allowlist or the baseline accepted (not counted above)."""
    verdict: Verdict


@dataclass(frozen=True)
class Conformance:
    """Every tool in a report, by name, plus how many telemetry requests no tool pack matched."""

    tools: tuple[ToolConformance, ...]
    other_requests: int


def generic_path(field: str) -> str:
    """`batch[1].properties.args[0]` -> `batch[].properties.args[]`."""
    return _INDEX.sub("[]", field)


def conformance(report: Mapping[str, Any]) -> Conformance:
    """Summarise `report` per tool (pure: reads the report, changes nothing)."""
    by_tool: dict[str, list[Mapping[str, Any]]] = {}
    other = 0
    for request in telemetry_requests(report):
        tool = request.get("tool") or ""
        if tool:
            by_tool.setdefault(tool, []).append(request)
        else:
            other += 1
    return Conformance(tuple(_tool(tool, by_tool[tool]) for tool in sorted(by_tool)), other)


def _tool(tool: str, requests: list[Mapping[str, Any]]) -> ToolConformance:
    drift: dict[str, list[int]] = {}  # path -> [occurrences, requests]
    violations: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    uninspected = accepted = 0
    for request in requests:
        seen_paths: set[str] = set()
        seen_violations: set[tuple[str, str, str, str]] = set()
        broken = False
        for finding in request.get("findings", []):
            if finding.get("suppressed"):
                accepted += 1
                continue
            kind = finding.get("kind", "")
            path = generic_path(finding.get("field", ""))
            if kind in UNDOCUMENTED_KINDS:
                counts = drift.setdefault(path, [0, 0])
                counts[0] += 1
                if path not in seen_paths:
                    counts[1] += 1
                    seen_paths.add(path)
            elif kind in VIOLATION_KINDS:
                key = (finding.get("rule_id", ""), finding.get("detector", ""), kind, path)
                entry = violations.setdefault(key, {"action": "allow", "severity": "info", "n": 0, "requests": 0})
                entry["n"] += 1
                if key not in seen_violations:
                    entry["requests"] += 1
                    seen_violations.add(key)
                if action_of(finding.get("action", "")).rank > action_of(entry["action"]).rank:
                    entry["action"] = finding.get("action", "")
                if severity_of(finding.get("severity", "")).rank > severity_of(entry["severity"]).rank:
                    entry["severity"] = finding.get("severity", "")
            elif kind in UNINSPECTED_KINDS:
                broken = True
        uninspected += broken
    undocumented = tuple(FieldDrift(path, n, r) for path, (n, r) in sorted(drift.items()))
    found = tuple(
        PromiseViolation(rule_id, detector, kind, path, e["action"], e["severity"], e["n"], e["requests"])
        for (rule_id, detector, kind, path), e in sorted(
            violations.items(), key=lambda item: (-action_of(item[1]["action"]).rank, item[0])
        )
    )
    if found:
        verdict = Verdict.VIOLATES
    elif uninspected:
        verdict = Verdict.INCOMPLETE
    elif undocumented:
        verdict = Verdict.DRIFT
    else:
        verdict = Verdict.CONFORMS
    return ToolConformance(tool, len(requests), undocumented, found, uninspected, accepted, verdict)


# --- rendering ---------------------------------------------------------------------------------------------------

VERDICT_STYLES = {
    Verdict.VIOLATES: "bold red",
    Verdict.INCOMPLETE: "yellow",
    Verdict.DRIFT: "cyan",
    Verdict.CONFORMS: "green",
}


def _drift_line(item: FieldDrift, total: int) -> str:
    times = f", {item.occurrences} values" if item.occurrences != item.requests else ""
    return f"{item.path} ({item.requests}/{total} requests{times})"


def _violation_line(item: PromiseViolation, total: int) -> str:
    return f"{item.detector or item.rule_id} in {item.path}: {item.action} ({item.requests}/{total} requests)"


def _headline(tool: ToolConformance) -> str:
    parts = [f"{tool.requests} request(s)", f"{len(tool.undocumented)} undocumented field(s)",
             f"{len(tool.violations)} promise violation(s)"]
    if tool.uninspected:
        parts.append(f"{tool.uninspected} not fully inspected")
    if tool.accepted:
        parts.append(f"{tool.accepted} accepted finding(s)")
    return ", ".join(parts)


def render_conformance(summary: Conformance, console: Console) -> None:
    """The per-tool summary for the terminal; prints nothing when no tool pack matched any request.

    One headline per tool (verdict coloured), then one line per undocumented field
    and per promise violation: lists, not a table, so long field paths stay readable
    on a narrow stderr.
    """
    if not summary.tools:
        return
    console.print(Text("Docs conformance", style="bold"))
    width = max(len(t.tool) for t in summary.tools)
    for tool in summary.tools:
        line = Text(f"{tool.tool:<{width}}  ")
        line.append(f"{tool.verdict.value:<10}", style=VERDICT_STYLES[tool.verdict])
        line.append(f"  {_headline(tool)}")
        console.print(line)
        for drift in tool.undocumented:
            console.print(Text("  undocumented  ", style="cyan") + Text(_drift_line(drift, tool.requests)))
        for violation in tool.violations:
            style = DECISION_STYLES.get(action_of(violation.action), "")
            console.print(Text("  violation     ", style=style) + Text(_violation_line(violation, tool.requests)))
    if summary.other_requests:
        console.print(Text(f"{summary.other_requests} telemetry request(s) matched no tool pack", style="dim"))


def conformance_text(summary: Conformance, *, markdown: bool = False) -> str:
    """The per-tool summary as plain text, or as Markdown (a section per tool); empty when no tool matched."""
    if not summary.tools:
        return ""
    lines: list[str] = ["## Docs conformance", ""] if markdown else ["Docs conformance"]
    for tool in summary.tools:
        if markdown:
            lines += [f"### {_md(tool.tool)}: {tool.verdict.value}", "", _md(_headline(tool)) + ".", ""]
            lines += _md_list("Undocumented fields", [_drift_line(d, tool.requests) for d in tool.undocumented])
            lines += _md_list("Promise violations", [_violation_line(v, tool.requests) for v in tool.violations])
        else:
            lines.append(f"{tool.tool}: {tool.verdict.value} ({_headline(tool)})")
            lines += _plain_list("undocumented", [_drift_line(d, tool.requests) for d in tool.undocumented])
            lines += _plain_list("violation", [_violation_line(v, tool.requests) for v in tool.violations])
    if summary.other_requests:
        lines.append(f"{summary.other_requests} telemetry request(s) matched no tool pack")
    return "\n".join(lines).rstrip("\n") + "\n"


def _plain_list(label: str, items: Iterable[str]) -> list[str]:
    return [f"  {label:<12}  {item}" for item in items]


def _md_list(title: str, items: list[str]) -> list[str]:
    if not items:
        return [f"{title}: none.", ""]
    return [f"{title}:", "", *(f"- `{item.replace('`', '')}`" for item in items), ""]


def _md(text: str) -> str:
    """Escape what Markdown would otherwise interpret in traffic-derived text."""
    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", text)
