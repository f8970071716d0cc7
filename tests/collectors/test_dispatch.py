"""The one offline dispatcher: emulator by protocol, truthful rows, failures recorded, decoding done once."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import telemetry_audit.decoders as decoders_module
from telemetry_audit.collectors import COLLECTORS, COLLECTORS_BY_NAME
from telemetry_audit.collectors.base import TRANSPARENT_GIF, CollectorResponse
from telemetry_audit.collectors.dispatch import BLOCKED_REASON, NO_EMULATOR_REASON, dispatch
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import DecodedRequest, decode_request
from telemetry_audit.model import Request

from .conftest import CollectorServer, capture_request, decoded

SPAN_REQUEST = ExportTraceServiceRequest()
_span = SPAN_REQUEST.resource_spans.add().scope_spans.add().spans.add()
_span.name = "deploy"
_span.trace_id = bytes(range(16))
_span.span_id = bytes(range(8))
OTLP_PROTOBUF = SPAN_REQUEST.SerializeToString()
ENVELOPE = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://pub@sentry.acme.com/3"}\n' \
           b'{"type":"event"}\n{"message":"hi","user":{"id":"u1"}}\n'
OTLP_JSON = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s","traceId":"0a"}]}]}]}'
AMPLITUDE_BATCH = b'{"api_key":"k","events":[{"event_type":"e","device_id":"device-1"}]}'
POSTHOG_BATCH = json.dumps({"api_key": "phc_x", "batch": [{"event": "cli", "distinct_id": "d"}]}).encode()


@pytest.fixture
def store() -> EventStore:
    return EventStore()


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "collector", "content_type"),
    [
        # Self-hosted collectors: no vendor host, so path and payload shape pick the protocol.
        ("POST", "https://otel.acme.com/v1/traces", {"Content-Type": "application/x-protobuf"}, OTLP_PROTOBUF,
         "otlp", "application/x-protobuf"),
        ("POST", "https://otel.acme.com/otlp/v1/traces", {"Content-Type": "application/json"}, OTLP_JSON,
         "otlp", "application/json"),
        ("POST", "https://sentry.acme.com/api/3/envelope/", {"Content-Type": "application/x-sentry-envelope"},
         ENVELOPE, "sentry", "application/json"),
        ("POST", "https://ph.acme.com/batch/", {"Content-Type": "application/json"}, POSTHOG_BATCH, "posthog",
         "application/json"),
        ("GET", "https://sp.acme.com/i?e=pv&tv=py-1&url=http%3A%2F%2Fx", {}, b"", "snowplow", "image/gif"),
        ("GET", "https://sp.acme.com/com.snowplowanalytics.snowplow/tp2?e=pv&tv=py-1", {}, b"", "snowplow",
         "image/gif"),
        ("POST", "https://seg.acme.com/v1/batch", {"Content-Type": "application/json"},
         b'{"batch":[{"type":"track","userId":"u","event":"e"}]}', "segment", "application/json"),
        # A vendor's own host wins over the path: `/batch` on Amplitude's host is Amplitude's.
        ("POST", "https://api2.amplitude.com/batch", {}, AMPLITUDE_BATCH, "amplitude",
         "application/json"),
    ],
)
def test_the_emulator_is_chosen_by_protocol(
    store: EventStore, method: str, url: str, headers: dict[str, str], body: bytes, collector: str,
    content_type: str,
) -> None:
    answer = dispatch(decoded(method, url, headers, body), store)
    assert (answer.collector, answer.status) == (collector, 200)
    assert dict(answer.headers)["Content-Type"] == content_type
    assert store.counts()["bad"] == 0, store.bad()
    assert store.good(collector=collector)


def test_otlp_protobuf_client_gets_a_protobuf_export_response(store: EventStore) -> None:
    answer = dispatch(decoded("POST", "https://otel.acme.com/v1/traces",
                              {"Content-Type": "application/x-protobuf"}, OTLP_PROTOBUF), store)
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer.body)
    assert not response.HasField("partial_success")
    (event,) = store.good()
    assert (event.name, event.context["traceId"]) == ("deploy", bytes(range(16)).hex())


def test_snowplow_pixel_answers_the_gif_on_any_host(store: EventStore) -> None:
    answer = dispatch(decoded("GET", "https://sp.acme.com/i?e=pv&tv=py-1"), store)
    assert answer.body == TRANSPARENT_GIF


def test_a_partly_valid_segment_batch_stores_good_and_bad_with_collector_and_tool(store: EventStore) -> None:
    body = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", "event": "x"}]})
    answer = dispatch(decoded("POST", "https://api.segment.io/v1/batch", {}, body.encode()), store)
    assert answer.status == 200
    (good,) = store.good(collector="segment")
    (bad,) = store.bad(collector="segment")
    assert (good.name, good.tool) == ("ok", "segment")
    assert (bad.name, bad.tool, bad.reason) == ("x", "segment", "batch[1]: userId or anonymousId is required")
    assert bad.raw == {"type": "track", "event": "x"}
    assert [r.reason for r in answer.rejected] == [bad.reason]


def test_a_rejected_request_is_found_by_collector(store: EventStore) -> None:
    dispatch(decoded("POST", "https://us.i.posthog.com/batch/", {}, b'{"batch": [{"event": "x"}]}'), store)
    (bad,) = store.bad(collector="posthog")
    assert (bad.tool, bad.good) == ("posthog", False)
    assert bad.reason is not None and bad.reason.startswith("API key not provided")
    assert bad.request_meta["status"] == 401 and bad.request_meta["collector"] == "posthog"


class _Exploding:
    """Stands in for a buggy emulator: `handle` raises."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("url", "headers", "expected_status", "expected_body"),
    [
        ("https://us.i.posthog.com/batch/", {}, 500, {"type": "server_error", "code": "server_error",
                                                     "detail": "A server error occurred.", "attr": None}),
        ("https://o1.ingest.sentry.io/api/1/envelope/", {}, 500, {"detail": "internal server error"}),
        ("https://api.segment.io/v1/batch", {}, 500, {"error": "internal server error"}),
        ("https://api.honeycomb.io/v1/traces", {"Content-Type": "application/json"}, 500,
         {"code": 13, "message": "internal error"}),
    ],
)
def test_an_emulator_failure_is_a_vendor_server_error_and_recorded(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, url: str, headers: dict[str, str],
    expected_status: int, expected_body: dict[str, Any],
) -> None:
    import telemetry_audit.collectors as collectors

    request = decoded("POST", url, headers, b"{}")
    patched = tuple(_Exploding(c) if c.matches(request.request) else c for c in COLLECTORS)  # type: ignore[arg-type]
    monkeypatch.setattr(collectors, "COLLECTORS", patched)
    answer = dispatch(request, store)
    assert (answer.status, json.loads(answer.body)) == (expected_status, expected_body)
    (bad,) = store.bad()
    assert bad.reason == "emulator error: RuntimeError: boom"
    assert bad.collector == answer.collector and bad.collector is not None


def test_a_blocked_request_gets_the_vendors_success_and_one_bad_row(store: EventStore) -> None:
    body = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "ok"}]}).encode()
    answer = dispatch(decoded("POST", "https://api.segment.io/v1/batch", {}, body), store,
                      decision={"decision": "block"}, blocked=True)
    assert (answer.status, json.loads(answer.body)) == (200, {"success": True})
    assert answer.accepted == ()
    assert store.good() == []
    (bad,) = store.bad(collector="segment")
    assert (bad.reason, bad.decision) == (BLOCKED_REASON, {"decision": "block"})


def test_a_blocked_request_the_emulator_would_refuse_gets_a_generic_success(store: EventStore) -> None:
    answer = dispatch(decoded("POST", "https://us.i.posthog.com/batch/", {}, b"{not json"), store, blocked=True)
    assert (answer.status, answer.body) == (200, b"{}")
    assert [r.reason for r in store.bad()] == [BLOCKED_REASON]


def test_a_blocked_request_nobody_emulates_is_still_recorded_as_blocked(store: EventStore) -> None:
    answer = dispatch(decoded("POST", "https://telemetry.example.org/x", {}, b"{}"), store, blocked=True)
    assert (answer.status, answer.body, answer.collector) == (200, b"{}", None)
    assert [r.reason for r in store.bad()] == [BLOCKED_REASON]


@pytest.mark.parametrize(("not_found", "status"), [(False, 200), (True, 404)])
def test_no_emulator(store: EventStore, not_found: bool, status: int) -> None:
    answer = dispatch(decoded("POST", "https://telemetry.example.org/collect-it", {}, b"{}"), store,
                      not_found=not_found)
    assert (answer.status, answer.collector) == (status, None)
    (bad,) = store.bad()
    assert bad.reason == (NO_EMULATOR_REASON if not not_found else "no collector emulates POST /collect-it")


@pytest.mark.parametrize(("url", "body"), [
    ("https://api.segment.io/v1/track", b'{"type":"track","userId":"u","event":"e"}'),
    ("https://ph.acme.com/batch/", POSTHOG_BATCH),
    ("https://telemetry.example.org/x", b"{}"),
])
def test_a_collector_picked_by_the_caller_answers_and_stores_as_one_picked_here(url: str, body: bytes) -> None:
    from telemetry_audit.collectors import find_collector

    request = decoded("POST", url, {"Content-Type": "application/json"}, body)
    here, handed = EventStore(), EventStore()
    mine = dispatch(request, here)
    theirs = dispatch(request, handed, collector=find_collector(request, by_path=True))
    assert (theirs.status, theirs.body, theirs.collector, theirs.tool) == (mine.status, mine.body, mine.collector,
                                                                         mine.tool)
    assert [(r.good, r.collector, r.name, r.raw, r.reason) for r in handed.all()] == [
        (r.good, r.collector, r.name, r.raw, r.reason) for r in here.all()]


def test_the_collector_handed_in_is_the_one_that_answers(store: EventStore) -> None:
    """The proxy hands dispatch the emulator it already picked for the record: dispatch must not pick again."""
    request = decoded("POST", "https://api.segment.io/v1/track", {}, b'{"type":"track","userId":"u","event":"e"}')
    answer = dispatch(request, store, collector=COLLECTORS_BY_NAME["serverless-v1"])
    assert answer.collector == "serverless-v1"
    assert [e.collector for e in store.good()] == ["serverless-v1"]


# --- decode once ---------------------------------------------------------------------------------------------


def test_emulators_read_the_decoded_body_and_never_decompress(store: EventStore) -> None:
    """The raw body is gzip that is corrupt: only an emulator that decompressed again would see it."""
    request = Request.from_url("POST", "https://api.segment.io/v1/batch", {"Content-Encoding": "gzip"},
                               b"\x1f\x8b\x08\x00corrupt")
    plain = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "from-plain-body"}]}).encode()
    handed = DecodedRequest(request=request, body_format="json", plain_body=plain, text=plain.decode())
    answer = dispatch(handed, store)
    assert answer.status == 200
    assert [e.name for e in store.good()] == ["from-plain-body"]


@pytest.mark.parametrize("collector", COLLECTORS, ids=lambda c: c.name)
def test_no_emulator_decompresses(monkeypatch: pytest.MonkeyPatch, collector: Any) -> None:
    """Count the core decompressor's calls: decoding calls it once, the emulator never."""
    calls: list[tuple[str, ...]] = []
    real = decoders_module.decompress_partial

    def counting(data: bytes, encodings: tuple[str, ...], limit: int) -> Any:
        calls.append(tuple(encodings))
        return real(data, encodings, limit)

    monkeypatch.setattr(decoders_module, "decompress_partial", counting)
    body = gzip.compress(json.dumps({"batch": [], "events": [], "api_key": "k"}).encode())
    host = collector.hosts[0].replace("*.", "x.")
    request = Request.from_url("POST", f"https://{host}/v1/traces", {"Content-Encoding": "gzip",
                                                                     "Content-Type": "application/json"}, body)
    handed = decode_request(request)
    assert calls == [("gzip",)]
    response = collector.handle(handed)
    assert isinstance(response, CollectorResponse)
    assert calls == [("gzip",)]


PARSED_BY_THE_ENGINE = [
    # (what, request): a JSON body each emulator reads through `_decoding.json_body`.
    ("segment", Request.from_url("POST", "https://api.segment.io/v1/batch", {"Content-Type": "application/json"},
                                 json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e"}]}).encode())),
    ("amplitude", Request.from_url("POST", "https://api2.amplitude.com/2/httpapi", {}, json.dumps(
        {"api_key": "k", "events": [{"event_type": "e", "device_id": "device-1"}]}).encode())),
    ("snowplow", Request.from_url("POST", "https://c.snplow.net/com.snowplowanalytics.snowplow/tp2",
                                  {"Content-Type": "application/json"}, json.dumps({
                                      "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                                      "data": [{"e": "pv", "eid": "e1", "p": "srv", "tv": "py-1.0"}]}).encode())),
    ("posthog", capture_request("sst-v4.17.1-posthog-batch")),
    ("sst", capture_request("sst-v2.49.8-CLI_COMMAND")),
    ("serverless", capture_request("serverless3-01")),
    ("localstack", capture_request("localstack-session")),
    ("ga4", Request.from_url("POST", "https://www.google-analytics.com/mp/collect?measurement_id=G-1&api_secret=s",
                             {"Content-Type": "application/json"}, json.dumps(
                                 {"client_id": "c1", "events": [{"name": "run", "params": {"n": 1}}]}).encode())),
    ("mixpanel", Request.from_url("POST", "https://api.mixpanel.com/track", {"Content-Type": "application/json"},
                                  json.dumps([{"event": "run", "properties": {"token": "t", "distinct_id": "d",
                                                                             "time": 1700000000}}]).encode())),
]


@pytest.mark.parametrize("request_", [r for _, r in PARSED_BY_THE_ENGINE], ids=[w for w, _ in PARSED_BY_THE_ENGINE])
def test_emulators_take_the_json_document_the_engine_parsed(monkeypatch: pytest.MonkeyPatch, request_: Request,
                                                            tmp_path: Any) -> None:
    """The same answer and rows as parsing the body again, which never happens: the parser is made to fail."""
    from telemetry_audit.collectors import _decoding

    with EventStore(tmp_path / "a.sqlite") as parsed_again:
        expected = dispatch(_with_tree_opened(decode_request(request_)), parsed_again)
        expected_rows = [(e.name, e.properties, e.raw) for e in parsed_again.all()]

    def refuse(data: Any) -> Any:
        raise AssertionError("the emulator parsed the JSON body again")

    monkeypatch.setattr(_decoding, "json_loads", refuse)
    with EventStore(tmp_path / "b.sqlite") as store:
        answer = dispatch(decode_request(request_), store)
        assert (answer.status, _timeless(answer.body)) == (expected.status, _timeless(expected.body))
        assert [(e.name, e.properties, e.raw) for e in store.all()] == expected_rows
    assert answer.status in (200, 202, 204) and expected_rows


def _timeless(body: bytes) -> Any:
    """An answer without the server's clock (Amplitude's `server_upload_time`)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    return {k: v for k, v in document.items() if k != "server_upload_time"} if isinstance(document, dict) else body


def _with_tree_opened(decoded: DecodedRequest) -> DecodedRequest:
    decoded.tree_opened = True  # the emulator must parse the body itself
    return decoded


@pytest.mark.parametrize(("bom", "charset"), [(b"\xef\xbb\xbf", "utf-8"), (b"", "utf-16-le")])
def test_a_body_that_is_not_plain_utf8_is_refused_as_the_vendor_would(bom: bytes, charset: str) -> None:
    """The decoder reads a byte-order mark and UTF-16 to inspect them; Segment's JSON parser does not."""
    body = bom + json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e"}]}).encode(charset)
    handed = decode_request(Request.from_url("POST", "https://api.segment.io/v1/batch",
                                             {"Content-Type": "application/json"}, body))
    assert handed.body_format == "json" and handed.json_document() is None
    with EventStore() as store:
        assert dispatch(handed, store).status == 400
        assert store.good() == []


def test_a_tree_the_fields_opened_is_not_handed_to_emulators() -> None:
    """Reading the fields opens a string holding JSON in place; the emulator stores the string as sent."""
    inner = json.dumps({"cwd": "/home/alice/x"})
    body = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"p": inner}}]})
    handed = decode_request(Request.from_url("POST", "https://api.segment.io/v1/batch",
                                             {"Content-Type": "application/json"}, body.encode()))
    assert handed.json_document() is handed.body_tree
    assert any(f.path.endswith("p.cwd") for f in handed.fields)
    assert handed.tree_opened and handed.json_document() is None
    with EventStore() as store:
        assert dispatch(handed, store).status == 200
        [event] = store.good()
    assert event.properties == {"p": inner}


def test_registry_names_match() -> None:
    assert set(COLLECTORS_BY_NAME) == {c.name for c in COLLECTORS}


# --- both adapters, one dispatcher -----------------------------------------------------------------------------

GITHUB_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"
SNOWPLOW_TP2 = json.dumps({
    "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    "data": [{"e": "pv", "eid": "e1", "url": "http://x/", "p": "srv", "tv": "py-1.0"}, {"e": "pv"}]}).encode()
SAME_REQUESTS = [
    # (protocol, method, host, path and query, headers, body): each answered by its emulator, some partly refused.
    ("segment", "POST", "api.segment.io", "/v1/batch", {"Content-Type": "application/json"},
     json.dumps({"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", "event": "x"}]})),
    ("segment-gzip", "POST", "api.segment.io", "/v1/track", {"Content-Type": "application/json",
                                                            "Content-Encoding": "gzip"},
     gzip.compress(b'{"type":"track","userId":"u","event":"zipped"}')),
    ("posthog", "POST", "us.i.posthog.com", "/batch/", {"Content-Type": "application/json"}, POSTHOG_BATCH),
    ("posthog-invalid", "POST", "us.i.posthog.com", "/batch/", {"Content-Type": "application/json"},
     json.dumps({"batch": [{"event": "x"}]})),
    ("mixpanel", "POST", "api.mixpanel.com", "/track?verbose=1", {"Content-Type": "application/json"},
     json.dumps([{"event": "a", "properties": {"token": "t", "distinct_id": "d"}}, {"event": "b", "properties": {}}])),
    ("otlp", "POST", "api.honeycomb.io", "/v1/traces", {"Content-Type": "application/x-protobuf"}, OTLP_PROTOBUF),
    ("snowplow-tp2", "POST", "collector.acme.com", "/com.snowplowanalytics.snowplow/tp2",
     {"Content-Type": "application/json"}, SNOWPLOW_TP2),
    ("snowplow-pixel", "GET", "sp.acme.com", "/i?e=pv&tv=js-3.0&aid=site&url=http%3A%2F%2Fx", {}, b""),
    ("sentry", "POST", "o1.ingest.sentry.io", "/api/3/envelope/?sentry_key=pub",
     {"Content-Type": "application/x-sentry-envelope"}, ENVELOPE),
    ("segment-secret", "POST", "api.segment.io", "/v1/track", {"Content-Type": "application/json"},
     json.dumps({"type": "track", "userId": "u", "event": "e", "properties": {"t": GITHUB_TOKEN}})),
    ("mixpanel-people", "POST", "api.mixpanel.com", "/engage", {"Content-Type": "application/x-www-form-urlencoded"},
     "data=" + json.dumps([{"$token": "t", "$distinct_id": "user-1", "$set": {"plan": "free"}}])),
    ("ga4", "POST", "www.google-analytics.com", "/mp/collect?measurement_id=G-1&api_secret=s",
     {"Content-Type": "application/json"}, json.dumps({"client_id": "c", "events": [{"name": "deploy"}]})),
]
VARIES = {"id", "received_at"}
"""Fields that differ between any two stores: the row id and the arrival time."""


@pytest.fixture(scope="module")
def proxies(collector_confdir: Any) -> Any:
    """`telemetry-audit proxy` as `run` starts it (offline, the default policy), in each mode."""
    from telemetry_audit.proxy.settings import ProxySettings
    from telemetry_audit.session import ProxySession

    with ProxySession(ProxySettings(mode="enforce"), confdir=str(collector_confdir)) as enforcing, \
            ProxySession(ProxySettings(mode="audit"), confdir=str(collector_confdir)) as auditing:
        yield {"enforce": enforcing, "audit": auditing}


@pytest.fixture(scope="module")
def enforcing_collector(collector_confdir: Any) -> Any:
    """`telemetry-audit collector --mode enforce` (the shared `server` is the default, audit mode)."""
    with CollectorServer(collector_confdir, mode="enforce") as srv:
        yield srv


def _rows(micro: str, proxies: dict[str, str] | None) -> list[dict[str, Any]]:
    """Good then bad rows, oldest first, without what varies; the request's URL keeps its path only (the proxy
    received https://vendor/..., the collector http://vendor/...)."""
    import requests

    rows = []
    for kind in ("good", "bad"):
        listing = requests.get(f"{micro}/micro/{kind}", proxies=proxies, timeout=10).json()
        for row in reversed(listing):
            request_meta = {**row["request"], "url": row["request"]["url"].split("/", 3)[3]}
            rows.append({**{k: v for k, v in row.items() if k not in VARIES}, "request": request_meta})
    return rows


@pytest.mark.parametrize("mode", ["audit", "enforce"])
@pytest.mark.parametrize(("method", "host", "target", "headers", "body"),
                         [case[1:] for case in SAME_REQUESTS], ids=[case[0] for case in SAME_REQUESTS])
def test_the_proxy_and_the_standalone_collector_answer_and_store_the_same(
    proxies: dict[str, Any], server: CollectorServer, enforcing_collector: CollectorServer, collector_confdir: Any,
    mode: str, method: str, host: str, target: str, headers: dict[str, str], body: str | bytes,
) -> None:
    """The same request through `proxy` (HTTPS to the vendor's host) and to the standalone collector (plain HTTP,
    the Host header naming the vendor), both in `mode`: the same answer, the same stored rows with the same
    decision (in enforce mode a redacted request is stored redacted, a blocked one as "blocked by policy")."""
    import requests

    from telemetry_audit.proxy.ca import CA_CERT_NAME

    proxy, collector = proxies[mode], server if mode == "audit" else enforcing_collector
    inspect_via_proxy = {"http": proxy.url}
    requests.get("http://telemetry-audit.local/micro/reset", proxies=inspect_via_proxy, timeout=10)
    requests.get(f"{collector.url}/micro/reset", timeout=10)
    content = body if isinstance(body, bytes) else body.encode()
    sent = {**headers, "User-Agent": "same-client/1"}
    through_proxy = requests.request(method, f"https://{host}{target}", data=content, headers=sent, timeout=10,
                                     proxies={"https": proxy.url}, verify=str(collector_confdir / CA_CERT_NAME))
    standalone = requests.request(method, f"{collector.url}{target}", data=content,
                                  headers={**sent, "Host": host}, timeout=10)

    assert (standalone.status_code, standalone.headers.get("Content-Type"), standalone.content) == (
        through_proxy.status_code, through_proxy.headers.get("Content-Type"), through_proxy.content)
    proxy_rows = _rows("http://telemetry-audit.local", inspect_via_proxy)
    assert proxy_rows, "the proxy stored nothing: the request was not answered by an emulator"
    assert _rows(collector.url, None) == proxy_rows


@pytest.mark.parametrize(("case", "good", "reason"),
                         [("segment-secret", False, BLOCKED_REASON), ("segment", True, None)])
def test_the_enforcing_collector_blocks_as_the_proxy_does(enforcing_collector: CollectorServer, case: str,
                                                          good: bool, reason: str | None) -> None:
    """What the table above compares in enforce mode is the policy acting: a secret's request is answered with the
    emulator's success and kept as one bad row, its body nowhere."""
    import requests

    (_, method, host, target, headers, body), = [c for c in SAME_REQUESTS if c[0] == case]
    requests.get(f"{enforcing_collector.url}/micro/reset", timeout=10)
    answer = requests.request(method, f"{enforcing_collector.url}{target}", data=body,
                              headers={**headers, "Host": host}, timeout=10)
    assert answer.json() == {"success": True}
    rows = _rows(enforcing_collector.url, None)
    assert (rows[0]["good"], rows[0]["reason"]) == (good, reason)
    assert GITHUB_TOKEN[4:] not in json.dumps(rows)  # a finding's preview keeps the prefix alone


def test_a_blocked_request_leaves_nothing_of_its_body_in_the_store(store: EventStore) -> None:
    token = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"
    request = Request.from_url("POST", "https://api.segment.io/v1/track", {"Content-Type": "application/json"},
                               json.dumps({"type": "track", "event": "x", "userId": "u", "t": token}).encode())
    dispatch(decode_request(request), store, blocked=True)
    rows = json.dumps([e.to_dict() for e in store.all()])
    assert BLOCKED_REASON in rows and token not in rows


@pytest.mark.parametrize(
    ("url", "collector"),
    [
        ("https://sp.example.com/i?e=pv&tv=js-3.0&aid=site&url=x", "snowplow"),
        ("https://collect.example.com/com.snowplowanalytics.snowplow/tp2?e=se&tv=py-1.0", "snowplow"),
    ],
)
def test_self_hosted_pixels_are_telemetry_and_reach_their_emulator(url: str, collector: str) -> None:
    from telemetry_audit.endpoints import is_telemetry

    request = Request.from_url("GET", url)
    assert is_telemetry(request)
    answer = dispatch(decode_request(request), None)
    assert answer.collector == collector and 200 <= answer.status < 300
    assert not is_telemetry(Request.from_url("GET", "https://cdn.example.com/i?size=2"))  # just a path named /i
