"""Turn a request into flat `(field path, value)` pairs, and a redacted request back into bytes.

`decode_request` reads a request once: content codings undone, the text's
charset found (UTF-8, UTF-16/32, with or without BOM), the body parsed by the
format the registry picks (content type, path, sniffing). The engine, redaction
and the emulators all read the same `DecodedRequest`; its flat fields are built
only when first asked for. Whatever cannot be read becomes a `DecodeProblem`
the engine reports: `decode` when the body's text was still scanned as a whole,
`uninspectable` or `oversize` when part of it was never read.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import unquote

import re2

from telemetry_audit.decoders import formats, splice
from telemetry_audit.decoders.content_encoding import GZIP_MAGIC, compress, decompress_partial
from telemetry_audit.decoders.errors import DecodeError, DecodeLimitError, UninspectableError
from telemetry_audit.decoders.formats import Embedded, FormPair, FormPairs
from telemetry_audit.model import FieldValue, Limits, Request

__all__ = [
    "DecodeError",
    "DecodeLimitError",
    "DecodeLimits",
    "DecodedRequest",
    "DecodeProblem",
    "Embedded",
    "Limits",
    "body_leaves",
    "decode_request",
    "field_path",
    "fields_near",
    "header_and_url_fields",
    "header_scan_text",
    "holds_embedded",
    "rewrite_body",
    "scan_text",
]

DecodeLimits = Limits
"""The old name of `telemetry_audit.model.Limits`."""

# Headers whose values the proxy itself sets or checks: every other header is scanned (any of them can
# carry a value a client put there).
_TRANSPORT_HEADERS = frozenset({"host", "content-length", ":authority", ":method", ":path", ":scheme"})


class _Step:
    """A locator step that is not a key: it cannot collide with any key a payload uses."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


EMBEDDED = _Step("embedded")
"""Locator step into a string opened as a document."""
UNREWRITABLE = _Step("unrewritable")
"""Locator root of values no rewrite can reach (URL path, keys, documents inside headers): redacting fails closed."""


@dataclass(frozen=True)
class DecodeProblem:
    """Why (part of) a request could not be decoded."""

    where: str
    reason: str
    rule_id: str = "decode"
    """The engine rule it becomes: `decode` (text still scanned whole), `uninspectable` or `oversize`."""

    @property
    def truncated(self) -> bool:
        """Part of the request was never inspected (the engine does not treat it as a mere decode failure)."""
        return self.rule_id != "decode"


def _problem(where: str, error: DecodeError) -> DecodeProblem:
    if isinstance(error, DecodeLimitError):
        return DecodeProblem(where, str(error), "oversize")
    if isinstance(error, UninspectableError):
        return DecodeProblem(where, str(error), "uninspectable")
    return DecodeProblem(where, str(error))


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _text_of(body: bytes) -> tuple[str, bytes, str] | None:
    """(text, byte-order mark, charset) of a body, or None when it is not text in any charset we read."""
    for bom, charset in _BOMS:
        if body.startswith(bom):
            try:
                return body[len(bom):].decode(charset), bom, charset
            except UnicodeDecodeError:
                return None
    if b"\x00" in body[:4]:
        # UTF-16/32 without a BOM, recognised (as RFC 8259 says) by where the NULs around the first
        # character sit: only for a document that starts like JSON, else any binary would read as UTF-16.
        charset = json.detect_encoding(body)
        try:
            text = body.decode(charset)
        except UnicodeDecodeError:
            return None
        return (text, b"", charset) if charset != "utf-8" and text.lstrip()[:1] in ("{", "[") else None
    try:
        return body.decode("utf-8"), b"", "utf-8"
    except UnicodeDecodeError:
        return None


@dataclass
class DecodedRequest:
    """A request read once: its plain body and parsed document, its fields for the detectors.

    Built by `decode_request`; the engine, redaction and the emulators share it.
    """

    request: Request
    """The request this was decoded from (emulators answer from it without decoding again)."""
    limits: Limits = field(default_factory=Limits)
    read_problems: list[DecodeProblem] = field(default_factory=list)
    """Problems met reading the body; `problems` adds those met building the fields."""
    body_format: str = "empty"
    """`empty`, `json`, `ndjson`, `form`, `multipart`, `otlp-protobuf`, `protobuf`, `otlp-json`, `base64-json`
    or `raw`."""
    body_tree: Any = None
    encodings: tuple[str, ...] = ()
    sniffed_gzip: bool = False
    plain_body: bytes | None = None
    """The body with its content codings (and sniffed gzip) undone; None when that failed or was not tried."""
    text: str | None = None
    """The plain body as text (charset decoded, byte-order mark removed), when it is text."""
    bom: bytes = b""
    charset: str = "utf-8"
    query_tree: FormPairs | None = None
    numbers: list[str] = field(default_factory=list)
    """For a JSON body: each non-integer number as a detector sees it (`str(float)`: `1.50` reads `1.5`)."""
    tree_opened: bool = False
    """Reading the fields opened a string of `body_tree` in place (an embedded document, as an `Embedded`): the
    tree no longer reads as the body does."""
    _fields: list[FieldValue] | None = field(default=None, repr=False)
    _offsets: splice.OffsetIndex | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def problems(self) -> list[DecodeProblem]:
        """Every problem, those met walking the document included (so this builds the fields)."""
        self.fields  # noqa: B018 - building the fields records the limits they meet
        return self.read_problems

    @property
    def fields(self) -> list[FieldValue]:
        """Every value of the request with its path: headers, URL path, query, body leaves, keys.

        Built on first use (the engine's fast path never needs them); walking may add problems (limits).
        """
        if self._fields is None:
            self._fields = _flatten(self)
        return self._fields

    def json_document(self) -> Any:
        """The JSON body as a server reads it, from the parse the engine made: an emulator need not parse it
        again. None when the body is not one JSON document (NDJSON, a form, OTLP...), not plain UTF-8 (a
        byte-order mark, UTF-16: a server's JSON parser refuses those, and so does the emulator) or its tree was
        opened in place; the emulator then reads the plain body itself. Callers must not modify what this returns.
        """
        if self.body_format == "json" and not self.tree_opened and self.charset == "utf-8" and not self.bom:
            return self.body_tree
        return None

    @property
    def offsets(self) -> splice.OffsetIndex:
        """Where the members of the JSON text's containers lie, found once and shared by locating leaks
        (`fields_near`) and splicing their redaction (`rewrite_body`)."""
        assert self.text is not None
        if self._offsets is None:
            self._offsets = splice.OffsetIndex(self.text, self.body_tree)
        return self._offsets


def _audited_headers(request: Request) -> Iterator[tuple[str, str]]:
    """(lower-case name, value) of every header worth a detector pass."""
    return _audited_headers_of(request.headers)


def _audited_headers_of(headers: tuple[tuple[str, str], ...]) -> Iterator[tuple[str, str]]:
    for name, value in headers:
        lowered = name.lower()
        if lowered not in _TRANSPORT_HEADERS:
            yield lowered, value


# What `scan_text` cannot stand in for: strings that may hold base64 JSON (opened only by the full path).
# Base64 of a text starting with `{` begins `e` + one of [w-z0-9+/] (and `[` gives `W` + the same): only such
# strings can be what `formats.sniff_embedded` opens.
_SCAN_TEXT_BLOCKERS = re.compile(r'"\s*[eW][w-z0-9+/_-][A-Za-z0-9+/_=-]{10,}\s*"')
"""Python's `re`: its `\\s` is Unicode white space, what `str.strip` removes before `sniff_embedded` decodes
(RE2's is ASCII only, so a document behind a no-break space went unseen at a glance). Linear here: every match
starts at a quote and its runs stop at the next quote."""
_ASCII_SPACE = "[\t\n\x0b\x0c\r\x1c-\x1f ]"
"""The ASCII characters Python's `\\s` (and `str.strip`) takes for white space, spelled out for RE2."""
_SCAN_TEXT_BLOCKERS_ASCII = re2.compile(
    ('"' + _ASCII_SPACE + '*[eW][w-z0-9+/_-][A-Za-z0-9+/_=-]{10,}' + _ASCII_SPACE + '*"').encode())
"""`_SCAN_TEXT_BLOCKERS` for an ASCII text, run by RE2 over its bytes (offsets are the same): a few times faster."""
SCAN_TEXT_EMBEDDED_GATE = \
    "\n\x00\n" + _ASCII_SPACE + "*[eW][w-z0-9+/_-][A-Za-z0-9+/_=-]{10,}" + _ASCII_SPACE + "*\n\x00\n"
"""`_SCAN_TEXT_BLOCKERS_ASCII` as the scan text spells what it matches (each `"` is `\n\0\n` there): it matches
the scan text of every ASCII body that regex matches in. A caller that runs it over the scan text anyway (the
engine, in the pass of its detectors' gates) builds the text with `embedded_gate=True` and asks
`holds_embedded` only where it matches."""


def header_scan_text(headers: tuple[tuple[str, str], ...]) -> str | None:
    """The audited header values joined by newlines, or None when one holds a document (the full path opens it).

    Depends on the headers alone, so a caller may cache it (clients repeat the same headers).
    """
    pairs = list(_audited_headers_of(headers))
    values = [value for _, value in pairs]
    if any(formats.sniff_embedded(value) is not None for value in values if len(value) >= 2):
        return None
    # Names too: a header name can carry a token (`X-ghp_...: 1`).
    return "\n".join([name for name, _ in pairs] + values)


def scan_text(decoded: DecodedRequest, headers_text: str | None = None, *, embedded_gate: bool = False) -> str | None:
    """One string holding every value the detectors would see for the request, or None to take the full path.

    For a plain JSON body without escapes or embedded documents, its own text with each `"` turned into
    a line break holds every value as a line of its own (plus keys and punctuation, which can only add
    matches): a detector family that finds nothing here finds nothing in any field. The engine uses this
    to let the common clean request through without building a field per value. It reads the text
    `decode_request` already decoded: nothing is decompressed or parsed again. `headers_text` is
    `header_scan_text(request.headers)` when the caller has it. With `embedded_gate`, an ASCII body is not
    searched for documents in its strings here: the caller runs `SCAN_TEXT_EMBEDDED_GATE` over the text.
    """
    request = decoded.request
    if request.query or decoded.read_problems or decoded.body_format not in ("json", "otlp-json", "empty"):
        return None
    if headers_text is None:
        headers_text = header_scan_text(request.headers)
        if headers_text is None:
            return None
    headers = _path_text(request.path) + "\n" + _host_text(request.host) + "\n" + headers_text
    if decoded.body_format == "empty":
        return headers
    text = decoded.text
    limits = decoded.limits
    if text is None or "\\" in text or len(text) >= limits.max_fields:
        return None
    if text.count("{") + text.count("[") > limits.max_depth and _nesting_exceeds(text, limits.max_depth):
        return None
    if not (embedded_gate and text.isascii()) and holds_embedded(decoded):
        return None
    # Numbers as detectors see them (`1.50` reads `1.5`), recorded while parsing: no pass over the text.
    floats = "\n".join(decoded.numbers)
    # Each `"` becomes newline, NUL, newline: every value still sits between newlines (as in the per-value
    # scan), while `\s` runs stop at the NUL, so a key and its value never read as `key: value` together.
    return headers + "\n" + text.replace('"', "\n\x00\n") + "\n" + floats


def holds_embedded(decoded: DecodedRequest) -> bool:
    """Whether a string of the body's text holds a document (JSON or base64 JSON), which only the full path opens:
    then `scan_text` cannot stand in for the fields."""
    text = decoded.text or ""
    # Rare, and most are ids that only look like base64.
    if text.isascii():
        candidates: Iterator[str] = (m.group(0).decode() for m in _SCAN_TEXT_BLOCKERS_ASCII.finditer(text.encode()))
    else:
        candidates = (m.group(0) for m in _SCAN_TEXT_BLOCKERS.finditer(text))
    return any(formats.sniff_embedded(candidate[1:-1]) is not None for candidate in candidates)


SCAN_PIECE_CHARS = 65536
"""About how long a piece of a long scan text is (see `scan_text_pieces`)."""


def scan_text_pieces(decoded: DecodedRequest, headers_text: str, length: int, size: int | None = None) -> list[int]:
    """Where to cut `scan_text(decoded, headers_text)` (of `length` characters) into pieces of about `size`,
    so that a detector run on each piece finds everything it finds on the whole: the start of each piece,
    the first 0.

    A piece ends right after a comma between two members of a container: every value, every `name: value`
    pair and every key lies whole inside one piece (no detector match the fields path can make crosses such a
    comma). A long text read whole is the costlier: a keyword that occurs anywhere in it makes a pattern scan
    all of it, and each match's position is counted from its start; a piece confines both to itself.
    Outside strings is where quotes before a position are even (the scan text has no escapes).
    """
    text = decoded.text
    size = size or SCAN_PIECE_CHARS
    if text is None or length <= size:
        return [0]
    request = decoded.request
    base = len(_path_text(request.path)) + 1 + len(_host_text(request.host)) + 1 + len(headers_text) + 1
    starts = [0]
    quotes = 0
    counted_to = 0
    pos = size
    while pos < len(text):
        comma = text.find(",", pos)
        if comma < 0:
            break
        quotes += text.count('"', counted_to, comma)
        counted_to = comma
        if quotes % 2 == 0:  # a comma between members: the piece after it starts past its scan-text spelling
            starts.append(base + comma + 1 + 2 * quotes)
            pos = comma + 1 + size
            continue
        close = text.find('"', comma)  # inside a string, which ends at the next quote: look past it
        if close < 0:
            break
        quotes += 1
        counted_to = pos = close + 1
    return starts


_NOT_QUOTE_OR_BRACKET = bytes(range(256)).translate(None, b'"[]{}')
"""The bytes `_nesting_exceeds` deletes (every byte but quotes and brackets)."""
_QUOTED = re.compile(rb'"[^"]*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether containers nest deeper than `limit` in a JSON text without escapes.

    Outside strings (quotes alternate: no escapes), only brackets are kept; each pass removes the innermost
    pairs, so the passes it takes to empty them is the depth. C-speed passes, at most `limit` + 1 of them.
    Only quotes and brackets are kept first (bytes.translate), then quotes side by side go (no bracket lies
    between them, and the others keep their parity): what is left is short, and the strings still holding
    brackets are cut out of it.
    """
    kept = text.encode("utf-8", "surrogatepass").translate(None, _NOT_QUOTE_OR_BRACKET).replace(b'""', b"")
    brackets = _QUOTED.sub(b"", kept)
    unpaired = brackets.find(b'"')
    if unpaired >= 0:
        brackets = brackets[:unpaired]  # what follows a quote that is never closed is inside it
    for _ in range(limit):
        if not brackets:
            return False
        # One sub, not `.replace("[]")` then `.replace("{}")`: that took `{[]}` in one pass (half the depth).
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


_LOCAL_SUBTREE_CHARS = 256
"""A container at most this long is read whole when a match falls inside it; a longer one is descended into."""
_QUOTE_BLOCK = 65536


@dataclass
class _Target:
    """A subtree of the body to read: the smallest container (or value) around a match."""

    start: int
    end: int
    node: Any
    parent: Any
    key: str | int | None
    path: str
    generic: str
    locator: tuple[Any, ...]
    depth: int


def fields_near(decoded: DecodedRequest, headers_text: str, spans: list[tuple[int, int]]) -> list[FieldValue] | None:
    """The fields of the request that the `spans` (positions in `scan_text(decoded, headers_text)`) touch.

    Header and URL fields always; of the body, only the subtrees holding a span, read exactly as `fields`
    would read them (same paths, locators, order). None when the spans cannot be placed (the caller then
    reads every field): a large batch with one leak is then read around the leak instead of in full.
    """
    text = decoded.text
    tree = decoded.body_tree
    request = decoded.request
    if decoded.body_format not in ("json", "otlp-json") or text is None or tree is None or decoded.read_problems:
        return None
    base = len(_path_text(request.path)) + 1 + len(_host_text(request.host)) + 1 + len(headers_text) + 1
    positions = ScanPositions(text)
    body_end = base + positions.scan_length
    targets: list[_Target] = []
    for start, end in spans:
        if end <= base:
            continue  # headers and URL: always read
        if start < base or end > body_end:
            return None  # across segments or in the float spellings after the body
        first = positions.original(start - base)
        last = positions.original(max(end - 1, start) - base)
        target = _target_around(decoded.offsets, tree, first, last)
        if target is None:
            return None
        targets.append(target)
    fields: list[FieldValue] = []
    flattener = _Flattener(decoded, fields)
    fields.extend(_header_and_url_fields(request))
    kept_end = -1
    for target in sorted(targets, key=lambda t: (t.start, -t.end)):
        if target.start < kept_end:
            continue  # inside a subtree already read
        kept_end = target.end
        flattener.walk_from(target.node, target.path, target.generic, target.locator, target.depth, target.parent,
                            target.key)
    fields.extend(flattener.keys)
    return fields


class ScanPositions:
    """Maps a position in the scan form of a body's text (`scan_text`: each `"` spelled as 3 characters) back to
    the character of the text it comes from.

    The text is cut in blocks of `_QUOTE_BLOCK` characters whose quotes are counted up front; the scan position of
    each quote of a block is listed the first time a position falls in it. So a large batch with one leak costs a
    count per block, and one with 95k leaks a list per block, not a count over a block per leak.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        quotes = [text.count('"', i, i + _QUOTE_BLOCK) for i in range(0, len(text), _QUOTE_BLOCK)] or [0]
        self.scan_length = len(text) + 2 * sum(quotes)
        self._block_starts = [i * _QUOTE_BLOCK + 2 * before for i, before in
                              enumerate(accumulate(quotes[:-1], initial=0))]
        """Scan position where each block starts."""
        self._quote_starts: dict[int, list[int]] = {}
        """Per block: the scan position of each of its quotes, from the block's start."""

    def original(self, scanned: int) -> int:
        """The position in the text of the character spelled at `scanned` (the last character past the end)."""
        block = max(bisect_right(self._block_starts, scanned) - 1, 0)
        starts = self._quote_starts.get(block)
        if starts is None:
            pieces = self.text[block * _QUOTE_BLOCK:(block + 1) * _QUOTE_BLOCK].split('"')
            starts = self._quote_starts[block] = list(accumulate(
                [len(pieces[0]), *(len(piece) + 3 for piece in pieces[1:-1])])) if len(pieces) > 1 else []
        local = scanned - self._block_starts[block]
        quote = bisect_right(starts, local) - 1  # the last quote spelled at or before `scanned`
        if quote >= 0 and local < starts[quote] + 3:
            return block * _QUOTE_BLOCK + starts[quote] - 2 * quote  # one of that quote's 3 characters
        return min(block * _QUOTE_BLOCK + local - 2 * (quote + 1), len(self.text) - 1)


def _target_around(offsets: splice.OffsetIndex, tree: Any, first: int, last: int) -> _Target | None:
    """Descend from the root to the smallest container holding `first`..`last` (or one short enough to read)."""
    text = offsets.text
    pos = splice.skip_whitespace(text, 0)
    end = len(text.rstrip(" \t\n\r"))  # the body parsed as one document: it ends where its text does
    node, parent, key = tree, None, None
    path = generic = ""
    locator: tuple[Any, ...] = ()
    depth = 0
    while True:
        here = _Target(pos, end, node, parent, key, path, generic, locator, depth)
        opening = text[pos]
        if opening not in "{[" or end - pos <= _LOCAL_SUBTREE_CHARS:
            return here
        count = len(node) if isinstance(node, (dict, list)) else None  # spares scanning its last member
        child = splice.child_holding(offsets, pos, first, last, end, count)
        if child is None:
            return here  # a key, a separator, or a span across children: read the whole container
        name, value_start, value_end = child
        if name == "attributes" and isinstance(node, dict):
            return here  # OTLP attributes are named differently: read the container that holds them
        try:
            value = node[name]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(name, int):
            path, generic = f"{path}[{name}]", f"{generic}[]"
        else:
            path, generic = _join(path, name), _join(generic, name)
        node, parent, key = value, node, name
        locator = locator + (name,)
        depth += 1
        pos, end = value_start, value_end


def _boundary(content_type_header: str) -> str:
    for param in content_type_header.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"')
    return ""


def _parse_body(decoded: DecodedRequest, body: bytes) -> None:
    """Fill `decoded.body_format`/`body_tree`/`text` from the plain body; raises DecodeError."""
    request = decoded.request
    limits = decoded.limits
    content_type = request.content_type
    if formats.is_otlp_path(request.path) and ("protobuf" in content_type or body.lstrip()[:1] not in (b"{", b"[")):
        decoded.body_format = "otlp-protobuf"
        decoded.body_tree = formats.parse_otlp_protobuf(body, request.path)
        return
    if content_type.startswith("multipart/"):
        decoded.body_format = "multipart"
        decoded.body_tree = _multipart_tree(body, _boundary(request.header("content-type")), limits)
        return
    if "protobuf" in content_type:
        decoded.body_format = "protobuf"
        decoded.body_tree = formats.parse_protobuf_wire(body)
        return
    read = _text_of(body)
    if read is None:
        raise UninspectableError(f"binary body that is not text (content type {content_type or 'none'!r})")
    text, decoded.bom, decoded.charset = read
    decoded.text = text
    if not text or text.isspace():
        decoded.body_format = "empty"
        return
    format_, tree = _parse_text(text, content_type, request.path, limits, decoded.numbers)
    decoded.body_format, decoded.body_tree = format_, tree


def _parse_text(
    text: str, content_type: str, path: str, limits: Limits, numbers: list[str] | None = None
) -> tuple[str, Any]:
    """(format, tree) of a body's text; raises DecodeError."""
    if content_type == "application/x-www-form-urlencoded":
        return "form", formats.parse_form(text, limits.max_fields)
    if "ndjson" in content_type or "jsonlines" in content_type or "x-sentry-envelope" in content_type:
        return "ndjson", formats.parse_ndjson(text)
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            return ("otlp-json" if formats.is_otlp_path(path) else "json"), formats.parse_json(text, numbers)
        except DecodeLimitError:
            raise
        except DecodeError:
            if "\n" in text.strip():
                return "ndjson", formats.parse_ndjson(text)
            raise
    if "=" in text and text.isascii() and content_type in ("", "text/plain", "application/octet-stream"):
        return "form", formats.parse_form(text, limits.max_fields)
    embedded = formats.sniff_embedded(text)
    if embedded is not None:
        return "base64-json", embedded
    if "json" in content_type:
        formats.parse_json(text)  # raises with the parser's reason
    raise DecodeError(f"unrecognised body format (content type {content_type or 'none'!r})")


def _multipart_tree(body: bytes, boundary: str, limits: Limits) -> FormPairs:
    """Each part decoded by its own content type and encoding, as `name -> document or text` pairs."""
    pairs: list[list[Any]] = []
    for part in formats.parse_multipart(body, boundary, limits.max_fields):
        content = part.content
        encodings = tuple(c.strip().lower() for c in part.headers.get("content-encoding", "").split(",")
                          if c.strip() and c.strip().lower() != "identity")
        content, problem = decompress_partial(content, encodings, limits.max_decoded_bytes)
        if problem is not None:
            raise UninspectableError(f"multipart part {part.name!r}: {problem}")
        read = _text_of(content)
        if read is None:
            raise UninspectableError(f"multipart part {part.name!r} holds binary data")
        text = read[0]
        part_type = part.headers.get("content-type", "text/plain").split(";", 1)[0].strip().lower()
        value: Any = text
        if text.strip() and ("json" in part_type or "form-urlencoded" in part_type):
            _, tree = _parse_text(text, part_type, "", limits)
            value = tree if isinstance(tree, Embedded) else Embedded("json", tree)
        pairs.append(FormPair((part.name, value)))
    return FormPairs(pairs)


def _is_otlp_attribute_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, dict) and "key" in item and "value" in item for item in value)


_OTLP_VALUE_KEYS = ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue", "kvlistValue")


class _FieldLimitReached(Exception):
    """Unwinds the walk once the field limit is met (the problem is already recorded)."""


_UNREWRITABLE_LOCATOR = (UNREWRITABLE,)
_MAY_EMBED = frozenset("{[eyWw")
"""First characters of a string `formats.sniff_embedded` may open (after leading whitespace)."""


class _Flattener:
    """Walks a tree depth-first in document order, opening embedded documents, within the limits.

    Recursion is bounded by `max_depth` (checked before each level), so it cannot exhaust the stack.
    """

    def __init__(self, decoded: DecodedRequest, fields: list[FieldValue]) -> None:
        self.decoded = decoded
        self.limits = decoded.limits
        self.fields = fields
        self.problems = decoded.read_problems
        self.keys: list[FieldValue] = []

    def walk(self, root: Any, prefix: str, generic_prefix: str, locator: tuple[Any, ...]) -> None:
        self.walk_from(root, prefix, generic_prefix, locator, 0, None, None)

    def walk_from(self, node: Any, path: str, generic: str, locator: tuple[Any, ...], depth: int, parent: Any,
                  key: str | int | None) -> None:
        """Walk a subtree found at `depth` under `parent[key]` (as the whole walk would reach it)."""
        try:
            self._visit(node, path, generic, locator, depth, 0, parent, key)
        except _FieldLimitReached:
            pass

    def _visit(self, node: Any, path: str, generic: str, loc: tuple[Any, ...], depth: int, embed_depth: int,
               parent: Any, key: str | int | None) -> None:
        limits = self.limits
        fields = self.fields
        if len(fields) >= limits.max_fields:
            self.problems.append(DecodeProblem(path or "body", f"more than {limits.max_fields} fields", "oversize"))
            raise _FieldLimitReached
        if depth > limits.max_depth:
            self.problems.append(DecodeProblem(path or "body", f"nested deeper than {limits.max_depth} levels",
                                               "oversize"))
            return
        kind = type(node)
        if kind is dict:
            names = list(node)
            key_path, key_generic = f"key:{path or 'body'}", f"key:{generic or 'body'}"
            # Keys are scanned too (a token can be a key); a key cannot be rewritten in place.
            self.keys.extend(FieldValue(key_path, str(name), key_generic, _UNREWRITABLE_LOCATOR)
                             for name in reversed(names))
            for name in names:
                value = node[name]
                if name == "attributes" and type(value) is list and _is_otlp_attribute_list(value):
                    self._otlp_attributes(value, path, generic, loc, depth, embed_depth)
                    continue
                text = str(name)
                self._visit(value, _join(path, text), _join(generic, text), loc + (name,), depth + 1, embed_depth,
                            node, name)
            return
        if kind is list:
            item_generic = f"{generic}[]"
            for index, item in enumerate(node):
                self._visit(item, f"{path}[{index}]", item_generic, loc + (index,), depth + 1, embed_depth, node,
                            index)
            return
        if kind is Embedded:
            self._visit(node.tree, path, generic, loc + (EMBEDDED,), depth + 1, embed_depth, node, None)
            return
        if kind is FormPairs:
            key_path, key_generic = f"key:{path or 'body'}", f"key:{generic or 'body'}"
            pairs = node.pairs
            self.keys.extend(FieldValue(key_path, str(pair[0]), key_generic, _UNREWRITABLE_LOCATOR)
                             for pair in reversed(pairs))
            for index, pair in enumerate(pairs):
                name = str(pair[0])
                self._visit(pair[1], _join(path, name), _join(generic, name), loc + (index, 1), depth + 1,
                            embed_depth, pair, 1)
            return
        if kind is str and len(node) >= 2 and (node[0] in _MAY_EMBED or node[0].isspace()):
            embedded = formats.sniff_embedded(node)
            if embedded is not None and embed_depth >= limits.max_embedded_depth:
                self.problems.append(DecodeProblem(
                    path or "body", f"documents nested more than {limits.max_embedded_depth} deep", "oversize"))
            elif embedded is not None:
                if parent is not None and key is not None:
                    parent[key] = embedded  # opened in place: redaction re-serialises it
                    self.decoded.tree_opened = True
                # else a document with no container to rewrite it in (a header value)
                self._visit(embedded.tree, path, generic, loc + (EMBEDDED,), depth + 1, embed_depth + 1,
                            embedded if parent is not None and key is not None else None, None)
                return
        fields.append(FieldValue(path or "body", node, generic or "body", loc))

    def _otlp_attributes(self, attributes: list[Any], path: str, generic: str, loc: tuple[Any, ...], depth: int,
                         embed_depth: int) -> None:
        """OTLP key/value lists read as `attributes.<key>`, so policies can name them."""
        base, base_generic = _join(path, "attributes"), _join(generic, "attributes")
        for index, item in enumerate(attributes):
            name = str(item.get("key"))
            value = item.get("value")
            if not isinstance(value, dict):
                continue
            for value_key in _OTLP_VALUE_KEYS:
                if value_key in value:
                    self._visit(value[value_key], _join(base, name), _join(base_generic, name),
                                loc + ("attributes", index, "value", value_key), depth + 2, embed_depth, value,
                                value_key)
                    break


_NEEDS_QUOTES = frozenset('.[]"')


def _join(prefix: str, name: str) -> str:
    """`prefix.name`, or `prefix["name"]` when the name holds `.`, brackets or quotes (or is empty), so a
    path always reads back one way."""
    if name and _NEEDS_QUOTES.isdisjoint(name):
        return f"{prefix}.{name}" if prefix else name
    return f"{prefix}[{json.dumps(name, ensure_ascii=False)}]"


def field_path(*names: str | int) -> str:
    """The path the decoders give the value under `names` (a string is a key, an int an index)."""
    path = ""
    for name in names:
        path = f"{path}[{name}]" if isinstance(name, int) else _join(path, name)
    return path


class _NotPlain(Exception):
    """The walk would do more than name leaves (open a document, read OTLP attributes, meet a limit)."""


def body_leaves(
    decoded: DecodedRequest, counted: int = 0
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]] | None:
    """(generic path, value) of every leaf of the body and (generic path, name) of every key, in the order
    `DecodedRequest.fields` would list them, without building a field per value; None when that walk would
    do more than name them (open an embedded document, read OTLP attributes, meet a limit) or the body is not
    a parsed JSON document without problems. Then read `fields`, which does all of it.

    For checks that need only generic paths and values (field allow-lists, custom patterns scoped to fields).
    `counted`: the fields `fields` lists before the body's (its header and URL fields), which count towards
    the field limit too.
    """
    if decoded.body_format not in ("json", "otlp-json", "empty") or decoded.read_problems or decoded.query_tree:
        return None
    leaves: list[tuple[str, Any]] = []
    keys: list[tuple[str, str]] = []
    if decoded.body_tree is None:
        return leaves, keys
    limits = decoded.limits
    try:
        _name_leaves(decoded.body_tree, "", 0, leaves, keys, limits.max_fields - counted, limits.max_depth)
    except (_NotPlain, RecursionError):
        return None
    return leaves, keys


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _name_leaves(node: Any, generic: str, depth: int, leaves: list[tuple[str, Any]], keys: list[tuple[str, str]],
                 max_fields: int, max_depth: int) -> None:
    """`_Flattener._visit` reduced to generic paths (see `body_leaves`); raises `_NotPlain` where it differs.

    Scalar children are named in place (no call each). The full walk checks its limits at every visit; this
    checks them at every container and once per container's scalar children, one field early (conservative).
    """
    if len(leaves) + 1 >= max_fields or depth > max_depth:
        raise _NotPlain
    kind = type(node)
    if kind is dict:
        key_generic = f"key:{generic or 'body'}"
        keys.extend((key_generic, str(name)) for name in reversed(node))
        for name, value in node.items():
            child = _join(generic, str(name))
            if type(value) in _SCALARS:
                if depth + 1 > max_depth:
                    raise _NotPlain
                _name_scalar(value, child, leaves)
                continue
            if name == "attributes" and type(value) is list and _is_otlp_attribute_list(value):
                raise _NotPlain
            _name_leaves(value, child, depth + 1, leaves, keys, max_fields, max_depth)
        if len(leaves) + 1 >= max_fields:
            raise _NotPlain
        return
    if kind is list:
        item_generic = f"{generic}[]"
        for item in node:
            if type(item) in _SCALARS:
                if depth + 1 > max_depth:
                    raise _NotPlain
                _name_scalar(item, item_generic, leaves)
                continue
            _name_leaves(item, item_generic, depth + 1, leaves, keys, max_fields, max_depth)
        if len(leaves) + 1 >= max_fields:
            raise _NotPlain
        return
    if kind not in _SCALARS:
        raise _NotPlain  # Embedded, FormPairs: opened by the full walk
    _name_scalar(node, generic or "body", leaves)


def _name_scalar(node: Any, generic: str, leaves: list[tuple[str, Any]]) -> None:
    """A scalar as `_Flattener._visit` reads it: a string that holds a document is opened there (not here)."""
    if type(node) is str and len(node) >= 2 and (node[0] in _MAY_EMBED or node[0].isspace()):
        if formats.sniff_embedded(node) is not None:
            raise _NotPlain
    leaves.append((generic, node))


def _flatten(decoded: DecodedRequest) -> list[FieldValue]:
    request = decoded.request
    fields: list[FieldValue] = []
    flattener = _Flattener(decoded, fields)
    for lowered, value in _audited_headers(request):
        embedded = formats.sniff_embedded(value) if len(value) >= 2 else None
        if embedded is not None:  # e.g. base64 JSON in a custom header: read it, but it cannot be rewritten
            flattener.walk(embedded, f"header.{lowered}", f"header.{lowered}", (UNREWRITABLE,))
    fields.extend(_header_and_url_fields(request))
    if decoded.query_tree is not None:
        flattener.walk(decoded.query_tree, "query", "query", ("query",))
    if decoded.body_tree is not None:
        flattener.walk(decoded.body_tree, "", "", ())
    elif decoded.body_format == "raw" and request.body and len(request.body) <= decoded.limits.max_decoded_bytes:
        # Still let the detectors see the body's text: a decode failure must not hide a secret. (When
        # compressed data could not be undone this is the compressed bytes, which never counts as inspected:
        # the problem says so.)
        raw = decoded.plain_body if decoded.plain_body is not None else request.body
        text = decoded.text if decoded.text is not None else raw.decode("utf-8", "replace")
        fields.append(FieldValue("body", text, "body", ()))
    fields.extend(flattener.keys)
    return fields


def header_and_url_fields(request: Request) -> list[FieldValue]:
    """The fields of a request's headers and URL (see `_header_and_url_fields`), as `fields` lists them."""
    return _header_and_url_fields(request)


def _header_and_url_fields(request: Request) -> list[FieldValue]:
    """Every header value, every header name, each cookie, the URL path and the host name.

    Names, cookies, the path and the host cannot be rewritten in place, so redacting them fails closed (blocks):
    a token in a host label (`<token>.segment.io`) or a header name must not leave either.
    """
    fields = []
    for lowered, value in _audited_headers(request):
        fields.append(FieldValue(f"header.{lowered}", value, f"header.{lowered}", ("header", lowered)))
        fields.append(FieldValue("key:header", lowered, "key:header", (UNREWRITABLE,)))
        if lowered == "cookie":
            for pair in value.split(";"):
                name, sep, cookie = pair.strip().partition("=")
                if sep and name:
                    path = f"cookie.{_quoted(name)}"
                    fields.append(FieldValue(path, cookie, path, (UNREWRITABLE,)))
    fields.append(FieldValue("url.path", _path_text(request.path), "url.path", (UNREWRITABLE,)))
    if not _is_ip_literal(request.host):  # an address is where it goes, not something it tells
        fields.append(FieldValue("url.host", request.host, "url.host", (UNREWRITABLE,)))
    return fields


def _path_text(path: str) -> str:
    """The URL path as the detectors read it: as sent, plus percent-decoded when it holds escapes (the server
    reads `/u/ghp%5F...` as the token itself)."""
    if "%" not in path:
        return path
    decoded = unquote(path, errors="replace")
    return path if decoded == path else f"{path}\n{decoded}"


@functools.lru_cache(maxsize=4096)
def _host_text(host: str) -> str:
    """The host as the scan text holds it: as `url.host` does (nothing for an IP literal). Cached: a request
    goes to one of few hosts, and telling an address from a name costs two failed parses."""
    return "" if _is_ip_literal(host) else host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _quoted(name: str) -> str:
    """A path step, quoted when it holds characters a path uses (as the body's keys are)."""
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def decode_request(request: Request, limits: Limits | None = None) -> DecodedRequest:
    """Read `request` once; never raises for any input. Fields are built when first asked for."""
    limits = limits or Limits()
    decoded = DecodedRequest(request, limits)
    if request.query:
        decoded.query_tree = FormPairs([FormPair((k, v)) for k, v in request.query])
    if len(request.body) > limits.max_body_bytes:
        decoded.read_problems.append(DecodeProblem(
            "body", f"body of {len(request.body)} bytes exceeds max_body_bytes={limits.max_body_bytes}", "oversize"))
        decoded.body_format = "raw"
        return decoded
    try:
        body = request.body
        encodings = request.content_encodings
        decoded.encodings = encodings
        partial: str | None = None
        if encodings:
            body, partial = decompress_partial(body, encodings, limits.max_decoded_bytes)
        if partial is None and body[:2] == GZIP_MAGIC:  # posthog-js and others gzip without saying so
            body, partial = decompress_partial(body, ("gzip",), limits.max_decoded_bytes)
            decoded.sniffed_gzip = True
        decoded.plain_body = body
        if partial is not None:
            # What did decode is still read and scanned, but the rest never was.
            decoded.read_problems.append(DecodeProblem("body", partial, "uninspectable"))
            decoded.body_format = "raw"
            read = _text_of(body)
            decoded.text = read[0] if read is not None else None
            return decoded
        if len(body) > limits.max_decoded_bytes:
            raise DecodeLimitError(f"body of {len(body)} bytes exceeds the {limits.max_decoded_bytes}-byte limit")
        _parse_body(decoded, body)
    except DecodeError as e:
        problem = _problem("body", e)
        if problem.rule_id == "decode" and decoded.plain_body is None:
            problem = DecodeProblem("body", str(e), "uninspectable")  # the content codings could not be undone
        elif problem.rule_id == "decode" and _text_of(decoded.plain_body or b"") is None:
            problem = DecodeProblem("body", str(e), "uninspectable")  # binary: no text to scan
        decoded.read_problems.append(problem)
        decoded.body_format = "raw"
        decoded.body_tree = None
    except Exception as e:  # a decoder bug must still end as a finding, never a crash or a pass
        decoded.read_problems.append(DecodeProblem("body", f"decoder error: {type(e).__name__}: {e}", "uninspectable"))
        decoded.body_format = "raw"
        decoded.body_tree = None
    return decoded


# --- redaction -------------------------------------------------------------------------------------------------

_DROP = object()


def _container_at(tree: Any, locator: tuple[Any, ...]) -> tuple[Any, str | int] | None:
    """The container holding the value at `locator`, and its key."""
    node = tree
    for step in locator[:-1]:
        if step is UNREWRITABLE:
            return None
        if step is EMBEDDED:
            if not isinstance(node, Embedded):
                return None
            node = node.tree
            continue
        if isinstance(node, Embedded):
            node = node.tree
        if isinstance(node, FormPairs):
            node = node.pairs
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(node, Embedded):
        node = node.tree
    if isinstance(node, FormPairs):
        node = node.pairs
    return node, locator[-1]


def rewrite_values(tree: Any, edits: dict[tuple[Any, ...], Any]) -> Any:
    """Apply `edits` (locator -> new value, or `DROP`) to `tree` in place and return it.

    Raises `DecodeError` when a locator does not lead to a value: a redaction that cannot be applied
    must never pass for one that was (the engine then blocks).
    """
    drops: list[tuple[Any, str | int]] = []
    for locator, new_value in edits.items():
        found = _container_at(tree, locator) if locator else None
        if found is None:
            raise DecodeError("a value to redact could not be located in the body")
        container, key = found
        if new_value is _DROP:
            drops.append((container, key))
            continue
        try:
            container[key] = new_value
        except (KeyError, IndexError, TypeError):
            raise DecodeError("a value to redact could not be rewritten in the body") from None
    # Drop list items from the highest index down so earlier indexes stay valid.
    for container, key in sorted(drops, key=lambda d: d[1] if isinstance(d[1], int) else -1, reverse=True):
        try:
            if isinstance(container, dict):
                container.pop(key, None)
            elif isinstance(container, list) and isinstance(key, int):
                if isinstance(container, FormPair):
                    container[0] = None  # serialize_form leaves the pair out
                else:
                    del container[key]
        except (IndexError, TypeError):
            continue
    return tree


DROP = _DROP

_SERIALIZERS: dict[str, Callable[[Any, str], bytes]] = {
    "json": lambda tree, path: formats.serialize_json(tree),
    "otlp-json": lambda tree, path: formats.serialize_json(tree),
    "ndjson": lambda tree, path: formats.serialize_ndjson(tree),
    "form": lambda tree, path: formats.serialize_form(tree),
    "otlp-protobuf": formats.serialize_otlp_protobuf,
    "base64-json": lambda tree, path: formats.embed_to_string(tree).encode("ascii"),
}


def encode_body(decoded: DecodedRequest) -> bytes:
    """The (possibly rewritten) body tree back in its original format and content encoding."""
    serializer = _SERIALIZERS.get(decoded.body_format)
    if serializer is None:
        raise DecodeError(f"cannot re-encode a {decoded.body_format} body")
    body = serializer(decoded.body_tree, decoded.path)
    if decoded.sniffed_gzip:
        body = compress(body, ("gzip",))
    return compress(body, decoded.encodings)


_SPLICERS = {
    "json": splice.splice_json,
    "otlp-json": splice.splice_json,
    "ndjson": splice.splice_ndjson,
    "form": splice.splice_form,
    "base64-json": splice.splice_base64_json,
}


def rewrite_body(decoded: DecodedRequest, edits: dict[tuple[Any, ...], Any]) -> bytes:
    """The body with `edits` (locator -> new value, or `DROP`) applied, in its original charset, format and
    content encoding. Text formats are spliced: every byte outside the rewritten values stays as sent.

    Raises `DecodeError` when a value cannot be located or the format cannot be rewritten (the engine then
    blocks rather than pass a body it could not clean).
    """
    splicer = _SPLICERS.get(decoded.body_format)
    if splicer is splice.splice_json and decoded.text is not None:  # the offsets located leaks with: reused
        body = decoded.bom + splice.splice_json(decoded.text, edits, DROP, EMBEDDED, decoded.offsets).encode(
            decoded.charset)
    elif splicer is not None and decoded.text is not None:
        body = decoded.bom + splicer(decoded.text, edits, DROP, EMBEDDED).encode(decoded.charset)
    else:
        serializer = _SERIALIZERS.get(decoded.body_format)
        if serializer is None:
            raise DecodeError(f"cannot re-encode a {decoded.body_format} body")
        rewrite_values(decoded.body_tree, edits)
        decoded.tree_opened = True
        body = serializer(decoded.body_tree, decoded.path)
    if decoded.sniffed_gzip:
        body = compress(body, ("gzip",))
    return compress(body, decoded.encodings)
