"""Turn a request into flat `(field path, value)` pairs, and a redacted request back into bytes.

The registry below picks a body format by content type, path and sniffing;
content encodings are undone first, strings that hold JSON or base64 JSON are
opened in place. Any failure becomes a `DecodeProblem` the engine reports as
a `decode` finding: an undecodable body is never a silent pass, and its raw
text is still handed to the detectors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import re2

from telemetry_audit.decoders import formats
from telemetry_audit.decoders.content_encoding import GZIP_MAGIC, compress, decompress
from telemetry_audit.decoders.errors import DecodeError, DecodeLimitError
from telemetry_audit.decoders.formats import Embedded, FormPair, FormPairs
from telemetry_audit.model import FieldValue, Request

__all__ = [
    "DecodeError",
    "DecodeLimitError",
    "DecodeLimits",
    "DecodedRequest",
    "DecodeProblem",
    "Embedded",
    "decode_request",
    "scan_text",
]

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
class DecodeLimits:
    """Bounds that keep hostile bodies from costing unbounded memory or time."""

    max_decoded_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_embedded_depth: int = 4
    max_fields: int = 100_000


@dataclass(frozen=True)
class DecodeProblem:
    """Why (part of) a request could not be decoded."""

    where: str
    reason: str
    truncated: bool = False
    """A limit was hit: part of the request was never inspected (the engine treats it like an oversize body)."""


@dataclass
class DecodedRequest:
    """A request taken apart: fields for the detectors, a tree for redaction."""

    fields: list[FieldValue]
    problems: list[DecodeProblem]
    body_format: str
    """`empty`, `json`, `ndjson`, `form`, `otlp-protobuf`, `otlp-json` or `raw`."""
    body_tree: Any = None
    encodings: tuple[str, ...] = ()
    sniffed_gzip: bool = False
    query_tree: FormPairs | None = None
    path: str = ""
    request: Request | None = None
    """The request this was decoded from (emulators answer from it without decoding again)."""
    plain_body: bytes | None = None
    """The body with its content codings (and sniffed gzip) undone; None when that failed."""


def _audited_headers(request: Request) -> Iterator[tuple[str, str]]:
    """(lower-case name, value) of every header worth a detector pass."""
    for name, value in request.headers:
        lowered = name.lower()
        if lowered not in _TRANSPORT_HEADERS:
            yield lowered, value


# What `scan_text` cannot stand in for: strings that may hold base64 JSON (opened only by the full path).
# Base64 of a text starting with `{` begins `e` + one of [w-z0-9+/] (and `[` gives `W` + the same): only such
# strings can be what `formats.sniff_embedded` opens.
_SCAN_TEXT_BLOCKERS = re2.compile(r'"\s*[eW][w-z0-9+/_-][A-Za-z0-9+/_=-]{10,}\s*"')
# Non-integer number literals: a detector sees `str(float)`, which may be spelled differently (1e5, 1.50).
_FLOAT_LITERALS = re2.compile(r"[:\[,]\s*(-?[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))")


def scan_text(request: Request, limits: DecodeLimits | None = None) -> str | None:
    """One string holding every value the detectors would see for `request`, or None to take the full path.

    For a plain JSON body without escapes or embedded documents, its own text with each `"` turned into
    a line break holds every value as a line of its own (plus keys and punctuation, which can only add
    matches): a detector family that finds nothing here finds nothing in any field. The engine uses this
    to let the common clean request through without building a field per value.
    """
    limits = limits or DecodeLimits()
    if request.query:
        return None
    try:
        body_format, _, encodings, sniffed = _decode_body(request, limits)
    except DecodeError:
        return None
    if body_format not in ("json", "otlp-json", "empty"):
        return None
    header_values = [value for _, value in _audited_headers(request)]
    if any(formats.sniff_embedded(value) is not None for value in header_values if len(value) >= 2):
        return None
    headers = "\n".join([request.path, *header_values])
    if body_format == "empty":
        return headers
    body = decompress(request.body, encodings, limits.max_decoded_bytes) if encodings else request.body
    if sniffed:
        body = decompress(body, ("gzip",), limits.max_decoded_bytes)
    if b"\x00" in body or json.detect_encoding(body) != "utf-8":
        return None  # UTF-16/32 JSON: json reads it, its bytes do not spell the values
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (
        "\\" in text
        or len(text) > limits.max_fields
        or text.count("{") + text.count("[") > limits.max_depth
        or _SCAN_TEXT_BLOCKERS.search(text) is not None
    ):
        return None
    floats = ""
    if _FLOAT_LITERALS.search(text) is not None:  # rare in telemetry; findall costs more than one search
        floats = "\n".join(str(float(literal)) for literal in _FLOAT_LITERALS.findall(text))
    # Each `"` becomes newline, NUL, newline: every value still sits between newlines (as in the per-value
    # scan), while `\s` runs stop at the NUL, so a key and its value never read as `key: value` together.
    return headers + "\n" + text.replace('"', "\n\x00\n") + "\n" + floats


def _decode_body(
    request: Request, limits: DecodeLimits, decoded: DecodedRequest | None = None
) -> tuple[str, Any, tuple[str, ...], bool]:
    """(format, tree, encodings, sniffed_gzip) of the body; raises DecodeError.

    The decompressed body is kept on `decoded.plain_body` as soon as it is known.
    """
    body = request.body
    encodings = request.content_encodings
    if encodings:
        body = decompress(body, encodings, limits.max_decoded_bytes)
    sniffed = False
    if body[:2] == GZIP_MAGIC:  # posthog-js and others gzip without saying so
        body = decompress(body, ("gzip",), limits.max_decoded_bytes)
        sniffed = True
    if decoded is not None:
        decoded.plain_body = body
    if not body.strip():
        return "empty", None, encodings, sniffed
    if len(body) > limits.max_decoded_bytes:
        raise DecodeLimitError(f"body of {len(body)} bytes exceeds the {limits.max_decoded_bytes}-byte limit")
    content_type = request.content_type
    if formats.is_otlp_path(request.path) and ("protobuf" in content_type or body.lstrip()[:1] not in (b"{", b"[")):
        return "otlp-protobuf", formats.parse_otlp_protobuf(body, request.path), encodings, sniffed
    if content_type == "application/x-www-form-urlencoded":
        return "form", formats.parse_form(body), encodings, sniffed
    if "ndjson" in content_type or "jsonlines" in content_type or "x-sentry-envelope" in content_type:
        return "ndjson", formats.parse_ndjson(body), encodings, sniffed
    head = body.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            kind = "otlp-json" if formats.is_otlp_path(request.path) else "json"
            return kind, formats.parse_json(body), encodings, sniffed
        except DecodeError:
            if b"\n" in body.strip():
                return "ndjson", formats.parse_ndjson(body), encodings, sniffed
            raise
    if b"=" in body and body.isascii() and content_type in ("", "text/plain", "application/octet-stream"):
        return "form", formats.parse_form(body), encodings, sniffed
    embedded = formats.sniff_embedded(body.decode("utf-8", "replace"))
    if embedded is not None:
        return "base64-json", embedded, encodings, sniffed
    if "json" in content_type:
        formats.parse_json(body)  # raises with the parser's reason
    raise DecodeError(f"unrecognised body format (content type {content_type or 'none'!r})")


def _is_otlp_attribute_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, dict) and "key" in item and "value" in item for item in value)


_OTLP_VALUE_KEYS = ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue", "kvlistValue")


class _Flattener:
    """Walks a tree iteratively, opening embedded documents, within the limits."""

    def __init__(self, limits: DecodeLimits, fields: list[FieldValue], problems: list[DecodeProblem]) -> None:
        self.limits = limits
        self.fields = fields
        self.problems = problems
        self.keys: list[FieldValue] = []

    def walk(self, root: Any, prefix: str, generic_prefix: str, locator: tuple[Any, ...]) -> None:
        stack: list[tuple[Any, str, str, tuple[Any, ...], int, int, Any, str | int | None]] = [
            (root, prefix, generic_prefix, locator, 0, 0, None, None)
        ]
        limits = self.limits
        while stack:
            node, path, generic, loc, depth, embed_depth, parent, key = stack.pop()
            if len(self.fields) >= limits.max_fields:
                self.problems.append(DecodeProblem(path or "body", f"more than {limits.max_fields} fields", True))
                return
            if depth > limits.max_depth:
                self.problems.append(
                    DecodeProblem(path or "body", f"nested deeper than {limits.max_depth} levels", True))
                continue
            if isinstance(node, Embedded):
                stack.append((node.tree, path, generic, loc + (EMBEDDED,), depth + 1, embed_depth, node, None))
                continue
            if isinstance(node, FormPairs):
                for index in range(len(node.pairs) - 1, -1, -1):
                    name = str(node.pairs[index][0])
                    self.keys.append(FieldValue(f"key:{path or 'body'}", name, f"key:{generic or 'body'}",
                                                (UNREWRITABLE,)))
                    stack.append(
                        (node.pairs[index][1], _join(path, name), _join(generic, name), loc + (index, 1),
                         depth + 1, embed_depth, node.pairs[index], 1)
                    )
                continue
            if isinstance(node, dict):
                for name in reversed(list(node)):
                    value = node[name]
                    # Keys are scanned too (a token can be a key); a key cannot be rewritten in place.
                    self.keys.append(FieldValue(f"key:{path or 'body'}", str(name), f"key:{generic or 'body'}",
                                                (UNREWRITABLE,)))
                    if name == "attributes" and isinstance(value, list) and _is_otlp_attribute_list(value):
                        self._push_otlp_attributes(stack, value, path, generic, loc, depth, embed_depth)
                        continue
                    stack.append(
                        (value, _join(path, str(name)), _join(generic, str(name)), loc + (name,),
                         depth + 1, embed_depth, node, name)
                    )
                continue
            if isinstance(node, list):
                for index in range(len(node) - 1, -1, -1):
                    stack.append(
                        (node[index], f"{path}[{index}]", f"{generic}[]", loc + (index,), depth + 1, embed_depth,
                         node, index)
                    )
                continue
            if isinstance(node, str) and len(node) >= 2:
                embedded = formats.sniff_embedded(node)
                if embedded is not None and embed_depth >= limits.max_embedded_depth:
                    self.problems.append(DecodeProblem(
                        path or "body", f"documents nested more than {limits.max_embedded_depth} deep", True))
                elif embedded is not None and parent is not None and key is not None:
                    parent[key] = embedded  # opened in place: redaction re-serialises it
                    stack.append((embedded.tree, path, generic, loc + (EMBEDDED,), depth + 1, embed_depth + 1,
                                  embedded, None))
                    continue
                elif embedded is not None:  # a document with no container to rewrite it in (a header value)
                    stack.append((embedded.tree, path, generic, loc + (EMBEDDED,), depth + 1, embed_depth + 1,
                                  None, None))
                    continue
            self.fields.append(FieldValue(path or "body", node, generic or "body", loc))

    def _push_otlp_attributes(
        self,
        stack: list[Any],
        attributes: list[Any],
        path: str,
        generic: str,
        loc: tuple[Any, ...],
        depth: int,
        embed_depth: int,
    ) -> None:
        """OTLP key/value lists read as `attributes.<key>`, so policies can name them."""
        for index in range(len(attributes) - 1, -1, -1):
            item = attributes[index]
            name = str(item.get("key"))
            value = item.get("value")
            if not isinstance(value, dict):
                continue
            for value_key in _OTLP_VALUE_KEYS:
                if value_key in value:
                    stack.append(
                        (value[value_key], _join(path, f"attributes.{name}"), _join(generic, f"attributes.{name}"),
                         loc + ("attributes", index, "value", value_key), depth + 2, embed_depth, value, value_key)
                    )
                    break


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def decode_request(request: Request, limits: DecodeLimits | None = None) -> DecodedRequest:
    """Take `request` apart; never raises for any input."""
    limits = limits or DecodeLimits()
    fields: list[FieldValue] = []
    problems: list[DecodeProblem] = []
    flattener = _Flattener(limits, fields, problems)

    for lowered, value in _audited_headers(request):
        embedded = formats.sniff_embedded(value) if len(value) >= 2 else None
        if embedded is not None:  # e.g. base64 JSON in a custom header: read it, but it cannot be rewritten
            flattener.walk(embedded, f"header.{lowered}", f"header.{lowered}", (UNREWRITABLE,))
        fields.append(FieldValue(f"header.{lowered}", value, f"header.{lowered}", ("header", lowered)))
    # The URL path is scanned too; it cannot be rewritten, so redacting it fails closed (blocks).
    fields.append(FieldValue("url.path", request.path, "url.path", (UNREWRITABLE,)))

    query_tree: FormPairs | None = None
    if request.query:
        query_tree = FormPairs([FormPair((k, v)) for k, v in request.query])
        flattener.walk(query_tree, "query", "query", ("query",))

    decoded = DecodedRequest(fields, problems, "empty", query_tree=query_tree, path=request.path, request=request)
    try:
        body_format, tree, encodings, sniffed = _decode_body(request, limits, decoded)
    except DecodeError as e:
        problems.append(DecodeProblem("body", str(e), isinstance(e, DecodeLimitError)))
        decoded.body_format = "raw"
        if request.body and len(request.body) <= limits.max_decoded_bytes:
            # Still let the detectors see the raw text: a decode failure must not hide a secret.
            fields.append(FieldValue("body", request.body.decode("utf-8", "replace"), "body", ()))
        return decoded
    except Exception as e:  # a decoder bug must still end as a finding, never a crash or a pass
        problems.append(DecodeProblem("body", f"decoder error: {type(e).__name__}: {e}"))
        decoded.body_format = "raw"
        return decoded
    decoded.body_format = body_format
    decoded.body_tree = tree
    decoded.encodings = encodings
    decoded.sniffed_gzip = sniffed
    if tree is not None:
        flattener.walk(tree, "", "", ())
    decoded.fields.extend(flattener.keys)
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


def iter_string_fields(decoded: DecodedRequest) -> Iterator[FieldValue]:
    for item in decoded.fields:
        if isinstance(item.value, str):
            yield item
