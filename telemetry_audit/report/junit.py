"""JUnit XML output, for CI systems that show test results.

One test suite; one test case per audited telemetry request, named
`METHOD host/path` (` #2`, ` #3` on repeats: names are unique) with the tool as its class. A request fails when it was
blocked or redacted (or carries an unsuppressed block/redact finding); it is
an error when the audit itself failed on it (an `error` finding); log-only and
suppressed findings are listed in `<system-out>` of a passing case.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from telemetry_audit.model import Action, FindingKind
from telemetry_audit.report.json_report import (
    FindingRecord,
    RequestRecord,
    action_of,
    active_findings,
    as_report,
    request_target,
    suppressed_findings,
    telemetry_requests,
)

_FAILING = (Action.REDACT, Action.BLOCK)
# Characters XML 1.0 cannot carry at all, even escaped (field names come from audited payloads).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def write_junit(data: Mapping[str, Any]) -> str:
    """The report as a JUnit XML document (a `<testsuites>` root holding one `<testsuite>`)."""
    report = as_report(data)
    tool = report.get("tool", {})
    suite_name = tool.get("name", "telemetry-audit")
    suite = ET.Element("testsuite", name=suite_name)
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="version", value=tool.get("version", ""))
    for name in report.get("policy", {}).get("files", []):
        ET.SubElement(properties, "property", name="policy", value=name)

    tests = failures = errors = 0
    seen: dict[str, int] = {}
    for request in telemetry_requests(report):
        tests += 1
        outcome = _add_case(suite, request, seen)
        failures += outcome == "failure"
        errors += outcome == "error"

    counts = {"tests": str(tests), "failures": str(failures), "errors": str(errors), "skipped": "0"}
    suite.attrib.update(counts)
    root = ET.Element("testsuites", {"name": suite_name, **counts})
    root.append(suite)
    _make_xml_safe(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _add_case(suite: ET.Element, request: RequestRecord, seen: dict[str, int]) -> str:
    """Append the test case for `request`; return `failure`, `error` or `pass`.

    Names are unique within the suite (CI systems merge cases that share a name): a repeated
    `METHOD host/path` gets ` #2`, ` #3`, ... in report order.
    """
    base = f"{request.get('method', '').upper()} {request_target(request)}"
    seen[base] = seen.get(base, 0) + 1
    name = base if seen[base] == 1 else f"{base} #{seen[base]}"
    while name in seen and name != base:  # a request whose own target ends in ` #2`
        seen[base] += 1
        name = f"{base} #{seen[base]}"
    seen.setdefault(name, 1)
    case = ET.SubElement(suite, "testcase", classname=request.get("tool") or "unknown", name=name)
    active = active_findings(request)
    decision = action_of(request.get("decision", "allow"))
    failing = [f for f in active if action_of(f.get("action", "")) in _FAILING]
    broken = [f for f in active if f.get("kind") == FindingKind.ERROR.value]

    if decision in _FAILING or failing:
        verb = decision.value if decision in _FAILING else max(
            (action_of(f.get("action", "")) for f in failing), key=lambda a: a.rank
        ).value
        shown = failing or active
        summary = f"{verb}: {_count(len(shown))}" + (f" ({_brief(shown)})" if shown else "")
        failure = ET.SubElement(case, "failure", message=summary, type=verb)
        failure.text = _listing(request, active)
        outcome = "failure"
    elif broken:
        error = ET.SubElement(case, "error", message=f"audit error: {_brief(broken)}", type="error")
        error.text = _listing(request, active)
        outcome = "error"
    else:
        outcome = "pass"

    notes = []
    if outcome == "pass" and active:
        notes.append(_listing(request, active))
    suppressed = suppressed_findings(request)
    if suppressed:
        notes.append("Suppressed (baseline or allowlist):\n" + "\n".join(_line(f) for f in suppressed))
    if notes:
        ET.SubElement(case, "system-out").text = "\n\n".join(notes)
    return outcome


def _make_xml_safe(root: ET.Element) -> None:
    for element in root.iter():
        element.attrib = {k: _NOT_XML.sub("\ufffd", v) for k, v in element.attrib.items()}
        if element.text:
            element.text = _NOT_XML.sub("\ufffd", element.text)


def _count(n: int) -> str:
    return f"{n} finding" if n == 1 else f"{n} findings"


def _brief(findings: list[FindingRecord]) -> str:
    return ", ".join(f"{f.get('rule_id', '')} in {f.get('field', '')}" for f in findings[:3]) + (
        ", ..." if len(findings) > 3 else ""
    )


def _line(finding: FindingRecord) -> str:
    text = (
        f"- [{finding.get('rule_id', '')}] {finding.get('severity', '')} {finding.get('kind', '')} "
        f"({finding.get('action', '')}) in {finding.get('field', '')}"
    )
    if finding.get("preview"):
        text += f": {finding['preview']}"
    if finding.get("message"):
        text += f" ({finding['message']})"
    return text


def _listing(request: RequestRecord, findings: list[FindingRecord]) -> str:
    head = f"{request.get('method', '').upper()} {request.get('url', '')} -> {request.get('decision', '')}"
    return "\n".join([head, *(_line(f) for f in findings)])
