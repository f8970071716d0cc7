"""SARIF 2.1.0 output, for GitHub code scanning and other SARIF viewers.

`tool.driver.rules` comes from the policy (plus a synthesised entry for each
detector id that produced findings without a policy rule). Telemetry has no
source line, so each result points at the YAML rule that produced it:
code scanning rejects URLs as locations, and the rule is what a reviewer edits.
The request (method and masked URL), field and masked preview go in the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from telemetry_audit.model import ENGINE_RULES, Severity
from telemetry_audit.report.json_report import (
    FindingRecord,
    Report,
    RequestRecord,
    RuleRecord,
    as_report,
    iter_findings,
    rules_by_id,
    severity_of,
)

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/telemetry-audit/telemetry-audit"
BUILTIN_PREFIX = "<builtin>/"
"""How the report names a rule file shipped inside the package (never a path in the user's repository)."""
FINGERPRINT_KEY = "telemetryAudit/v1"
"""The `partialFingerprints` key; bump the suffix if fingerprints ever change meaning."""

_LEVELS = {
    Severity.INFO: "note",
    Severity.LOW: "note",
    Severity.MEDIUM: "warning",
    Severity.HIGH: "error",
    Severity.CRITICAL: "error",
}

# GitHub code scanning ranks security alerts by this score (critical > 9.0, high 7.0-8.9, ...);
# it has no "informational" band, so info rules carry no score.
_SECURITY_SEVERITY = {
    Severity.LOW: "3.0",
    Severity.MEDIUM: "5.5",
    Severity.HIGH: "8.0",
    Severity.CRITICAL: "9.5",
}


def sarif_level(severity: str) -> str:
    """`note`, `warning` or `error` for a report severity."""
    return _LEVELS[severity_of(severity)]


def write_sarif(report: Mapping[str, Any]) -> str:
    """The report as a SARIF 2.1.0 log with one run."""
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"


def to_sarif(data: Mapping[str, Any]) -> dict[str, Any]:
    """The SARIF log as a dict (what `write_sarif` serialises)."""
    report = as_report(data)
    policy_rules = rules_by_id(report)
    results = list(iter_findings(report))
    descriptors = _descriptors(report, results)
    index = {d["id"]: i for i, d in enumerate(descriptors)}
    files = list(report.get("policy", {}).get("files", []))
    sarif_results = [_result(request, finding, index, policy_rules, files) for request, finding in results]
    tool = report.get("tool", {})
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": tool.get("name", "telemetry-audit"),
                "version": tool.get("version", ""),
                "semanticVersion": tool.get("version", ""),
                "informationUri": INFORMATION_URI,
                "rules": descriptors,
            }
        },
        "results": sarif_results,
        "invocations": [{"executionSuccessful": True}],
        "columnKind": "unicodeCodePoints",
        "properties": {"summary": dict(report.get("summary", {}))},
    }
    if not run["tool"]["driver"]["version"]:
        del run["tool"]["driver"]["version"], run["tool"]["driver"]["semanticVersion"]
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _descriptors(report: Report, results: list[tuple[RequestRecord, FindingRecord]]) -> list[dict[str, Any]]:
    kinds: dict[str, set[str]] = {}
    tools: dict[str, set[str]] = {}
    for request, finding in results:
        kinds.setdefault(finding["rule_id"], set()).add(finding.get("kind", ""))
        if request.get("tool"):
            tools.setdefault(finding["rule_id"], set()).add(request["tool"])

    descriptors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rule in report.get("policy", {}).get("rules", []):
        if rule["id"] in seen:
            continue
        seen.add(rule["id"])
        tool_names = ({rule["tool"]} if rule.get("tool") else set()) | tools.get(rule["id"], set())
        descriptors.append(_policy_descriptor(rule, kinds.get(rule["id"], set()), tool_names))

    # Findings not tied to a policy rule (`decode`, `audit-error`, or a detector id such as
    # `secrets.github-pat`) still need a rule entry: every ruleId must resolve.
    unknown: dict[str, list[FindingRecord]] = {}
    for _, finding in results:
        if finding["rule_id"] not in seen:
            unknown.setdefault(finding["rule_id"], []).append(finding)
    for rule_id in sorted(unknown):
        descriptors.append(_synthesised_descriptor(rule_id, unknown[rule_id], tools.get(rule_id, set())))
    return descriptors


def _tags(kinds: set[str], tools: set[str]) -> list[str]:
    tags = {"security", "telemetry"}
    tags |= {f"kind:{k}" for k in kinds if k}
    tags |= {f"tool:{t}" for t in tools if t}
    return sorted(tags)


def _policy_descriptor(rule: RuleRecord, kinds: set[str], tools: set[str]) -> dict[str, Any]:
    severity = severity_of(rule.get("severity", ""))
    description = (rule.get("description") or "").strip() or rule["id"]
    where = f"{rule.get('file', '')}:{rule.get('line', 1)}"
    help_text = f"Policy rule `{rule['id']}` ({rule.get('action', '')}, {severity.value}), defined in {where}."
    return {
        "id": rule["id"],
        "name": rule["id"],
        "shortDescription": {"text": _first_sentence(description)},
        "fullDescription": {"text": description},
        "help": {"text": help_text, "markdown": help_text},
        "defaultConfiguration": {"level": _LEVELS[severity]},
        "properties": {
            "tags": _tags(kinds, tools),
            "action": rule.get("action", ""),
            "severity": severity.value,
            **_security_severity(severity),
        },
    }


def _synthesised_descriptor(rule_id: str, findings: list[FindingRecord], tools: set[str]) -> dict[str, Any]:
    severity = max((severity_of(f.get("severity", "")) for f in findings), key=lambda s: s.rank)
    kinds = {f.get("kind", "") for f in findings}
    kind_text = ", ".join(sorted(k for k in kinds if k)) or "finding"
    engine_rule = ENGINE_RULES.get(rule_id)
    text = (engine_rule.description if engine_rule
            else f"Findings reported as {rule_id} ({kind_text}) outside any policy rule.")
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": _first_sentence(text)},
        "fullDescription": {"text": text},
        "help": {"text": text, "markdown": text},
        "defaultConfiguration": {"level": _LEVELS[severity]},
        "properties": {
            "tags": _tags(kinds, tools),
            "severity": severity.value,
            **_security_severity(severity),
        },
    }


def _security_severity(severity: Severity) -> dict[str, str]:
    score = _SECURITY_SEVERITY.get(severity)
    return {"security-severity": score} if score else {}


def _first_sentence(text: str) -> str:
    line = text.splitlines()[0].strip()
    head, dot, _ = line.partition(". ")
    return head + "." if dot else line


def _location(file: str, line: int) -> dict[str, Any]:
    """A repository-relative pseudo location: the YAML rule behind the result."""
    artifact: dict[str, Any]
    if PureWindowsPath(file).drive:  # absolute paths cannot be relative to %SRCROOT%
        artifact = {"uri": PureWindowsPath(file).as_uri()}
    elif PurePosixPath(file).is_absolute():
        artifact = {"uri": PurePosixPath(file).as_uri()}
    else:
        name = file.replace("\\", "/")
        artifact = {"uri": quote(name.removeprefix("./"), safe="/"), "uriBaseId": "%SRCROOT%"}
    return {"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": max(1, line)}}}


def _is_builtin(file: str) -> bool:
    return not file or file.startswith(BUILTIN_PREFIX)


def _rule_locations(rule_id: str, policy_rules: dict[str, RuleRecord], files: list[str]) -> list[dict[str, Any]]:
    """Where a result points: its rule's YAML file, else the first policy file of the user's own, else nowhere.

    Built-in packs ship inside the package, not in the user's repository, so a rule from one (or a bare
    detector id) points at the user's policy file that loaded it when there is one; with built-in packs
    only, the result has no location (GitHub code scanning then needs a policy file in the repository:
    see the README's CI section).
    """
    rule = policy_rules.get(rule_id)
    if rule is not None and not _is_builtin(rule.get("file", "")):
        return [_location(rule["file"], int(rule.get("line") or 1))]
    own = next((f for f in files if not _is_builtin(f)), None)
    return [_location(own, 1)] if own else []


def _request_text(request: RequestRecord) -> str:
    return f"{request.get('method', '').upper()} {request.get('url', '')}"


def _result(
    request: RequestRecord,
    finding: FindingRecord,
    index: dict[str, int],
    policy_rules: dict[str, RuleRecord],
    files: list[str],
) -> dict[str, Any]:
    rule_id = finding["rule_id"]
    what = (finding.get("message") or f"{finding.get('kind', '')} finding").rstrip(".")
    detail = f"field {finding.get('field', '')}"
    if finding.get("preview"):
        detail += f", preview {finding['preview']}"
    text = (
        f"{what}. {_request_text(request)}: {detail}; "
        f"finding action {finding.get('action', '')}, request {request.get('decision', '')}."
    )
    properties: dict[str, Any] = {
        "tool": request.get("tool", ""),
        "method": request.get("method", ""),
        "url": request.get("url", ""),
        "decision": request.get("decision", ""),
        "kind": finding.get("kind", ""),
        "field": finding.get("field", ""),
        "action": finding.get("action", ""),
        "preview": finding.get("preview", ""),
    }
    if finding.get("detector"):
        properties["detector"] = finding["detector"]
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": index[rule_id],
        "level": sarif_level(finding.get("severity", "")),
        "message": {"text": text},
        "partialFingerprints": {FINGERPRINT_KEY: finding["fingerprint"]},
        "properties": properties,
    }
    locations = _rule_locations(rule_id, policy_rules, files)
    if locations:
        result["locations"] = locations
    if finding.get("suppressed"):
        result["suppressions"] = [{"kind": "external", "justification": "baseline"}]
    return result

