"""The emulators' body helpers: they read the body the decoder already decompressed, once."""

from __future__ import annotations

import base64
import gzip
import zlib

import brotli
import pytest
import zstandard

from telemetry_audit.collectors import _decoding
from telemetry_audit.decoders import DecodeLimits, decode_request
from telemetry_audit.model import Request

PAYLOAD = b'{"event": "x"}' * 10


@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate, as half the clients send it
        ("br", brotli.compress(PAYLOAD)),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
        ("gzip, br", brotli.compress(gzip.compress(PAYLOAD))),
    ],
)
def test_body_is_the_decoders_plain_body(coding: str, data: bytes) -> None:
    decoded = decode_request(Request.from_url("POST", "http://x/", {"Content-Encoding": coding}, data))
    assert _decoding.body(decoded) == PAYLOAD
    assert _decoding.body(decoded) is decoded.plain_body


def test_a_decompression_bomb_is_too_large_for_the_emulator() -> None:
    data = gzip.compress(b"\0" * 2_000_000)
    request = Request.from_url("POST", "http://x/", {"Content-Encoding": "gzip"}, data)
    decoded = decode_request(request, DecodeLimits(max_decoded_bytes=1000))
    with pytest.raises(_decoding.BodyTooLarge, match="1000-byte limit"):
        _decoding.body(decoded)


@pytest.mark.parametrize(
    ("coding", "message"), [("gzip", "invalid gzip"), ("br", "invalid br"), ("lzma", "unsupported")]
)
def test_a_broken_content_coding_is_a_value_error(coding: str, message: str) -> None:
    decoded = decode_request(Request.from_url("POST", "http://x/", {"Content-Encoding": coding}, b"nope"))
    with pytest.raises(ValueError, match=message) as raised:
        _decoding.body(decoded)
    assert not isinstance(raised.value, _decoding.BodyTooLarge)


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(b'{"a": "??>"}').decode(),
        base64.urlsafe_b64encode(b'{"a": "??>"}').decode().rstrip("="),
        '{"a": "??>"}',
    ],
)
def test_json_or_base64(text: str) -> None:
    assert _decoding.json_or_base64(text) == {"a": "??>"}


def test_invalid_json_says_where() -> None:
    with pytest.raises(ValueError, match="invalid JSON: Expecting value at line 1 column 1"):
        _decoding.json_loads(b"nope")


# Items whose compact ASCII JSON outgrows their source the most: a 1-byte DEL and 2-byte letters become six bytes,
# a 4-byte emoji twelve, `1e15` reads `1000000000000000.0`; and ordinary ones.
GROWING_SOURCES = [
    '{"a":"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f"}',
    '{"é":"éééééééééééééééé"}',
    '{"e":"\U0001f600\U0001f600\U0001f600"}',
    '[1e15,1e15,1e15,1e15,1e15,9e15,1e9]',
    '[1E400,-1e400,NaN,1e-7,-0]',
    '{"u":"\\u00e9\\ud83d\\ude00\\/\\n"}',
    '{"event":"x","properties":{"n":1.5,"ok":true,"none":null,"list":[1,2,{"k":"v"}]}}',
    '{ "spaced" : [ 1 , 2 ] ,\n "dup": 1, "dup": 2 }',
]


@pytest.mark.parametrize("source", GROWING_SOURCES)
def test_an_item_never_outgrows_the_re_encoding_bound(source: str) -> None:
    """The bound `json_size_over` skips the encoding by: no parsed JSON re-encodes larger."""
    import json

    data = source.encode()
    document = json.loads(data)
    bound = len(data) * _decoding.JSON_REENCODE_GROWTH
    assert _decoding.json_size(document) <= bound
    assert _decoding.json_size({"type": "identify", **document} if isinstance(document, dict) else document) <= (
        bound + _decoding.JSON_REENCODE_SLACK)


@pytest.mark.parametrize("source", GROWING_SOURCES)
@pytest.mark.parametrize("known", [True, False])
def test_json_size_over_says_what_json_size_says(source: str, known: bool) -> None:
    import json

    data = source.encode()
    document = json.loads(data)
    size = _decoding.json_size(document)
    source_bytes = len(data) if known else None
    for limit in (0, size - 1, size, size + 1, len(data) * _decoding.JSON_REENCODE_GROWTH
                  + _decoding.JSON_REENCODE_SLACK, 32 * 1024):
        assert _decoding.json_size_over(document, limit, source_bytes) is (size > limit)


def test_an_item_over_the_limit_in_a_large_body_is_still_measured() -> None:
    document = {"blob": "x" * 40_000}
    assert _decoding.json_size_over(document, 32 * 1024, 40_012)
    assert not _decoding.json_size_over({"small": 1}, 32 * 1024, 40_012)
