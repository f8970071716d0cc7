"""Report writers: the JSON report in, text out.

Every writer takes the JSON report dict (`json_report.Report`) and returns the
text of one format (JSON, SARIF, JUnit XML, Markdown, a self-contained HTML page);
callers decide where it goes. `WRITERS` is the complete,
explicit list of file formats. The terminal view is separate
(`telemetry_audit.report.table.render_table`) because it prints with rich.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from telemetry_audit.report.json_report import Report

Writer = Callable[[Mapping[str, Any]], str]
"""A writer: a report (a `Report` or the engine's plain dict) in, the text of one format out."""


class _Writers(Mapping[str, Writer]):
    """The writers by format name; each writer's module is imported when it is first looked up.

    The proxy child imports `report.build` for its audit records and never writes a report: importing every
    writer (and rich, for the HTML page's conformance view) there cost a tenth of a second of each start-up.
    """

    def __init__(self, where: Mapping[str, tuple[str, str]]) -> None:
        self._where = dict(where)

    def __getitem__(self, name: str) -> Writer:
        module, function = self._where[name]
        writer: Writer = getattr(importlib.import_module(module), function)
        return writer

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


WRITERS: Mapping[str, Writer] = _Writers({
    "json": ("telemetry_audit.report.json_report", "write_json"),
    "sarif": ("telemetry_audit.report.sarif", "write_sarif"),
    "junit": ("telemetry_audit.report.junit", "write_junit"),
    "markdown": ("telemetry_audit.report.markdown", "write_markdown"),
    "html": ("telemetry_audit.report.html", "write_html"),
})

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
