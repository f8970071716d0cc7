"""LZ-string's `decompressFromBase64`, which posthog-js used for `?compression=lz64` bodies.

Written from the format of pieroxy/lz-string (`_decompress` with 6-bit
base64 symbols): a stream of variable-width codes where 0/1 introduce a new
8/16-bit character, 2 ends the stream, and any other code names an earlier
dictionary entry. Bounded: a hostile stream cannot grow the output or the
dictionary without limit.
"""

from __future__ import annotations

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_VALUES = {c: i for i, c in enumerate(_ALPHABET)}
MAX_OUTPUT_CHARS = 32 * 1024 * 1024


class _Bits:
    """Reads bits, lowest first within each 6-bit symbol's value, as lz-string does."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0
        self.value = 0
        self.position = 0  # the bit to read next within `value` (a power of two), 0 = load a symbol

    def read(self, width: int) -> int:
        result = 0
        power = 1
        for _ in range(width):
            if self.position == 0:
                if self.index >= len(self.text):
                    raise ValueError("lz64 stream ends early")
                symbol = self.text[self.index]
                self.index += 1
                if symbol not in _VALUES:
                    raise ValueError(f"invalid lz64 character {symbol!r}")
                self.value = _VALUES[symbol]
                self.position = 32
            if self.value & self.position:
                result |= power
            self.position >>= 1
            power <<= 1
        return result


def _from_utf16_units(text: str) -> str:
    """JavaScript strings are UTF-16 code units: pair the surrogates (a lone one becomes U+FFFD)."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decompress_from_base64(text: str, max_chars: int = MAX_OUTPUT_CHARS) -> str:
    """The text an lz-string `compressToBase64` produced; `ValueError` on a malformed stream."""
    text = "".join(text.split())
    if not text:
        return ""
    bits = _Bits(text)
    dictionary: list[str] = ["", "", ""]
    enlarge_in = 4
    width = 3

    def literal(kind: int) -> str:
        if kind == 0:
            return chr(bits.read(8))
        if kind == 1:
            return chr(bits.read(16))
        raise ValueError(f"invalid lz64 code {kind}")

    first = bits.read(2)
    if first == 2:
        return ""
    entry = literal(first)
    dictionary.append(entry)
    previous = entry
    output = [entry]
    size = len(entry)
    while True:
        code = bits.read(width)
        if code in (0, 1):
            dictionary.append(literal(code))
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            return _from_utf16_units("".join(output))
        if enlarge_in == 0:
            enlarge_in = 1 << width
            width += 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = previous + previous[0]
        else:
            raise ValueError("invalid lz64 back-reference")
        output.append(entry)
        size += len(entry)
        if size > max_chars:
            raise ValueError(f"lz64 body expands beyond {max_chars} characters")
        dictionary.append(previous + entry[0])
        enlarge_in -= 1
        previous = entry
        if enlarge_in == 0:
            enlarge_in = 1 << width
            width += 1
