"""Body helpers for the emulators; content codings are undone once, by `telemetry_audit.decoders`.

An emulator reads `DecodedRequest.plain_body` through `body()` and never
decompresses again. Every function raises `ValueError` with a short reason the
emulator can put in its error response and in the bad-event record.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request


class BodyTooLarge(ValueError):
    """The body, once its content codings are undone, is beyond the decoder's size limit."""


def body(decoded: DecodedRequest) -> bytes:
    """The request body with its content codings undone (by the decoder, once).

    Raises `BodyTooLarge` when the decoder refused it for its size and `ValueError` when its
    content coding is broken: both are the client's fault and answered as the vendor would.
    """
    # `read_problems`: what reading the body met (the fields are never built here).
    problem = next((p for p in decoded.read_problems if p.where == "body" and p.rule_id != "decode"), None)
    if problem is not None and problem.rule_id == "oversize":
        raise BodyTooLarge(problem.reason)
    broken_coding = bool(decoded.encodings or decoded.sniffed_gzip) and decoded.body_format == "raw"
    if problem is not None and (decoded.plain_body is None or broken_coding):
        raise ValueError(problem.reason)  # a broken content coding: only part of the body could be read
    if decoded.plain_body is not None:
        return decoded.plain_body
    return decoded.request.body


def b64decode(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padding optional, whitespace ignored."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    raw = b"".join(raw.split())
    raw += b"=" * (-len(raw) % 4)
    try:
        if b"-" in raw or b"_" in raw:
            return base64.urlsafe_b64decode(raw)
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def json_loads(data: bytes | str) -> Any:
    """JSON from bytes or text; the reason says where it broke."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def json_or_base64(text: str) -> Any:
    """A JSON document sent either as is or base64-encoded (Mixpanel, PostHog `data=`)."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        return json_loads(stripped)
    return json_loads(b64decode(stripped))


def form(data: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (the last value wins)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("form body is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def query(request: Request) -> dict[str, str]:
    """The query string as a dict (the last value wins)."""
    return dict(request.query)


def ndjson(data: bytes) -> list[Any]:
    """Newline-delimited JSON; blank lines are skipped."""
    return [json_loads(line) for line in data.splitlines() if line.strip()]


def json_size(document: Any) -> int:
    """Bytes `document` takes as compact JSON (vendors' per-event size limits)."""
    return len(json.dumps(document, separators=(",", ":"), default=str).encode())


JSON_REENCODE_GROWTH = 6
"""How many times its source text a JSON value parsed by `json.loads` can grow when encoded again as compact ASCII
JSON: a character grows at most to a six-byte `\\uXXXX` (a 1-byte DEL, a 2-byte `é`; a 4-byte emoji becomes two of
them, 12 bytes), an escape never grows, a number at most 4.5 times (`1e15` reads `1000000000000000.0`), and
white space and a duplicate key only shrink."""
JSON_REENCODE_SLACK = 64
"""Bytes an emulator adds to an item it parsed (Segment's `"type":"identify",` on a single call)."""


def json_size_over(document: Any, limit: int, source_bytes: int | None) -> bool:
    """Whether `document` takes more than `limit` bytes as compact JSON (`json_size(document) > limit`).

    `source_bytes`: the length of the JSON text the whole document (every part of it) was parsed from, when the
    caller knows it. Then a body too short to hold an item over the limit, whatever re-encoding makes of it, is
    answered without encoding the item again (the usual small request); None always encodes it.
    """
    if source_bytes is not None and source_bytes * JSON_REENCODE_GROWTH + JSON_REENCODE_SLACK <= limit:
        return False
    return json_size(document) > limit
