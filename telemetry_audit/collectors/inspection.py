"""The inspection API, compatible with Snowplow Micro's: `/micro/all|good|bad|reset`.

Tests and CI steps ask it what a tool sent. The proxy serves it on the reserved host
`INSPECTION_HOST`; the standalone collector on any host. Paths, methods and response shapes
are Snowplow Micro's, so a test written against Micro runs against us:

* `/micro/all` (GET, POST): `{"total", "good", "bad"}` counts;
* `/micro/good` (GET, POST): a JSON array of good events, newest first, each with Micro's
  `rawEvent`, `eventType`, `schema` and `contexts` plus our own fields (`id`, `received_at`,
  `good`, `reason`, `event`, `decision`, `request`);
* `/micro/bad` (GET, POST): a JSON array of bad events with Micro's `collectorPayload` and
  `errors` plus our own fields;
* `/micro/reset` (GET, POST): empties the store and answers the (zero) counts.

A POST body filters like Micro's (`event_type`, `schema`, `contexts`, `limit` for good events;
`vendor`, `version`, `limit` for bad ones, with Micro's matching rules). Our own filters `tool`,
`event`, `collector` and `offset` are accepted in the body and, with `limit`, in the query
string. Unlike Micro, an answer is bounded: at most `DEFAULT_LIMIT` events unless `limit` says
otherwise (never more than `MAX_LIMIT`); `X-Next-Offset` gives the `offset` of the next page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from telemetry_audit.collectors.base import CollectorResponse, json_response
from telemetry_audit.collectors.store import EventStore, StoredEvent
from telemetry_audit.model import Request

INSPECTION_HOST = "telemetry-audit.local"
"""Requests to this host never leave the proxy: they read the event store."""
PREFIX = "/micro/"
DEFAULT_LIMIT = 1000
"""Events per answer when no `limit` is given (Micro answers everything; a long run could hold millions)."""
MAX_LIMIT = 10000
"""The largest `limit` honoured."""
_PAGE = 500
"""Rows read from the store at a time while filtering."""
_ENDPOINTS = ["/micro/all", "/micro/good", "/micro/bad", "/micro/reset"]
_SNOWPLOW_VENDOR = "com.snowplowanalytics.snowplow"


class InspectionError(ValueError):
    """A query the API cannot answer (the message says which parameter and why)."""


@dataclass(frozen=True)
class Query:
    """Filters for `/micro/good` and `/micro/bad`: Micro's, then ours."""

    event_type: str | None = None
    schema: str | None = None
    contexts: tuple[str, ...] | None = None
    vendor: str | None = None
    version: str | None = None
    tool: str | None = None
    event: str | None = None
    collector: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _string(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InspectionError(f"{name} must be a string, not {json.dumps(value)}")
    return value


def _count(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InspectionError(f"{name} must be a non-negative integer, not {json.dumps(value)}")
    return value


def parse_query(request: Request) -> Query:
    """The filters of an inspection request: query-string parameters, overridden by a JSON POST body."""
    given: dict[str, Any] = {k: v for k, v in request.query if k in ("tool", "event", "collector", "limit", "offset")}
    if request.method == "POST" and request.body.strip():
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise InspectionError(f"the filter body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise InspectionError("the filter body must be a JSON object")
        given.update(body)
    contexts = given.get("contexts")
    if contexts is not None and (not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts)):
        raise InspectionError("contexts must be a list of schema strings")
    return Query(
        event_type=_string(given.get("event_type"), "event_type"),
        schema=_string(given.get("schema"), "schema"),
        contexts=tuple(contexts) if contexts is not None else None,
        vendor=_string(given.get("vendor"), "vendor"),
        version=_string(given.get("version"), "version"),
        tool=_string(given.get("tool"), "tool") or None,
        event=_string(given.get("event"), "event") or None,
        collector=_string(given.get("collector"), "collector") or None,
        limit=min(_count(given.get("limit"), "limit", DEFAULT_LIMIT), MAX_LIMIT),
        offset=_count(given.get("offset"), "offset", 0),
    )


# --- Micro's shapes ----------------------------------------------------------------------------------------------


def _api(row: StoredEvent) -> dict[str, str]:
    """Micro's `api` ({vendor, version}): a Snowplow collector takes it from the path `/vendor/version`."""
    parts = [p for p in str(row.request_meta.get("path", "")).split("/") if p]
    if row.collector == "snowplow" or (parts and parts[0] == _SNOWPLOW_VENDOR):
        return {"vendor": _SNOWPLOW_VENDOR, "version": parts[1] if len(parts) > 1 else "tp2"}
    return {"vendor": row.collector or (parts[0] if parts else ""), "version": parts[1] if len(parts) > 1 else ""}


def event_type(row: StoredEvent) -> str | None:
    """Micro's `eventType`: Snowplow's `e` parameter (`pv`, `ue`, `se`, ...); for other collectors the event name."""
    if row.collector == "snowplow" and isinstance(row.raw.get("e"), str):
        return str(row.raw["e"])
    return row.name


def event_schema(row: StoredEvent) -> str | None:
    """Micro's `schema`: the self-describing event's schema (Snowplow `ue` events), else None."""
    schema = row.context.get("event_schema")
    return schema if isinstance(schema, str) else None


def context_schemas(row: StoredEvent) -> list[str] | None:
    """Micro's `contexts`: the schemas of the event's attached contexts, None when it has none."""
    contexts = row.context.get("contexts")
    if not isinstance(contexts, list):
        return None
    return [c["schema"] for c in contexts if isinstance(c, dict) and isinstance(c.get("schema"), str)]


def good_event(row: StoredEvent) -> dict[str, Any]:
    """One element of `/micro/good`: Micro's fields, then ours (never renamed)."""
    micro = {
        "rawEvent": {"api": _api(row), "parameters": row.raw,
                     "contentType": row.request_meta.get("content_type")},
        "eventType": event_type(row),
        "schema": event_schema(row),
        "contexts": context_schemas(row),
    }
    return {**micro, **row.to_dict()}


def bad_event(row: StoredEvent) -> dict[str, Any]:
    """One element of `/micro/bad`: Micro's `collectorPayload` and `errors`, then ours."""
    payload = {"api": _api(row), "path": row.request_meta.get("path"), "host": row.request_meta.get("host"),
               "method": row.request_meta.get("method")} if row.request_meta else None
    return {"collectorPayload": payload, "errors": [row.reason or "rejected"], **row.to_dict()}


def _keep_good(row: StoredEvent, query: Query) -> bool:
    """Micro's rules: equal event type; a schema filter passes events without a schema; every listed context."""
    if query.event_type is not None and query.event_type != event_type(row):
        return False
    schema = event_schema(row)
    if query.schema is not None and schema is not None and schema != query.schema:
        return False
    if query.contexts is not None:
        contexts = context_schemas(row)
        if contexts is None:
            return not query.contexts
        return all(c in contexts for c in query.contexts)
    return True


def _keep_bad(row: StoredEvent, query: Query) -> bool:
    """Micro's rules: vendor and version compare with the collector payload's `api` (events without one pass)."""
    if not row.request_meta:
        return True
    api = _api(row)
    return (query.vendor is None or api["vendor"] == query.vendor) and (
        query.version is None or api["version"] == query.version)


def _matching(store: EventStore, good: bool, query: Query) -> Iterator[StoredEvent]:
    """Rows newest first (as Micro answers), our SQL filters applied, then Micro's."""
    select = store.good if good else store.bad
    keep: Callable[[StoredEvent, Query], bool] = _keep_good if good else _keep_bad
    offset = 0
    while True:
        rows = select(tool=query.tool, event=query.event, collector=query.collector, limit=_PAGE, offset=offset,
                      newest_first=True)
        for row in rows:
            if keep(row, query):
                yield row
        if len(rows) < _PAGE:
            return
        offset += _PAGE


def _page(store: EventStore, good: bool, query: Query) -> CollectorResponse:
    shaped: list[dict[str, Any]] = []
    more = False
    for index, row in enumerate(_matching(store, good, query)):
        if index < query.offset:
            continue
        if len(shaped) == query.limit:
            more = True
            break
        shaped.append(good_event(row) if good else bad_event(row))
    response = json_response(200, shaped)
    headers = response.headers + ((("X-Next-Offset", str(query.offset + len(shaped))),) if more else ())
    return CollectorResponse(response.status, headers, response.body)


def handle_inspection(request: Request, store: EventStore) -> CollectorResponse | None:
    """The answer for an inspection request, or None when `request` is not one (see the module docstring)."""
    if not request.path.startswith(PREFIX):
        return None
    action = request.path[len(PREFIX) :].strip("/")
    if action not in ("all", "good", "bad", "reset"):
        return json_response(404, {"error": f"unknown inspection endpoint {request.path}", "endpoints": _ENDPOINTS})
    if request.method == "OPTIONS":
        return CollectorResponse(200, (("Allow", "GET, POST, OPTIONS"),), b"")
    if request.method not in ("GET", "POST"):
        return json_response(405, {"error": f"{request.method} is not allowed"})
    try:
        query = parse_query(request)
    except InspectionError as e:
        return json_response(400, {"error": str(e)})
    if action == "reset":
        store.reset()
        return json_response(200, store.counts())
    if action == "all":
        return json_response(200, store.counts(tool=query.tool, event=query.event, collector=query.collector))
    return _page(store, action == "good", query)

