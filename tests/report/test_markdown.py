from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from telemetry_audit.report.markdown import COLLAPSE_AFTER, escape, write_markdown
from tests.report.samples import PLAINTEXT

Factory = Callable[..., dict[str, Any]]


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after `heading`, split on unescaped pipes."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    body = []
    for line in rows[2:]:
        cells, cell, escaped = [], "", False
        for char in line.strip()[1:-1]:
            if char == "|" and not escaped:
                cells.append(cell.strip())
                cell = ""
            else:
                cell += char
            escaped = char == "\\" and not escaped
        cells.append(cell.strip())
        body.append(cells)
    return body


def test_summary(ci_report: dict[str, Any]) -> None:
    text = write_markdown(ci_report)
    assert text.startswith("## telemetry-audit report\n")
    assert "**1 blocked, 1 redacted** of 4 telemetry requests." in text
    assert "| 9 | 4 | 1 | 1 | 1 | 4 | 1 |" in text
    assert "1 finding suppressed by the baseline or an allowlist" in text
    assert "<details>" not in text


def test_per_tool_table(ci_report: dict[str, Any]) -> None:
    rows = _table_rows(write_markdown(ci_report), "### By tool")
    assert rows == [
        ["localstack", "2", "0", "1", "0", "1", "2", "0"],
        ["sst", "1", "1", "0", "0", "0", "1", "1"],
        ["werf", "1", "0", "0", "1", "0", "1", "0"],
    ]


def test_findings_table_strictest_first(ci_report: dict[str, Any]) -> None:
    rows = _table_rows(write_markdown(ci_report), "### Findings")
    assert [r[0] for r in rows] == ["**block**", "redact", "redact", "log"]
    assert rows[0][1:] == [
        "POST us.i.posthog.com/batch/", "sst-telemetry", "medium", r"batch\[0\].properties.args\[0\]",
        r"--st…\[23 chars\]",
    ]
    assert rows[1][4] == r"payload.api\_key"
    assert all("phc_" not in cell for row in rows for cell in row)  # suppressed findings are only counted


def test_clean_report(clean_report: dict[str, Any]) -> None:
    text = write_markdown(clean_report)
    assert "No findings in 1 telemetry request." in text
    assert "No findings." in text
    assert "suppressed" not in text.split("### Findings")[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a|b", r"a\|b"),
        ("`rm -rf`", r"\`rm -rf\`"),
        ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
        ("line\nbreak", "line break"),
        ("**bold** _it_", r"\*\*bold\*\* \_it\_"),
        ("[link](http://x)", r"\[link\](http://x)"),
        ("back\\slash", r"back\\slash"),
        ("a &amp; b", "a &amp;amp; b"),
    ],
)
def test_escape(value: str, expected: str) -> None:
    assert escape(value) == expected


def test_hostile_values_cannot_break_the_table(make_report: Factory, make_request: Factory,
                                               make_finding: Factory) -> None:
    finding = make_finding(field="args|`x`|\n| injected | row |", preview="ab|`cd`")
    report = make_report([make_request([finding], decision="block", tool="evil|tool", path="/a|b")])
    text = write_markdown(report)
    rows = _table_rows(text, "### Findings")
    assert len(rows) == 1 and len(rows[0]) == 6
    assert rows[0][4] == r"args\|\`x\`\| \| injected \| row \|"
    assert rows[0][5] == r"ab\|\`cd\`"
    tools = _table_rows(text, "### By tool")
    assert tools[0][0] == r"evil\|tool"


def test_long_tables_are_collapsed(make_report: Factory, make_request: Factory, make_finding: Factory) -> None:
    requests = [make_request([make_finding(field=f"batch[{i}].properties.args[0]")], decision="block")
                for i in range(COLLAPSE_AFTER + 1)]
    text = write_markdown(make_report(requests))
    assert f"<details>\n<summary>{COLLAPSE_AFTER + 1} findings</summary>\n\n| Decision" in text
    assert text.count("<details>") == 1  # one tool: its table stays open
    assert len(_table_rows(text, "### Findings")) == COLLAPSE_AFTER + 1


def test_no_plaintext_in_output(ci_report: dict[str, Any]) -> None:
    text = write_markdown(ci_report)
    for fragment in PLAINTEXT:
        assert fragment not in text
