"""OpenTelemetry OTLP/HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`), and werf on top of it.

Requests are protobuf (`application/x-protobuf`) or OTLP JSON; the answer is
an empty `Export*ServiceResponse` in the request's own encoding, errors a
`google.rpc.Status`. werf sends one span per event whose attributes carry its
own schema (`eventType`, `executionID`, `userID`, `eventData` and `attributes`
as JSON strings); those become werf events with the JSON strings decoded.

Sources: the OTLP specification (opentelemetry.io/docs/specs/otlp/, "OTLP/HTTP":
the response is in the request's encoding; a body that cannot be parsed is 400
with a `google.rpc.Status`; items the server rejects while accepting the rest
are reported in `partial_success` {rejected_spans | rejected_data_points |
rejected_log_records, error_message} with 200; 413 for a body over the
server's limit, which the OpenTelemetry Collector's `confighttp` sets to 20 MiB
by default) and opentelemetry-exporter-otlp-proto-http (`trace_exporter`:
retries only 408/429/502/503/504, logs and drops on other errors).
Self-hosted receivers (`otel.example.com/v1/traces`) are recognised by path.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    Rejection,
    as_str,
    iso_timestamp,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest

if TYPE_CHECKING:
    from google.protobuf.message import Message

_PATH = re.compile(r"^(?:/[\w.-]+)*/v1/(traces|metrics|logs)/?$")
_PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_REJECTED_COUNT_FIELDS = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_INTERNAL = 13
MAX_BODY_BYTES = 20 * 1024 * 1024
"""The OpenTelemetry Collector's default `max_request_body_size` (confighttp)."""
WERF_REQUIRED = ("ts", "executionID", "eventType", "command", "eventData", "attributes")
"""Span attributes every werf telemetry event carries (schemaVersion 2)."""


def _message_types(signal: str) -> tuple[type[Message], type[Message]]:
    """The Export*ServiceRequest and Export*ServiceResponse of `signal`. Imported with the first OTLP protobuf
    request or answer, not with the emulators: protobuf and the OTLP modules were a fifth of what the proxy child
    imports of its own, on the way of every run's start-up."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    if signal == "traces":
        return trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse
    if signal == "metrics":
        return metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse
    if signal == "logs":
        return logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse
    raise KeyError(signal)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A repeated message field: absent is empty, anything but a list of objects is malformed."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{where} must be an array of objects")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object")
    return value


def attribute_value(value: Any, depth: int = 0) -> Any:
    """An OTLP `AnyValue` (JSON form) as a plain Python value; `ValueError` when malformed."""
    if not isinstance(value, dict):
        return value
    if depth > 32:
        raise ValueError("attribute value nested too deep")
    try:
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
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"invalid attribute value {str(value)[:80]}") from None
    if "arrayValue" in value:
        items = _object(value["arrayValue"], "arrayValue").get("values")
        return [attribute_value(v, depth + 1) for v in _objects(items, "arrayValue.values")]
    if "kvlistValue" in value:
        return attributes(_object(value["kvlistValue"], "kvlistValue").get("values"), depth + 1)
    return None


def attributes(pairs: Any, depth: int = 0) -> dict[str, Any]:
    """OTLP `KeyValue` list -> dict; `ValueError` when malformed."""
    return {str(p.get("key")): attribute_value(p.get("value"), depth) for p in _objects(pairs, "attributes")}


def _hex_ids(span: dict[str, Any], from_protobuf: bool) -> dict[str, Any]:
    """Protobuf ids come out of `MessageToDict` as base64; OTLP JSON writes them in hex."""
    out = {}
    for key in _ID_FIELDS:
        if span.get(key):
            out[key] = base64.b64decode(span[key]).hex() if from_protobuf else str(span[key]).lower()
    return out


def _status(code: int, message: str, protobuf: bool) -> bytes:
    """A `google.rpc.Status` (encoded by hand: it is two fields, not worth a dependency)."""
    if not protobuf:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


class _SchemaError(ValueError):
    """A well-formed item the receiver rejects (werf's schema): counted in `partial_success`."""


def _werf_event(collector: str, span: dict[str, Any], attrs: dict[str, Any], context: dict[str, Any]) -> Event:
    """A werf span as the event werf documents; `_SchemaError` when it breaks werf's schema."""
    missing = [key for key in WERF_REQUIRED if key not in attrs]
    if missing:
        raise _SchemaError(f"werf span {span.get('name')!r} lacks attributes {', '.join(missing)}")
    properties = dict(attrs)
    for key in ("eventData", "attributes"):
        if isinstance(attrs[key], str):
            try:
                properties[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                raise _SchemaError(f"werf attribute {key} is not a JSON string") from None
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

    def owns_path(self, path: str, method: str) -> bool:
        return _PATH.match(path) is not None

    def server_error(self, decoded: DecodedRequest, message: str) -> CollectorResponse:
        protobuf = request_of(decoded).content_type in _PROTOBUF_TYPES
        return self._error(500, _INTERNAL, protobuf, "internal error", message)

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        match = _PATH.match(request.path)
        signal = match.group(1) if match else "traces"
        protobuf = request.content_type in _PROTOBUF_TYPES
        if request.method != "POST":
            return self._error(405, _INVALID_ARGUMENT, protobuf, f"{request.method} is not allowed, use POST")
        if not protobuf and request.content_type != "application/json":
            return self._error(415, _INVALID_ARGUMENT, False, f"unsupported content type {request.content_type!r}")
        try:
            data = _decoding.body(decoded)
            if len(data) > MAX_BODY_BYTES:
                raise _decoding.BodyTooLarge(f"body of {len(data)} bytes")
        except _decoding.BodyTooLarge as e:
            return self._error(413, _RESOURCE_EXHAUSTED, protobuf,
                               f"request body exceeds the {MAX_BODY_BYTES}-byte limit ({e})")
        except ValueError as e:
            return self._error(400, _INVALID_ARGUMENT, protobuf, str(e))
        try:
            document = self._decode(signal, data, protobuf)
            events, rejected = self._events(signal, document, protobuf)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return self._error(400, _INVALID_ARGUMENT, protobuf, str(e))
        return self._success(signal, protobuf, events, rejected)

    @staticmethod
    def _decode(signal: str, data: bytes, protobuf: bool) -> dict[str, Any]:
        if not protobuf:
            document = _decoding.json_loads(data)
            if not isinstance(document, dict):
                raise ValueError("OTLP JSON body is not an object")
            return document
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError

        message = _message_types(signal)[0]()
        try:
            message.ParseFromString(data)
        except DecodeError as e:
            raise ValueError(f"invalid protobuf {message.DESCRIPTOR.name}: {e}") from None
        return json_format.MessageToDict(message)

    @staticmethod
    def _error(status: int, code: int, protobuf: bool, message: str, reason: str | None = None) -> CollectorResponse:
        content_type = "application/x-protobuf" if protobuf else "application/json"
        return CollectorResponse(
            status=status,
            headers=(("Content-Type", content_type),),
            body=_status(code, message, protobuf),
            bad_reason=reason or message,
        )

    @staticmethod
    def _success(signal: str, protobuf: bool, events: list[Event], rejected: list[Rejection]) -> CollectorResponse:
        """An Export*ServiceResponse: empty when all was accepted, else with its `partial_success`."""
        response = _message_types(signal)[1]()
        count_field = _REJECTED_COUNT_FIELDS[signal]
        reason = "; ".join(r.reason for r in rejected[:20]) or None
        if rejected:
            setattr(response.partial_success, count_field, len(rejected))
            response.partial_success.error_message = reason or ""
        if protobuf:
            body = response.SerializeToString()
        elif rejected:
            from google.protobuf import json_format

            body = json_format.MessageToJson(response, indent=None).encode()
        else:
            body = b"{}"
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", "application/x-protobuf" if protobuf else "application/json"),),
            body=body,
            events=tuple(events),
            bad_reason=reason,
            rejected=tuple(rejected),
        )

    def _events(
        self, signal: str, document: dict[str, Any], protobuf: bool
    ) -> tuple[list[Event], list[Rejection]]:
        """Events, and the items the receiver rejects; `ValueError` when the structure is malformed."""
        events: list[Event] = []
        rejected: list[Rejection] = []
        outer_key, scope_key, item_key = {
            "traces": ("resourceSpans", "scopeSpans", "spans"),
            "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
            "logs": ("resourceLogs", "scopeLogs", "logRecords"),
        }[signal]
        for resource_block in _objects(document.get(outer_key), outer_key):
            resource = attributes(_object(resource_block.get("resource"), "resource").get("attributes"))
            for scope_block in _objects(resource_block.get(scope_key), scope_key):
                scope = _object(scope_block.get("scope"), "scope")
                base = {"signal": signal, "resource": resource, "scope": {k: scope.get(k) for k in ("name", "version")}}
                for item in _objects(scope_block.get(item_key), item_key):
                    try:
                        events.append(self._event(signal, item, base, protobuf))
                    except _SchemaError as e:
                        rejected.append(Rejection(str(e), item, as_str(item.get("name"))))
        return events, rejected

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
            raw_points = _objects(_object(item.get(kind), kind).get("dataPoints"), "dataPoints")
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

    def owns_path(self, path: str, method: str) -> bool:
        return path.rstrip("/") == "/v1/traces"
