"""Every body format and encoding decodes to the expected fields, and re-encodes faithfully."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import telemetry_audit.decoders as decoders
from telemetry_audit.decoders import (
    DROP,
    UNREWRITABLE,
    DecodedRequest,
    DecodeError,
    DecodeLimits,
    decode_request,
    encode_body,
    rewrite_body,
    rewrite_values,
)
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Limits, Request
from telemetry_audit.policy import load_policy

EVENT = {"event": "cli.start", "properties": {"args": ["deploy", "--stage", "dev"], "cwd": "/home/alice/app"}}
EVENT_BYTES = json.dumps(EVENT).encode()


def fields_of(request: Request) -> dict[str, object]:
    decoded = decode_request(request)
    assert decoded.problems == [], decoded.problems
    return {f.path: f.value for f in decoded.fields}


def werf_otlp_body() -> bytes:
    """An ExportTraceServiceRequest shaped like werf's (JSON strings inside span attributes)."""
    attrs = [
        KeyValue(key="command", value=AnyValue(string_value="werf converge")),
        KeyValue(key="eventData", value=AnyValue(string_value=json.dumps({"exitCode": 1, "path": "/home/bob/x"}))),
        KeyValue(key="ts", value=AnyValue(int_value=1795334307)),
    ]
    span = Span(name="telemetry", trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attributes=attrs)
    message = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return message.SerializeToString()


SPAN = "resourceSpans[0].scopeSpans[0].spans[0]"

CASES = [
    ("json object", {"Content-Type": "application/json"}, EVENT_BYTES, {"properties.args[1]": "--stage"}),
    ("json array", {"Content-Type": "application/json"}, json.dumps([EVENT, EVENT]).encode(),
     {"[1].properties.cwd": "/home/alice/app"}),
    ("ndjson", {"Content-Type": "application/x-ndjson"}, EVENT_BYTES + b"\n" + EVENT_BYTES + b"\n",
     {"[1].event": "cli.start"}),
    ("ndjson sniffed", {"Content-Type": "text/plain"}, EVENT_BYTES + b"\n" + EVENT_BYTES,
     {"[0].properties.args[0]": "deploy"}),
    ("form", {"Content-Type": "application/x-www-form-urlencoded"}, b"event=start&user=alice%40example.com",
     {"user": "alice@example.com"}),
    ("form with base64 json (mixpanel data=)", {"Content-Type": "application/x-www-form-urlencoded"},
     b"data=" + base64.b64encode(EVENT_BYTES).replace(b"+", b"%2B").replace(b"=", b"%3D"),
     {"data.properties.cwd": "/home/alice/app"}),
    ("gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(EVENT_BYTES),
     {"event": "cli.start"}),
    ("deflate (zlib)", {"Content-Type": "application/json", "Content-Encoding": "deflate"}, zlib.compress(EVENT_BYTES),
     {"event": "cli.start"}),
    ("deflate (raw)", {"Content-Type": "application/json", "Content-Encoding": "deflate"},
     zlib.compress(EVENT_BYTES, wbits=-15) if False else zlib.compressobj(wbits=-15).compress(EVENT_BYTES)
     + b"", {}),
    ("br", {"Content-Type": "application/json", "Content-Encoding": "br"}, brotli.compress(EVENT_BYTES),
     {"event": "cli.start"}),
    ("zstd", {"Content-Type": "application/json", "Content-Encoding": "zstd"},
     zstandard.ZstdCompressor().compress(EVENT_BYTES), {"event": "cli.start"}),
    ("gzip without header (posthog-js)", {"Content-Type": "text/plain"}, gzip.compress(EVENT_BYTES),
     {"event": "cli.start"}),
    ("json inside a string", {"Content-Type": "application/json"},
     json.dumps({"attributes": json.dumps({"token": "x1", "nested": {"k": "v"}})}).encode(),
     {"attributes.token": "x1", "attributes.nested.k": "v"}),
    ("base64 json inside a string", {"Content-Type": "application/json"},
     json.dumps({"blob": base64.b64encode(EVENT_BYTES).decode()}).encode(), {"blob.properties.cwd": "/home/alice/app"}),
    ("whole body base64 json", {"Content-Type": "text/plain"}, base64.b64encode(EVENT_BYTES),
     {"properties.args[2]": "dev"}),
]


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


CASES[8] = ("deflate (raw)", {"Content-Type": "application/json", "Content-Encoding": "deflate"},
            _raw_deflate(EVENT_BYTES), {"event": "cli.start"})


@pytest.mark.parametrize(("name", "headers", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_body_formats_decode_to_fields(name: str, headers: dict[str, str], body: bytes,
                                       expected: dict[str, object]) -> None:
    fields = fields_of(Request.from_url("POST", "https://collector.test/e", headers, body))
    for path, value in expected.items():
        assert fields[path] == value


def test_headers_and_query_are_fields() -> None:
    request = Request.from_url(
        "GET", "https://api.mixpanel.com/track?api_key=k123&ip=1",
        {"Authorization": "Bearer abc", "Content-Length": "0", "X-Token": "t"},
    )
    fields = fields_of(request)
    assert fields["header.authorization"] == "Bearer abc"
    assert fields["query.api_key"] == "k123"
    assert "header.content-length" not in fields  # transport headers are not audited


def test_otlp_protobuf_spans_read_with_attribute_names_and_embedded_json() -> None:
    request = Request.from_url("POST", "https://telemetry.werf.io/v1/traces",
                               {"Content-Type": "application/x-protobuf"}, werf_otlp_body())
    fields = fields_of(request)
    assert fields[f"{SPAN}.attributes.command"] == "werf converge"
    assert fields[f"{SPAN}.attributes.eventData.path"] == "/home/bob/x"
    decoded = decode_request(request)
    generic = {f.generic_path for f in decoded.fields}
    assert "resourceSpans[].scopeSpans[].spans[].attributes.eventData.exitCode" in generic


def test_otlp_json() -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "s", "attributes": [
        {"key": "user", "value": {"stringValue": "alice"}}]}]}]}]}
    request = Request.from_url("POST", "http://127.0.0.1:4318/v1/traces", {"Content-Type": "application/json"},
                               json.dumps(body).encode())
    decoded = decode_request(request)
    assert decoded.body_format == "otlp-json"
    assert {f.path: f.value for f in decoded.fields}[f"{SPAN}.attributes.user"] == "alice"


@pytest.mark.parametrize(
    ("name", "headers", "body", "reason"),
    [
        ("broken json", {"Content-Type": "application/json"}, b'{"a": ', "invalid JSON"),
        ("broken gzip", {"Content-Encoding": "gzip"}, b"\x1f\x8bnot gzip at all", "gzip"),
        ("truncated gzip", {"Content-Encoding": "gzip"}, gzip.compress(EVENT_BYTES)[:20], "gzip"),
        ("unknown encoding", {"Content-Encoding": "compress"}, b"xx", "unsupported Content-Encoding"),
        ("binary", {"Content-Type": "application/octet-stream"}, bytes(range(256)), "binary"),
        ("bad protobuf", {"Content-Type": "application/x-protobuf"}, b"\xff\xff\xff\xff", "OTLP"),
        ("deep nesting", {"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000, "deep"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_undecodable_bodies_are_problems_not_passes(name: str, headers: dict[str, str], body: bytes,
                                                    reason: str) -> None:
    path = "/v1/traces" if name == "bad protobuf" else "/e"
    decoded = decode_request(Request.from_url("POST", f"https://collector.test{path}", headers, body))
    assert decoded.problems, name
    assert any(reason.lower() in p.reason.lower() for p in decoded.problems), decoded.problems


def test_gzip_bomb_is_a_problem_within_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KB
    limits = DecodeLimits(max_decoded_bytes=1024 * 1024)
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Encoding": "gzip"}, bomb), limits)
    assert any("limit" in p.reason for p in decoded.problems)


@pytest.mark.parametrize("codec", ["br", "zstd", "deflate"])
def test_other_bombs_are_problems(codec: str) -> None:
    data = b"A" * (8 * 1024 * 1024)
    body = {"br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress, "deflate": zlib.compress}[codec](data)
    limits = DecodeLimits(max_decoded_bytes=1024 * 1024)
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Encoding": codec}, body), limits)
    assert any("limit" in p.reason for p in decoded.problems)


def test_undecodable_body_is_still_given_to_detectors_as_raw_text() -> None:
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                                              b'{"token": "ghp_x", broken'))
    assert any(f.path == "body" and "ghp_x" in str(f.value) for f in decoded.fields)


def test_field_limit_is_enforced() -> None:
    body = json.dumps(list(range(5000))).encode()
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body),
                             DecodeLimits(max_fields=100))
    assert any("fields" in p.reason for p in decoded.problems)
    assert len(decoded.fields) <= 100


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", None])
def test_rewrite_keeps_format_and_encoding(encoding: str | None) -> None:
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
                "zstd": zstandard.ZstdCompressor().compress, None: lambda b: b}[encoding]
    headers = {"Content-Type": "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    body = json.dumps({"a": "/home/alice/x", "b": json.dumps({"c": "secret"}), "d": [1, 2]}).encode()
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", headers, compress(body)))
    edits = {f.locator: "X" for f in decoded.fields if f.path in ("a", "b.c")}
    edits.update({f.locator: DROP for f in decoded.fields if f.path == "d[0]"})
    rewrite_values(decoded.body_tree, edits)
    out = encode_body(decoded)
    again = decode_request(Request.from_url("POST", "https://c.test/e", headers, out))
    body_fields = {f.path: f.value for f in again.fields if not f.path.startswith(("header.", "url.", "key:"))}
    assert body_fields == {"a": "X", "b.c": "X", "d[0]": 2}


def test_rewrite_otlp_protobuf_round_trips() -> None:
    request = Request.from_url("POST", "https://telemetry.werf.io/v1/traces",
                               {"Content-Type": "application/x-protobuf"}, werf_otlp_body())
    decoded = decode_request(request)
    target = f"{SPAN}.attributes.eventData.path"
    rewrite_values(decoded.body_tree, {f.locator: "[REDACTED]" for f in decoded.fields if f.path == target})
    message = ExportTraceServiceRequest()
    message.ParseFromString(encode_body(decoded))
    attrs = {kv.key: kv.value for kv in message.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert json.loads(attrs["eventData"].string_value)["path"] == "[REDACTED]"
    assert attrs["command"].string_value == "werf converge"


def test_rewrite_form_with_base64_json_keeps_base64() -> None:
    body = b"data=" + base64.b64encode(json.dumps({"distinct_id": "alice@example.com"}).encode())
    request = Request.from_url("POST", "https://api.mixpanel.com/track",
                               {"Content-Type": "application/x-www-form-urlencoded"}, body)
    decoded = decode_request(request)
    rewrite_values(decoded.body_tree, {f.locator: "[REDACTED]" for f in decoded.fields if f.path == "data.distinct_id"})
    out = encode_body(decoded)
    assert b"alice" not in out and b"alice" not in base64.b64decode(out.split(b"=", 1)[1].replace(b"%3D", b"="))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/x-protobuf", ""]),
    encoding=st.sampled_from(["", "gzip", "br", "deflate", "zstd"]), path=st.sampled_from(["/e", "/v1/traces"]))
def test_arbitrary_bytes_never_raise(body: bytes, content_type: str, encoding: str, path: str) -> None:
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    decode_request(Request.from_url("POST", f"https://c.test{path}", headers, body))


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_round_trips_through_rewrite(value: object) -> None:
    body = json.dumps(value).encode()
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body))
    if decoded.body_format in ("json", "base64-json", "ndjson"):
        again = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                                                encode_body(decoded)))
        assert [(f.path, f.value) for f in again.fields] == [(f.path, f.value) for f in decoded.fields]


def test_a_redaction_that_cannot_be_located_raises() -> None:
    # A payload key spelled like a locator step must not make a redaction silently miss its target.
    body = json.dumps({"<embedded>": {"x": "/home/alice/p"}}).encode()
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body))
    [target] = [f for f in decoded.fields if f.path == "<embedded>.x"]
    rewrite_values(decoded.body_tree, {target.locator: "X"})
    assert json.loads(encode_body(decoded)) == {"<embedded>": {"x": "X"}}
    with pytest.raises(DecodeError):
        rewrite_values(decoded.body_tree, {("nope", "x"): "X"})


def test_keys_path_and_documents_in_headers_are_scanned() -> None:
    payload = base64.b64encode(json.dumps({"t": "inner-value"}).encode()).decode()
    request = Request.from_url("POST", "https://c.test/v1/u/secret-in-path", {
        "Content-Type": "application/json", "X-Payload": payload, "Accept-Language": "xx"},
        json.dumps({"ghp_key_as_name": 1}).encode())
    fields = {f.path: f.value for f in decode_request(request).fields}
    assert fields["url.path"] == "/v1/u/secret-in-path"
    assert fields["key:body"] == "ghp_key_as_name"
    assert fields["header.x-payload.t"] == "inner-value" and fields["header.accept-language"] == "xx"


def test_duplicate_keys_and_deep_embedding_are_uninspectable() -> None:
    duplicate = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                                                b'{"t": "one", "t": "two"}'))
    assert any(p.truncated and "duplicate" in p.reason for p in duplicate.problems)
    value: str = json.dumps({"t": "x"})
    for _ in range(6):
        value = base64.b64encode(json.dumps({"w": value}).encode()).decode()
    deep = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                                           json.dumps({"v": value}).encode()))
    assert any(p.truncated and "nested" in p.reason for p in deep.problems)


# --- charsets, partial content codings, multipart, schema-less protobuf ----------------------------------------

CHARSET_CASES = [
    ("utf-8 bom", b"\xef\xbb\xbf" + EVENT_BYTES),
    ("utf-16-le bom", b"\xff\xfe" + EVENT_BYTES.decode().encode("utf-16-le")),
    ("utf-16-be bom", b"\xfe\xff" + EVENT_BYTES.decode().encode("utf-16-be")),
    ("utf-16-le", EVENT_BYTES.decode().encode("utf-16-le")),
    ("utf-16-be", EVENT_BYTES.decode().encode("utf-16-be")),
    ("utf-32-le bom", b"\xff\xfe\x00\x00" + EVENT_BYTES.decode().encode("utf-32-le")),
    ("utf-32-be", EVENT_BYTES.decode().encode("utf-32-be")),
]


@pytest.mark.parametrize(("name", "body"), CHARSET_CASES, ids=[c[0] for c in CHARSET_CASES])
def test_json_in_any_unicode_charset_decodes(name: str, body: bytes) -> None:
    fields = fields_of(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body))
    assert fields["properties.cwd"] == "/home/alice/app" and fields["event"] == "cli.start"


def _trailing(codec: str) -> bytes:
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
                "zstd": zstandard.ZstdCompressor().compress}[codec]
    return compress(EVENT_BYTES) + b"TRAILING-GARBAGE"


PARTIAL_CASES = [
    ("gzip then trailing bytes", "gzip", _trailing("gzip")),
    ("deflate then trailing bytes", "deflate", _trailing("deflate")),
    ("zstd then trailing bytes", "zstd", _trailing("zstd")),
    ("br then trailing bytes", "br", _trailing("br")),
    ("truncated gzip", "gzip", gzip.compress(EVENT_BYTES)[:-12]),
    ("truncated br", "br", brotli.compress(EVENT_BYTES)[:-3]),
    ("truncated zstd", "zstd", zstandard.ZstdCompressor().compress(EVENT_BYTES)[:-4]),
    ("broken gzip", "gzip", b"\x1f\x8bnot gzip at all"),
    ("unknown coding", "compress", b"xx"),
]


@pytest.mark.parametrize(("name", "coding", "body"), PARTIAL_CASES, ids=[c[0] for c in PARTIAL_CASES])
def test_content_codings_not_undone_in_full_are_uninspectable(name: str, coding: str, body: bytes) -> None:
    decoded = decode_request(Request.from_url("POST", "https://c.test/e",
                                              {"Content-Type": "application/json", "Content-Encoding": coding}, body))
    assert [p.rule_id for p in decoded.problems] == ["uninspectable"], decoded.problems
    if decoded.plain_body:  # what did decode is still scanned
        assert any(f.path == "body" and "cli.start" in str(f.value) for f in decoded.fields)


def test_zero_padding_after_gzip_is_not_a_problem() -> None:
    body = gzip.compress(EVENT_BYTES) + b"\x00" * 8
    fields = fields_of(Request.from_url("POST", "https://c.test/e", {"Content-Encoding": "gzip"}, body))
    assert fields["event"] == "cli.start"


def multipart(*parts: tuple[dict[str, str], bytes], boundary: str = "b0undary") -> bytes:
    out = b""
    for headers, content in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        out += f"--{boundary}\r\n".encode() + head + b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_parts_decode_by_their_own_type_and_encoding() -> None:
    body = multipart(
        ({"Content-Disposition": 'form-data; name="meta"', "Content-Type": "application/json"}, EVENT_BYTES),
        ({"Content-Disposition": 'form-data; name="b64"', "Content-Type": "application/json",
          "Content-Transfer-Encoding": "base64"}, base64.b64encode(json.dumps({"user": "bob"}).encode())),
        ({"Content-Disposition": 'form-data; name="zipped"', "Content-Type": "application/json",
          "Content-Encoding": "gzip"}, gzip.compress(json.dumps({"k": "v"}).encode())),
        ({"Content-Disposition": 'form-data; name="note"'}, b"plain text /home/alice/x"),
    )
    request = Request.from_url("POST", "https://c.test/e",
                               {"Content-Type": 'multipart/form-data; boundary="b0undary"'}, body)
    fields = fields_of(request)
    assert fields["meta.properties.cwd"] == "/home/alice/app"
    assert fields["b64.user"] == "bob" and fields["zipped.k"] == "v"
    assert fields["note"] == "plain text /home/alice/x"


@pytest.mark.parametrize(("name", "body", "rule_id"), [
    ("binary part", multipart(({"Content-Disposition": 'form-data; name="f"'}, bytes(range(256)))), "uninspectable"),
    ("no closing boundary", multipart(({"Content-Disposition": 'form-data; name="f"'}, b"x"))[:-12], "decode"),
    ("unknown transfer coding", multipart(({"Content-Disposition": 'form-data; name="f"',
                                            "Content-Transfer-Encoding": "x-uue"}, b"x")), "uninspectable"),
])
def test_multipart_that_cannot_be_read_is_a_problem(name: str, body: bytes, rule_id: str) -> None:
    request = Request.from_url("POST", "https://c.test/e", {"Content-Type": "multipart/form-data; boundary=b0undary"},
                               body)
    assert [p.rule_id for p in decode_request(request).problems] == [rule_id]


def test_protobuf_without_a_schema_reads_its_text_fields() -> None:
    inner = b"\x0a\x05alice"  # field 1: "alice"
    body = b"\x08\x96\x01" + b"\x12" + bytes([len(inner)]) + inner + b"\x1a\x0d/home/alice/x"
    request = Request.from_url("POST", "https://c.test/track", {"Content-Type": "application/x-protobuf"}, body)
    fields = fields_of(request)
    assert fields["1"] == 150 and fields["2.1"] == "alice" and fields["3"] == "/home/alice/x"


def test_protobuf_with_binary_bytes_is_uninspectable() -> None:
    body = b"\x12\x04\xff\xfe\x00\x80"
    request = Request.from_url("POST", "https://c.test/track", {"Content-Type": "application/x-protobuf"}, body)
    assert [p.rule_id for p in decode_request(request).problems] == ["uninspectable"]


# --- field paths ----------------------------------------------------------------------------------------------

PATH_CASES = [
    ({"tags": {"ai.device.id": "x"}}, 'tags["ai.device.id"]'),
    ({"a[0]": 1}, '["a[0]"]'),
    ({"q": {'say "hi"': 1}}, 'q["say \\"hi\\""]'),
    ({"e": {"": 1}}, 'e[""]'),
    ({"plain": {"name_1": [1]}}, "plain.name_1[0]"),
]


@pytest.mark.parametrize(("body", "path"), PATH_CASES, ids=[c[1] for c in PATH_CASES])
def test_field_paths_quote_names_that_would_be_ambiguous(body: object, path: str) -> None:
    fields = fields_of(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                                        json.dumps(body).encode()))
    assert path in fields


# --- limits ---------------------------------------------------------------------------------------------------


def test_a_body_under_the_size_limit_is_never_refused_for_its_field_count() -> None:
    limits = Limits.from_body_limit(4000)
    body = b"[" + b",".join([b"0"] * 1999) + b"]"  # the most leaves 4000 bytes of JSON can hold
    assert len(body) <= limits.max_body_bytes
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body),
                             limits)
    assert decoded.problems == [] and len([f for f in decoded.fields if f.path.startswith("[")]) == 1999


def test_a_body_over_the_size_limit_is_not_read() -> None:
    limits = Limits.from_body_limit(100)
    decoded = decode_request(Request.from_url("POST", "https://c.test/e", {}, b"x" * 101), limits)
    assert [p.rule_id for p in decoded.problems] == ["oversize"] and decoded.plain_body is None


# --- splicing -------------------------------------------------------------------------------------------------


def _leaf_locators(decoded: DecodedRequest) -> list[tuple[object, ...]]:
    return [f.locator for f in decoded.fields if f.locator and f.locator[0] not in ("header", "query")
            and not any(step is UNREWRITABLE for step in f.locator)]


@settings(max_examples=200, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1, "\t"]), data=st.data())
def test_splicing_edits_exactly_what_a_tree_rewrite_does(value: object, indent: object, data: st.DataObject) -> None:
    body = json.dumps(value, indent=indent).encode()  # type: ignore[arg-type]
    request = Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"}, body)
    decoded = decode_request(request)
    if decoded.body_format != "json" or decoded.problems:
        return
    locators = _leaf_locators(decoded)
    if not locators:
        return
    chosen = data.draw(st.lists(st.sampled_from(locators), min_size=1, max_size=4, unique=True))
    edits = {loc: DROP if data.draw(st.booleans()) else "[REDACTED]" for loc in chosen}
    spliced = rewrite_body(decoded, edits)
    expected = decode_request(request)
    rewrite_values(expected.body_tree, edits)
    assert json.loads(spliced) == json.loads(encode_body(expected))


# --- ScanPositions: scan-form positions back to the body text ------------------------------------------------------


def _owners(text: str) -> list[int]:
    """For each position of the scan form (each `"` spelled as 3 characters), the text character it spells."""
    owners: list[int] = []
    for index, char in enumerate(text):
        owners.extend([index] * (3 if char == '"' else 1))
    return owners


@pytest.mark.parametrize("block", [1, 2, 3, 7, 65536])
@given(text=st.text(alphabet='"ab,:{}', max_size=60))
@settings(max_examples=150, deadline=None)
def test_scan_positions_map_back_to_the_character_they_spell(block: int, text: str) -> None:
    saved = decoders._QUOTE_BLOCK
    decoders._QUOTE_BLOCK = block  # small blocks put quotes on every block boundary
    try:
        positions = decoders.ScanPositions(text)
        owners = _owners(text)
        assert positions.scan_length == len(owners) == len(text.replace('"', "\n\x00\n"))
        # In any order: each block's quote list is built on its first use.
        for scanned in [*range(len(owners) - 1, -1, -2), *range(0, len(owners) + 3)]:
            expected = owners[scanned] if scanned < len(owners) else len(text) - 1
            assert positions.original(scanned) == expected, (text, scanned)
    finally:
        decoders._QUOTE_BLOCK = saved


def test_every_leak_of_a_large_batch_is_placed_and_redacted() -> None:
    """Thousands of leaks in one batch: each is placed back in the text (`fields_near`), and each is redacted."""
    events = [{"event": "cmd", "properties": {"cwd": f"/home/alice/work/p{i}", "n": i}} for i in range(3000)]
    request = Request.from_url("POST", "https://us.i.posthog.com/batch/", {"content-type": "application/json"},
                               json.dumps({"api_key": "phc_x", "batch": events}).encode())
    environment = AuditEnvironment(env={}, home="/home/alice", cwd="/home/alice/app", user="alice", hostname="box")
    decision = Auditor(load_policy(["default"]), environment).evaluate(request)
    paths = [f for f in decision.findings if f.detector.startswith("paths")]
    assert len({f.field for f in paths}) == 3000
    assert decision.redacted_body is not None and b"/home/alice" not in decision.redacted_body
