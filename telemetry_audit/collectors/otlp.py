"""OpenTelemetry OTLP/HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`), and werf on top of it.

Requests are protobuf (`application/x-protobuf`) or OTLP JSON; the answer is
an empty `Export*ServiceResponse` in the request's own encoding, errors a
`google.rpc.Status`. werf sends one span per event whose attributes carry its
own schema (`eventType`, `executionID`, `userID`, `eventData` and `attributes`
as JSON strings); those become werf events with the JSON strings decoded.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    iso_timestamp,
)
from telemetry_audit.model import Request

_PATH = re.compile(r"^(?:/[\w.-]+)*/v1/(traces|metrics|logs)/?$")
_PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
_REQUESTS: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_INVALID_ARGUMENT = 3
WERF_REQUIRED = ("ts", "executionID", "eventType", "command", "eventData", "attributes")
"""Span attributes every werf telemetry event carries (schemaVersion 2)."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _status(code: int, message: str, protobuf: bool) -> bytes:
    """A `google.rpc.Status` (encoded by hand: it is two fields, not worth a dependency)."""
    if not protobuf:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def attribute_value(value: Any) -> Any:
    """An OTLP `AnyValue` (JSON form) as a plain Python value."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "bytesValue" in value:
        return value["bytesValue"]
    if "arrayValue" in value:
        return [attribute_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    return None


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP `KeyValue` list -> dict."""
    if not isinstance(pairs, list):
        return {}
    return {str(p.get("key")): attribute_value(p.get("value")) for p in pairs if isinstance(p, dict)}


def _hex_ids(span: dict[str, Any], from_protobuf: bool) -> dict[str, Any]:
    """Protobuf ids come out of `MessageToDict` as base64; OTLP JSON writes them in hex."""
    out = {}
    for key in _ID_FIELDS:
        if span.get(key):
            out[key] = base64.b64decode(span[key]).hex() if from_protobuf else str(span[key]).lower()
    return out


def _werf_event(collector: str, span: dict[str, Any], attrs: dict[str, Any], context: dict[str, Any]) -> Event:
    """A werf span as the event werf documents; `ValueError` when it breaks werf's schema."""
    missing = [key for key in WERF_REQUIRED if key not in attrs]
    if missing:
        raise ValueError(f"werf span {span.get('name')!r} lacks attributes {', '.join(missing)}")
    properties = dict(attrs)
    for key in ("eventData", "attributes"):
        if isinstance(attrs[key], str):
            try:
                properties[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                raise ValueError(f"werf attribute {key} is not a JSON string") from None
    return Event(
        collector=collector,
        tool="werf",
        name=str(attrs["eventType"]),
        distinct_id=as_str(attrs.get("userID")),
        anonymous_id=None,
        timestamp=iso_timestamp(attrs.get("ts")),
        properties=properties,
        context={**context, "span_name": span.get("name")},
        raw=span,
    )


class OtlpCollector(HostAndPathCollector):
    """OTLP/HTTP receivers (vendor ingest hosts; any host by path in the standalone server)."""

    name = "otlp"
    tool = "otlp"
    hosts: tuple[str, ...] = (
        "otlp.nr-data.net",
        "otlp.eu01.nr-data.net",
        "api.honeycomb.io",
        "api.eu1.honeycomb.io",
        "*.grafana.net",
        "otlp.datadoghq.com",
        "ingest.lightstep.com",
    )
    strict_werf = False
    """Whether every span must follow werf's schema (only on werf's own host)."""

    def matches_path(self, request: Request) -> bool:
        return _PATH.match(request.path) is not None

    def handle(self, request: Request) -> CollectorResponse:
        match = _PATH.match(request.path)
        signal = match.group(1) if match else "traces"
        protobuf = request.content_type in _PROTOBUF_TYPES
        if request.method != "POST":
            return self._answer(405, protobuf, [], f"{request.method} is not allowed, use POST")
        if not protobuf and request.content_type != "application/json":
            return self._answer(415, False, [], f"unsupported content type {request.content_type!r}")
        try:
            document = self._decode(signal, _decoding.body(request), protobuf)
        except ValueError as e:
            return self._answer(400, protobuf, [], str(e))
        events, problems = self._events(signal, document, protobuf)
        # An OTLP receiver accepts what it can parse; schema problems are ours to record.
        return self._answer(200, protobuf, events, "; ".join(problems) or None)

    @staticmethod
    def _decode(signal: str, data: bytes, protobuf: bool) -> dict[str, Any]:
        if not protobuf:
            document = _decoding.json_loads(data)
            if not isinstance(document, dict):
                raise ValueError("OTLP JSON body is not an object")
            return document
        message = _REQUESTS[signal]()
        try:
            message.ParseFromString(data)
        except DecodeError as e:
            raise ValueError(f"invalid protobuf {message.DESCRIPTOR.name}: {e}") from None
        return json_format.MessageToDict(message)

    def _answer(self, status: int, protobuf: bool, events: list[Event], reason: str | None) -> CollectorResponse:
        content_type = "application/x-protobuf" if protobuf else "application/json"
        if status == 200:
            # An empty Export*ServiceResponse: zero bytes in protobuf, `{}` in JSON.
            body = b"" if protobuf else b"{}"
        else:
            body = _status(_INVALID_ARGUMENT, reason or "", protobuf)
        return CollectorResponse(
            status=status,
            headers=(("Content-Type", content_type),),
            body=body,
            events=tuple(events),
            bad_reason=reason,
        )

    def _events(self, signal: str, document: dict[str, Any], protobuf: bool) -> tuple[list[Event], list[str]]:
        events: list[Event] = []
        problems: list[str] = []
        outer_key, scope_key, item_key = {
            "traces": ("resourceSpans", "scopeSpans", "spans"),
            "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
            "logs": ("resourceLogs", "scopeLogs", "logRecords"),
        }[signal]
        for resource_block in document.get(outer_key) or []:
            resource = attributes((resource_block.get("resource") or {}).get("attributes"))
            for scope_block in resource_block.get(scope_key) or []:
                scope = scope_block.get("scope") or {}
                base = {"signal": signal, "resource": resource, "scope": {k: scope.get(k) for k in ("name", "version")}}
                for item in scope_block.get(item_key) or []:
                    try:
                        events.append(self._event(signal, item, base, protobuf))
                    except ValueError as e:
                        problems.append(str(e))
        return events, problems

    def _event(self, signal: str, item: dict[str, Any], base: dict[str, Any], protobuf: bool) -> Event:
        attrs = attributes(item.get("attributes"))
        if signal == "traces":
            context = {**base, **_hex_ids(item, protobuf), "kind": item.get("kind")}
            if self.strict_werf or ("eventType" in attrs and "executionID" in attrs):
                return _werf_event(self.name, item, attrs, context)
            return Event(
                collector=self.name,
                tool=self.tool,
                name=str(item.get("name", "")),
                timestamp=iso_timestamp(item.get("startTimeUnixNano")),
                properties=attrs,
                context=context,
                raw=item,
            )
        if signal == "metrics":
            kind = next((k for k in ("sum", "gauge", "histogram", "exponentialHistogram", "summary") if k in item), "")
            raw_points = (item.get(kind) or {}).get("dataPoints", [])
            points = [{**p, "attributes": attributes(p.get("attributes"))} for p in raw_points]
            return Event(
                collector=self.name,
                tool=self.tool,
                name=str(item.get("name", "")),
                timestamp=iso_timestamp(points[0].get("timeUnixNano")) if points else None,
                properties={"type": kind, "unit": item.get("unit"), "dataPoints": points},
                context={**base, "description": item.get("description")},
                raw=item,
            )
        body = attribute_value(item.get("body"))
        return Event(
            collector=self.name,
            tool=self.tool,
            name=str(item.get("eventName") or "log"),
            timestamp=iso_timestamp(item.get("timeUnixNano") or item.get("observedTimeUnixNano")),
            properties={**attrs, "body": body, "severityText": item.get("severityText")},
            context={**base, **_hex_ids(item, protobuf)},
            raw=item,
        )


class WerfCollector(OtlpCollector):
    """werf's `telemetry.werf.io/v1/traces`: OTLP protobuf, one span per event."""

    name = "werf"
    tool = "werf"
    hosts: tuple[str, ...] = ("telemetry.werf.io",)
    strict_werf = True

    def matches_path(self, request: Request) -> bool:
        return request.path.rstrip("/") == "/v1/traces"
