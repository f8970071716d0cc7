from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from telemetry_audit.report.table import TOP_FINDINGS, render_table, summary_line
from tests.report.samples import PLAINTEXT

Factory = Callable[..., dict[str, Any]]


def _render(report: dict[str, Any], color: bool = False) -> str:
    console = Console(width=200, record=True, force_terminal=color, color_system="standard" if color else None)
    render_table(report, console)
    return console.export_text(styles=color)


def test_summary_and_one_row_per_telemetry_request(ci_report: dict[str, Any]) -> None:
    text = _render(ci_report)
    lines = text.splitlines()
    assert lines[0] == "9 requests, 4 telemetry: 1 blocked, 1 redacted, 1 logged; 4 findings (1 suppressed)"
    rows = [line for line in lines if line.startswith(("POST", "GET"))]
    assert len(rows) == 4
    assert "registry.npmjs.org" not in text
    session = next(r for r in rows if "/v1/session" in r)
    assert "localstack" in session and "redact" in session
    assert "secrets.github-pat payload.env.GITHUB_TOKEN ghp_…[40 chars]" in text  # critical first
    assert "ls-X…[35 chars]" in text  # rich markup is not applied to previews
    sst = next(r for r in rows if "posthog" in r)
    assert "block" in sst and "1 (+1 suppressed)" in sst


def test_decisions_are_coloured(ci_report: dict[str, Any]) -> None:
    text = _render(ci_report, color=True)
    assert "\x1b[1;31mblock" in text
    assert "\x1b[33mredact" in text


def test_clean_report_prints_the_summary_only_when_nothing_was_telemetry(make_report: Factory) -> None:
    text = _render(make_report([]))
    assert text.splitlines()[0].startswith("9 requests, 4 telemetry:")
    assert "Method" not in text


def test_markup_in_values_is_printed_literally(make_report: Factory, make_request: Factory,
                                               make_finding: Factory) -> None:
    finding = make_finding(field="[bold red]args[/]", preview="[link=http://x]…[5 chars]")
    text = _render(make_report([make_request([finding], decision="block", tool="[blink]sst")]))
    assert "[bold red]args[/]" in text
    assert "[link=http://x]…[5 chars]" in text
    assert "[blink]sst" in text


def test_only_the_top_findings_are_listed(make_report: Factory, make_request: Factory,
                                          make_finding: Factory) -> None:
    findings = [make_finding(field=f"batch[{i}].properties.args[0]") for i in range(TOP_FINDINGS + 2)]
    text = _render(make_report([make_request(findings, decision="block")]))
    assert "+2 more" in text
    assert f"batch[{TOP_FINDINGS}]" not in text


def test_no_plaintext(ci_report: dict[str, Any]) -> None:
    text = _render(ci_report)
    assert summary_line(ci_report).plain in text
    for fragment in PLAINTEXT:
        assert fragment not in text
