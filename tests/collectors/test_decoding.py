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
