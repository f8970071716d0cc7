"""Redaction by splicing: only the redacted values change, every other byte stays as sent.

Re-serialising a parsed document respells numbers (`1.50` -> `1.5`, `1E400` -> `Infinity`), spacing and
escapes. Instead, the spans of the values to rewrite are found in the original text (containers that hold
no edit are skipped by the C scanner of the `json` module) and only those spans are replaced.
"""

from __future__ import annotations

import base64
import json
import json.decoder
import json.scanner
from typing import Any
from urllib.parse import quote_plus

from telemetry_audit.decoders.errors import DecodeError
from telemetry_audit.decoders.formats import ndjson_lines, sniff_embedded

_LEAF = object()
_WHITESPACE = " \t\n\r"
_scan_once: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]


def _trie(edits: dict[tuple[Any, ...], Any]) -> dict[Any, Any]:
    root: dict[Any, Any] = {}
    for locator, value in edits.items():
        node = root
        for step in locator:
            node = node.setdefault(step, {})
        node[_LEAF] = value
    return root


def _ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _skip(text: str, pos: int) -> int:
    try:
        return int(_scan_once(text, pos)[1])
    except StopIteration:
        raise DecodeError("a value to redact could not be located in the body") from None


def skip_whitespace(text: str, pos: int) -> int:
    """The first position at or after `pos` that is not JSON whitespace."""
    return _ws(text, pos)


def value_end(text: str, pos: int) -> int:
    """Where the JSON value starting at `pos` ends."""
    return _skip(text, pos)


def child_holding(text: str, pos: int, first: int, last: int) -> tuple[str | int, int, int] | None:
    """(key or index, start, end) of the member of the container at `pos` whose value holds `first`..`last`;
    None when they fall on a key or separator, or across members."""
    opening = text[pos]
    closing = "}" if opening == "{" else "]"
    cursor = _ws(text, pos + 1)
    index = 0
    while text[cursor:cursor + 1] != closing:
        key: str | int = index
        if opening == "{":
            if first < cursor:
                return None
            key, cursor = _scanstring(text, cursor + 1)
            cursor = _ws(text, _ws(text, cursor) + 1)
        if first < cursor:
            return None
        end = _skip(text, cursor)
        if first < end:
            return (key, cursor, end) if last < end else None
        cursor = _ws(text, end)
        if text[cursor:cursor + 1] == ",":
            cursor = _ws(text, cursor + 1)
        index += 1
    return None


class _Splicer:
    def __init__(self, drop: Any, embedded: Any) -> None:
        self.drop = drop
        self.embedded = embedded
        self.applied = 0
        """Edits applied so far: every edit must land, or the redaction fails (closed)."""

    def check(self, edits: dict[Any, Any]) -> None:
        if self.applied != len(edits):
            raise DecodeError("a value to redact could not be located in the body")

    def document(self, text: str, edits: dict[Any, Any]) -> str:
        """`text` (one JSON document) with the values under the trie `edits` rewritten."""
        pos = _ws(text, 0)
        new, end = self.value(text, pos, edits)
        if new is self.drop:
            raise DecodeError("cannot drop a whole document")
        return text[:pos] + new + text[end:]

    def value(self, text: str, pos: int, node: dict[Any, Any]) -> tuple[Any, int]:
        """(new text of the value at `pos`, or `drop`; end of the original value)."""
        if _LEAF in node:
            end = _skip(text, pos)
            value = node[_LEAF]
            self.applied += 1
            return (value if value is self.drop else json.dumps(value, ensure_ascii=False)), end
        if self.embedded in node:
            if text[pos:pos + 1] != '"':
                raise DecodeError("a value to redact could not be located in the body")
            inner, end = _scanstring(text, pos + 1)
            return json.dumps(self.inside(inner, node[self.embedded]), ensure_ascii=False), end
        opening = text[pos:pos + 1]
        if opening not in ("{", "["):
            raise DecodeError("a value to redact could not be located in the body")
        closing = "}" if opening == "{" else "]"
        members: list[tuple[int, int, int, Any]] = []  # (member start, value start, value end, new or None)
        cursor = _ws(text, pos + 1)
        index = 0
        if text[cursor:cursor + 1] != closing:
            while True:
                start = cursor
                key: Any = index
                if opening == "{":
                    key, cursor = _scanstring(text, cursor + 1)
                    cursor = _ws(text, cursor)
                    cursor = _ws(text, cursor + 1)  # past ':'
                child = node.get(key)
                if child is None:
                    end = _skip(text, cursor)
                    members.append((start, cursor, end, None))
                else:
                    new, end = self.value(text, cursor, child)
                    members.append((start, cursor, end, new))
                index += 1
                cursor = _ws(text, end)
                if text[cursor:cursor + 1] == ",":
                    cursor = _ws(text, cursor + 1)
                    continue
                break
        if text[cursor:cursor + 1] != closing:
            raise DecodeError("a value to redact could not be located in the body")
        end = cursor + 1
        if not members:
            return text[pos:end], end
        dropped = any(m[3] is self.drop for m in members)
        if not dropped:
            out = [text[pos:members[0][1]]]
            for i, (_, value_start, value_end, new) in enumerate(members):
                if i:
                    out.append(text[members[i - 1][2]:value_start])
                out.append(text[value_start:value_end] if new is None else new)
            out.append(text[members[-1][2]:end])
            return "".join(out), end
        separator = text[members[0][2]:members[1][0]] if len(members) > 1 else ","
        kept = [
            text[start:value_start] + (text[value_start:value_end] if new is None else new)
            for start, value_start, value_end, new in members
            if new is not self.drop
        ]
        return text[pos:members[0][0]] + separator.join(kept) + text[members[-1][2]:end], end

    def inside(self, inner: str, node: dict[Any, Any]) -> str:
        """A string that holds a document (JSON or base64 JSON), with the edits applied inside it."""
        found = sniff_embedded(inner)
        if found is None:
            raise DecodeError("a value to redact could not be located in the body")
        if found.kind == "json":
            return self.document(inner, node)
        stripped = inner.strip()
        raw = stripped.encode("ascii")
        raw += b"=" * (-len(raw) % 4)
        decoded = (base64.urlsafe_b64decode if found.urlsafe else base64.b64decode)(raw).decode("utf-8")
        encoded = self.document(decoded, node).encode("utf-8")
        out = (base64.urlsafe_b64encode(encoded) if found.urlsafe else base64.b64encode(encoded)).decode("ascii")
        return out if found.padded else out.rstrip("=")


def splice_json(text: str, edits: dict[tuple[Any, ...], Any], drop: Any, embedded: Any) -> str:
    """One JSON document with `edits` (locator -> new value or `drop`) applied."""
    splicer = _Splicer(drop, embedded)
    out = splicer.document(text, _trie(edits))
    splicer.check(edits)
    return out


def splice_base64_json(text: str, edits: dict[tuple[Any, ...], Any], drop: Any, embedded: Any) -> str:
    """A body that is one base64-wrapped JSON document (its locators start with `embedded`)."""
    inner = {k[1:]: v for k, v in edits.items() if k[:1] == (embedded,)}
    if len(inner) != len(edits):
        raise DecodeError("a value to redact could not be located in the body")
    splicer = _Splicer(drop, embedded)
    out = splicer.inside(text, _trie(inner))
    splicer.check(inner)
    return out


def splice_ndjson(text: str, edits: dict[tuple[Any, ...], Any], drop: Any, embedded: Any) -> str:
    """NDJSON: the non-blank lines are the documents `[0]`, `[1]`, ...; line endings stay as sent."""
    by_line: dict[int, dict[tuple[Any, ...], Any]] = {}
    for locator, value in edits.items():
        if not locator or not isinstance(locator[0], int) or len(locator) < 2:
            raise DecodeError("a value to redact could not be located in the body")
        by_line.setdefault(locator[0], {})[locator[1:]] = value
    splicer = _Splicer(drop, embedded)
    out: list[str] = []
    index = 0
    for position, line in enumerate(ndjson_lines(text)):
        if position % 2 or not line.strip():  # a line ending, or a blank line
            out.append(line)
            continue
        line_edits = by_line.pop(index, None)
        out.append(line if line_edits is None else splicer.document(line, _trie(line_edits)))
        index += 1
    if by_line:
        raise DecodeError("a value to redact could not be located in the body")
    splicer.check(edits)
    return "".join(out)


def splice_form(text: str, edits: dict[tuple[Any, ...], Any], drop: Any, embedded: Any) -> str:
    """An url-encoded form: only the pairs holding a redacted value are respelled."""
    pieces = text.split("&")
    indexes = [i for i, piece in enumerate(pieces) if piece]
    splicer = _Splicer(drop, embedded)
    by_pair: dict[int, dict[tuple[Any, ...], Any]] = {}
    for locator, value in edits.items():
        if len(locator) < 2 or not isinstance(locator[0], int) or locator[1] != 1 or locator[0] >= len(indexes):
            raise DecodeError("a value to redact could not be located in the body")
        by_pair.setdefault(locator[0], {})[locator[2:]] = value
    from urllib.parse import unquote_plus

    for pair, pair_edits in by_pair.items():
        at = indexes[pair]
        name, _, raw = pieces[at].partition("=")
        if () in pair_edits:
            value = pair_edits[()]
            splicer.applied += 1
            if value is drop:
                pieces[at] = ""
                continue
            pieces[at] = f"{name}={quote_plus(str(value))}"
            continue
        nested = {k[1:]: v for k, v in pair_edits.items() if k[:1] == (embedded,)}
        if len(nested) != len(pair_edits):
            raise DecodeError("a value to redact could not be located in the body")
        pieces[at] = f"{name}={quote_plus(splicer.inside(unquote_plus(raw), _trie(nested)))}"
    splicer.check(edits)
    return "&".join(p for i, p in enumerate(pieces) if p or i not in indexes)
