"""Sentry ingestion: `/api/<project>/envelope/` and the legacy `/api/<project>/store/`.

An envelope is a JSON header line followed by items, each a JSON item header
line and a payload whose byte length the header may give. Sentry answers
`{"id": "<event id>"}`; Relay's errors are `{"detail": ...}`.

Sources: Relay's size limits (docs.sentry.io/product/relay/options/, `limits`:
`max_event_size` 1 MiB, `max_envelope_size` 100 MiB) answered 413, which
sentry-sdk (`transport.py`, `_handle_response`) logs as "Event dropped due to
exceeded envelope size limit" and counts as a lost event; a request without
`sentry_key` (X-Sentry-Auth, `?sentry_key=` or the envelope's `dsn`) is 401.
Self-hosted Sentry uses the same paths, so any host is recognised by path.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors._decoding import BodyTooLarge
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_dict,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

_PATH = re.compile(r"^/api/(\d+)/(envelope|store)/?$")
MAX_EVENT_BYTES = 1024 * 1024
MAX_ENVELOPE_BYTES = 100 * 1024 * 1024
_JSON_ITEMS = ("event", "transaction", "session", "sessions", "client_report", "check_in", "user_report", "feedback")


def _error(status: int, detail: str) -> CollectorResponse:
    return json_response(status, {"detail": detail}, bad_reason=detail)


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """The envelope header and its (item header, payload) pairs; `ValueError` if malformed."""
    header_line, _, rest = data.partition(b"\n")
    header = _decoding.json_loads(header_line) if header_line.strip() else {}
    if not isinstance(header, dict):
        raise ValueError("envelope header is not a JSON object")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        item_header = _decoding.json_loads(line)
        if not isinstance(item_header, dict) or not item_header.get("type"):
            raise ValueError(f"item {len(items)}: header has no type")
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            if not isinstance(length, int) or length < 0 or length > len(rest):
                raise ValueError(f"item {len(items)}: length {length!r} exceeds the envelope")
            payload, rest = rest[:length], rest[length:]
            if rest[:1] == b"\n":
                rest = rest[1:]
        items.append((item_header, payload))
    return header, items


def _auth_key(request: Request, header: dict[str, Any]) -> str | None:
    auth = request.header("x-sentry-auth") or request.header("authorization")
    match = re.search(r"sentry_key=([^,\s]+)", auth)
    if match:
        return match.group(1)
    if dict(request.query).get("sentry_key"):
        return dict(request.query)["sentry_key"]
    dsn = header.get("dsn")
    if isinstance(dsn, str):
        match = re.match(r"^\w+://([^@:/]+)", dsn)
        if match:
            return match.group(1)
    return None


class SentryCollector(HostAndPathCollector):
    """`*.ingest.sentry.io` (and any `*.sentry.io`), envelope and store endpoints."""

    name = "sentry"
    tool = "sentry"
    hosts: tuple[str, ...] = ("sentry.io", "*.sentry.io")

    def owns_path(self, path: str, method: str) -> bool:
        return _PATH.match(path) is not None

    def server_error(self, decoded: DecodedRequest, message: str) -> CollectorResponse:
        return json_response(500, {"detail": "internal server error"}, bad_reason=message)

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        match = _PATH.match(request.path)
        if not match or request.method != "POST":
            return _error(405, f"{request.method} is not allowed here")
        project = match.group(1)
        try:
            data = _decoding.body(decoded)
            if len(data) > MAX_ENVELOPE_BYTES:
                raise BodyTooLarge("envelope exceeded size limits")
            if match.group(2) == "store":
                header: dict[str, Any] = {}
                items = [({"type": "event"}, self._store_body(data))]
            else:
                header, items = parse_envelope(data)
        except BodyTooLarge:
            return _error(413, "envelope exceeded size limits")
        except ValueError as e:
            return _error(400, f"invalid {match.group(2)} payload: {e}")
        if not _auth_key(request, header):
            return _error(401, "missing authorization information")

        events: list[Event] = []
        event_id = header.get("event_id")
        for index, (item_header, payload) in enumerate(items):
            if str(item_header.get("type")) in _JSON_ITEMS and len(payload) > MAX_EVENT_BYTES:
                return _error(413, f"item {index} ({item_header.get('type')}) exceeded the event size limit")
            try:
                event = self._event(project, header, item_header, payload)
            except ValueError as e:
                return _error(400, f"invalid item {index} ({item_header.get('type')}): {e}")
            event_id = event_id or event.raw.get("event_id")
            events.append(event)
        return json_response(200, {"id": event_id} if event_id else {}, events)

    @staticmethod
    def _store_body(data: bytes) -> bytes:
        """Legacy store bodies are JSON, or base64 of zlib-deflated JSON."""
        if data.lstrip()[:1] == b"{":
            return data
        try:
            # Bounded: a few KB of deflate can expand to gigabytes.
            inflated = zlib.decompressobj().decompress(_decoding.b64decode(data), MAX_EVENT_BYTES + 1)
        except zlib.error as e:
            raise ValueError(f"not JSON and not base64 zlib: {e}") from None
        if len(inflated) > MAX_EVENT_BYTES:
            raise BodyTooLarge("event exceeded the event size limit")
        return inflated

    def _event(self, project: str, header: dict[str, Any], item_header: dict[str, Any], payload: bytes) -> Event:
        kind = str(item_header["type"])
        context: dict[str, Any] = {"project": project, "item": item_header}
        for key in ("sdk", "sent_at", "trace"):
            if key in header:
                context[key] = header[key]
        if kind not in _JSON_ITEMS:
            # Attachments, profiles, replays: record what they are, not their bytes.
            return Event(
                collector=self.name,
                tool=self.tool,
                name=kind,
                timestamp=iso_timestamp(header.get("sent_at")),
                properties={"length": len(payload), **{k: v for k, v in item_header.items() if k != "type"}},
                context=context,
            )
        document = _decoding.json_loads(payload)
        if not isinstance(document, dict):
            raise ValueError("payload is not a JSON object")
        user = as_dict(document.get("user"))
        attrs = as_dict(document.get("attrs"))
        for key in ("contexts", "sdk", "release", "environment", "platform", "server_name", "tags"):
            if key in document:
                context[key] = document[key]
        for key in ("release", "environment"):
            if key in attrs:
                context[key] = attrs[key]
        return Event(
            collector=self.name,
            tool=self.tool,
            name=kind,
            distinct_id=as_str(user.get("id") or user.get("username") or user.get("email") or document.get("did")),
            anonymous_id=as_str(user.get("ip_address")),
            timestamp=iso_timestamp(document.get("timestamp") or document.get("started") or header.get("sent_at")),
            properties=document,
            context=context,
            raw=document,
        )
