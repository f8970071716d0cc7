"""No emulator raises on hostile input: property tests over every emulator and the dispatcher."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_audit.collectors import COLLECTORS
from telemetry_audit.collectors.base import CollectorResponse
from telemetry_audit.collectors.dispatch import dispatch
from telemetry_audit.collectors.lzstring import decompress_from_base64
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import decode_request
from telemetry_audit.model import Request

PATHS = [
    "/v1/batch", "/v1/track", "/batch/", "/batch", "/e/", "/i/v0/e/", "/i/v0/ai/batch/", "/flags/", "/decide/",
    "/flags/definitions", "/track", "/engage", "/groups", "/import", "/2/httpapi", "/mp/collect",
    "/debug/mp/collect", "/g/collect", "/collect", "/com.snowplowanalytics.snowplow/tp2", "/i",
    "/com.snowplowanalytics.iglu/v1", "/com.acme/v1", "/api/1/envelope/", "/api/1/store/", "/v2/track",
    "/v1/traces", "/v1/metrics", "/v1/logs", "/v1/session", "/v1/events", "/events", "/",
    "/api/events/publish/bulk", "/api/framework/track",
]
CONTENT_TYPES = [
    "", "application/json", "application/x-protobuf", "application/x-www-form-urlencoded",
    "application/x-ndjson", "application/x-sentry-envelope", "text/plain",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# Keys the emulators look for, so generated documents reach deep into each protocol's handling.
KEYS = st.sampled_from([
    "batch", "events", "event", "type", "userId", "anonymousId", "distinct_id", "properties", "token", "$token",
    "api_key", "event_type", "user_id", "device_id", "time", "client_id", "name", "params", "schema", "data",
    "resourceSpans", "scopeSpans", "spans", "resourceMetrics", "scopeMetrics", "metrics", "dataPoints", "sum",
    "resourceLogs", "scopeLogs", "logRecords", "attributes", "key", "value", "arrayValue", "kvlistValue",
    "values", "intValue", "body", "iKey", "baseType", "baseData", "e", "tv", "ue_pr", "ue_px", "co", "cx",
    "$set", "$distinct_id", "payload", "command", "options", "min_id_length", "context", "resource",
])
shaped = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["json", "bytes", "form", "base64", "gzip-in-body", "ndjson"]))
    if kind == "bytes":
        return bytes(draw(st.binary(max_size=200)))
    document = json.dumps(draw(shaped)).encode()
    if kind == "form":
        return b"data=" + base64.b64encode(document)
    if kind == "base64":
        return base64.b64encode(document)
    if kind == "gzip-in-body":
        return gzip.compress(document)
    if kind == "ndjson":
        return document + b"\n" + json.dumps(draw(shaped)).encode() + b"\n" + document
    return document


@st.composite
def requests(draw: Any) -> Request:
    collector = draw(st.sampled_from(COLLECTORS))
    host = draw(st.sampled_from([*collector.hosts, "127.0.0.1", "otel.acme.com"])).replace("*.", "x.")
    path = draw(st.sampled_from(PATHS))
    query = draw(st.lists(st.tuples(st.sampled_from(["data", "verbose", "compression", "e", "tv", "schema",
                                                     "api_secret", "measurement_id", "en", "v", "tid", "cid"]),
                                    st.text(max_size=20)), max_size=4))
    headers = [("Content-Type", draw(st.sampled_from(CONTENT_TYPES)))]
    if draw(st.booleans()):
        headers.append(("Authorization", draw(st.sampled_from(["Basic eDo=", "Bearer x", "", "Basic"]))))
    if draw(st.booleans()):
        headers.append(("Content-Encoding", draw(st.sampled_from(["gzip", "br", "deflate", "zstd", "x"]))))
    method = draw(st.sampled_from(["POST", "GET", "PUT", "HEAD"]))
    return Request(method, "https", host, 443, path, tuple(query), tuple(headers), draw(bodies()))


# Valid requests of each protocol; the mutated strategy below breaks them one subtree at a time, so the
# emulators' deep paths (per-event checks, partial success, schema parsing) meet hostile values too.
SEEDS: list[tuple[str, str, dict[str, Any]]] = [
    ("api.segment.io", "/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "e",
                                                "properties": {"a": 1}, "context": {"x": 1}}]}),
    ("us.i.posthog.com", "/batch/", {"api_key": "phc", "batch": [{"event": "e", "distinct_id": "d",
                                                                  "properties": {"$lib": "x"}}]}),
    ("us.i.posthog.com", "/flags/", {"api_key": "phc", "distinct_id": "d"}),
    ("api.mixpanel.com", "/track", [{"event": "e", "properties": {"token": "t", "distinct_id": "d", "time": 1}}]),
    ("api.mixpanel.com", "/engage", [{"$token": "t", "$distinct_id": "d", "$set": {"a": 1}}]),
    ("api2.amplitude.com", "/2/httpapi", {"api_key": "key", "events": [{"event_type": "e", "device_id": "dddddd",
                                                                        "time": 1, "event_properties": {}}],
                                          "options": {"min_id_length": 1}}),
    ("www.google-analytics.com", "/mp/collect", {"client_id": "c", "events": [{"name": "e", "params": {"p": 1}}]}),
    ("c.acme.com", "/com.snowplowanalytics.snowplow/tp2", {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [{"e": "ue", "tv": "t", "ue_pr": json.dumps({"data": {"schema": "iglu:a/b/jsonschema/1-0-0",
                                                                         "data": {"x": 1}}}),
                  "co": json.dumps({"data": [{"schema": "iglu:c/d/jsonschema/1-0-0", "data": {}}]})}]}),
    ("dc.services.visualstudio.com", "/v2/track", [{"name": "n", "time": "t",
                                                    "iKey": "00000000-0000-0000-0000-000000000000",
                                                    "data": {"baseType": "EventData", "baseData": {"name": "e"}}}]),
    ("api.honeycomb.io", "/v1/traces", {"resourceSpans": [{"resource": {"attributes": [
        {"key": "k", "value": {"arrayValue": {"values": [{"kvlistValue": {"values": [
            {"key": "a", "value": {"intValue": "1"}}]}}]}}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [{"name": "x", "traceId": "0a", "attributes": [
            {"key": "eventType", "value": {"stringValue": "e"}},
            {"key": "executionID", "value": {"stringValue": "x"}}]}]}]}]}),
    ("api.honeycomb.io", "/v1/metrics", {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "m", "sum": {"dataPoints": [{"asInt": "1", "attributes": []}]}}]}]}]}),
    ("api.honeycomb.io", "/v1/logs", {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "b"}, "attributes": []}]}]}]}),
    ("analytics.localstack.cloud", "/v1/events", {"events": [{"name": "e", "payload": {"machine_id": "m"},
                                                              "metadata": {"client_time": "t"}}]}),
    ("core.serverless.com", "/api/events/publish/bulk", {"events": [{"source": "s", "event": {"event": "e"}}]}),
    ("telemetry.sst.dev", "/events", {"context": {}, "environment": {}, "events": [{"name": "e"}]}),
    ("o1.ingest.sentry.io", "/api/1/store/", {"event_id": "e1", "message": "m", "user": {"id": "u"},
                                              "contexts": {"os": {"name": "linux"}}, "timestamp": 1}),
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)
    return copy


@st.composite
def mutated(draw: Any) -> Request:
    host, path, document = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_paths(document)))
        document = _replace(document, where, draw(shaped))
    content_type = "application/json"
    body = json.dumps(document).encode()
    if "mixpanel" in host and draw(st.booleans()):
        body, content_type = b"data=" + base64.b64encode(body), "application/x-www-form-urlencoded"
    query = (("measurement_id", "G-1"), ("api_secret", "s")) if "google" in host else ()
    headers = (("Content-Type", content_type), ("Authorization", "Basic eDo="), ("X-Sentry-Auth", "sentry_key=k"))
    return Request("POST", "https", host, 443, path, query, headers, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_no_emulator_raises_on_broken_valid_requests(request: Request) -> None:
    decoded = decode_request(request)
    for collector in COLLECTORS:
        response = collector.handle(decoded)
        assert isinstance(response, CollectorResponse)
        assert response.good or response.bad_reason or response.rejected


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_no_emulator_raises_on_hostile_input(request: Request) -> None:
    decoded = decode_request(request)
    for collector in COLLECTORS:
        response = collector.handle(decoded)
        assert isinstance(response, CollectorResponse)
        assert 100 <= response.status < 600
        assert response.good or response.bad_reason or response.rejected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_the_dispatcher_answers_and_records_every_request(request: Request) -> None:
    store = EventStore()
    answer = dispatch(decode_request(request), store)
    assert not [r for r in answer.rejected if r.reason.startswith("emulator error")]
    rows = store.all()
    assert len(rows) == len(answer.accepted) + len(answer.rejected)
    assert all(row.collector == answer.collector for row in rows)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=200))
def test_lz64_never_raises_anything_but_value_error(text: str) -> None:
    try:
        decompress_from_base64(text, max_chars=100_000)
    except ValueError:
        pass
