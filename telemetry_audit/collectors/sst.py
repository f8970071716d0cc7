"""SST v2's collector, `telemetry.sst.dev/events` (v3/v4 speak PostHog: see `posthog.py`).

The body is `{context, environment, events: [{name, properties}]}`; the CLI
expects exactly 200.
"""

from __future__ import annotations

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_dict,
    as_str,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest


def _error(message: str) -> CollectorResponse:
    return json_response(400, {"error": message}, bad_reason=message)


class SstV2Collector(HostAndPathCollector):
    """SST v2 (Node)."""

    name = "sst-v2"
    tool = "sst"
    hosts: tuple[str, ...] = ("telemetry.sst.dev",)

    def owns_path(self, path: str, method: str) -> bool:
        return path.rstrip("/") == "/events"

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            return json_response(405, {"error": "method not allowed"}, bad_reason="method not allowed")
        try:
            document = _decoding.json_loads(_decoding.body(decoded))
        except ValueError as e:
            return _error(str(e))
        if not isinstance(document, dict) or not isinstance(document.get("events"), list):
            return _error("body must be {context, environment, events: [...]}")
        context = as_dict(document.get("context"))
        environment = as_dict(document.get("environment"))
        events = []
        for index, item in enumerate(document["events"]):
            if not isinstance(item, dict) or not item.get("name"):
                return _error(f"events[{index}] has no name")
            properties = item.get("properties")
            events.append(
                Event(
                    collector=self.name,
                    tool=self.tool,
                    name=str(item["name"]),
                    anonymous_id=as_str(context.get("anonymousId")),
                    properties=dict(properties) if isinstance(properties, dict) else {},
                    context={**context, "environment": environment},
                    raw=item,
                )
            )
        return json_response(200, {}, events)
