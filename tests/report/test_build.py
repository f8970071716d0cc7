from __future__ import annotations

import copy
from typing import Any

import pytest

from telemetry_audit.policy import load_policy
from telemetry_audit.report.build import report_from_entries
from telemetry_audit.report.html import write_html
from telemetry_audit.report.json_report import check_report
from telemetry_audit.report.markdown import write_markdown
from telemetry_audit.report.table import summary_text
from tests.report.samples import load


def _entries(audited_only: int) -> list[dict[str, Any]]:
    """Two telemetry requests, `audited_only` requests audited only because `--audit-all` asked, one not audited."""
    requests = load("ci_run")["requests"]
    telemetry = [copy.deepcopy(r) for r in requests if r.get("telemetry") is not False][:2]
    others = [{**copy.deepcopy(telemetry[0]), "audited_only": True, "tool": ""} for _ in range(audited_only)]
    not_audited = {"method": "GET", "url": "http://downloads.example.test/x", "host": "downloads.example.test",
                   "path": "/x", "telemetry": False, "answered_by": "refused offline"}
    return [*telemetry, *others, not_audited]


@pytest.mark.parametrize("audited_only", [0, 3])
def test_requests_audited_only_because_everything_is_are_not_counted_as_telemetry(audited_only: int) -> None:
    entries = _entries(audited_only)
    report = report_from_entries(entries, load_policy(["default"]), total_requests=len(entries))
    check_report(report)
    summary = report["summary"]
    assert (summary["requests"], summary["telemetry"], summary["audited_only"], summary["other"]) == (
        3 + audited_only, 2, audited_only, 1)
    assert len(report["requests"]) == 2 + audited_only  # their findings are still reported and acted on
    others = f" and {audited_only} other request(s) audited" if audited_only else ""
    assert summary_text(report).startswith(f"2 telemetry request(s){others} of {3 + audited_only}: ")
    assert ("| Other audited |" in write_markdown(report)) is bool(audited_only)
    assert ('data-count="audited_only"' in write_html(report)) is bool(audited_only)


def test_a_report_written_before_audited_only_was_counted_still_reads() -> None:
    report = load("ci_run")
    report["summary"].pop("audited_only", None)
    check_report(report)
    assert summary_text(report).startswith(f"{report['summary']['telemetry']} telemetry request(s) of ")
