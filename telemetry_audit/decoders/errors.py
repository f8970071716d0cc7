"""The one exception decoders raise."""

from __future__ import annotations


class DecodeError(ValueError):
    """A body or value could not be decoded as the format it claims (or seems) to be."""


class DecodeLimitError(DecodeError):
    """A body exceeds a decoding limit (size, depth, field count): it cannot be inspected in full."""


class UninspectableError(DecodeError):
    """Part of a body cannot be read as the server would read it (duplicate keys, trailing or truncated
    compressed data, binary content): what was not read was not inspected."""
