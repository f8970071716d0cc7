from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.report import FORMATS, WRITERS
from telemetry_audit.report.json_report import (
    ReportError,
    check_report,
    is_telemetry,
    read_report,
    telemetry_requests,
    write_json,
)
from tests.report.samples import PLAINTEXT, REPORTS, load


def test_registry_lists_every_file_format() -> None:
    assert FORMATS == ("json", "sarif", "junit", "markdown", "html")
    assert set(WRITERS) == set(FORMATS)


@pytest.mark.parametrize("name", ["ci_run", "clean"])
@pytest.mark.parametrize("fmt", ["json", "sarif", "junit", "markdown"])
def test_every_writer_returns_text_without_plaintext(fmt: str, name: str) -> None:
    report = load(name)
    before = copy.deepcopy(report)
    text = WRITERS[fmt](report)
    assert isinstance(text, str) and text.endswith("\n")
    assert report == before  # writers never modify the report
    for fragment in PLAINTEXT:
        assert fragment not in text


def test_json_round_trips(ci_report: dict[str, Any]) -> None:
    assert json.loads(write_json(ci_report)) == ci_report
    assert "…" in write_json(ci_report)  # not \u2026-escaped


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*.json")), ids=lambda p: p.name)
def test_fixtures_have_the_report_shape(path: Path) -> None:
    read_report(path)


def test_telemetry_requests(ci_report: dict[str, Any]) -> None:
    assert [r["host"] for r in telemetry_requests(ci_report)] == [
        "analytics.localstack.cloud", "analytics.localstack.cloud", "us.i.posthog.com", "telemetry.werf.io",
    ]
    npm = ci_report["requests"][4]
    assert not is_telemetry(npm)
    assert is_telemetry({**npm, "telemetry": True})  # an explicit flag wins
    assert not is_telemetry({**ci_report["requests"][0], "telemetry": False})


_DELETE = object()


def _broken(path: str, value: object) -> dict[str, Any]:
    """The ci_run report with the value at dotted `path` replaced (or deleted)."""
    report = load("ci_run")
    *parents, last = (int(p) if p.isdigit() else p for p in path.split("."))
    target: Any = report
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return report


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("version", 2, "version: unsupported report version 2 (expected 1)"),
        ("summary", _DELETE, "missing key 'summary'"),
        ("summary.blocked", True, "summary.blocked: expected int, got bool"),
        ("policy.rules.0.severity", "severe",
         "policy.rules[0].severity: unknown value 'severe' (expected one of info, low, medium, high, critical)"),
        ("requests.2.decision", "deny",
         "requests[2].decision: unknown value 'deny' (expected one of allow, log, redact, block)"),
        ("requests.0.findings.1.fingerprint", _DELETE, "requests[0].findings[1]: missing key 'fingerprint'"),
        ("requests.0.time", "12:00", "requests[0].time: expected int or float or null, got str"),
        ("requests.2.findings.1.suppressed", "yes", "requests[2].findings[1].suppressed: expected bool"),
        ("requests.0.findings.0.kind", "token",
         "requests[0].findings[0].kind: unknown value 'token' (expected one of secret, path, env, pii, field, decode, "
         "undocumented, canary, size, error)"),
        ("requests.1.rule_ids", ["ok", 3], "requests[1].rule_ids[1]: expected a string"),
    ],
)
def test_check_report_says_where_and_what(path: str, value: object, error: str) -> None:
    with pytest.raises(ReportError) as info:
        check_report(_broken(path, value), source="audit.json")
    assert str(info.value) == f"audit.json: {error}"


def test_check_report_allows_extra_keys(ci_report: dict[str, Any]) -> None:
    ci_report["requests"][0]["status"] = 200
    ci_report["summary"]["duration"] = 1.5
    check_report(ci_report)


def test_read_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot read the report"):
        read_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ReportError, match=r"bad\.json: not a JSON report"):
        read_report(bad)
