"""Segment's Tracking API (`api.segment.io/v1/*`), also used by Serverless Framework v1.

Segment answers 200 `{"success": true}` to everything it can parse and drops
invalid messages silently; only unparseable JSON and oversized payloads get a
400. The emulator does the same and records dropped messages as bad events.

Source: the HTTP Tracking API reference (segment.com/docs/connections/sources/
catalog/libraries/server/http-api/, "Errors"): single calls up to 32 KB, else
400; `/v1/batch` up to 500 KB per request (else 400), at most 2,500 events
(more: 200, and the events beyond are rejected) of under 32 KB each (larger ones
are dropped); every message needs `userId` or `anonymousId`, track needs
`event`. analytics-python (`consumer.py`) keeps its batches under 475,000 bytes
and drops messages over 32 KB itself; a 400 is not retried. Write keys are not
checked: Segment's edge is stateless and answers 200 to any key (maintainers in
segmentio/analytics-ruby#136, analytics-node#59), so there is no auth error to emulate.
"""

from __future__ import annotations

import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    Rejection,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 2500
_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_PATH = re.compile(r"^/v1/(track|identify|page|screen|group|alias|batch|import)/?$")


def _error(message: str) -> CollectorResponse:
    return json_response(400, {"success": False, "code": "invalid_request", "message": message}, bad_reason=message)


def _name(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    return as_str(message.get("event")) or as_str(message.get("type"))


def _event(collector: str, tool: str, message: dict[str, Any]) -> Event:
    kind = message.get("type") or ""
    if kind == "track":
        name = str(message.get("event") or "")
        properties = message.get("properties")
    elif kind in ("identify", "group"):
        name = kind
        properties = message.get("traits")
    elif kind in ("page", "screen"):
        name = kind
        properties = message.get("properties")
    else:
        name = kind
        properties = {"previousId": message.get("previousId")}
    return Event(
        collector=collector,
        tool=tool,
        name=name,
        distinct_id=as_str(message.get("userId")),
        anonymous_id=as_str(message.get("anonymousId")),
        timestamp=iso_timestamp(message.get("timestamp") or message.get("sentAt")),
        properties=dict(properties) if isinstance(properties, dict) else {},
        context=dict(message["context"]) if isinstance(message.get("context"), dict) else {},
        raw=message,
    )


def _problem(message: Any) -> str | None:
    """Why Segment would drop `message`, or None."""
    if not isinstance(message, dict):
        return "message is not a JSON object"
    kind = message.get("type")
    if kind not in _TYPES:
        return f"unknown message type {kind!r}"
    if kind == "alias":
        if not message.get("previousId") or not message.get("userId"):
            return "alias requires previousId and userId"
    elif not message.get("userId") and not message.get("anonymousId"):
        return "userId or anonymousId is required"
    if kind == "track" and not message.get("event"):
        return "track requires an event name"
    return None


class SegmentCollector(HostAndPathCollector):
    """`POST /v1/{track,identify,page,screen,group,alias,batch}` with a JSON body."""

    name = "segment"
    tool = "segment"
    hosts: tuple[str, ...] = ("api.segment.io", "api.segment.com", "events.eu1.segmentapis.com")

    def owns_path(self, path: str, method: str) -> bool:
        return _PATH.match(path) is not None

    def _kind(self, request: Request) -> str:
        match = _PATH.match(request.path)
        return match.group(1) if match else "track"

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            return _error(f"{request.method} is not supported, use POST")
        kind = self._kind(request)
        batch = kind in ("batch", "import")
        try:
            data = _decoding.body(decoded)
        except _decoding.BodyTooLarge:
            return _error("Payload too large")
        except ValueError as e:
            return _error(str(e))
        if len(data) > (MAX_BATCH_BYTES if batch else MAX_MESSAGE_BYTES):
            return _error("Payload too large")
        try:
            document = _decoding.json_loads(data)
        except ValueError as e:
            return _error(f"Invalid JSON: {e}")
        if not isinstance(document, dict):
            return _error("Invalid JSON: body is not an object")

        if batch:
            messages = document.get("batch")
            if not isinstance(messages, list):
                return _error("batch must be an array")
            context = document.get("context")
            if isinstance(context, dict):
                messages = [{"context": context, **m} if isinstance(m, dict) else m for m in messages]
        else:
            messages = [{"type": kind, **document}]

        events: list[Event] = []
        rejected: list[Rejection] = []
        for index, message in enumerate(messages):
            problem = _problem(message)
            if problem is None and index >= MAX_BATCH_EVENTS:
                problem = f"batch holds more than {MAX_BATCH_EVENTS} events"
            if problem is None and _decoding.json_size_over(message, MAX_MESSAGE_BYTES, len(data)):
                problem = "message exceeds 32KB"
            if problem is not None:
                rejected.append(Rejection(f"batch[{index}]: {problem}", message, _name(message)))
                continue
            events.append(_event(self.name, self.tool, message))
        reason = "; ".join(r.reason for r in rejected[:20]) or None
        # Segment accepts the request and silently drops invalid messages.
        answer = json_response(200, {"success": True}, events, reason)
        return CollectorResponse(answer.status, answer.headers, answer.body, answer.events, reason, tuple(rejected))


class ServerlessV1Collector(SegmentCollector):
    """Serverless Framework v1: Segment's protocol on Serverless' own hosts."""

    name = "serverless-v1"
    tool = "serverless"
    hosts: tuple[str, ...] = ("tracking.serverlessteam.com", "serverless.com", "www.serverless.com")
    _FRAMEWORK = re.compile(r"^/api/framework/(track|identify)/?$")

    def owns_path(self, path: str, method: str) -> bool:
        return super().owns_path(path, method) or self._FRAMEWORK.match(path) is not None

    def _kind(self, request: Request) -> str:
        match = self._FRAMEWORK.match(request.path)
        return match.group(1) if match else super()._kind(request)
