"""Content-Encoding: undo and redo gzip, deflate, br and zstd with a size limit.

Decompression is streamed in chunks and stops as soon as the output would
pass `limit`, so a compression bomb costs at most `limit` bytes of memory
and becomes a finding instead of an out-of-memory.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import zstandard

from telemetry_audit.decoders.errors import DecodeError, DecodeLimitError

_CHUNK = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def _drain(decompressor: Any, data: bytes, out: bytearray, limit: int, name: str) -> None:
    """Feed `data` to a zlib decompressor in bounded steps, appending to `out`, never past `limit`."""
    pending = data
    try:
        while pending:
            out += decompressor.decompress(pending, _CHUNK)
            if len(out) > limit:
                raise DecodeLimitError(f"{name} body expands beyond the {limit}-byte limit (compression bomb?)")
            pending = decompressor.unconsumed_tail
        out += decompressor.flush()
    except zlib.error as e:
        raise DecodeError(f"invalid {name} data: {e}") from None
    if len(out) > limit:
        raise DecodeLimitError(f"{name} body expands beyond the {limit}-byte limit (compression bomb?)")


def _inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    out = bytearray()
    _drain(zlib.decompressobj(wbits), data, out, limit, name)
    return bytes(out)


def _gunzip(data: bytes, limit: int) -> bytes:
    # gzip members may be concatenated: decode them one after the other.
    out = bytearray()
    rest = data
    while rest:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        _drain(decompressor, rest, out, limit, "gzip")
        if not decompressor.eof:
            raise DecodeError("truncated gzip data")
        rest = decompressor.unused_data.lstrip(b"\x00")
    return bytes(out)


def _inflate_deflate(data: bytes, limit: int) -> bytes:
    # HTTP "deflate" is zlib-wrapped, but some clients send raw deflate: accept both.
    try:
        return _inflate(data, zlib.MAX_WBITS, limit, "deflate")
    except DecodeLimitError:
        raise
    except DecodeError:
        return _inflate(data, -zlib.MAX_WBITS, limit, "deflate")


def _feed(step: Callable[[bytes], bytes], data: bytes, limit: int, name: str) -> bytes:
    """Feed `data` in small slices to a streaming decompressor's `step`, never holding more than `limit`."""
    out = bytearray()
    slice_size = _CHUNK // 16
    for start in range(0, len(data), slice_size):
        out += step(data[start : start + slice_size])
        if len(out) > limit:
            raise DecodeLimitError(f"{name} body expands beyond the {limit}-byte limit (compression bomb?)")
    return bytes(out)


def _unbrotli(data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    try:
        out = _feed(decompressor.process, data, limit, "br")
    except brotli.error as e:
        raise DecodeError(f"invalid br data: {e}") from None
    if not decompressor.is_finished():
        raise DecodeError("truncated br data")
    return out


def _unzstd(data: bytes, limit: int) -> bytes:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        return _feed(decompressor.decompress, data, limit, "zstd")
    except zstandard.ZstdError as e:
        raise DecodeError(f"invalid zstd data: {e}") from None


_DECODERS = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate_deflate,
    "br": _unbrotli,
    "zstd": _unzstd,
}


_IANA_CODINGS = frozenset({"compress", "x-compress", "exi", "pack200-gzip", "aes128gcm", "dcb", "dcz"})


def _describe(encoding: str) -> str:
    """The coding's name when it is a registered one; a header value may also be anything, even a secret."""
    return repr(encoding) if encoding in _IANA_CODINGS else f"(unregistered, {len(encoding)} characters)"


def decompress(data: bytes, encodings: tuple[str, ...], limit: int) -> bytes:
    """Undo `encodings` (in the order they were applied) without exceeding `limit` bytes."""
    for encoding in reversed(encodings):
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise DecodeError(f"unsupported Content-Encoding {_describe(encoding)}")
        data = decoder(data, limit)
    return data


def compress(data: bytes, encodings: tuple[str, ...]) -> bytes:
    """Apply `encodings` in order, so a redacted body goes out as it came in."""
    for encoding in encodings:
        if encoding in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif encoding == "deflate":
            data = zlib.compress(data)
        elif encoding == "br":
            data = brotli.compress(data)
        elif encoding == "zstd":
            data = zstandard.ZstdCompressor().compress(data)
        else:
            raise DecodeError(f"unsupported Content-Encoding {_describe(encoding)}")
    return data
