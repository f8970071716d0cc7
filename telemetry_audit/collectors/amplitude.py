"""Amplitude's HTTP V2 (`/2/httpapi`) and Batch (`/batch`) APIs.

Both take `{"api_key", "events": [...], "options"}` and reject the whole
request with a 400 that names the offending event indexes.

Sources: the HTTP V2 API reference (amplitude.com/docs/apis/analytics/http-v2:
at most 2,000 events and 1 MB per request, else 413 "Payload too large";
`user_id`/`device_id` of at least 5 characters unless `options.min_id_length`
says otherwise, else 400 with `events_with_invalid_id_lengths`; missing fields
400 with `missing_field` or `events_with_missing_fields`; success
`{code, events_ingested, payload_size_bytes, server_upload_time}` with the
server's clock in epoch ms). amplitude-analytics (`processor.py`) on a 413
halves its flush size and re-sends (a single event is dropped); on a 400 it
drops the indexes named invalid and re-sends the rest; an error starting
"Invalid API key:" raises `InvalidAPIKeyError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest

_PATHS = ("/2/httpapi", "/2/httpapi/", "/batch", "/batch/")
_EVENT_KEYS_IN_CONTEXT = ("event_properties", "event_type", "user_id", "device_id", "time")
_API_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_REQUEST_BYTES = 1024 * 1024
MAX_EVENTS = 2000
MIN_ID_LENGTH = 5


def _error(body: dict[str, Any], reason: str, status: int = 400) -> CollectorResponse:
    return json_response(status, {"code": status, **body}, bad_reason=reason)


def _min_id_length(document: dict[str, Any]) -> int:
    options = document.get("options")
    value = options.get("min_id_length") if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else MIN_ID_LENGTH


class AmplitudeCollector(HostAndPathCollector):
    """`api2.amplitude.com`, `api.amplitude.com`, `api.eu.amplitude.com`."""

    name = "amplitude"
    tool = "amplitude"
    hosts: tuple[str, ...] = ("api2.amplitude.com", "api.amplitude.com", "api.eu.amplitude.com")
    clock: Callable[[], float] = staticmethod(time.time)
    """The server's clock, for `server_upload_time`."""

    def owns_path(self, path: str, method: str) -> bool:
        return path in _PATHS

    def matches_path(self, decoded: DecodedRequest) -> bool:
        path = request_of(decoded).path
        if path.startswith("/2/"):
            return path in _PATHS
        if path != "/batch":
            return False
        # `/batch` is also Universal Analytics'; Amplitude's is JSON with an `events` array.
        try:
            document = _decoding.json_loads(_decoding.body(decoded))
        except ValueError:
            return False
        return isinstance(document, dict) and "events" in document

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            return _error({"error": "Method not allowed"}, f"{request.method} is not supported")
        try:
            data = _decoding.body(decoded)
            if len(data) > MAX_REQUEST_BYTES:
                raise _decoding.BodyTooLarge
            document = _decoding.json_loads(data)
        except _decoding.BodyTooLarge:
            return _error({"error": "Payload too large"}, "request exceeds 1 MB", 413)
        except ValueError as e:
            return _error({"error": "Invalid JSON request body"}, str(e))
        if not isinstance(document, dict):
            return _error({"error": "Invalid JSON request body"}, "body is not a JSON object")
        api_key = document.get("api_key")
        if not api_key:
            return _error({"error": "Request missing required field", "missing_field": "api_key"}, "missing api_key")
        if not isinstance(api_key, str) or not _API_KEY.match(api_key):
            return _error({"error": f"Invalid API key: {str(api_key)[:64]}"}, "invalid api_key")
        items = document.get("events")
        if not isinstance(items, list):
            return _error({"error": "Request missing required field", "missing_field": "events"}, "missing events")
        if len(items) > MAX_EVENTS:
            return _error({"error": "Payload too large"}, f"{len(items)} events, at most {MAX_EVENTS}", 413)

        missing: dict[str, list[int]] = {}
        short: dict[str, list[int]] = {}
        min_length = _min_id_length(document)
        events: list[Event] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                missing.setdefault("event_type", []).append(index)
                continue
            if not item.get("event_type"):
                missing.setdefault("event_type", []).append(index)
            if not item.get("user_id") and not item.get("device_id"):
                missing.setdefault("device_id", []).append(index)
            for key in ("user_id", "device_id"):
                value = item.get(key)
                if value and len(str(value)) < min_length:
                    short.setdefault(key, []).append(index)
            events.append(self._event(document, item))
        if missing:
            reason = "; ".join(f"events {idx} missing {field}" for field, idx in missing.items())
            return _error({"error": "Request missing required field", "events_with_missing_fields": missing}, reason)
        if short:
            reason = "; ".join(f"events {idx}: {field} shorter than {min_length}" for field, idx in short.items())
            body = {"error": "Invalid id length for user_id or device_id", "events_with_invalid_id_lengths": short}
            return _error(body, reason)
        return json_response(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(data),
                "server_upload_time": int(self.clock() * 1000),
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
