"""Serverless Framework's own collectors (v1 speaks Segment: see `segment.py`).

v2/v3 post a JSON array of cached events to the root of
`sp-notifications-and-metrics-v1.serverless-platform.com` and delete the cache
only on a 2xx; v4 posts `{"events": [{source, event}]}` with a Bearer access
key to `core.serverless.com/api/events/publish/bulk`.
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

V4_PATH = "/api/events/publish/bulk"


def _error(status: int, message: str) -> CollectorResponse:
    return json_response(status, {"message": message}, bad_reason=message)


class ServerlessV3Collector(HostAndPathCollector):
    """Serverless Framework v2/v3 (`SLS_ANALYTICS_URL` overrides the host)."""

    name = "serverless-v3"
    tool = "serverless"
    hosts: tuple[str, ...] = ("sp-notifications-and-metrics-v1.serverless-platform.com",)

    def owns_path(self, path: str, method: str) -> bool:
        return path == "/"

    def matches_path(self, decoded: DecodedRequest) -> bool:
        request = request_of(decoded)
        if request.path != "/" or request.method != "POST":
            return False
        # The root path says nothing by itself: require the JSON array this client sends.
        try:
            return _decoding.body(decoded).lstrip()[:1] == b"["
        except ValueError:
            return False

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            return _error(405, "Method Not Allowed")
        try:
            document = _decoding.json_loads(_decoding.body(decoded))
        except ValueError as e:
            return _error(400, str(e))
        if not isinstance(document, list):
            return _error(400, "payload must be a JSON array of events")
        events: list[Event] = []
        for index, item in enumerate(document):
            if not isinstance(item, dict) or not item.get("command") and not item.get("cliName"):
                return _error(400, f"event {index} is not a Serverless CLI event")
            dashboard = as_dict(item.get("dashboard"))
            context = {k: item[k] for k in ("versions", "ciName", "installationType", "timezone") if k in item}
            events.append(
                Event(
                    collector=self.name,
                    tool=self.tool,
                    name=str(item.get("command") or item.get("cliName")),
                    distinct_id=as_str(dashboard.get("userId")),
                    anonymous_id=as_str(item.get("frameworkLocalUserId")),
                    timestamp=iso_timestamp(item.get("timestamp")),
                    properties=dict(item),
                    context=context,
                    raw=item,
                )
            )
        return json_response(200, {}, events)


class ServerlessV4Collector(HostAndPathCollector):
    """Serverless Framework v4's bulk event publisher."""

    name = "serverless-v4"
    tool = "serverless"
    hosts: tuple[str, ...] = ("core.serverless.com",)

    def owns_path(self, path: str, method: str) -> bool:
        return path.rstrip("/") == V4_PATH

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            return _error(405, "Method Not Allowed")
        if not request.header("authorization").lower().startswith("bearer "):
            return _error(401, "Unauthorized")
        try:
            document = _decoding.json_loads(_decoding.body(decoded))
        except ValueError as e:
            return _error(400, str(e))
        items = document.get("events") if isinstance(document, dict) else None
        if not isinstance(items, list):
            return _error(400, 'body must be {"events": [...]}')
        events = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("event"), dict):
                return _error(400, f'events[{index}] must be {{"source", "event": {{...}}}}')
            inner: dict[str, Any] = item["event"]
            name = inner.get("event") or inner.get("type") or inner.get("name") or item.get("source") or ""
            events.append(
                Event(
                    collector=self.name,
                    tool=self.tool,
                    name=str(name),
                    distinct_id=as_str(inner.get("userId") or inner.get("user_id")),
                    anonymous_id=as_str(inner.get("machineId") or inner.get("anonymousId")),
                    timestamp=iso_timestamp(inner.get("timestamp")),
                    properties=dict(inner),
                    context={"source": item.get("source")},
                    raw=item,
                )
            )
        return json_response(200, {}, events)
