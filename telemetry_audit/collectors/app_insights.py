"""Azure Application Insights ingestion (`/v2/track`, `/v2.1/track`).

The body is a JSON array or newline-delimited JSON of envelopes
(`{name, time, iKey, tags, data: {baseType, baseData}}`), often gzipped. The
answer counts items: 200 when all are accepted, 206 with per-index errors
when some are not, 400 when none could be read.

Sources: the Breeze ingestion response as the official exporters read it
(azure-monitor-opentelemetry-exporter `_base.py` `_transmit`: 206 retries only
the failed indexes); instrumentation keys are GUIDs (learn.microsoft.com
"Connection strings"), an item with another `iKey` is refused with
"Invalid instrumentation key"; limits from "Application Insights limits"
(64 KB per telemetry item).
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
    as_dict,
    as_str,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest

_PATHS = ("/v2/track", "/v2.1/track", "/v2/track/", "/v2.1/track/")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_ITEM_BYTES = 64 * 1024


def _items(data: bytes) -> list[Any]:
    text = data.strip()
    if text.startswith(b"["):
        found = _decoding.json_loads(text)
        return found if isinstance(found, list) else [found]
    return _decoding.ndjson(text)


class AppInsightsCollector(HostAndPathCollector):
    """`dc.services.visualstudio.com` and the regional `*.in.applicationinsights.azure.com` endpoints."""

    name = "app-insights"
    tool = "app-insights"
    hosts: tuple[str, ...] = (
        "dc.services.visualstudio.com",
        "dc.applicationinsights.azure.com",
        "*.in.applicationinsights.azure.com",
    )

    def owns_path(self, path: str, method: str) -> bool:
        return path in _PATHS

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method != "POST":
            refused = f"{request.method} is not allowed"
            return json_response(405, {"itemsReceived": 0, "itemsAccepted": 0, "errors": []}, bad_reason=refused)
        try:
            items = _items(_decoding.body(decoded))
        except ValueError as e:
            message = f"Invalid payload: {e}"
            unread = [{"index": 0, "statusCode": 400, "message": message}]
            return json_response(400, {"itemsReceived": 0, "itemsAccepted": 0, "errors": unread}, bad_reason=message)

        events: list[Event] = []
        errors: list[dict[str, Any]] = []
        rejected: list[Rejection] = []
        for index, item in enumerate(items):
            problem = self._problem(item)
            if problem:
                errors.append({"index": index, "statusCode": 400, "message": problem})
                rejected.append(Rejection(f"item {index}: {problem}", item))
            else:
                events.append(self._event(item))
        body = {"itemsReceived": len(items), "itemsAccepted": len(events), "errors": errors}
        reason = "; ".join(f"item {e['index']}: {e['message']}" for e in errors) or None
        if not items:
            return json_response(400, body, bad_reason="no telemetry items")
        status = 400 if errors and not events else 206 if errors else 200
        answer = json_response(status, body, events, reason)
        return CollectorResponse(answer.status, answer.headers, answer.body, answer.events, reason, tuple(rejected))

    @staticmethod
    def _problem(item: Any) -> str | None:
        if not isinstance(item, dict):
            return "Telemetry item is not a JSON object"
        missing = [key for key in ("name", "time", "iKey", "data") if not item.get(key)]
        if missing:
            return f"Field '{missing[0]}' on type 'Envelope' is required but missing or empty."
        if not isinstance(item["iKey"], str) or not _GUID.match(item["iKey"]):
            return "Invalid instrumentation key"
        if _decoding.json_size(item) > MAX_ITEM_BYTES:
            return f"Telemetry item exceeds the {MAX_ITEM_BYTES // 1024} KB limit"
        data = item["data"]
        if not isinstance(data, dict) or not data.get("baseType") or not isinstance(data.get("baseData"), dict):
            return "Field 'baseType' on type 'Data' is required but missing or empty."
        return None

    def _event(self, item: dict[str, Any]) -> Event:
        data = item["data"]
        base = data["baseData"]
        tags = as_dict(item.get("tags"))
        base_type = str(data["baseType"])
        name = base.get("name") if base_type in ("EventData", "RequestData", "PageViewData") else None
        properties = dict(base.get("properties") or {})
        if base.get("measurements"):
            properties["measurements"] = base["measurements"]
        for key, value in base.items():
            if key not in ("name", "properties", "measurements", "ver"):
                properties.setdefault(key, value)
        return Event(
            collector=self.name,
            tool=self.tool,
            name=str(name or base_type),
            distinct_id=as_str(tags.get("ai.user.authUserId")),
            anonymous_id=as_str(tags.get("ai.user.id")),
            timestamp=as_str(item.get("time")),
            properties=properties,
            context={"iKey": item.get("iKey"), "baseType": base_type, "envelope": item.get("name"), "tags": tags},
            raw=item,
        )
