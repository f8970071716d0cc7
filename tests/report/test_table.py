from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from telemetry_audit.report.table import (
    TOP_FINDINGS,
    finding_hint,
    render_table,
    short_preview,
    summary_line,
    summary_text,
    wrap,
)
from tests.report.samples import PLAINTEXT

Factory = Callable[..., dict[str, Any]]


def _render(report: dict[str, Any], color: bool = False, width: int = 200, summary: bool = True) -> str:
    console = Console(width=width, record=True, force_terminal=color, color_system="standard" if color else None)
    render_table(report, console, summary=summary)
    return console.export_text(styles=color)


def test_summary_and_one_header_per_telemetry_request(ci_report: dict[str, Any]) -> None:
    text = _render(ci_report)
    lines = text.splitlines()
    assert lines[0] == ("4 telemetry request(s) of 9: 1 blocked, 1 redacted, 1 logged; 4 finding(s), "
                        "1 suppressed by allowlist/baseline")
    heads = [line for line in lines if re.match(r"^(block|redact|log|allow) +(POST|GET) ", line)]
    assert len(heads) == 4
    assert "registry.npmjs.org" not in text
    session = next(h for h in heads if "/v1/session" in h)
    assert session.startswith("redact") and "tool=localstack" in session
    assert "  redact secret github-pat ghp_…[40] in payload.env.GITHUB_TOKEN (secrets.github-pat, critical)" in lines
    assert "ls-X…[35]" in text  # rich markup is not applied to previews
    sst = next(h for h in heads if "posthog" in h)
    assert sst.startswith("block") and "1 finding(s) (+1 suppressed)" in sst


def test_summary_is_printed_once_when_the_caller_prints_it(ci_report: dict[str, Any]) -> None:
    assert summary_text(ci_report) not in _render(ci_report, summary=False)
    assert _render(ci_report).count(summary_text(ci_report)) == 1


def test_decisions_are_coloured(ci_report: dict[str, Any]) -> None:
    text = _render(ci_report, color=True)
    assert "\x1b[1;31mblock" in text
    assert "\x1b[33mredact" in text


def test_clean_report_prints_the_summary_only(make_report: Factory) -> None:
    text = _render(make_report([]))
    assert text.splitlines() == [summary_text(make_report([]))]


def test_markup_in_values_is_printed_literally(make_report: Factory, make_request: Factory,
                                               make_finding: Factory) -> None:
    finding = make_finding(field="[bold red]args[/]", preview="[link=http://x]…[5 chars]")
    text = _render(make_report([make_request([finding], decision="block", tool="[blink]sst")]))
    assert "[bold red]args[/]" in text
    assert "[link=http://x]…[5]" in text
    assert "tool=[blink]sst" in text


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


@pytest.mark.parametrize(
    ("finding", "hint"),
    [
        ({"kind": "secret", "detector": "secrets.github-pat", "preview": "ghp_…[40 chars]"},
         "secret github-pat ghp_…[40]"),
        ({"kind": "path", "detector": "paths.home", "preview": "/hom…[22 chars]"}, "path home /hom…[22]"),
        ({"kind": "field", "detector": "fields.unknown", "preview": "…[5 chars]"}, "field …[5]"),
        ({"kind": "decode", "rule_id": "decode", "preview": ""}, "decode decode"),
    ],
)
def test_finding_hint(finding: dict[str, Any], hint: str) -> None:
    assert finding_hint(finding) == hint


def test_short_preview_keeps_only_the_length() -> None:
    assert short_preview("ghp_…[40 chars]") == "ghp_…[40]"
    assert short_preview("no length here") == "no length here"


def test_audit_mode_says_would(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    request = make_request([make_finding(action="redact")], decision="redact", mode="audit", enforced=False)
    report = make_report([request])
    text = _render(report)
    assert "would redact" in text.splitlines()[1] and "  would redact field" in text
    assert "(audit mode)" in summary_text(report) and "would redact" in summary_text(report)


def test_source_and_full_client_name(make_report: Factory, make_request: Factory) -> None:
    request = make_request(source="captures/sst-v4.17.1-posthog-batch.json", client="serverless-framework[4242]")
    text = _render(make_report([request]))
    assert "source=captures/sst-v4.17.1-posthog-batch.json" in text
    assert "client=serverless-framework[4242]" in text


LONG_FIELD = "batch[12].properties.environment.runtime_configuration.serverless_dashboard_org_identifier"
LONG_HOST = "analytics.telemetry-collector.eu-central-1.example-vendor-cloud.com"


@pytest.mark.parametrize("width", [80, 120])
def test_rendering_fits_the_width_and_never_splits_a_name(width: int, make_report: Factory,
                                                          make_request: Factory, make_finding: Factory) -> None:
    findings = [make_finding(field=LONG_FIELD, kind="secret", detector="secrets.github-pat",
                             preview="ghp_…[40 chars]", action="block")]
    request = make_request(findings, decision="block", host=LONG_HOST, path="/v1/batch/" + "segment/" * 6,
                           source="tests/data/captures/serverless3-print-with-HTTP_PROXY-set-went-direct.json",
                           client="node[1234]")
    text = _render(make_report([request]), width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    words = set(re.findall(r"[A-Za-z0-9_-]+", " ".join(line.strip() for line in lines)))
    # Every name survives whole: wrapping happens only at separators, never inside a word.
    for name in ("serverless_dashboard_org_identifier", "runtime_configuration", "telemetry-collector",
                 "example-vendor-cloud", "serverless3-print-with-HTTP_PROXY-set-went-direct", "github-pat"):
        assert name in words, name
    joined = "".join(line.strip() for line in lines)
    assert LONG_FIELD in joined and LONG_HOST in joined


def test_a_name_longer_than_a_line_is_still_shown_whole_across_lines() -> None:
    name = "x" * 100
    lines = [t.plain for t in wrap([("field", ""), (name, "")], 40, indent=4)]
    assert all(len(line) <= 40 for line in lines)
    assert "".join(line.strip() for line in lines) == "field" + name


def test_ci_log_without_a_terminal_is_80_columns(ci_report: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a terminal (CI), rich lays out at 80 columns: nothing may be longer."""
    monkeypatch.delenv("COLUMNS", raising=False)
    console = Console(highlight=False, soft_wrap=False)
    assert not console.is_terminal and console.width == 80
    render_table(ci_report, console)
    out = capsys.readouterr().out
    assert len(out.splitlines()) > 5 and all(len(line) <= 80 for line in out.splitlines())
