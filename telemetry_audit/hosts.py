"""Host names and host patterns: the one `host_matches` that policy rules, collectors and the catalogue share.

A host is compared in one canonical form (`canonical_host`): lowercase, no trailing dot, no port, IDNA names as
punycode (`bücher.test` and `xn--bcher-kva.test` are the same host), IP literals in `ipaddress`' form (`::1` and
`0:0::1` are the same host). Patterns get the same treatment, so a rule written in any spelling means the same.

Pattern semantics (one table, tested in `tests/test_hosts.py`):

| pattern              | matches                                                                   |
| -------------------- | ------------------------------------------------------------------------- |
| `*`                  | every host                                                                |
| `api.segment.io`     | that name only                                                            |
| `*.example.com`      | `example.com` itself **and** every name under it, at any depth            |
| `telemetry.*`        | `telemetry.` followed by one or more labels (`telemetry.nuxt.com`)        |
| `*.telemetry.*`      | a `telemetry` label anywhere but last (`collector.telemetry.test`)        |
| `a.*.example.com`    | a `*` label in the middle is exactly one label                            |
| `api*.amplitude.com` | `*` inside a label is any run of characters within that label             |
| `10.0.0.1`, `::1`    | that address, however it is spelt                                         |
| `10.0.0.0/8`         | every IP literal inside the network                                       |

Why a leading `*.` covers the apex: the callers decide what is telemetry and which rules apply, and matching a
little more is the safe side (a vendor's bare domain is as much its collector as `api.` of it). It is also how
`NO_PROXY=.example.com` is read by curl. A wildcard never matches an IP literal, and only `*` matches everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import re2

_MAX_HOST_LENGTH = 253
"""RFC 1035's limit on a name's text form; longer input is compared as given, never expanded."""


def canonical_host(host: str) -> str:
    """`host` as compared: lowercase, without port, brackets or trailing dot, IDNA as punycode, IPs normalised.

    Never raises: a name that IDNA cannot encode (empty or over-long labels) stays in its lowercase form, which a
    pattern can still match exactly.
    """
    text = host.strip().lower()
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        text = text[1:end] if end > 0 else text[1:]
    elif text.count(":") == 1:  # name:port or v4:port; a bare IPv6 literal has two or more colons
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    address = _ip_literal(text)
    if address is not None:
        return str(address)
    if not text.isascii() and len(text) <= _MAX_HOST_LENGTH * 4:
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return text


def _ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text or not (text[0].isdigit() or ":" in text):
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPatterns:
    """A compiled set of host patterns: exact names, IP literals and networks, one RE2 program for the globs."""

    names: frozenset[str]
    addresses: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    globs: object | None
    """An RE2 program, or None when no pattern has a wildcard."""
    everything: bool

    def matches(self, host: str) -> bool:
        """True when `host` (any spelling, see `canonical_host`) matches one of the patterns."""
        return self.matches_canonical(canonical_host(host))

    def matches_canonical(self, name: str) -> bool:
        """`matches` for a name already in `canonical_host` form (saves the work when testing many sets)."""
        if self.everything:
            return True
        if not name:
            return False
        address = _ip_literal(name)
        if address is not None:
            return name in self.addresses or any(address in network for network in self.networks)
        if name in self.names:
            return True
        return self.globs is not None and self.globs.fullmatch(name) is not None  # type: ignore[attr-defined]


@lru_cache(maxsize=512)
def compile_host_patterns(patterns: tuple[str, ...]) -> HostPatterns:
    """Compile `patterns` once (cached: callers pass the same tuples for every request)."""
    names: set[str] = set()
    addresses: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    globs: list[str] = []
    everything = False
    for raw in patterns:
        pattern = raw.strip()
        if pattern == "*":
            everything = True
            continue
        if "/" in pattern:
            try:
                networks.append(ipaddress.ip_network(pattern.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
        if "*" in pattern:
            glob = _glob_regex(_canonical_pattern(pattern))
            if glob:
                globs.append(glob)
            continue
        name = canonical_host(pattern)
        if not name:
            continue
        if _ip_literal(name) is not None:
            addresses.add(name)
        else:
            names.add(name)
    program = re2.compile("(?:" + "|".join(f"(?:{g})" for g in globs) + ")") if globs else None
    return HostPatterns(frozenset(names), frozenset(addresses), tuple(networks), program, everything)


def _canonical_pattern(pattern: str) -> str:
    """A wildcard pattern in canonical form, label by label (`*` labels kept, others IDNA-encoded)."""
    text = pattern.strip().lower().rstrip(".")
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    labels = [label if "*" in label else canonical_host(label) for label in text.split(".")]
    return ".".join(labels)


def _glob_regex(pattern: str) -> str:
    """RE2 for one canonical wildcard pattern (see the module docstring for the semantics)."""
    labels = pattern.split(".")
    if any(not label for label in labels):
        return ""  # `a..b`, `.x`: not a host pattern
    parts: list[str] = []
    last = len(labels) - 1
    dot = ""  # the separator before the next label; the leading `*.` carries its own
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and last > 0:
            parts.append(r"(?:[^.]*\.)*")  # leading `*.`: zero or more labels (the apex too)
        elif label == "*" and index == last and last > 0:
            parts.append(dot + r"[^.]+(?:\.[^.]+)*")  # trailing `.*`: one or more labels
        elif label == "*":
            parts.append(dot + "[^.]+")  # a middle `*` label: exactly one
        else:
            parts.append(dot + "[^.]*".join(re2.escape(piece) for piece in label.split("*")))
        dot = "" if label == "*" and index == 0 else r"\."
    return "".join(parts)


_PATTERN_CHARACTERS = re2.compile(r"^[a-z0-9*_.:\[\]/%-]+$")


def host_pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not a usable host pattern (for loaders to report), or None when it is.

    A pattern that fails here would silently match nothing (`a..b`, `*..com`, `http://x`, `10.0.0.0/99`).
    """
    text = pattern.strip()
    if not text:
        return "an empty host pattern matches nothing"
    if text == "*":
        return None
    if "://" in text or text.startswith("/"):
        return f"{pattern!r} is a URL or a path; give the host name only (e.g. api.example.com)"
    if "/" in text:
        try:
            ipaddress.ip_network(text.strip("[]"), strict=False)
        except ValueError:
            return f"{pattern!r} is not an IP network (e.g. 10.0.0.0/8)"
        return None
    lowered = text.lower()
    if lowered.isascii() and not _PATTERN_CHARACTERS.match(lowered):
        return f"{pattern!r} has characters no host name has"
    if "**" in lowered:
        return f"{pattern!r}: `**` means nothing in a host pattern; a leading `*.` already covers any depth"
    if "*" in lowered and _ip_literal(lowered.replace("*", "0")) is not None:
        return f"{pattern!r}: wildcards never match IP literals; use a network such as 10.0.0.0/8"
    if "*" in lowered and not _glob_regex(_canonical_pattern(lowered)):
        return f"{pattern!r} has an empty label"
    if "*" not in lowered and not canonical_host(lowered):
        return f"{pattern!r} names no host"
    if "*" not in lowered and _ip_literal(canonical_host(lowered)) is None and ".." in lowered.rstrip("."):
        return f"{pattern!r} has an empty label"
    return None


def host_matches(host: str, patterns: str | Iterable[str]) -> bool:
    """True when `host` matches `patterns`: one pattern or several (semantics in the module docstring).

    The one matcher of the package: policy rule `hosts`, collector `hosts`, the telemetry catalogue and
    `--telemetry-host` all go through here.
    """
    key = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    return compile_host_patterns(key).matches(host)
