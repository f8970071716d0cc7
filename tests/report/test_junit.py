from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from telemetry_audit.report.junit import write_junit
from tests.report.samples import PLAINTEXT

Factory = Callable[..., dict[str, Any]]


def _suite(report: dict[str, Any]) -> ET.Element:
    root = ET.fromstring(write_junit(report))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    for key in ("tests", "failures", "errors", "skipped"):
        assert root.get(key) == suites[0].get(key)
    return suites[0]


def _cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in suite.iter("testcase")}


def test_one_case_per_telemetry_request(ci_report: dict[str, Any]) -> None:
    suite = _suite(ci_report)
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("localstack", "POST analytics.localstack.cloud/v1/session"),
        ("localstack", "POST analytics.localstack.cloud/v1/events"),
        ("sst", "POST us.i.posthog.com/batch/"),
        ("werf", "POST telemetry.werf.io/v1/traces"),
    ]  # the npm registry request is not telemetry
    counts = (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped"))
    assert counts == ("4", "2", "0", "0")


def test_blocked_and_redacted_requests_fail_with_their_findings(ci_report: dict[str, Any]) -> None:
    cases = _cases(_suite(ci_report))
    failure = cases["POST analytics.localstack.cloud/v1/session"].find("failure")
    assert failure is not None
    assert failure.get("type") == "redact"
    assert "2 findings" in failure.get("message", "")
    text = failure.text or ""
    assert "[localstack-analytics]" in text and "payload.api_key" in text and "ls-X…[35 chars]" in text
    assert "[secrets.github-pat]" in text and "ghp_…[40 chars]" in text

    sst = cases["POST us.i.posthog.com/batch/"]
    failure = sst.find("failure")
    assert failure is not None and failure.get("type") == "block"
    assert "batch[0].properties.args[0]" in (failure.text or "")
    assert "api_key" not in (failure.text or "")  # the suppressed key is not a reason to fail...
    out = sst.find("system-out")  # ...but it is shown
    assert out is not None and "Suppressed" in (out.text or "") and "phc_…[47 chars]" in (out.text or "")


def test_log_only_findings_pass_with_system_out(ci_report: dict[str, Any]) -> None:
    cases = _cases(_suite(ci_report))
    werf = cases["POST telemetry.werf.io/v1/traces"]
    assert werf.find("failure") is None and werf.find("error") is None
    out = werf.find("system-out")
    assert out is not None
    assert "[decode]" in (out.text or "") and "cannot decode body" in (out.text or "")
    clean = cases["POST analytics.localstack.cloud/v1/events"]
    assert list(clean) == []


def test_block_finding_fails_even_if_decision_says_log(make_report: Factory, make_request: Factory,
                                                       make_finding: Factory) -> None:
    report = make_report([make_request([make_finding(action="block")], decision="log")])
    failure = _suite(report).find("testcase/failure")
    assert failure is not None and failure.get("type") == "block"


def test_audit_errors_are_junit_errors(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    error = make_finding(rule_id="audit-error", kind="error", field="body", severity="high", action="log", preview="",
                         message="auditing failed: RecursionError")
    suite = _suite(make_report([make_request([error], decision="log")]))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    element = suite.find("testcase/error")
    assert element is not None and "audit-error" in element.get("message", "")


def test_clean_report(clean_report: dict[str, Any]) -> None:
    suite = _suite(clean_report)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")


def test_no_requests_is_still_a_valid_document(make_report: Factory) -> None:
    suite = _suite(make_report([]))
    assert suite.get("tests") == "0"


@pytest.mark.parametrize("field", ["a\x00b", "x\x1by", "\ud800lone", "<![CDATA[x]]>", 'q"&<'])
def test_hostile_values_still_parse(field: str, make_report: Factory, make_request: Factory,
                                    make_finding: Factory) -> None:
    report = make_report([make_request([make_finding(field=field)], decision="block", path=f"/{field}")])
    case = _suite(report).find("testcase")
    assert case is not None and case.find("failure") is not None


def test_no_plaintext_in_output(ci_report: dict[str, Any]) -> None:
    text = write_junit(ci_report)
    for fragment in PLAINTEXT:
        assert fragment not in text


def test_case_names_are_unique(
    make_report: Callable[..., dict[str, Any]],
    make_request: Callable[..., dict[str, Any]],
) -> None:
    requests = [make_request(), make_request(), make_request(path="/batch/ #2"), make_request()]
    root = ET.fromstring(write_junit(make_report(requests)))
    names = [case.get("name") for case in root.iter("testcase")]
    assert names == ["POST us.i.posthog.com/batch/", "POST us.i.posthog.com/batch/ #2",
                     "POST us.i.posthog.com/batch/ #2 #2", "POST us.i.posthog.com/batch/ #3"]
