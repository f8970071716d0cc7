"""The one offline dispatcher: pick the emulator by protocol, answer, and record what it understood.

Both adapters call `dispatch()`: the proxy addon for telemetry it answers
offline (or blocks), and the standalone collector for every request. So the
same request gets the same answer and the same rows in the `EventStore`,
whichever way it arrived. It is a pure function of the decoded request and
the store: no I/O of its own besides `store.add`, no mitmproxy.

The emulator is chosen by protocol: the host first (a vendor's own ingest
host), then the path and payload shape, so self-hosted collectors
(`otel.example.com/v1/traces`, `sentry.example.com/api/3/envelope/`,
`ph.example.com/batch/`, a Snowplow `GET /i`) are answered in their own
protocol, content type and encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry_audit.collectors import Collector, find_collector
from telemetry_audit.collectors.base import CollectorResponse, Event, Rejection, json_response, request_of
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request, mask

log = logging.getLogger(__name__)

BODY_PREVIEW_CHARS = 2048
"""How much of an unreadable request's body a bad row keeps (the store is private to its owner)."""
BLOCKED_REASON = "blocked by policy"
NO_EMULATOR_REASON = "no emulator for this endpoint"


@dataclass(frozen=True)
class OfflineAnswer:
    """What to send back for one request, and what was recorded about it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    collector: str | None
    """The emulator that answered (None: no emulator speaks this protocol)."""
    tool: str | None
    """The tool the emulator attributes the request to."""
    accepted: tuple[Event, ...] = ()
    """Events the real collector would keep (stored good)."""
    rejected: tuple[Rejection, ...] = ()
    """What was not kept, each with its reason (stored bad): dropped items, or the whole request."""


def request_meta(request: Request, status: int, collector: str | None) -> dict[str, Any]:
    """What the store keeps about the request itself (query values stay out: they hold api secrets)."""
    return {
        "method": request.method,
        "url": request.url,
        "host": request.host,
        "path": request.path,
        "query_keys": sorted({k for k, _ in request.query}),
        "content_type": request.content_type,
        "content_encoding": ",".join(request.content_encodings),
        "user_agent": request.header("user-agent"),
        "body_bytes": len(request.body),
        "status": status,
        "collector": collector,
    }


def masked_meta(meta: dict[str, Any], decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """`meta` with the host and path masked where the decision's findings are (a token in a host label, a path
    segment or a fragment is never stored in clear; the inspection API reads the store)."""
    fields = {str(f.get("field", "")) for f in (decision or {}).get("findings") or [] if isinstance(f, Mapping)}
    masked = dict(meta)
    if "url.host" in fields:
        masked["host"] = mask(str(meta["host"]))
    if "url.path" in fields:
        masked["path"] = mask(str(meta["path"]))
    if masked != meta:
        masked["url"] = f"{masked['host']}{masked['path']}"
    return masked


def _answer_with(
    collector: Collector, decoded: DecodedRequest
) -> tuple[CollectorResponse, tuple[Rejection, ...]]:
    """The emulator's answer and the rejections to record; an emulator failure is a vendor server error."""
    try:
        response = collector.handle(decoded)
    except Exception as e:  # a bug in an emulator: answered like the vendor's 5xx, and recorded, never lost
        log.exception("collector emulator %s failed", collector.name)
        reason = f"emulator error: {type(e).__name__}: {e}"[:500]
        return collector.server_error(decoded, reason), (Rejection(reason),)
    if response.rejected:
        return response, response.rejected
    if response.bad_reason is not None:
        return response, (Rejection(response.bad_reason),)
    return response, ()


def dispatch(
    decoded: DecodedRequest,
    store: EventStore | None,
    *,
    decision: Mapping[str, Any] | None = None,
    blocked: bool = False,
    not_found: bool = False,
    collector: Collector | None = None,
) -> OfflineAnswer:
    """Answer one telemetry request offline and record it in `store`.

    `decision` is stored with every row (the policy's verdict on the request). `blocked`: the policy
    blocked the request. It is answered with the emulator's own success shape (so the tool neither
    fails nor retries; a generic `200 {}` when the emulator would refuse it) and recorded as one bad
    row, "blocked by policy"; none of its events count as received. `not_found`: a request no
    emulator speaks is answered 404 (the standalone server: the client was pointed at a wrong URL)
    instead of the generic success the proxy gives telemetry to unknown endpoints. `collector`: the emulator the
    caller already picked for `decoded` with `find_collector(decoded, by_path=True)` (picked here when not given).
    """
    request = request_of(decoded)
    if collector is None:
        collector = find_collector(decoded, by_path=True)
    accepted: tuple[Event, ...] = ()
    if collector is None and not_found:
        reason = f"no collector emulates {request.method} {request.path}"
        response = json_response(404, {"error": reason})
        rejected: tuple[Rejection, ...] = (Rejection(reason),)
    elif collector is None:
        # Telemetry to an endpoint nobody emulates: a generic success keeps the tool quiet (offline,
        # nothing is sent anyway).
        response = json_response(200, {})
        rejected = (Rejection(NO_EMULATOR_REASON),)
    else:
        response, rejected = _answer_with(collector, decoded)
        accepted = response.events
    if blocked:
        if not 200 <= response.status < 300:
            response = json_response(200, {})
        accepted, rejected = (), (Rejection(BLOCKED_REASON),)
    name = collector.name if collector is not None else None
    tool = _tool(collector, accepted)
    if store is not None:
        record(store, request, response.status, name, tool, accepted, rejected, decision)
    return OfflineAnswer(response.status, response.headers, response.body, name, tool, accepted, rejected)


def _tool(collector: Collector | None, accepted: tuple[Event, ...]) -> str | None:
    if collector is None:
        return None
    tools = {e.tool for e in accepted}
    return tools.pop() if len(tools) == 1 else collector.tool


STORED_FINDINGS = 20
"""Findings kept with each stored row: every row of a request carries its decision, and a 6 MB batch can have
tens of thousands of findings (the audit log and the report keep them all)."""


def stored_decision(decision: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The decision as each stored row keeps it: at most `STORED_FINDINGS` findings, and how many there were."""
    if decision is None:
        return None
    findings = list(decision.get("findings") or [])
    if len(findings) <= STORED_FINDINGS:
        return decision
    return {**decision, "findings": findings[:STORED_FINDINGS], "findings_total": len(findings)}


def record(
    store: EventStore,
    request: Request,
    status: int,
    collector: str | None,
    tool: str | None,
    accepted: tuple[Event, ...],
    rejected: tuple[Rejection, ...],
    decision: Mapping[str, Any] | None = None,
) -> None:
    """Store accepted events as good and each rejection as a bad row, all with collector and tool."""
    meta = masked_meta(request_meta(request, status, collector), decision)
    payload = decision.get("payload") if decision is not None else None
    if decision is not None and "payload" in decision:
        decision = {key: value for key, value in decision.items() if key != "payload"}
    decision = stored_decision(decision)
    if accepted:
        store.add(accepted, good=True, decision=decision, request_meta=meta)
    if not rejected:
        return
    # A body the policy blocked holds what must not be kept (a token): its rows keep no preview of it.
    # The decoded, masked payload the adapter built (telemetry no emulator understands) stands for the body.
    blocked = any(r.reason == BLOCKED_REASON for r in rejected)
    if payload is not None:
        bad_meta = {**meta, "payload": payload}
    elif blocked:
        bad_meta = meta
    else:
        bad_meta = {**meta, "body_preview": request.body[:BODY_PREVIEW_CHARS].decode("utf-8", "replace")}
    judged = [
        (
            Event(collector=collector or "", tool=tool or "", name=rejection.name or "",
                  raw=rejection.item if isinstance(rejection.item, dict) else {}),
            rejection.reason,
        )
        for rejection in rejected
    ]
    store.add_judged(judged, good=False, decision=decision, request_meta=bad_meta)
