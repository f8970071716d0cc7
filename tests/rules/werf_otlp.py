"""Build werf telemetry as it goes on the wire: an OTLP/HTTP protobuf `ExportTraceServiceRequest`.

werf cannot be installed here, so these requests follow its published schema
(../shared/seeds/werf-telemetry.md) and the measured span layout
(../shared/wire/README.md): one span per event, the event's keys as span
attributes, `eventData` and `attributes` as JSON strings. Used by the pack tests
and by tests/data/otlp/generate_werf_captures.py, which writes the fixtures.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetry_audit.model import Request

URL = "https://telemetry.werf.io/v1/traces"
HEADERS = {"Content-Type": "application/x-protobuf", "User-Agent": "OTel-OTLP-Exporter-Go/1.21.0"}

PROJECT_ID = "b4c2d019070529344a6967d8c73d578101c6554fcdcae3d00bb93a9692523cb1"
EXECUTION_ID = "2f75d020-684e-4224-9013-35e95e1b7721"
USER_ID = "6c3c5e1e-1f7a-4a43-9a55-4e1a7c2b9d10"
ENVIRONMENT = {"arch": "amd64", "os": "linux", "version": "2.10.0", "ci": True, "ciName": "gitlab"}


def command_started(**overrides: Any) -> dict[str, Any]:
    """Span attributes of a `CommandStarted` event (the seed document's first example)."""
    attributes: dict[str, Any] = {
        "ts": 1658231825280,
        "executionID": EXECUTION_ID,
        "userID": USER_ID,
        "projectID": PROJECT_ID,
        "command": "werf converge",
        "eventType": "CommandStarted",
        "eventData": {"commandOptions": [{"name": "repo", "asCli": False, "asEnv": True, "count": 1}]},
        "attributes": ENVIRONMENT,
        "schemaVersion": 1,
    }
    attributes.update(overrides)
    return attributes


def command_exited(**overrides: Any) -> dict[str, Any]:
    """Span attributes of a `CommandExited` event (the seed document's second example)."""
    attributes = command_started(ts=1658231836102, eventType="CommandExited",
                                 eventData={"exitCode": 0, "durationMs": 10827})
    attributes.update(overrides)
    return attributes


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, (dict, list)):  # werf sends nested data as JSON strings
        return AnyValue(string_value=json.dumps(value, separators=(",", ":")))
    return AnyValue(string_value=str(value))


def export_request(*events: Mapping[str, Any]) -> bytes:
    """One `ExportTraceServiceRequest` with one span per event, serialised."""
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="werf")))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "werf"
    for index, event in enumerate(events):
        span = scope_spans.spans.add()
        span.name = "telemetry.werf.io"
        span.trace_id = bytes(range(16))
        span.span_id = bytes([index + 1] * 8)
        span.start_time_unix_nano = int(event.get("ts", 0)) * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano
        for key, value in event.items():
            span.attributes.append(KeyValue(key=key, value=_any_value(value)))
    return message.SerializeToString()


def werf_request(*events: Mapping[str, Any], url: str = URL) -> Request:
    """The request werf's exporter makes for `events`."""
    return Request.from_url("POST", url, HEADERS, export_request(*events))


def capture(*events: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON capture (the format of tests/data/captures/) for `telemetry-audit check`."""
    return {
        "scheme": "https",
        "host": "telemetry.werf.io",
        "port": 443,
        "method": "POST",
        "path": "/v1/traces",
        "headers": [["Host", "telemetry.werf.io"], *([k, v] for k, v in HEADERS.items())],
        "body_base64": base64.b64encode(export_request(*events)).decode("ascii"),
    }


def parse(body: bytes) -> ExportTraceServiceRequest:
    """A serialised request read back (to look at what redaction left)."""
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    return message
