"""The inspection API, modelled on Snowplow Micro: `/micro/all|good|bad|reset`.

Tests and CI steps ask it what a tool sent. The proxy serves it on the
reserved host `INSPECTION_HOST`; the standalone collector on any host.
"""

from __future__ import annotations

from typing import Any

from telemetry_audit.collectors.base import CollectorResponse, json_response
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.model import Request

INSPECTION_HOST = "telemetry-audit.local"
"""Requests to this host never leave the proxy: they read the event store."""
PREFIX = "/micro/"


def _filters(request: Request) -> dict[str, Any]:
    query = dict(request.query)
    return {key: query[key] for key in ("tool", "event", "collector") if query.get(key)}


def _limit(request: Request) -> int | None:
    value = dict(request.query).get("limit", "")
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"limit must be a non-negative integer, not {value!r}")
    return int(value)


def handle_inspection(request: Request, store: EventStore) -> CollectorResponse | None:
    """The answer for an inspection request, or None when `request` is not one.

    `/micro/all` returns counts and every event; `/micro/good` and
    `/micro/bad` one kind; `/micro/reset` (GET or POST) empties the store.
    Query filters `tool=`, `event=`, `collector=` and `limit=` narrow the answer.
    """
    if not request.path.startswith(PREFIX):
        return None
    action = request.path[len(PREFIX) :].strip("/")
    if request.method not in ("GET", "POST"):
        return json_response(405, {"error": f"{request.method} is not allowed"})
    filters = _filters(request)
    try:
        limit = _limit(request)
    except ValueError as e:
        return json_response(400, {"error": str(e)})
    if action == "reset":
        store.reset()
        return json_response(200, store.counts())
    if action == "all":
        events = store.all(limit=limit, **filters)
        return json_response(200, {**store.counts(**filters), "events": [e.to_dict() for e in events]})
    if action in ("good", "bad"):
        select = store.good if action == "good" else store.bad
        events = select(limit=limit, **filters)
        return json_response(200, {"count": len(events), "events": [e.to_dict() for e in events]})
    return json_response(404, {"error": f"unknown inspection endpoint {request.path}", "endpoints": _ENDPOINTS})


_ENDPOINTS = ["/micro/all", "/micro/good", "/micro/bad", "/micro/reset"]
