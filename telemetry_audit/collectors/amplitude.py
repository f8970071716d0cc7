"""Amplitude's HTTP V2 (`/2/httpapi`) and Batch (`/batch`) APIs.

Both take `{"api_key", "events": [...], "options"}` and reject the whole
request with a 400 that names the offending event indexes.
"""

from __future__ import annotations

from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    host_matches,
    iso_timestamp,
    json_response,
)
from telemetry_audit.model import Request

_PATHS = ("/2/httpapi", "/2/httpapi/", "/batch", "/batch/")
_EVENT_KEYS_IN_CONTEXT = ("event_properties", "event_type", "user_id", "device_id", "time")


def _error(body: dict[str, Any], reason: str) -> CollectorResponse:
    return json_response(400, {"code": 400, **body}, bad_reason=reason)


class AmplitudeCollector(HostAndPathCollector):
    """`api2.amplitude.com`, `api.amplitude.com`, `api.eu.amplitude.com`."""

    name = "amplitude"
    tool = "amplitude"
    hosts: tuple[str, ...] = ("api2.amplitude.com", "api.amplitude.com", "api.eu.amplitude.com")

    def matches(self, request: Request) -> bool:
        return host_matches(request.host, self.hosts) and request.path in _PATHS

    def matches_path(self, request: Request) -> bool:
        if request.path.startswith("/2/"):
            return request.path in _PATHS
        if request.path != "/batch":
            return False
        # `/batch` is also Universal Analytics'; Amplitude's is JSON with an `events` array.
        try:
            document = _decoding.json_loads(_decoding.body(request))
        except ValueError:
            return False
        return isinstance(document, dict) and "events" in document

    def handle(self, request: Request) -> CollectorResponse:
        if request.method != "POST":
            return _error({"error": "Method not allowed"}, f"{request.method} is not supported")
        try:
            data = _decoding.body(request)
            document = _decoding.json_loads(data)
        except ValueError as e:
            return _error({"error": "Invalid JSON request body"}, str(e))
        if not isinstance(document, dict):
            return _error({"error": "Invalid JSON request body"}, "body is not a JSON object")
        if not document.get("api_key"):
            return _error({"error": "Request missing required field", "missing_field": "api_key"}, "missing api_key")
        items = document.get("events")
        if not isinstance(items, list):
            return _error({"error": "Request missing required field", "missing_field": "events"}, "missing events")

        missing: dict[str, list[int]] = {}
        events: list[Event] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                missing.setdefault("event_type", []).append(index)
                continue
            if not item.get("event_type"):
                missing.setdefault("event_type", []).append(index)
            if not item.get("user_id") and not item.get("device_id"):
                missing.setdefault("device_id", []).append(index)
            events.append(self._event(document, item))
        if missing:
            reason = "; ".join(f"events {idx} missing {field}" for field, idx in missing.items())
            return _error({"error": "Request missing required field", "events_with_missing_fields": missing}, reason)
        times = [int(e.raw["time"]) for e in events if isinstance(e.raw.get("time"), int)]
        return json_response(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(data),
                # A pure function has no clock: the newest client time stands in for the server's.
                "server_upload_time": max(times, default=0),
            },
            events,
        )

    def _event(self, document: dict[str, Any], item: dict[str, Any]) -> Event:
        properties = item.get("event_properties")
        context = {k: v for k, v in item.items() if k not in _EVENT_KEYS_IN_CONTEXT}
        context["api_key"] = document.get("api_key")
        if isinstance(document.get("options"), dict):
            context["options"] = document["options"]
        return Event(
            collector=self.name,
            tool=self.tool,
            name=str(item.get("event_type")),
            distinct_id=as_str(item.get("user_id")),
            anonymous_id=as_str(item.get("device_id")),
            timestamp=iso_timestamp(item.get("time")),
            properties=dict(properties) if isinstance(properties, dict) else {},
            context=context,
            raw=item,
        )
