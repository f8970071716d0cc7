"""OTLP/HTTP, driven by the official opentelemetry-exporter-otlp-proto-http, and werf's span schema."""

from __future__ import annotations

import json

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry_audit.collectors import find_collector
from telemetry_audit.model import Request

from .conftest import CollectorServer, bad_reasons, good_events, inspect


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_official_span_exporter_succeeds(server: CollectorServer, compression: Compression) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "my-cli"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("cli").start_as_current_span("command.run", attributes={"command": "deploy", "n": 2}):
        pass
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", compression=compression, timeout=5)

    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS

    (event,) = good_events(server, collector="otlp")
    assert (event["name"], event["tool"]) == ("command.run", "otlp")
    assert event["properties"] == {"command": "deploy", "n": 2}
    assert event["context"]["resource"]["service.name"] == "my-cli"
    assert len(event["context"]["traceId"]) == 32
    assert event["timestamp"].endswith("Z")


def test_official_metric_exporter_succeeds(server: CollectorServer) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("cli")
    meter.create_counter("commands").add(3, {"command": "build"})
    exporter = OTLPMetricExporter(endpoint=f"{server.url}/v1/metrics", timeout=5)

    result = exporter.export(reader.get_metrics_data())

    assert result.name == "SUCCESS"
    (event,) = good_events(server)
    assert event["name"] == "commands"
    assert event["properties"]["type"] == "sum"
    assert event["properties"]["dataPoints"][0]["attributes"] == {"command": "build"}


def test_json_encoding_is_answered_in_json(server: CollectorServer) -> None:
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeLogs": [
                    {"logRecords": [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": "hello"}}]}
                ],
            }
        ]
    }
    response = requests.post(f"{server.url}/v1/logs", json=body, timeout=5)
    assert (response.status_code, response.json()) == (200, {})
    (event,) = good_events(server)
    assert (event["name"], event["properties"]["body"], event["timestamp"]) == (
        "log",
        "hello",
        "2023-11-14T22:13:20.000Z",
    )


def _werf_request(**overrides: object) -> bytes:
    attributes: dict[str, object] = {
        "ts": 1658231825280,
        "executionID": "2f75d020-684e-4224-9013-35e95e1b7721",
        "userID": "0c3b5b2e-user",
        "projectID": "b4c2d019070529344a6967d8c73d578101c6554fcdcae3d00bb93a9692523cb1",
        "command": "werf converge",
        "eventType": "CommandStarted",
        "eventData": json.dumps({"commandOptions": [{"name": "repo", "asCli": False, "asEnv": False, "count": 0}]}),
        "attributes": json.dumps({"arch": "amd64", "os": "linux", "version": "dev", "ci": True, "ciName": "gitlab"}),
        "schemaVersion": 2,
    }
    attributes.update(overrides)
    message = ExportTraceServiceRequest()
    span = message.resource_spans.add().scope_spans.add().spans.add()
    span.name = "telemetry.werf.io"
    span.trace_id = bytes(range(16))
    span.span_id = bytes(range(8))
    for key, value in attributes.items():
        if value is None:
            continue
        any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))
        span.attributes.append(KeyValue(key=key, value=any_value))
    return message.SerializeToString()


@pytest.mark.parametrize("host", ["telemetry.werf.io", None])
def test_werf_spans_become_werf_events(server: CollectorServer, host: str | None) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    if host:
        headers["Host"] = host
    response = requests.post(f"{server.url}/v1/traces", data=_werf_request(), headers=headers, timeout=5)
    assert (response.status_code, response.content, response.headers["Content-Type"]) == (
        200,
        b"",
        "application/x-protobuf",
    )
    (event,) = good_events(server, tool="werf")
    assert event["collector"] == ("werf" if host else "otlp")
    assert (event["name"], event["distinct_id"], event["timestamp"]) == (
        "CommandStarted",
        "0c3b5b2e-user",
        "2022-07-19T11:57:05.280Z",
    )
    assert event["properties"]["eventData"]["commandOptions"][0]["name"] == "repo"
    assert event["properties"]["attributes"]["ciName"] == "gitlab"
    assert event["properties"]["projectID"].startswith("b4c2d0")
    assert event["context"]["traceId"] == bytes(range(16)).hex()


def test_werf_host_routes_to_the_werf_emulator() -> None:
    request = Request.from_url("POST", "https://telemetry.werf.io/v1/traces", {}, b"")
    collector = find_collector(request)
    assert collector is not None and collector.name == "werf"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"eventData": "{not json"}, "werf attribute eventData is not a JSON string"),
        ({"command": None}, "werf span 'telemetry.werf.io' lacks attributes command"),
    ],
)
def test_werf_spans_breaking_the_schema_are_bad(
    server: CollectorServer, overrides: dict[str, object], reason: str
) -> None:
    body = _werf_request(**overrides)
    headers = {"Content-Type": "application/x-protobuf", "Host": "telemetry.werf.io"}
    response = requests.post(f"{server.url}/v1/traces", data=body, headers=headers, timeout=5)
    assert response.status_code == 200  # an OTLP receiver accepts what it can parse
    assert bad_reasons(server) == [reason]


def test_garbage_protobuf_gets_400_with_a_status(server: CollectorServer) -> None:
    headers = {"Content-Type": "application/x-protobuf"}
    response = requests.post(f"{server.url}/v1/traces", data=b"\xff\xff\xff", headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.content.startswith(b"\x08\x03\x12")  # google.rpc.Status{code: INVALID_ARGUMENT, message}
    assert bad_reasons(server)[0].startswith("invalid protobuf ExportTraceServiceRequest")


def test_unsupported_content_type_gets_415(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/v1/traces", data=b"x", headers={"Content-Type": "text/plain"}, timeout=5)
    assert response.status_code == 415


@pytest.mark.parametrize(
    "document",
    [
        {"resourceSpans": [1]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [None]}]}]},
        {"resourceSpans": {"a": 1}},
        {"resourceSpans": [{"resource": [], "scopeSpans": []}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"intValue": "x"}}]}]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {
            "arrayValue": {"values": [1]}}}]}]}]}]},
    ],
)
def test_malformed_otlp_json_is_400_with_a_status_not_a_crash(server: CollectorServer, document: object) -> None:
    response = requests.post(f"{server.url}/v1/traces", json=document, timeout=5)
    assert response.status_code == 400
    status = response.json()
    assert status["code"] == 3 and status["message"]
    assert len(inspect(server, "bad", collector="otlp")) == 1


def test_rejected_spans_are_reported_in_partial_success(server: CollectorServer) -> None:
    """A werf-looking span that breaks werf's schema is rejected; the valid span is kept (spec: partial_success)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    broken = {"name": "werf", "attributes": [{"key": "eventType", "value": {"stringValue": "x"}},
                                             {"key": "executionID", "value": {"stringValue": "1"}}]}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "fine"}, broken]}]}]}
    response = requests.post(f"{server.url}/v1/traces", json=document, timeout=5)
    assert response.status_code == 200
    answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 1
    assert "lacks attributes" in answer.partial_success.error_message
    assert [e["name"] for e in good_events(server)] == ["fine"]
    (bad,) = inspect(server, "bad", collector="otlp")
    assert bad["event"]["name"] == "werf" and bad["event"]["raw"] == broken


def test_oversized_otlp_body_is_413_with_a_status(server: CollectorServer) -> None:
    body = b'{"resourceSpans":[],"pad":"' + b"x" * (20 * 1024 * 1024) + b'"}'
    response = requests.post(f"{server.url}/v1/traces", data=body, headers={"Content-Type": "application/json"},
                             timeout=30)
    assert response.status_code == 413
    assert response.json()["code"] == 8


def _spans(*attribute_sets: dict[str, object]) -> list[object]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "my-cli"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cli")
    for index, attributes in enumerate(attribute_sets):
        with tracer.start_as_current_span(f"span-{index}", attributes=attributes):  # type: ignore[arg-type]
            pass
    return list(memory.get_finished_spans())


def test_official_exporter_treats_partial_success_as_success(server: CollectorServer) -> None:
    """Rejected spans are reported in `partial_success`; the spec says not to retry, and the exporter does not."""
    spans = _spans({"command": "ok"}, {"eventType": "CommandStarted", "executionID": "1"})
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=5)
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # type: ignore[arg-type]
    assert [e["name"] for e in good_events(server)] == ["span-0"]
    (bad,) = inspect(server, "bad", collector="otlp")
    assert bad["event"]["name"] == "span-1" and "lacks attributes" in bad["reason"]


def test_official_exporter_gives_up_on_a_413(server: CollectorServer, caplog: pytest.LogCaptureFixture) -> None:
    """A batch over the 20 MiB body limit: 413 is not retryable, so the exporter reports failure once."""
    spans = _spans({"blob": "x" * (21 * 1024 * 1024)})
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=30)
    assert exporter.export(spans) == SpanExportResult.FAILURE  # type: ignore[arg-type]
    assert any("413" in record.getMessage() for record in caplog.records)
    (bad,) = inspect(server, "bad", collector="otlp")
    assert bad["request"]["status"] == 413
