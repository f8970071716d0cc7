"""The one exception decoders raise."""

from __future__ import annotations


class DecodeError(ValueError):
    """A body or value could not be decoded as the format it claims (or seems) to be."""
