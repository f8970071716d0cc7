"""Build the stable JSON report (version 1) from audited requests.

Every front end (`check`, `run`, the proxy's log, the pytest plugin) goes
through here, so the report means the same thing wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from telemetry_audit import __version__
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import ENGINE_RULES, LISTED_FINDINGS, Action, Decision, Request, Severity, mask
from telemetry_audit.policy.model import Policy


@dataclass(frozen=True)
class AuditedRequest:
    """One request and what the engine decided for it."""

    request: Request
    decision: Decision
    time: float | None = None
    client: str = ""
    """The client process, when the proxy knows it."""
    decoded: DecodedRequest | None = None
    """The request as the engine read it, when the caller has it: the payload tree is built from it without
    reading the body again."""


def safe_path(request: Request, decision: Decision) -> str:
    """The URL path, masked when a finding is in it."""
    return mask(request.path) if any(f.field == "url.path" for f in decision.findings) else request.path


def safe_host(request: Request, decision: Decision) -> str:
    """The host name, masked when a finding is in it (a token in a host label)."""
    return mask(request.host) if any(f.field == "url.host" for f in decision.findings) else request.host


def safe_url(request: Request, decision: Decision) -> str:
    """The request URL with its path masked when a finding is in it, and every query value masked when any
    finding is in the query (query names may hold dots and brackets, so no finding is traced back to one)."""
    url = request.url
    if any(f.field == "url.host" for f in decision.findings):
        url = url.replace(request.host, safe_host(request, decision), 1)
    if any(f.field == "url.path" for f in decision.findings):
        url = url[: len(url) - len(request.path)] + safe_path(request, decision)
    if not request.query:
        return url
    values_flagged = any(f.field.startswith(("query.", "key:query")) for f in decision.findings)
    keys_flagged = any(f.field.startswith("key:query") for f in decision.findings)
    query = [(mask(k) if keys_flagged else k, mask(v) if values_flagged else v) for k, v in request.query]
    return f"{url}?{urlencode(query)}"


def request_entry(item: AuditedRequest, *, with_payload: bool = False) -> dict[str, Any]:
    """One request's report entry; `with_payload` adds the masked payload tree (`report.payload`)."""
    request, decision = item.request, item.decision
    entry: dict[str, Any] = {
        "method": request.method,
        "url": safe_url(request, decision),
        "host": safe_host(request, decision),
        "path": safe_path(request, decision),
        "tool": decision.tool,
        "decision": decision.action.value,
        "time": item.time,
        "rule_ids": list(decision.rule_ids),
        "findings": [f.to_dict() for f in decision.findings[:LISTED_FINDINGS]],
    }
    omitted = decision.omitted_findings + max(0, len(decision.findings) - LISTED_FINDINGS)
    if omitted:
        entry["findings_omitted"] = omitted
    if item.client:
        entry["client"] = item.client
    if with_payload:
        from telemetry_audit.report.payload import payload_tree

        entry["payload"] = payload_tree(request, decision, item.decoded)
    return entry


def policy_section(policy: Policy) -> dict[str, Any]:
    return {
        "files": list(policy.files),
        "rules": [
            {
                "id": rule.id,
                "description": rule.description,
                "severity": rule.severity.value,
                "action": _rule_action(rule.action, [s.action for s in rule.forbid], rule.fields),
                "tool": rule.tool,
                "file": rule.file,
                "line": rule.line,
            }
            for rule in policy.rules
        ]
        + [
            {"id": rid, "description": text, "severity": sev.value, "action": act.value, "tool": "",
             "file": policy.files[0] if policy.files else "", "line": 1}
            for rid, text, sev, act in _engine_rules(policy)
        ],
    }


def _rule_action(default: Action, forbid: list[Action], fields: Any) -> str:
    actions = list(forbid)
    if fields is not None and fields.unknown is not None:
        actions.append(fields.unknown)
    return max(actions or [default], key=lambda a: a.rank).value


def _engine_rules(policy: Policy) -> list[tuple[str, str, Severity, Action]]:
    """Findings the engine itself raises, described like policy rules."""
    s = policy.settings
    return [(r.id, r.description, r.severity_for(s), r.action_for(s)) for r in ENGINE_RULES.values()]


def build_report(items: Iterable[AuditedRequest], policy: Policy, *, with_payload: bool = False) -> dict[str, Any]:
    """The JSON report for `items` (telemetry requests only; others are counted).

    `with_payload` adds each request's masked payload tree (what the HTML report shows).
    """
    items = list(items)
    entries = [request_entry(i, with_payload=with_payload) for i in items if i.decision.telemetry]
    return report_from_entries(entries, policy, total_requests=len(items))


def report_from_entries(entries: list[dict[str, Any]], policy: Policy, *, total_requests: int) -> dict[str, Any]:
    """The JSON report around already-built request entries (e.g. read back from an audit log).

    Entries flagged `telemetry: false` (other traffic the proxy saw: refused offline, passed upstream, TLS
    handshakes that failed, raw TCP) are listed apart under `other_traffic`.
    """
    other = [e for e in entries if e.get("telemetry") is False]
    entries = [e for e in entries if e.get("telemetry") is not False]
    findings = [f for e in entries for f in e["findings"]]
    audited_only = sum(bool(e.get("audited_only")) for e in entries)
    summary = {
        "requests": max(total_requests, len(entries) + len(other)),
        "telemetry": len(entries) - audited_only,
        "audited_only": audited_only,
        "other": len(other),
        "blocked": sum(e["decision"] == Action.BLOCK.value for e in entries),
        "redacted": sum(e["decision"] == Action.REDACT.value for e in entries),
        "logged": sum(e["decision"] == Action.LOG.value for e in entries),
        "findings": sum(not f.get("suppressed") for f in findings) + sum(e.get("findings_omitted", 0)
                                                                          for e in entries),
        "suppressed": sum(bool(f.get("suppressed")) for f in findings),
    }
    return {
        "version": 1,
        "tool": {"name": "telemetry-audit", "version": __version__},
        "summary": summary,
        "policy": policy_section(policy),
        "requests": entries,
        "other_traffic": other,
    }


def reaches(report: Mapping[str, Any], threshold: str) -> bool:
    """True when an active finding reaches `threshold` (an action or a severity name; `never` for none)."""
    if threshold == "never":
        return False
    findings = [f for r in report["requests"] for f in r["findings"] if not f.get("suppressed")]
    if threshold in Action._value2member_map_:
        rank = Action(threshold).rank
        return any(Action(f["action"]).rank >= rank for f in findings)
    rank = Severity(threshold).rank
    return any(Severity(f["severity"]).rank >= rank for f in findings)

