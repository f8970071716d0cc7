"""The terminal view: one summary line, then each telemetry request with its findings one per line (rich).

This is the only report module that uses rich; the file formats are plain
writers in `telemetry_audit.report.WRITERS`. It is laid out for CI logs as much
as for terminals: without a terminal rich assumes 80 columns, so instead of a
grid whose cells fold mid-word, each request is a header line (decision,
method, host/path, tool, client process, source file) followed by one line per
finding (what was found with a short detector hint and the masked preview, then
the field). Lines wrap between words; a long host, path or field wraps only
after a `/`, `&` or before a `[` (after a `.` when nothing else fits), never inside a name. Values from audited traffic
are passed as `Text`, never as markup, so a field called `[bold]` prints literally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
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

TOP_FINDINGS = 5
"""How many findings a request lists before `+N more`."""

DECISION_STYLES = {
    Action.BLOCK: "bold red",
    Action.REDACT: "yellow",
    Action.LOG: "cyan",
    Action.ALLOW: "green",
}

_BREAK_AFTER = re.compile(r"(?<=[/&?])|(?=\[)")
"""Where a long host, path or field wraps first: after `/` `&` `?`, or before `[`..."""
_BREAK_AFTER_DOT = re.compile(r"(?<=\.)")
"""...and only when a part is still too long for a line, after a `.`."""
_PREVIEW_LENGTH = re.compile(r"…\[(\d+) chars\]$")

Piece = tuple[str, str]
"""A word of output and its rich style."""


def is_audit_mode(request: Mapping[str, Any]) -> bool:
    """True when the proxy only recorded what it would have done (`--mode audit`)."""
    return request.get("mode") == "audit" or request.get("enforced") is False


def action_words(action: str, audit: bool) -> str:
    """`block`, or `would block` in audit mode (nothing was blocked); `allow` and `log` read the same."""
    if audit and action_of(action) in (Action.BLOCK, Action.REDACT):
        return f"would {action}"
    return action


def summary_text(report: Mapping[str, Any]) -> str:
    """The one summary line as plain text (what the CLI prints on stderr and the pytest plugin shows)."""
    return summary_line(report).plain


def summary_line(report: Mapping[str, Any]) -> Text:
    """`5 telemetry request(s) of 12: 1 blocked, 1 redacted, 2 logged; 4 finding(s), 1 suppressed by ...`.

    With `--audit-all`, requests audited without being telemetry are named apart: `1 telemetry request(s) and 3
    other request(s) audited of 4: ...` (the counts after the colon cover both).

    In audit mode (every request only recorded) the counts read `would block` / `would redact`.
    """
    data = as_report(report)
    s = data.get("summary", {})
    requests = telemetry_requests(report)
    audit = bool(requests) and all(is_audit_mode(r) for r in requests)
    others = f" and {s['audited_only']} other request(s) audited" if s.get("audited_only") else ""
    text = Text(f"{s.get('telemetry', 0)} telemetry request(s){others} of {s.get('requests', 0)}"
                + (" (audit mode)" if audit else "") + ": ")
    labels = (("would block" if audit else "blocked"), ("would redact" if audit else "redacted"), "logged")
    counts = ((Action.BLOCK, labels[0], s.get("blocked", 0)), (Action.REDACT, labels[1], s.get("redacted", 0)),
              (Action.LOG, labels[2], s.get("logged", 0)))
    for action, label, n in counts:
        text.append(f"{n} {label}", style=DECISION_STYLES[action] if n else "")
        text.append("; " if action is Action.LOG else ", ")
    text.append(f"{s.get('findings', 0)} finding(s)")
    if s.get("suppressed", 0):
        text.append(f", {s['suppressed']} suppressed by allowlist/baseline", style="dim")
    return text


def short_preview(preview: str) -> str:
    """`ghp_…[40 chars]` -> `ghp_…[40]`: the length stays, the noise goes."""
    return _PREVIEW_LENGTH.sub(r"…[\1]", preview)


def finding_hint(finding: Mapping[str, Any]) -> str:
    """`secret github-pat ghp_…[40]`: the kind, the detector's short name, the masked preview."""
    detector = str(finding.get("detector") or "")
    name = detector.split(".", 1)[1] if "." in detector else detector
    if not name or name == "unknown":
        name = "" if finding.get("kind") in ("field", "undocumented") else str(finding.get("rule_id", ""))
    parts = [str(finding.get("kind", "")), name, short_preview(str(finding.get("preview", "")))]
    return " ".join(p for p in parts if p)


def render_table(report: Mapping[str, Any], console: Console, *, summary: bool = True, verbose: bool = False) -> None:
    """Print the summary line (unless `summary=False`: the caller prints it), every telemetry request, and the
    other traffic the proxy saw: one line, or one line per request with `verbose`."""
    if summary:
        console.print(summary_line(report))
    width = max(40, console.width)
    for request in telemetry_requests(report):
        for line in _request_lines(request, width):
            console.print(line, soft_wrap=True)
    other: list[Mapping[str, Any]] = list(report.get("other_traffic") or [])
    if not other:
        return
    hosts = {str(entry.get("host", "")) for entry in other}
    failed_tls = sum(1 for entry in other if entry.get("channel") == "tls")
    counts = f"other traffic: {len(other)} request(s) to {len(hosts)} host(s)"
    if failed_tls:
        counts += f", {failed_tls} TLS handshake(s) failed"
    console.print(Text(counts + ("" if verbose else " (--verbose lists them)"), style="dim"), soft_wrap=True)
    if verbose:
        for entry in other:
            target = f"{entry.get('host', '')}{entry.get('path', '')}"
            outcome = entry.get("answered_by", "")
            if entry.get("status"):
                outcome += f" {entry['status']}"
            if entry.get("error"):
                outcome += f": {entry['error']}"
            pieces: list[Piece] = [(f"{entry.get('channel', 'http'):<12}", "dim"),
                                   (str(entry.get("method", "")).upper(), "bold"), (target, ""), (outcome, "dim")]
            for wrapped in wrap(pieces, width, indent=13):
                console.print(wrapped, soft_wrap=True)


def _request_lines(request: Mapping[str, Any], width: int) -> list[Text]:
    audit = is_audit_mode(request)
    decision = str(request.get("decision", ""))
    active = active_findings(request)
    suppressed = len(suppressed_findings(request))
    words = action_words(decision, audit)
    head: list[Piece] = [(f"{words:<12}", DECISION_STYLES[action_of(decision)] + (" italic" if audit else "")),
                         (str(request.get("method", "")).upper(), "bold"), (request_target(request), "")]
    if request.get("tool"):
        head.append((f"tool={request['tool']}", ""))
    if request.get("client"):
        head.append((f"client={request['client']}", "dim"))
    if request.get("source"):
        head.append((f"source={request['source']}", "dim"))
    count = f"{len(active)} finding(s)" + (f" (+{suppressed} suppressed)" if suppressed else "")
    head.append((count, "dim" if not active else ""))
    lines = wrap(head, width, indent=13)
    ranked = sorted(active, key=lambda f: (-action_of(f.get("action", "")).rank,
                                           -severity_of(f.get("severity", "")).rank))
    for finding in ranked[:TOP_FINDINGS]:
        lines += wrap(_finding_pieces(finding, audit), width, indent=6, first_indent=2)
    if len(ranked) > TOP_FINDINGS:
        lines.append(Text(f"  +{len(ranked) - TOP_FINDINGS} more (see the JSON or HTML report)", style="dim"))
    return lines


def _finding_pieces(finding: FindingRecord, audit: bool) -> list[Piece]:
    action = str(finding.get("action", ""))
    return [
        (action_words(action, audit), DECISION_STYLES[action_of(action)]),
        (finding_hint(finding), "bold"),
        ("in", "dim"),
        (str(finding.get("field", "")), ""),
        (f"({finding.get('rule_id', '')}, {finding.get('severity', '')})", "dim"),
    ]


def _split_long(word: str, room: int) -> list[str]:
    """Cut `word` into chunks of at most `room` characters: at `/`-like boundaries, then at `.`, and by
    characters only when a single name is longer than a line."""
    parts: list[str] = []
    for part in (p for p in _BREAK_AFTER.split(word) if p):
        parts.extend([part] if len(part) <= room else [p for p in _BREAK_AFTER_DOT.split(part) if p])
    chunks: list[str] = []
    current = ""
    for part in parts:
        while len(part) > room:  # one name longer than a line: nothing better than cutting it
            if current:
                chunks.append(current)
                current = ""
            chunks.append(part[:room])
            part = part[room:]
        if len(current) + len(part) > room and current:
            chunks.append(current)
            current = ""
        current += part
    if current:
        chunks.append(current)
    return chunks


def wrap(pieces: Sequence[Piece], width: int, *, indent: int, first_indent: int = 0) -> list[Text]:
    """Lay `pieces` out in lines of at most `width` characters, breaking only between pieces, or inside a
    piece too long for a line only at its `.`/`/` boundaries; continuation lines start at `indent`."""
    lines: list[Text] = []
    line = Text(" " * first_indent)
    column = first_indent
    started = False
    for word, style in pieces:
        room_here = width - column - (1 if started else 0)
        if len(word) <= room_here:
            if started:
                line.append(" ")
            line.append(word, style=style)
            column += len(word) + (1 if started else 0)
            started = True
            continue
        if started and len(word) <= width - indent:
            lines.append(line)
            line, column, started = Text(" " * indent), indent, False
            line.append(word, style=style)
            column += len(word)
            started = True
            continue
        # Longer than a whole line: fill this line, then continue on the next ones, at name boundaries.
        room_here = max(room_here, 1)
        chunks = _split_long(word, width - indent)
        first = chunks[0]
        if started and len(first) > room_here:
            lines.append(line)
            line, column, started = Text(" " * indent), indent, False
        for i, chunk in enumerate(chunks):
            if i:
                lines.append(line)
                line, column, started = Text(" " * indent), indent, False
            if started:
                line.append(" ")
                column += 1
            line.append(chunk, style=style)
            column += len(chunk)
            started = True
    lines.append(line)
    return lines
