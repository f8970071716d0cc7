"""Body formats: each turns bytes into a tree of plain values and back.

A tree is what `json.loads` returns (dicts, lists, strings, numbers, booleans,
None), with two additions: `FormPairs` for url-encoded forms, whose order and
repeated keys matter, and `Embedded` for a string that itself holds JSON
(werf's `eventData`) or base64-wrapped JSON (Mixpanel's `data=`).
Every `parse` raises only `DecodeError`; every `serialize` inverts its `parse`.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from telemetry_audit.decoders.errors import DecodeError, DecodeLimitError, UninspectableError


class FormPair(list):  # type: ignore[type-arg]
    """One `[key, value]` pair of a form; a distinct type so redaction can tell it from a JSON list."""


@dataclass
class FormPairs:
    """An url-encoded form: ordered `[key, value]` pairs (values may become `Embedded`)."""

    pairs: list[list[Any]]


@dataclass
class Embedded:
    """A string value that holds another document."""

    kind: str
    """`json` or `base64-json`."""
    tree: Any
    urlsafe: bool = False
    padded: bool = True


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice: which value a server keeps is not ours to guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKeyError
    return obj


class _NumberTexts(threading.local):
    """Where the number hook of the shared decoder records, per thread (None: it records nothing)."""

    found: list[str] | None = None


_NUMBER_TEXTS = _NumberTexts()


def _number(literal: str) -> float:
    value = float(literal)
    found = _NUMBER_TEXTS.found
    if found is not None:
        found.append(str(value))
    return value


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_number, parse_constant=_number)
"""One decoder for every document: `json.loads` with hooks builds a decoder and its scanner per call."""


def loads_strict(text: str | bytes, numbers: list[str] | None = None) -> Any:
    """`json.loads` that refuses duplicate keys (an earlier value would vanish uninspected).

    With `numbers`, the text of every non-integer number (`str(float)`, as a detector sees it) is appended.
    """
    if not isinstance(text, str):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    _NUMBER_TEXTS.found = numbers
    try:
        return _STRICT_DECODER.decode(text)
    finally:
        _NUMBER_TEXTS.found = None


def _loads(text: str | bytes, numbers: list[str] | None = None) -> Any:
    try:
        return loads_strict(text, numbers)
    except RecursionError:
        raise DecodeLimitError("JSON nested too deeply") from None
    except DuplicateKeyError:
        # Not a size limit, but the same outcome: part of the body cannot be inspected as a server reads it.
        raise UninspectableError("JSON object with a duplicate key: not every value can be inspected") from None
    except (ValueError, UnicodeDecodeError) as e:
        # json's messages quote positions, never the offending text.
        raise DecodeError(f"invalid JSON: {e}") from None


def dumps(tree: Any) -> str:
    """Compact JSON, keeping non-ASCII text as it is."""
    return json.dumps(_plain(tree), separators=(",", ":"), ensure_ascii=False)


def _plain(tree: Any) -> Any:
    """`tree` with every `Embedded` turned back into its string (iterative, depth-safe)."""
    if isinstance(tree, Embedded):
        return embed_to_string(tree)
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_plain(v) for v in tree]
    return tree


def embed_to_string(embedded: Embedded) -> str:
    text = dumps(embedded.tree)
    if embedded.kind == "json":
        return text
    raw = text.encode("utf-8")
    encoded = base64.urlsafe_b64encode(raw) if embedded.urlsafe else base64.b64encode(raw)
    out = encoded.decode("ascii")
    return out if embedded.padded else out.rstrip("=")


# --- JSON and NDJSON -------------------------------------------------------------------------------------------


LARGE_DOCUMENT_BYTES = 256 * 1024
"""Bodies from this size are read with the cyclic garbage collector paused (`collector_paused`)."""

_pause_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large body (`LARGE_DOCUMENT_BYTES` and up) is read and audited.

    A 6 MB batch parses into hundreds of thousands of containers that stay alive until the audit ends: each time
    their count crosses a threshold, the collector walked them again, and once every object of the process (a
    third of the audit's time, more the bigger the process). Trees, findings and decisions hold no cycle, and
    they are freed by reference counting when the audit is done. Nested and concurrent pauses share one.
    """
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def parse_json(body: str | bytes, numbers: list[str] | None = None) -> Any:
    """The document in `body`; with `numbers`, also the spelling of each non-integer number in it."""
    return _loads(body, numbers)


def serialize_json(tree: Any) -> bytes:
    return dumps(tree).encode("utf-8")


def ndjson_lines(body: Any) -> list[Any]:
    """`body` split at CR, LF and CRLF, separators kept: `[line, separator, line, ..., line]`."""
    if isinstance(body, bytes):
        return re.split(rb"(\r\n|\r|\n)", body)
    return re.split(r"(\r\n|\r|\n)", body)


def parse_ndjson(body: str | bytes) -> list[Any]:
    # Only CR and LF end a line (str.splitlines would also split at U+2028 and others, valid inside JSON strings).
    lines = [line for line in ndjson_lines(body)[::2] if line.strip()]
    if not lines:
        raise DecodeError("empty NDJSON body")
    return [_loads(line) for line in lines]


def serialize_ndjson(tree: list[Any]) -> bytes:
    return b"".join(dumps(item).encode("utf-8") + b"\n" for item in tree)


# --- forms -----------------------------------------------------------------------------------------------------


def parse_form(body: str | bytes, max_fields: int) -> FormPairs:
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"form body is not UTF-8 (byte {e.start})") from None
    else:
        text = body
    if "=" not in text:
        raise DecodeError("not an url-encoded form (no key=value pair)")
    if text.count("&") >= max_fields:
        raise DecodeLimitError(f"url-encoded form with more than {max_fields} fields")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=max_fields)
    except ValueError:
        # parse_qsl's message quotes the offending field, which may be the very secret: say nothing of it.
        raise DecodeError("invalid url-encoded form (a field without `=`)") from None
    return FormPairs([FormPair((k, v)) for k, v in pairs])


def serialize_form(tree: FormPairs) -> bytes:
    plain = [(k, embed_to_string(v) if isinstance(v, Embedded) else str(v)) for k, v in tree.pairs if k is not None]
    return urlencode(plain).encode("ascii")


# --- OTLP/HTTP -------------------------------------------------------------------------------------------------

_OTLP_SIGNALS = ("traces", "metrics", "logs")
_OTLP_SUFFIXES = tuple(f"/v1/{s}" for s in _OTLP_SIGNALS)


def otlp_message_class(path: str) -> Any:
    """The protobuf request message for an OTLP/HTTP path (`/v1/traces` ...), or None."""
    signal = path.rstrip("/").rsplit("/", 1)[-1]
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        return ExportTraceServiceRequest
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        return ExportMetricsServiceRequest
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        return ExportLogsServiceRequest
    return None


def is_otlp_path(path: str) -> bool:
    return path.rstrip("/").endswith(_OTLP_SUFFIXES)


def parse_otlp_protobuf(body: bytes, path: str) -> Any:
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.message import DecodeError as ProtobufDecodeError

    cls = otlp_message_class(path)
    if cls is None:
        raise DecodeError(f"not an OTLP path: {path}")
    message = cls()
    try:
        message.ParseFromString(body)
    except (ProtobufDecodeError, RecursionError, ValueError) as e:
        raise DecodeError(f"invalid OTLP protobuf: {e}") from None
    return MessageToDict(message)


def serialize_otlp_protobuf(tree: Any, path: str) -> bytes:
    from google.protobuf.json_format import ParseDict

    cls = otlp_message_class(path)
    return bytes(ParseDict(_plain(tree), cls()).SerializeToString())


# --- strings that hold documents -------------------------------------------------------------------------------

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")


def sniff_embedded(value: str) -> Embedded | None:
    """The document inside `value`, when it is JSON or base64-wrapped JSON (objects/arrays only)."""
    stripped = value.strip()
    if len(stripped) < 2:
        return None
    first = stripped[0]
    if first in "{[" and stripped[-1] in "}]":
        try:
            tree = loads_strict(stripped)
        except (ValueError, RecursionError):
            return None
        if isinstance(tree, (dict, list)):
            return Embedded("json", tree)
        return None
    if len(stripped) < 12 or first not in "eyWw":  # base64 of '{"' is 'eyJ', of '[' is 'W' / 'Ww'
        return None
    raw = stripped.encode("ascii", "ignore")
    if len(raw) != len(stripped) or not _B64_ALPHABET.issuperset(raw):
        return None
    urlsafe = b"-" in raw or b"_" in raw
    padded = raw.endswith(b"=") or len(raw) % 4 == 0
    try:
        data = (base64.urlsafe_b64decode if urlsafe else base64.b64decode)(raw + b"=" * (-len(raw) % 4))
        text = data.decode("utf-8")
        tree = loads_strict(text)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(tree, (dict, list)):
        return Embedded("base64-json", tree, urlsafe=urlsafe, padded=padded)
    return None


# --- multipart/form-data ---------------------------------------------------------------------------------------


@dataclass
class Part:
    """One part of a multipart body: its name, its own headers and its raw content (transfer coding undone)."""

    name: str
    headers: dict[str, str]
    content: bytes


def _part_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise DecodeError("multipart part header without `:`")
        headers[name.strip().lower()] = value.strip()
    return headers


def _disposition_name(value: str) -> str:
    for param in value.split(";")[1:]:
        key, _, raw = param.strip().partition("=")
        if key.lower() == "name":
            return raw.strip().strip('"')
    return ""


def parse_multipart(body: bytes, boundary: str, max_fields: int) -> list[Part]:
    """The parts of a `multipart/form-data` (or other multipart) body; raises DecodeError on any malformation."""
    if not boundary or len(boundary) > 200:
        raise DecodeError("multipart body without a valid boundary")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise DecodeError("multipart body is truncated (no closing boundary)")
    if chunks[-1][2:].strip() or chunks[0].strip():
        raise UninspectableError("multipart body has content outside its parts")
    parts: list[Part] = []
    for chunk in chunks[1:-1]:
        if len(parts) >= max_fields:
            raise DecodeLimitError(f"multipart body with more than {max_fields} parts")
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise DecodeError("malformed multipart part (missing CRLF around a boundary)")
        head, sep, content = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            if not head.endswith(b"\r\n") and head:
                raise DecodeError("multipart part without a blank line after its headers")
            head, content = head, b""
        headers = _part_headers(head) if head else {}
        transfer = headers.get("content-transfer-encoding", "").lower()
        if transfer == "base64":
            try:
                content = base64.b64decode(b"".join(content.split()), validate=True)
            except (binascii.Error, ValueError):
                raise DecodeError("invalid base64 in a multipart part") from None
        elif transfer == "quoted-printable":
            content = binascii.a2b_qp(content)
        elif transfer not in ("", "7bit", "8bit", "binary"):
            raise UninspectableError("multipart part with an unknown Content-Transfer-Encoding")
        parts.append(Part(_disposition_name(headers.get("content-disposition", "")), headers, content))
    return parts


# --- protobuf without a schema ---------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _printable(text: str) -> bool:
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def parse_protobuf_wire(data: bytes, depth: int = 0) -> dict[str, Any]:
    """A protobuf message read without its schema: `{field number: value or [values]}`.

    Length-delimited fields read as UTF-8 text when they are, else as a nested message when they parse
    as one; anything else cannot be inspected (`UninspectableError`).
    """
    if depth > 32:
        raise DecodeLimitError("protobuf nested too deeply")
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("protobuf field number 0")
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > len(data):
                raise DecodeError("truncated protobuf fixed64")
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > len(data):
                raise DecodeError("truncated protobuf fixed32")
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise DecodeError("truncated protobuf length-delimited field")
            chunk = data[pos:pos + length]
            pos += length
            value = _wire_chunk(chunk, depth)
        else:
            raise DecodeError(f"unsupported protobuf wire type {wire}")
        existing = out.get(str(number))
        if existing is None:
            out[str(number)] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            out[str(number)] = [existing, value]
    return out


def _wire_chunk(chunk: bytes, depth: int) -> Any:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return text
    try:
        return parse_protobuf_wire(chunk, depth + 1)
    except UninspectableError:
        raise
    except DecodeError:
        raise UninspectableError("protobuf field that is neither text nor a message (binary data)") from None
