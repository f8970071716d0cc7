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


class _Partial(DecodeError):
    """Some of the data decoded, the rest did not: `data` is what decoded, the message says what was left."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(message)
        self.data = data


def _bomb(name: str, limit: int) -> DecodeLimitError:
    return DecodeLimitError(f"{name} body expands beyond the {limit}-byte limit (compression bomb?)")


def _drain(decompressor: Any, data: bytes, out: bytearray, limit: int, name: str) -> None:
    """Feed `data` to a zlib decompressor in bounded steps, appending to `out`, never past `limit`."""
    pending = data
    try:
        while pending:
            out += decompressor.decompress(pending, _CHUNK)
            if len(out) > limit:
                raise _bomb(name, limit)
            pending = decompressor.unconsumed_tail
        out += decompressor.flush()
    except zlib.error as e:
        if out:
            raise _Partial(f"invalid {name} data after {len(out)} decoded bytes: {e}", bytes(out)) from None
        raise DecodeError(f"invalid {name} data: {e}") from None
    if len(out) > limit:
        raise _bomb(name, limit)


def _zlib_stream(data: bytes, wbits: int, limit: int, name: str, members: bool) -> bytes:
    """Decode one zlib-family stream (or, for gzip, concatenated members); truncation or bytes after the
    stream are a `_Partial` carrying what did decode."""
    out = bytearray()
    rest = data
    while rest:
        decompressor = zlib.decompressobj(wbits)
        _drain(decompressor, rest, out, limit, name)
        if not decompressor.eof:
            raise _Partial(f"truncated {name} data ({len(out)} bytes decoded)", bytes(out))
        rest = decompressor.unused_data
        if members:
            rest = rest.lstrip(b"\x00")  # padding some servers and clients add between or after members
        if rest and not (members and rest[:2] == GZIP_MAGIC):
            raise _Partial(f"{len(rest)} bytes after the end of the {name} data", bytes(out))
    return bytes(out)


def _gunzip(data: bytes, limit: int) -> bytes:
    # gzip members may be concatenated: decode them one after the other.
    return _zlib_stream(data, 16 + zlib.MAX_WBITS, limit, "gzip", members=True)


def _inflate_deflate(data: bytes, limit: int) -> bytes:
    # HTTP "deflate" is zlib-wrapped, but some clients send raw deflate: accept both.
    try:
        return _zlib_stream(data, zlib.MAX_WBITS, limit, "deflate", members=False)
    except DecodeLimitError:
        raise
    except _Partial:
        raise
    except DecodeError:
        return _zlib_stream(data, -zlib.MAX_WBITS, limit, "deflate", members=False)


def _feed(step: Callable[[bytes], bytes], data: bytes, limit: int, name: str, error: type[Exception]) -> bytes:
    """Feed `data` in small slices to a streaming decompressor's `step`, never holding more than `limit`."""
    out = bytearray()
    slice_size = _CHUNK // 16
    for start in range(0, len(data), slice_size):
        try:
            out += step(data[start : start + slice_size])
        except error as e:
            if out:
                raise _Partial(f"invalid {name} data after {len(out)} decoded bytes: {e}", bytes(out)) from None
            raise DecodeError(f"invalid {name} data: {e}") from None
        if len(out) > limit:
            raise _bomb(name, limit)
    return bytes(out)


def _unbrotli(data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out = _feed(decompressor.process, data, limit, "br", brotli.error)
    if not decompressor.is_finished():
        raise _Partial(f"truncated br data ({len(out)} bytes decoded)", out)
    return out


def _unzstd(data: bytes, limit: int) -> bytes:
    out = bytearray()
    rest = data
    while rest:  # frames may be concatenated
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        out += _feed(decompressor.decompress, rest, limit - len(out), "zstd", zstandard.ZstdError)
        if not decompressor.eof:
            raise _Partial(f"truncated zstd data ({len(out)} bytes decoded)", bytes(out))
        rest = decompressor.unused_data
    return bytes(out)


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
    """Undo `encodings` (in the order they were applied) without exceeding `limit` bytes.

    Raises `DecodeError` for anything not decoded in full (truncated data, bytes after the end).
    """
    data, problem = decompress_partial(data, encodings, limit)
    if problem is not None:
        raise DecodeError(problem)
    return data


def decompress_partial(data: bytes, encodings: tuple[str, ...], limit: int) -> tuple[bytes, str | None]:
    """(what decoded, why the rest did not or None): truncated or trailing data still yields what came before.

    Raises `DecodeError` when nothing could be decoded, `DecodeLimitError` past `limit`.
    """
    problem: str | None = None
    for encoding in reversed(encodings):
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise DecodeError(f"unsupported Content-Encoding {_describe(encoding)}")
        try:
            data = decoder(data, limit)
        except _Partial as partial:
            data, problem = partial.data, "; ".join(filter(None, (problem, str(partial))))
    return data, problem


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
