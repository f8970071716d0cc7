"""Redaction by splicing: only the redacted values change, every other byte stays as sent.

Re-serialising a parsed document respells numbers (`1.50` -> `1.5`, `1E400` -> `Infinity`), spacing and
escapes. Instead, the spans of the values to rewrite are found in the original text (containers that hold
no edit are skipped by the C scanner of the `json` module) and only those spans are replaced. The offsets
found are kept per text (`OffsetIndex`): locating the leaks and splicing their redaction scan a container once.
"""

from __future__ import annotations

import base64
import json
import json.decoder
import json.scanner
from bisect import bisect_right
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


def _ws_back(text: str, pos: int) -> int:
    while pos > 0 and text[pos - 1] in _WHITESPACE:
        pos -= 1
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


class _Members:
    """The members of one container found so far, and where the scan resumes (members are found on demand)."""

    __slots__ = ("closing", "count", "cursor", "done", "end", "ends", "items", "keyed")

    def __init__(self, text: str, pos: int, end: int | None, count: int | None) -> None:
        opening = text[pos:pos + 1]
        if opening not in ("{", "["):
            raise DecodeError("a value to redact could not be located in the body")
        self.keyed = opening == "{"
        self.closing = "}" if self.keyed else "]"
        self.end = end
        """Where the container ends, when the caller knows it (then its last member is not scanned)."""
        self.count = count
        """How many members it has, when the caller knows it (from the document parsed from this very text:
        a wrong count would misplace the last member)."""
        self.items: list[tuple[Any, int, int, int]] = []
        """(key or index, member start, value start, value end) in text order."""
        self.ends: list[int] = []
        self.cursor = _ws(text, pos + 1)
        self.done = text[self.cursor:self.cursor + 1] == self.closing
        if self.done:
            self.end = self.cursor + 1


class OffsetIndex:
    """Where the members of a JSON text's containers start and end, each container scanned at most once.

    Locating every leak from the root and splicing every redaction each skipped the same siblings again
    (a 6 MB batch was scanned once per leak, then once more to redact): the offsets found are kept here,
    per text, and shared by `child_holding` and the splicers. Members are scanned on demand, left to right.
    """

    def __init__(self, text: str, root: Any = None) -> None:
        self.text = text
        self._containers: dict[int, _Members] = {}
        if isinstance(root, (dict, list)):  # the parsed document: its root's size and end are known
            pos = _ws(text, 0)
            if text[pos:pos + 1] in ("{", "["):
                self._containers[pos] = _Members(text, pos, len(text.rstrip(_WHITESPACE)), len(root))

    def container(self, pos: int, end: int | None = None, count: int | None = None) -> _Members:
        found = self._containers.get(pos)
        if found is None:
            found = self._containers[pos] = _Members(self.text, pos, end, count)
        else:
            if found.end is None:
                found.end = end
            if found.count is None:
                found.count = count
        return found

    def scan_until(self, members: _Members, position: int | None) -> None:
        """Scan members until one ends after `position` (every member when None)."""
        if members.done or (position is not None and members.ends and members.ends[-1] > position):
            return
        self._scan(members, position)

    def _scan(self, members: _Members, position: int | None) -> None:
        text = self.text
        cursor = members.cursor
        items, ends = members.items, members.ends
        keyed, closing = members.keyed, members.closing
        index = len(items)
        while True:
            start = cursor
            key: Any = index
            if keyed:
                if text[cursor:cursor + 1] != '"':
                    raise DecodeError("a value to redact could not be located in the body")
                key, cursor = _scanstring(text, cursor + 1)
                cursor = _ws(text, cursor)
                cursor = _ws(text, cursor + 1)  # past ':'
            if members.count is not None and members.end is not None and index == members.count - 1:
                end = _ws_back(text, members.end - 1)  # the last member ends where the closing's whitespace starts
            else:
                end = _skip(text, cursor)
            items.append((key, start, cursor, end))
            ends.append(end)
            index += 1
            cursor = _ws(text, end)
            if text[cursor:cursor + 1] == ",":
                cursor = _ws(text, cursor + 1)
                if position is not None and end > position:
                    members.cursor = cursor
                    return
                continue
            break
        if text[cursor:cursor + 1] != closing:
            raise DecodeError("a value to redact could not be located in the body")
        members.cursor = cursor
        members.end = cursor + 1
        members.done = True

    def members(self, pos: int) -> tuple[list[tuple[Any, int, int, int]], int]:
        """(every member of the container at `pos`, where the container ends)."""
        members = self.container(pos)
        self.scan_until(members, None)
        assert members.end is not None
        return members.items, members.end


def child_holding(index: OffsetIndex, pos: int, first: int, last: int, end: int | None = None,
                  count: int | None = None) -> tuple[str | int, int, int] | None:
    """(key or index, start, end) of the member of the container at `pos` whose value holds `first`..`last`;
    None when they fall on a key or separator, or across members. `end` and `count`, when known, spare
    scanning the container's last member."""
    members = index.container(pos, end, count)
    index.scan_until(members, first)
    at = bisect_right(members.ends, first)
    if at == len(members.items):
        return None
    key, _, value_start, value_end = members.items[at]
    if first < value_start:
        return None
    return (key, value_start, value_end) if last < value_end else None


class _Splicer:
    def __init__(self, drop: Any, embedded: Any) -> None:
        self.drop = drop
        self.embedded = embedded
        self.applied = 0
        """Edits applied so far: every edit must land, or the redaction fails (closed)."""

    def check(self, edits: dict[Any, Any]) -> None:
        if self.applied != len(edits):
            raise DecodeError("a value to redact could not be located in the body")

    def document(self, text: str, edits: dict[Any, Any], index: OffsetIndex | None = None) -> str:
        """`text` (one JSON document) with the values under the trie `edits` rewritten; `index`: its offsets
        when already known."""
        pos = _ws(text, 0)
        new, end = self.value(index or OffsetIndex(text), pos, edits, None)
        if new is self.drop:
            raise DecodeError("cannot drop a whole document")
        return text[:pos] + new + text[end:]

    def value(self, index: OffsetIndex, pos: int, node: dict[Any, Any], end: int | None) -> tuple[Any, int]:
        """(new text of the value at `pos`, or `drop`; end of the original value). `end`: where it ends,
        when known."""
        text = index.text
        if _LEAF in node:
            if end is None:
                end = _skip(text, pos)
            value = node[_LEAF]
            self.applied += 1
            return (value if value is self.drop else json.dumps(value, ensure_ascii=False)), end
        if self.embedded in node:
            if text[pos:pos + 1] != '"':
                raise DecodeError("a value to redact could not be located in the body")
            inner, end = _scanstring(text, pos + 1)
            return json.dumps(self.inside(inner, node[self.embedded]), ensure_ascii=False), end
        if text[pos:pos + 1] not in ("{", "["):
            raise DecodeError("a value to redact could not be located in the body")
        found, end = index.members(pos)
        if not found:
            return text[pos:end], end
        members: list[tuple[int, int, int, Any]] = []  # (member start, value start, value end, new or None)
        for key, start, value_start, value_end in found:
            child = node.get(key)
            if child is None:
                members.append((start, value_start, value_end, None))
            else:
                new, child_end = self.value(index, value_start, child, value_end)
                if child_end != value_end:
                    raise DecodeError("a value to redact could not be located in the body")
                members.append((start, value_start, value_end, new))
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


def splice_json(text: str, edits: dict[tuple[Any, ...], Any], drop: Any, embedded: Any,
                index: OffsetIndex | None = None) -> str:
    """One JSON document with `edits` (locator -> new value or `drop`) applied; `index`: the text's offsets
    found so far (`OffsetIndex(text, tree)`), when the caller has them."""
    if index is not None and index.text is not text:
        raise ValueError("the offset index is not of this text")
    splicer = _Splicer(drop, embedded)
    out = splicer.document(text, _trie(edits), index)
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
