"""Segment's Tracking API (`api.segment.io/v1/*`), also used by Serverless Framework v1.

Segment answers 200 `{"success": true}` to everything it can parse and drops
invalid messages silently; only unparseable JSON and oversized payloads get a
400. The emulator does the same and records dropped messages as bad events.
"""

from __future__ import annotations

import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    iso_timestamp,
    json_response,
)
from telemetry_audit.model import Request

MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_PATH = re.compile(r"^/v1/(track|identify|page|screen|group|alias|batch|import)/?$")


def _error(message: str) -> CollectorResponse:
    return json_response(400, {"success": False, "code": "invalid_request", "message": message}, bad_reason=message)


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

    def matches_path(self, request: Request) -> bool:
        return _PATH.match(request.path) is not None

    def _kind(self, request: Request) -> str:
        match = _PATH.match(request.path)
        return match.group(1) if match else "track"

    def handle(self, request: Request) -> CollectorResponse:
        if request.method != "POST":
            return _error(f"{request.method} is not supported, use POST")
        try:
            data = _decoding.body(request)
        except ValueError as e:
            return _error(str(e))
        if len(data) > MAX_BATCH_BYTES:
            return _error("Payload too large")
        try:
            document = _decoding.json_loads(data)
        except ValueError as e:
            return _error(f"Invalid JSON: {e}")
        if not isinstance(document, dict):
            return _error("Invalid JSON: body is not an object")

        kind = self._kind(request)
        if kind in ("batch", "import"):
            messages = document.get("batch")
            if not isinstance(messages, list):
                return _error("batch must be an array")
            context = document.get("context")
            if isinstance(context, dict):
                messages = [{"context": context, **m} if isinstance(m, dict) else m for m in messages]
        else:
            messages = [{"type": kind, **document}]

        events: list[Event] = []
        problems: list[str] = []
        for index, message in enumerate(messages):
            problem = _problem(message)
            if problem is None and _decoding.json_size(message) > MAX_MESSAGE_BYTES:
                problem = "message exceeds 32KB"
            if problem is not None:
                problems.append(f"batch[{index}]: {problem}")
                continue
            events.append(_event(self.name, self.tool, message))
        reason = "; ".join(problems) or None
        # Segment accepts the request and silently drops invalid messages.
        return json_response(200, {"success": True}, events, reason)


class ServerlessV1Collector(SegmentCollector):
    """Serverless Framework v1: Segment's protocol on Serverless' own hosts."""

    name = "serverless-v1"
    tool = "serverless"
    hosts: tuple[str, ...] = ("tracking.serverlessteam.com", "serverless.com", "www.serverless.com")
    _FRAMEWORK = re.compile(r"^/api/framework/(track|identify)/?$")

    def matches_path(self, request: Request) -> bool:
        return super().matches_path(request) or self._FRAMEWORK.match(request.path) is not None

    def _kind(self, request: Request) -> str:
        match = self._FRAMEWORK.match(request.path)
        return match.group(1) if match else super()._kind(request)
