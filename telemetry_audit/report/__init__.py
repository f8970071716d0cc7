"""Report writers: the JSON report in, text out.

Every writer takes the JSON report dict (`json_report.Report`) and returns the
text of one format (JSON, SARIF, JUnit XML, Markdown, a self-contained HTML page);
callers decide where it goes. `WRITERS` is the complete,
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

EXTENSIONS: dict[str, str] = {
    ".json": "json",
    ".sarif": "sarif",
    ".xml": "junit",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": TERMINAL_FORMAT,
}
"""The format an `--output FILE` means when no `--format` is paired with it."""


def format_for_path(path: str) -> str | None:
    """The format an output file's extension names (`report.sarif` -> `sarif`), or None when it names none."""
    name = path.lower()
    if name.endswith(".sarif.json"):
        return "sarif"
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:]) if dot > name.rfind("/") else None


__all__ = ["EXTENSIONS", "FORMATS", "TERMINAL_FORMAT", "WRITERS", "Report", "Writer", "format_for_path"]
