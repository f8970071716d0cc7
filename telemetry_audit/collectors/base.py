"""The collector interface: what every analytics-collector emulator implements.

An emulator answers a telemetry request the way the vendor's collector would,
so a tool keeps working offline, and normalises what it received into
`Event`s, so one field policy can be written across vendors. `handle()` is a
pure function of the request: the proxy adapter and the standalone server
both call it and do their own I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from telemetry_audit.hosts import host_matches
from telemetry_audit.model import Request

TRANSPARENT_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""The 1x1 GIF that pixel collectors (Snowplow `/i`, Universal Analytics) answer with."""


@dataclass(frozen=True)
class Event:
    """One analytics event, normalised across vendors."""

    collector: str
    """The emulator that received it (`segment`, `posthog`, ...)."""
    tool: str
    """The tool that sent it when known (`sst`, `localstack`), else the collector's default."""
    name: str
    """The event name (`cli.start`, `CLI_COMMAND`, a span name, an item type)."""
    distinct_id: str | None = None
    """The identified user id, if the payload carries one."""
    anonymous_id: str | None = None
    """The device, machine or anonymous id, if the payload carries one."""
    timestamp: str | None = None
    """When the client says it happened, ISO 8601 in UTC where it was a number."""
    properties: dict[str, Any] = field(default_factory=dict)
    """The event's own payload (properties, params, attributes)."""
    context: dict[str, Any] = field(default_factory=dict)
    """Everything around it: library, environment, resource, api key, ..."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The event exactly as decoded from the request (for policies on vendor paths)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "collector": self.collector,
            "tool": self.tool,
            "name": self.name,
            "distinct_id": self.distinct_id,
            "anonymous_id": self.anonymous_id,
            "timestamp": self.timestamp,
            "properties": self.properties,
            "context": self.context,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class CollectorResponse:
    """What the emulated collector answers, plus what it understood."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    events: tuple[Event, ...] = ()
    """The events the real collector would accept (recorded as good)."""
    bad_reason: str | None = None
    """Set when the request, or part of it, does not fit the protocol (recorded as one bad event).

    When the whole request is rejected the response is the vendor's error and `events` is empty;
    collectors that silently drop invalid messages (Segment) answer success and keep the valid ones.
    """

    @property
    def good(self) -> bool:
        return self.bad_reason is None


class Collector(Protocol):
    """An emulator for one collector protocol."""

    name: str
    """Stable id of the emulator (`segment`, `otlp`, `werf`)."""
    tool: str
    """The tool name given to events when the payload does not say (`segment`, `localstack`)."""
    hosts: tuple[str, ...]
    """Exact host names, or `*.example.com` wildcards, of the real collector."""

    def matches(self, request: Request) -> bool:
        """True when `request` goes to this collector (host and path)."""
        ...

    def matches_path(self, request: Request) -> bool:
        """True when the path (and at most a cheap look at the body) says this protocol.

        Used by the standalone server, where every request arrives at 127.0.0.1.
        """
        ...

    def handle(self, request: Request) -> CollectorResponse:
        """Answer `request` as the real collector would; never raises on bad input."""
        ...


def json_response(
    status: int,
    payload: Any,
    events: Iterable[Event] = (),
    bad_reason: str | None = None,
    *,
    content_type: str = "application/json",
) -> CollectorResponse:
    """A JSON answer, compact like the vendors' own."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return CollectorResponse(
        status=status,
        headers=(("Content-Type", content_type),),
        body=body,
        events=tuple(events),
        bad_reason=bad_reason,
    )


def with_tool(events: Iterable[Event], tool: str) -> tuple[Event, ...]:
    """The same events attributed to `tool` (for tool-specific hosts on a vendor protocol)."""
    return tuple(replace(e, tool=tool) for e in events)


def iso_timestamp(value: Any) -> str | None:
    """An ISO 8601 UTC string for epoch seconds, milliseconds, microseconds or nanoseconds.

    Strings are returned as sent (vendors disagree on their format and a policy
    may want to see exactly what the client wrote); other values give None.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text or None
        value = number
    if not isinstance(value, int | float):
        return None
    seconds = float(value)
    # Scale by magnitude: 1e11 s is the year 5138, so anything larger is a finer unit.
    for _ in range(3):
        if abs(seconds) < 1e11:
            break
        seconds /= 1000.0
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty dict (payload fields are untrusted)."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """`value` as an id string: None, empty strings and containers give None."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value)
    return text or None


class HostAndPathCollector:
    """Shared `matches()` for emulators: one of `hosts`, then `matches_path()`."""

    name: str = ""
    tool: str = ""
    hosts: tuple[str, ...] = ()

    def matches(self, request: Request) -> bool:
        return host_matches(request.host, self.hosts) and self.matches_path(request)

    def matches_path(self, request: Request) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
