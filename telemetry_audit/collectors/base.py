"""The collector interface: what every analytics-collector emulator implements.

An emulator answers a telemetry request the way the vendor's collector would,
so a tool keeps working offline, and normalises what it received into
`Event`s, so one field policy can be written across vendors. `handle()` is a
pure function of the already decoded request (`DecodedRequest`: content codings
undone once, by `telemetry_audit.decoders`); `collectors.dispatch` picks the
emulator, records the outcome and is what both adapters (the proxy addon and
the standalone server) call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from telemetry_audit.decoders import DecodedRequest
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
    """Set when the request, or part of it, does not fit the protocol.

    When the whole request is rejected the response is the vendor's error and `events` is empty;
    collectors that accept part of a batch (Segment, Mixpanel `/track`, OTLP `partial_success`, App
    Insights 206) answer success and keep the valid ones. Without `rejected`, it is recorded as one bad row.
    """
    rejected: tuple[Rejection, ...] = ()
    """The items the real collector would drop, one bad row each (takes precedence over `bad_reason`)."""

    @property
    def good(self) -> bool:
        return self.bad_reason is None and not self.rejected


@dataclass(frozen=True)
class Rejection:
    """One item of a request that the collector drops, and why."""

    reason: str
    item: Any = None
    """The item as decoded (recorded as the bad row's `raw` when it is an object)."""
    name: str | None = None
    """The event name, when the item says one."""


class Collector(Protocol):
    """An emulator for one collector protocol."""

    name: str
    """Stable id of the emulator (`segment`, `otlp`, `werf`)."""
    tool: str
    """The tool name given to events when the payload does not say (`segment`, `localstack`)."""
    hosts: tuple[str, ...]
    """Exact host names, or `*.example.com` wildcards, of the real collector."""

    def matches(self, request: Request) -> bool:
        """True when `request` goes to this collector's own host and one of its endpoints (no body read)."""
        ...

    def matches_path(self, decoded: DecodedRequest) -> bool:
        """True when the path and payload shape say this protocol, whatever the host.

        Picks the emulator for self-hosted collectors (`otel.example.com/v1/traces`) and for the
        standalone server, where every request arrives at 127.0.0.1.
        """
        ...

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        """Answer the request as the real collector would; never raises on bad input."""
        ...

    def server_error(self, decoded: DecodedRequest, message: str) -> CollectorResponse:
        """The vendor's answer to a failure on its side (used when the emulator itself fails)."""
        ...


def request_of(decoded: DecodedRequest) -> Request:
    """The request `decoded` was made from (`decode_request` always sets it)."""
    if decoded.request is None:
        raise ValueError("DecodedRequest without its request: build it with decode_request()")
    return decoded.request


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(payload, separators=(",", ":"))` without building an encoder per answer."""


def json_response(
    status: int,
    payload: Any,
    events: Iterable[Event] = (),
    bad_reason: str | None = None,
    *,
    content_type: str = "application/json",
) -> CollectorResponse:
    """A JSON answer, compact like the vendors' own."""
    body = _COMPACT_JSON.encode(payload).encode()
    return CollectorResponse(
        status=status,
        headers=(("Content-Type", content_type),),
        body=body,
        events=tuple(events),
        bad_reason=bad_reason,
    )


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
    """Shared routing for emulators: one of `hosts` and `owns_path()`, or by path and shape alone."""

    name: str = ""
    tool: str = ""
    hosts: tuple[str, ...] = ()

    def matches(self, request: Request) -> bool:
        return host_matches(request.host, self.hosts) and self.owns_path(request.path, request.method)

    def owns_path(self, path: str, method: str) -> bool:
        """True when `path` is one of this collector's endpoints."""
        raise NotImplementedError

    def matches_path(self, decoded: DecodedRequest) -> bool:
        request = request_of(decoded)
        return self.owns_path(request.path, request.method)

    def server_error(self, decoded: DecodedRequest, message: str) -> CollectorResponse:
        return json_response(500, {"error": "internal server error"}, bad_reason=message)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
