"""Report writers: the JSON report in, text out.

Every writer takes the JSON report dict (`json_report.Report`) and returns the
text of one format; callers decide where it goes. `WRITERS` is the complete,
explicit list of file formats. The terminal view is separate
(`telemetry_audit.report.table.render_table`) because it prints with rich.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from telemetry_audit.report.html import write_html
from telemetry_audit.report.json_report import Report, write_json
from telemetry_audit.report.junit import write_junit
from telemetry_audit.report.markdown import write_markdown
from telemetry_audit.report.sarif import write_sarif

Writer = Callable[[Mapping[str, Any]], str]
"""A writer: a report (a `Report` or the engine's plain dict) in, the text of one format out."""

WRITERS: dict[str, Writer] = {
    "json": write_json,
    "sarif": write_sarif,
    "junit": write_junit,
    "markdown": write_markdown,
    "html": write_html,
}

FORMATS: tuple[str, ...] = tuple(WRITERS)
"""The file formats, in the order `--format` should list them."""

TERMINAL_FORMAT = "table"
"""The rich terminal view's format name (not a writer: see `report.table`)."""

__all__ = ["FORMATS", "TERMINAL_FORMAT", "WRITERS", "Report", "Writer"]
