from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.report.baseline import (
    BaselineError,
    accepted_by_own_baseline,
    apply_baseline,
    generic_field,
    load_baseline,
    write_baseline,
)
from telemetry_audit.report.json_report import check_report
from tests.report.samples import PLAINTEXT

Factory = Callable[..., dict[str, Any]]


def _fingerprints(report: dict[str, Any], suppressed: bool | None = None) -> list[str]:
    return [
        f["fingerprint"]
        for r in report["requests"]
        for f in r["findings"]
        if suppressed is None or bool(f.get("suppressed")) == suppressed
    ]


def test_write_baseline_lists_fingerprints_without_previews(ci_report: dict[str, Any]) -> None:
    text = write_baseline(ci_report)
    data = json.loads(text)
    assert data["version"] == 1
    assert data["fingerprints"] == sorted(
        data["fingerprints"], key=lambda e: (e["tool"], e["rule_id"], e["field"], e["fingerprint"])
    )
    assert {e["fingerprint"] for e in data["fingerprints"]} == set(_fingerprints(ci_report))
    assert all(set(e) == {"fingerprint", "rule_id", "field", "tool"} for e in data["fingerprints"])
    sst = [e for e in data["fingerprints"] if e["field"].startswith("batch")]
    assert sst[0]["field"] == "batch[].properties.args[]"  # generic, like the fingerprint
    for finding in (f for r in ci_report["requests"] for f in r["findings"]):
        if finding["preview"]:
            assert finding["preview"] not in text
    for fragment in (*PLAINTEXT, "…", "chars]", "cannot decode"):
        assert fragment not in text


def test_write_baseline_is_stable(ci_report: dict[str, Any]) -> None:
    shuffled = json.loads(json.dumps(ci_report))
    shuffled["requests"].reverse()
    for request in shuffled["requests"]:
        request["findings"].reverse()
    assert write_baseline(ci_report) == write_baseline(shuffled)
    assert write_baseline(ci_report).endswith("}\n")


def test_write_baseline_deduplicates_repeated_findings(make_report: Factory, make_request: Factory,
                                                       make_finding: Factory) -> None:
    report = make_report([
        make_request([make_finding(field="batch[3].properties.args[0]")]),
        make_request([make_finding(field="batch[0].properties.args[0]")]),
    ])
    entries = json.loads(write_baseline(report))["fingerprints"]
    assert entries == [{"fingerprint": "0123456789abcdef0123456789abcdef", "rule_id": "sst-telemetry",
                        "field": "batch[].properties.args[]", "tool": "sst"}]


def test_audit_errors_are_never_baselined(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    error = make_finding(kind="error", rule_id="audit-error", fingerprint="ffffffffffffffffffffffffffffffff",
                         action="block")
    report = make_report([make_request([error], decision="block")])
    assert json.loads(write_baseline(report))["fingerprints"] == []
    after = apply_baseline(report, {"ffffffffffffffffffffffffffffffff"})
    assert after["requests"][0]["decision"] == "block"
    assert "suppressed" not in after["requests"][0]["findings"][0]


def test_round_trip_suppresses_exactly_the_baselined_findings(ci_report: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(write_baseline(ci_report), encoding="utf-8")
    accepted = load_baseline(path)
    assert accepted == frozenset(_fingerprints(ci_report))

    after = apply_baseline(ci_report, accepted)
    check_report(after)
    assert _fingerprints(after, suppressed=False) == []
    assert [r["decision"] for r in after["requests"]] == ["allow"] * 5
    assert after["summary"] == {**ci_report["summary"], "blocked": 0, "redacted": 0, "logged": 0, "findings": 0,
                                "suppressed": 5}
    assert ci_report["requests"][0]["decision"] == "redact"  # the input is not modified


def test_apply_only_touches_matching_findings(ci_report: dict[str, Any]) -> None:
    session = ci_report["requests"][0]
    pat = next(f for f in session["findings"] if f["rule_id"] == "secrets.github-pat")
    after = apply_baseline(ci_report, load_baseline(json.dumps({"version": 1, "fingerprints": [
        {"fingerprint": pat["fingerprint"], "rule_id": "secrets.github-pat", "field": "x", "tool": "localstack"}]})))
    findings = after["requests"][0]["findings"]
    assert [f.get("suppressed", False) for f in findings] == [False, True]
    assert after["requests"][0]["decision"] == "redact"  # the API key still has to be redacted
    assert after["summary"]["findings"] == 3 and after["summary"]["suppressed"] == 2
    assert after["summary"]["redacted"] == 1
    assert [r["decision"] for r in after["requests"][1:]] == [r["decision"] for r in ci_report["requests"][1:]]


@pytest.mark.parametrize(
    ("actions", "baselined", "before", "after"),
    [
        (["block", "log"], [0], "block", "log"),  # a log finding remains: still logged
        (["block", "log"], [0, 1], "block", "allow"),  # nothing remains
        (["redact", "block"], [1], "block", "redact"),
        (["log", "log"], [0], "log", "log"),
        (["redact"], [], "redact", "redact"),
        # Never stricter than the engine decided, even from an inconsistent report.
        (["block", "block"], [0], "log", "log"),
    ],
)
def test_decision_is_recomputed_from_remaining_findings(
    actions: list[str], baselined: list[int], before: str, after: str,
    make_report: Factory, make_request: Factory, make_finding: Factory,
) -> None:
    findings = [make_finding(action=a, fingerprint=f"{i:032x}") for i, a in enumerate(actions)]
    report = make_report([make_request(findings, decision=before)])
    result = apply_baseline(report, {f"{i:032x}" for i in baselined})
    assert result["requests"][0]["decision"] == after


def test_already_suppressed_findings_are_not_counted_twice(ci_report: dict[str, Any]) -> None:
    already = _fingerprints(ci_report, suppressed=True)
    after = apply_baseline(ci_report, already)
    assert after == ci_report


def test_load_baseline_from_text() -> None:
    text = '{"version": 1, "fingerprints": [{"fingerprint": "0123456789abcdef0123456789abcdef"}]}'
    assert load_baseline(text) == frozenset({"0123456789abcdef0123456789abcdef"})


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("", "not valid JSON: Expecting value (line 1, column 1)"),
        ("{\n  \"version\": 1,\n  \"fingerprints\": [\n}", "not valid JSON: Expecting value (line 4, column 1)"),
        ("[]", 'expected a JSON object like {"version": 1, "fingerprints": [...]}'),
        ('{"fingerprints": []}', "missing 'version' (expected 1)"),
        ('{"version": 2, "fingerprints": []}', "unsupported baseline version 2 (expected 1)"),
        ('{"version": true, "fingerprints": []}', "unsupported baseline version True (expected 1)"),
        ('{"version": 1}', "missing 'fingerprints'"),
        ('{"version": 1, "fingerprints": {}}', "'fingerprints' must be a list"),
        (
            '{"version": 1, "fingerprints": ["abc"]}',
            "fingerprints[0]: expected an object with a 'fingerprint', got str",
        ),
        ('{"version": 1, "fingerprints": [{"rule_id": "x"}]}', "fingerprints[0]: missing 'fingerprint'"),
        ('{"version": 1, "fingerprints": [{"fingerprint": 7}]}', "fingerprints[0]: 'fingerprint' must be a string"),
        (
            '{"version": 1, "fingerprints": [{"fingerprint": "ghp_notAFingerprint"}]}',
            "fingerprints[0]: 'ghp_notAFingerprint' is not a fingerprint (lower-case hex expected)",
        ),
    ],
)
def test_bad_baseline_files(content: str, error: str, tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert str(info.value) == f"{path}: {error}"
    assert info.value.source == str(path)


def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"nope\.json: baseline file not found$"):
        load_baseline(str(tmp_path / "nope.json"))


def test_baseline_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="is a directory"):
        load_baseline(tmp_path)


def test_baseline_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(BaselineError, match="not UTF-8"):
        load_baseline(path)


def test_bad_baseline_text_is_named() -> None:
    with pytest.raises(BaselineError, match=r"^<baseline>: missing 'version'"):
        load_baseline("{}")


@pytest.mark.parametrize(
    ("field", "generic"),
    [("batch[0].properties.args[12]", "batch[].properties.args[]"), ("payload.api_key", "payload.api_key"),
     ("header.x[a]", "header.x[a]")],
)
def test_generic_field(field: str, generic: str) -> None:
    assert generic_field(field) == generic


def test_own_baseline_accepts_everything_but_audit_errors(
    make_report: Callable[..., dict[str, Any]],
    make_request: Callable[..., dict[str, Any]],
    make_finding: Callable[..., dict[str, Any]],
) -> None:
    leak = make_finding(action="block", kind="secret")
    broken = make_finding(action="block", kind="error", rule_id="audit-error", fingerprint="f" * 32)
    accepted = accepted_by_own_baseline(make_report([make_request([leak], decision="block")]))
    assert accepted["requests"][0]["decision"] == "allow" and accepted["requests"][0]["findings"][0]["suppressed"]
    kept = accepted_by_own_baseline(make_report([make_request([leak, broken], decision="block")]))
    assert [f.get("suppressed", False) for f in kept["requests"][0]["findings"]] == [True, False]
    assert kept["requests"][0]["decision"] == "block"
