"""LocalStack's analytics API (`analytics.localstack.cloud/v1/session` and `/v1/events`).

The CLI stops tracking unless `/v1/session` answers 2xx JSON with
`"track_events": true`, so the emulator must say exactly that. The session
payload carries the raw `LOCALSTACK_AUTH_TOKEN` as `api_key`.
"""

from __future__ import annotations

from typing import Any

from telemetry_audit.collectors import _decoding
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

_PATHS = {"/v1/session": "session", "/v1/events": "events"}


def _error(status: int, message: str) -> CollectorResponse:
    return json_response(status, {"error": message}, bad_reason=message)


class LocalStackCollector(HostAndPathCollector):
    """`ANALYTICS_API` (default `https://analytics.localstack.cloud/v1`)."""

    name = "localstack"
    tool = "localstack"
    hosts: tuple[str, ...] = ("analytics.localstack.cloud",)

    def owns_path(self, path: str, method: str) -> bool:
        return path.rstrip("/") in _PATHS

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        endpoint = _PATHS.get(request.path.rstrip("/"), "events")
        if request.method != "POST":
            return _error(405, "method not allowed")
        try:
            document = _decoding.json_loads(_decoding.body(decoded))
        except ValueError as e:
            return _error(400, str(e))
        if not isinstance(document, dict):
            return _error(400, "body must be a JSON object")
        items = [document] if endpoint == "session" else document.get("events")
        if not isinstance(items, list):
            return _error(400, 'body must be {"events": [...]}')
        events: list[Event] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("name") or not isinstance(item.get("payload", {}), dict):
                return _error(400, f"event {index} needs a name and an object payload")
            events.append(self._event(request, item))
        if endpoint == "session":
            return json_response(200, {"track_events": True}, events)
        return json_response(200, {}, events)

    def _event(self, request: Request, item: dict[str, Any]) -> Event:
        metadata = as_dict(item.get("metadata"))
        payload = item.get("payload") or {}
        context = dict(metadata)
        if request.header("localstack-session-id"):
            context["session_header"] = request.header("localstack-session-id")
        return Event(
            collector=self.name,
            tool=self.tool,
            name=str(item["name"]),
            distinct_id=as_str(payload.get("machine_id")),
            anonymous_id=as_str(metadata.get("session_id") or payload.get("session_id")),
            timestamp=iso_timestamp(metadata.get("client_time")),
            properties=dict(payload),
            context=context,
            raw=item,
        )
