"""Docs conformance: per-tool undocumented fields, promise violations and verdicts from a JSON report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from telemetry_audit.cli import main
from telemetry_audit.report.conformance import (
    Conformance,
    FieldDrift,
    PromiseViolation,
    Verdict,
    conformance,
    conformance_text,
    generic_path,
    render_conformance,
)

Factory = Callable[..., dict[str, Any]]
CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"


def _undocumented(make_finding: Factory, field: str, **overrides: Any) -> dict[str, Any]:
    return make_finding(rule_id="sst.v3-batch", kind="undocumented", field=field, action="log", severity="low",
                        detector="fields.unknown", **overrides)


def _render(summary: Conformance) -> str:
    console = Console(width=160, record=True)
    render_conformance(summary, console)
    return console.export_text()


@pytest.mark.parametrize(
    ("field", "generic"),
    [("batch[1].properties.args[0]", "batch[].properties.args[]"), ("[0].npmDependencies[12]", "[].npmDependencies[]"),
     ("payload.api_key", "payload.api_key")],
)
def test_generic_path(field: str, generic: str) -> None:
    assert generic_path(field) == generic


def test_undocumented_fields_are_deduplicated_by_generic_path_with_counts(
    make_report: Factory, make_request: Factory, make_finding: Factory
) -> None:
    report = make_report([
        make_request([_undocumented(make_finding, "batch[0].properties.args[0]"),
                      _undocumented(make_finding, "batch[0].properties.args[1]"),
                      _undocumented(make_finding, "batch[1].properties.user_id")]),
        make_request([_undocumented(make_finding, "batch[0].properties.user_id")]),
        make_request([]),
    ])
    (sst,) = conformance(report).tools
    assert (sst.tool, sst.requests, sst.verdict, sst.violations) == ("sst", 3, Verdict.DRIFT, ())
    assert sst.undocumented == (
        FieldDrift("batch[].properties.args[]", occurrences=2, requests=1),
        FieldDrift("batch[].properties.user_id", occurrences=2, requests=2),
    )


def test_forbidden_content_is_a_promise_violation(
    make_report: Factory, make_request: Factory, make_finding: Factory
) -> None:
    token = make_finding(rule_id="localstack.credentials", kind="secret", field="payload.api_key", action="block",
                         severity="critical", detector="localstack.auth-token")
    env = make_finding(rule_id="localstack.credentials", kind="env", field="payload.api_key", action="block",
                       severity="high", detector="env_values.value")
    report = make_report([
        make_request([token, env, make_finding(rule_id="localstack.session", kind="undocumented",
                                               field="payload.product", action="log", detector="fields.unknown")],
                     tool="localstack"),
        make_request([], tool="localstack"),
    ])
    (localstack,) = conformance(report).tools
    assert localstack.verdict is Verdict.VIOLATES
    assert localstack.violations == (
        PromiseViolation("localstack.credentials", "env_values.value", "env", "payload.api_key", "block", "high", 1, 1),
        PromiseViolation("localstack.credentials", "localstack.auth-token", "secret", "payload.api_key", "block",
                         "critical", 1, 1),
    )
    assert [d.path for d in localstack.undocumented] == ["payload.product"]


@pytest.mark.parametrize(
    ("kinds", "verdict"),
    [
        ([], Verdict.CONFORMS),
        (["undocumented"], Verdict.DRIFT),
        (["field"], Verdict.DRIFT),
        (["undocumented", "decode"], Verdict.INCOMPLETE),
        (["undocumented", "decode", "path"], Verdict.VIOLATES),
        (["pii"], Verdict.VIOLATES),
    ],
)
def test_verdicts(
    kinds: list[str], verdict: Verdict, make_report: Factory, make_request: Factory, make_finding: Factory
) -> None:
    findings = [make_finding(kind=kind, field=f"f{i}") for i, kind in enumerate(kinds)]
    (tool,) = conformance(make_report([make_request(findings)])).tools
    assert tool.verdict is verdict
    assert tool.uninspected == ("decode" in kinds)


def test_suppressed_findings_decide_nothing(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    report = make_report([make_request([make_finding(kind="secret", suppressed=True),
                                        _undocumented(make_finding, "x", suppressed=True)])])
    (tool,) = conformance(report).tools
    assert (tool.verdict, tool.accepted, tool.undocumented, tool.violations) == (Verdict.CONFORMS, 2, (), ())


def test_requests_without_a_tool_are_only_counted(make_report: Factory, make_request: Factory) -> None:
    summary = conformance(make_report([make_request([], tool="", rule_ids=["default.secrets"]),
                                       make_request([], tool="werf")]))
    assert ([t.tool for t in summary.tools], summary.other_requests) == (["werf"], 1)
    assert "1 telemetry request(s) matched no tool pack" in conformance_text(summary)


def test_nothing_is_printed_without_tool_packs(make_report: Factory, make_request: Factory) -> None:
    summary = conformance(make_report([make_request([], tool="")]))
    assert (_render(summary), conformance_text(summary), conformance_text(summary, markdown=True)) == ("", "", "")


def test_text_forms(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    argv = make_finding(rule_id="sst.promises", kind="secret", field="batch[0].properties.args[0]", action="log",
                        detector="sst.argv")
    summary = conformance(make_report([make_request([_undocumented(make_finding, "batch[0].properties.args[0]"),
                                                     argv])]))
    assert conformance_text(summary) == (
        "Docs conformance\n"
        "sst: violates (1 request(s), 1 undocumented field(s), 1 promise violation(s))\n"
        "  undocumented  batch[].properties.args[] (1/1 requests)\n"
        "  violation     sst.argv in batch[].properties.args[]: log (1/1 requests)\n"
    )
    markdown = conformance_text(summary, markdown=True)
    assert markdown.startswith("## Docs conformance\n\n### sst: violates\n")
    assert "- `batch[].properties.args[] (1/1 requests)`" in markdown
    assert "- `sst.argv in batch[].properties.args[]: log (1/1 requests)`" in markdown
    rendered = _render(summary)
    assert "sst  violates" in rendered and "undocumented  batch[].properties.args[] (1/1 requests)" in rendered


def test_traffic_text_is_not_rich_markup(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    summary = conformance(make_report([make_request([_undocumented(make_finding, "[bold]x")])]))
    assert "[bold]x" in _render(summary)


def test_check_prints_the_summary_on_the_real_captures(capsys: pytest.CaptureFixture[str]) -> None:
    captures = sorted(str(p) for p in CAPTURES.glob("*.json"))
    code = main(["check", "-p", "serverless", "-p", "localstack", "-p", "sst", "-p", "werf", "-f", "json", *captures])
    assert code == 1  # the LocalStack auth token is blocked
    err = capsys.readouterr().err
    assert "localstack  violates" in err
    assert "violation     localstack.auth-token in payload.api_key: block (1/5 requests)" in err
    assert "serverless  violates" in err
    assert "undocumented  [].npmDependencies[] (1/5 requests)" in err
    assert "sst         violates" in err
    # SST v4's args[] holding the command words is the documented "command invoked": not reported
    assert "batch[].properties.args[]" not in err
    assert "violation     localstack.cli-session-link in events[].metadata.session_id: redact (3/5 requests)" in err
    assert "violation     sst.argv in events[].properties.rawCommand: log (1/4 requests)" in err
