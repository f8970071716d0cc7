"""The emulators' private body decoding."""

from __future__ import annotations

import base64
import gzip
import zlib

import brotli
import pytest
import zstandard

from telemetry_audit.collectors import _decoding
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
    ],
)
def test_content_codings(coding: str, data: bytes) -> None:
    request = Request.from_url("POST", "http://x/", {"Content-Encoding": coding}, data)
    assert _decoding.body(request) == PAYLOAD


def test_stacked_codings_are_undone_in_reverse() -> None:
    data = brotli.compress(gzip.compress(PAYLOAD))
    assert _decoding.body(Request.from_url("POST", "http://x/", {"Content-Encoding": "gzip, br"}, data)) == PAYLOAD


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_decompression_bombs_are_refused(coding: str) -> None:
    big = b"\0" * 2_000_000
    data = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[coding](big)
    with pytest.raises(ValueError, match="beyond the 1000-byte limit"):
        _decoding.decompress(data, coding, limit=1000)


@pytest.mark.parametrize(
    ("coding", "data", "message"),
    [("gzip", b"nope", "invalid gzip"), ("br", b"nope", "invalid br"), ("lzma", b"", "unsupported")],
)
def test_bad_compressed_data(coding: str, data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _decoding.decompress(data, coding)


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
