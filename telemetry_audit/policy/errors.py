"""Policy errors that point at the file, line and column, with the offending snippet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PolicyError(Exception):
    """A policy file is unreadable, malformed or invalid; the program must not start with it."""

    file: str
    message: str
    line: int = 0
    """1-based; 0 when unknown."""
    column: int = 0
    """1-based; 0 when unknown."""
    snippet: str = ""
    hint: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        text = f"{where}: error: {self.message}"
        if self.snippet:
            text += "\n" + self.snippet
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


def snippet_at(source: str, line: int, column: int, context: int = 1) -> str:
    """The lines around `line` (1-based) with a caret under `column`."""
    lines = source.splitlines()
    if not lines or line < 1:
        return ""
    if line > len(lines):  # errors at end of input point past the last line
        line, column = len(lines), len(lines[-1]) + 1
    first = max(1, line - context)
    width = len(str(line))
    out = []
    for number in range(first, line + 1):
        out.append(f"{number:>{width}} | {lines[number - 1]}")
    out.append(f"{'':>{width}} | {' ' * max(0, column - 1)}^")
    return "\n".join(out)
