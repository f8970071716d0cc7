from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from telemetry_audit.report.sarif import FINGERPRINT_KEY, sarif_level, to_sarif, write_sarif
from tests.report.samples import PLAINTEXT, load


def _validate(log: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("name", ["ci_run", "clean"])
def test_valid_against_the_official_schema(name: str, sarif_schema: dict[str, Any]) -> None:
    _validate(json.loads(write_sarif(load(name))), sarif_schema)


def test_empty_report_is_valid(make_report: Callable[..., dict[str, Any]], sarif_schema: dict[str, Any]) -> None:
    report = make_report([])
    report["policy"] = {"files": [], "rules": []}
    log = to_sarif(report)
    _validate(log, sarif_schema)
    assert log["runs"][0]["results"] == []


def test_driver_rules_come_from_the_policy(ci_report: dict[str, Any]) -> None:
    driver = to_sarif(ci_report)["runs"][0]["tool"]["driver"]
    assert driver["name"] == "telemetry-audit"
    assert driver["version"] == "0.1.0"
    assert driver["informationUri"].startswith("https://")
    by_id = {r["id"]: r for r in driver["rules"]}
    # Policy rules first, in policy order (including ones without results), then synthesised ones, sorted.
    assert [r["id"] for r in driver["rules"]] == [
        "localstack-analytics", "sst-telemetry", "werf-otlp", "nextjs-telemetry", "decode", "secrets.github-pat",
    ]
    rule = by_id["localstack-analytics"]
    assert rule["shortDescription"]["text"] == "LocalStack analytics must not carry API keys or tokens."
    assert rule["fullDescription"]["text"].startswith("LocalStack analytics must not carry")
    assert rule["defaultConfiguration"]["level"] == "error"
    assert {"kind:secret", "tool:localstack"} <= set(rule["properties"]["tags"])
    assert by_id["sst-telemetry"]["defaultConfiguration"]["level"] == "warning"
    assert by_id["werf-otlp"]["defaultConfiguration"]["level"] == "note"
    assert by_id["nextjs-telemetry"]["properties"]["tags"] == ["security", "telemetry", "tool:next"]


def test_every_rule_id_resolves_to_its_rule_index(ci_report: dict[str, Any]) -> None:
    run = to_sarif(ci_report)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_unknown_rule_ids_get_a_synthesised_rule(ci_report: dict[str, Any]) -> None:
    rules = {r["id"]: r for r in to_sarif(ci_report)["runs"][0]["tool"]["driver"]["rules"]}
    detector = rules["secrets.github-pat"]
    assert detector["defaultConfiguration"]["level"] == "error"  # the finding is critical
    assert "kind:secret" in detector["properties"]["tags"]
    decode = rules["decode"]
    assert "could not be decoded" in decode["fullDescription"]["text"]


@pytest.mark.parametrize(
    ("severity", "level"),
    [("info", "note"), ("low", "note"), ("medium", "warning"), ("high", "error"), ("critical", "error")],
)
def test_severity_levels(severity: str, level: str) -> None:
    assert sarif_level(severity) == level


def test_results_carry_request_field_preview_and_fingerprint(ci_report: dict[str, Any]) -> None:
    results = to_sarif(ci_report)["runs"][0]["results"]
    assert len(results) == 5  # every finding, suppressed one included
    first = results[0]
    assert first["ruleId"] == "localstack-analytics"
    assert first["level"] == "error"
    text = first["message"]["text"]
    assert "POST https://analytics.localstack.cloud/v1/session" in text
    assert "payload.api_key" in text
    assert "ls-X…[35 chars]" in text
    assert first["partialFingerprints"] == {FINGERPRINT_KEY: ci_report["requests"][0]["findings"][0]["fingerprint"]}
    sst = next(r for r in results if r["ruleId"] == "sst-telemetry" and "suppressions" not in r)
    assert "batch[0].properties.args[0]" in sst["message"]["text"]
    assert sst["level"] == "warning"


def test_locations_point_at_the_rule_yaml(ci_report: dict[str, Any]) -> None:
    results = to_sarif(ci_report)["runs"][0]["results"]
    located = {r["ruleId"]: r["locations"][0]["physicalLocation"] for r in results}
    assert located["localstack-analytics"] == {
        "artifactLocation": {"uri": "rules/localstack.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 3},
    }
    assert located["sst-telemetry"]["region"] == {"startLine": 5}
    # A detector id without a policy rule points at the first policy file.
    assert located["secrets.github-pat"]["artifactLocation"]["uri"] == "rules/localstack.yaml"
    for location in located.values():
        uri = location["artifactLocation"]["uri"]
        assert not urlsplit(uri).scheme and not uri.startswith("/"), uri  # code scanning rejects URLs


def test_builtin_pack_rule_points_at_the_users_policy_file_or_nowhere(
    make_report: Callable[..., dict[str, Any]],
    make_request: Callable[..., dict[str, Any]],
    make_finding: Callable[..., dict[str, Any]],
    sarif_schema: dict[str, Any],
) -> None:
    report = make_report([make_request([make_finding(rule_id="werf-otlp")], tool="werf")])
    location = to_sarif(report)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    # werf-otlp lives in a built-in pack: the result points at the first policy file of the user's own.
    assert location == {"artifactLocation": {"uri": "rules/localstack.yaml", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": 1}}
    report["policy"]["files"] = ["<builtin>/default.yaml", "<builtin>/werf.yaml"]
    log = to_sarif(report)
    _validate(log, sarif_schema)
    assert "locations" not in log["runs"][0]["results"][0]
    assert "%3C" not in json.dumps(log) and "<builtin>/" not in json.dumps(log["runs"][0]["results"])


def test_rule_line_zero_becomes_line_one(
    make_report: Callable[..., dict[str, Any]],
    make_request: Callable[..., dict[str, Any]],
    make_finding: Callable[..., dict[str, Any]],
    sarif_schema: dict[str, Any],
) -> None:
    report = make_report([make_request([make_finding()])])
    report["policy"]["rules"][1]["line"] = 0
    log = to_sarif(report)
    _validate(log, sarif_schema)
    assert log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}


def test_suppressed_findings_are_reported_as_suppressed(ci_report: dict[str, Any]) -> None:
    results = to_sarif(ci_report)["runs"][0]["results"]
    suppressed = [r for r in results if "suppressions" in r]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressions"] == [{"kind": "external", "justification": "baseline"}]
    assert "api_key" in suppressed[0]["message"]["text"]


def test_no_plaintext_in_output(ci_report: dict[str, Any]) -> None:
    text = write_sarif(ci_report)
    for fragment in PLAINTEXT:
        assert fragment not in text


def test_output_is_stable(ci_report: dict[str, Any]) -> None:
    assert write_sarif(ci_report) == write_sarif(json.loads(json.dumps(ci_report)))


@pytest.mark.parametrize(
    ("file", "artifact"),
    [
        ("rules/telemetry policy.yaml", {"uri": "rules/telemetry%20policy.yaml", "uriBaseId": "%SRCROOT%"}),
        ("./rules/sst.yaml", {"uri": "rules/sst.yaml", "uriBaseId": "%SRCROOT%"}),
        ("rules\\sst.yaml", {"uri": "rules/sst.yaml", "uriBaseId": "%SRCROOT%"}),
        ("/etc/taudit/sst.yaml", {"uri": "file:///etc/taudit/sst.yaml"}),
        ("C:\\taudit\\sst.yaml", {"uri": "file:///C:/taudit/sst.yaml"}),
    ],
)
def test_rule_file_uris(
    file: str,
    artifact: dict[str, str],
    make_report: Callable[..., dict[str, Any]],
    make_request: Callable[..., dict[str, Any]],
    make_finding: Callable[..., dict[str, Any]],
) -> None:
    report = make_report([make_request([make_finding()])])
    report["policy"]["rules"][1]["file"] = file
    location = to_sarif(report)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == artifact


def test_security_severity_for_github(ci_report: dict[str, Any]) -> None:
    rules = {r["id"]: r for r in to_sarif(ci_report)["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["localstack-analytics"]["properties"]["security-severity"] == "8.0"
    assert rules["secrets.github-pat"]["properties"]["security-severity"] == "9.5"
    assert "security-severity" not in rules["werf-otlp"]["properties"]  # info
