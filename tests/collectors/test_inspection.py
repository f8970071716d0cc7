"""The Snowplow-Micro-compatible inspection API: Micro's paths, shapes and filters, plus our fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from telemetry_audit.collectors.base import Event
from telemetry_audit.collectors.inspection import DEFAULT_LIMIT, INSPECTION_HOST, handle_inspection
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.model import Request

from .conftest import CollectorServer

SIGNUP = "iglu:com.acme/signed_up/jsonschema/1-0-0"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
CLIENT = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-1"
SNOWPLOW_META = {"method": "POST", "host": "collector.example", "path": "/com.snowplowanalytics.snowplow/tp2"}


def _snowplow(name: str, e: str, schema: str | None = None, contexts: list[str] | None = None) -> Event:
    context: dict[str, Any] = {}
    if schema:
        context["event_schema"] = schema
    if contexts is not None:
        context["contexts"] = [{"schema": c, "data": {}} for c in contexts]
    return Event("snowplow", "snowplow", name, context=context, raw={"e": e, "eid": name})


@pytest.fixture
def store() -> EventStore:
    store = EventStore()
    store.add([Event("posthog", "sst", "cli.start"), Event("otlp", "werf", "CommandStarted")], good=True)
    store.add([_snowplow("page_view", "pv", contexts=[WEB_PAGE])], good=True, request_meta=SNOWPLOW_META)
    store.add([_snowplow("signed_up", "ue", SIGNUP, [WEB_PAGE, CLIENT])], good=True, request_meta=SNOWPLOW_META)
    store.add([], good=False, reason="bad body", request_meta=SNOWPLOW_META)
    store.add([], good=False, reason="not json", request_meta={"method": "POST", "host": "us.i.posthog.com",
                                                             "path": "/batch/"})
    return store


def _ask(store: EventStore, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    response = handle_inspection(Request.from_url(method, f"http://{INSPECTION_HOST}{path}", (), data), store)
    assert response is not None
    return response.status, json.loads(response.body) if response.body else None


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_all_returns_only_the_counts(store: EventStore, method: str) -> None:
    assert _ask(store, "/micro/all", method) == (200, {"total": 6, "good": 4, "bad": 2})


def test_good_is_an_array_newest_first_with_micro_fields_and_ours(store: EventStore) -> None:
    status, events = _ask(store, "/micro/good")
    assert status == 200 and isinstance(events, list)
    assert [e["event"]["name"] for e in events] == ["signed_up", "page_view", "CommandStarted", "cli.start"]
    signup = events[0]
    assert (signup["eventType"], signup["schema"], signup["contexts"]) == ("ue", SIGNUP, [WEB_PAGE, CLIENT])
    assert signup["rawEvent"]["api"] == {"vendor": "com.snowplowanalytics.snowplow", "version": "tp2"}
    assert signup["rawEvent"]["parameters"] == {"e": "ue", "eid": "signed_up"}
    # Our own fields are all still there, under their old names.
    assert {"id", "received_at", "good", "reason", "event", "decision", "request"} <= set(signup)
    assert (events[3]["eventType"], events[3]["schema"], events[3]["contexts"]) == ("cli.start", None, None)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, ["signed_up", "page_view", "CommandStarted", "cli.start"]),
        ({"event_type": "ue"}, ["signed_up"]),
        ({"event_type": "pv"}, ["page_view"]),
        # Micro's rule: a schema filter keeps the events that have no schema at all.
        ({"schema": SIGNUP}, ["signed_up", "page_view", "CommandStarted", "cli.start"]),
        ({"schema": "iglu:com.acme/other/jsonschema/1-0-0"}, ["page_view", "CommandStarted", "cli.start"]),
        ({"contexts": [WEB_PAGE]}, ["signed_up", "page_view"]),
        ({"contexts": [WEB_PAGE, CLIENT]}, ["signed_up"]),
        ({"contexts": []}, ["signed_up", "page_view", "CommandStarted", "cli.start"]),
        ({"limit": 1}, ["signed_up"]),
        ({"event_type": "ue", "contexts": [CLIENT], "limit": 5}, ["signed_up"]),
        ({"tool": "werf"}, ["CommandStarted"]),
        ({"collector": "snowplow", "limit": 1, "offset": 1}, ["page_view"]),
    ],
)
def test_good_post_filters(store: EventStore, body: dict[str, Any], names: list[str]) -> None:
    status, events = _ask(store, "/micro/good", "POST", body)
    assert status == 200
    assert [e["event"]["name"] for e in events] == names


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/micro/good?tool=werf", ["CommandStarted"]),
        ("/micro/good?event=cli.start", ["cli.start"]),
        ("/micro/good?collector=posthog", ["cli.start"]),
        ("/micro/good?limit=1", ["signed_up"]),
    ],
)
def test_query_filters_still_work(store: EventStore, path: str, names: list[str]) -> None:
    assert [e["event"]["name"] for e in _ask(store, path)[1]] == names


@pytest.mark.parametrize(
    ("body", "reasons"),
    [
        ({}, ["not json", "bad body"]),
        ({"vendor": "com.snowplowanalytics.snowplow"}, ["bad body"]),
        ({"vendor": "com.snowplowanalytics.snowplow", "version": "tp1"}, []),
        ({"limit": 1}, ["not json"]),
    ],
)
def test_bad_is_an_array_with_collector_payload_and_errors(store: EventStore, body: dict[str, Any],
                                                           reasons: list[str]) -> None:
    status, events = _ask(store, "/micro/bad", "POST", body)
    assert status == 200
    assert [e["errors"] for e in events] == [[r] for r in reasons]
    assert [e["reason"] for e in events] == reasons
    for event in events:
        assert event["collectorPayload"]["api"]["vendor"] and event["good"] is False


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_reset_answers_the_zero_counts(store: EventStore, method: str) -> None:
    assert _ask(store, "/micro/reset", method) == (200, {"total": 0, "good": 0, "bad": 0})
    assert store.counts()["total"] == 0


def test_answers_are_bounded_and_paged() -> None:
    store = EventStore()
    store.add([Event("posthog", "sst", f"e{i}") for i in range(DEFAULT_LIMIT + 5)], good=True)
    request = Request.from_url("GET", f"http://{INSPECTION_HOST}/micro/good")
    response = handle_inspection(request, store)
    assert response is not None
    assert len(json.loads(response.body)) == DEFAULT_LIMIT
    assert dict(response.headers)["X-Next-Offset"] == str(DEFAULT_LIMIT)
    _, rest = _ask(store, f"/micro/good?offset={DEFAULT_LIMIT}")
    assert [e["event"]["name"] for e in rest] == ["e4", "e3", "e2", "e1", "e0"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/micro/nope", None, 404, "unknown inspection endpoint /micro/nope"),
        ("DELETE", "/micro/all", None, 405, "DELETE is not allowed"),
        ("GET", "/micro/all?limit=x", None, 400, 'limit must be a non-negative integer, not "x"'),
        ("POST", "/micro/good", b"{nope", 400, "the filter body is not JSON"),
        ("POST", "/micro/good", [1], 400, "the filter body must be a JSON object"),
        ("POST", "/micro/good", {"limit": -1}, 400, "limit must be a non-negative integer, not -1"),
        ("POST", "/micro/good", {"event_type": 3}, 400, "event_type must be a string, not 3"),
        ("POST", "/micro/good", {"contexts": "x"}, 400, "contexts must be a list of schema strings"),
    ],
)
def test_bad_requests(store: EventStore, method: str, path: str, body: Any, status: int, error: str) -> None:
    got_status, answer = _ask(store, path, method, body)
    assert got_status == status and error in answer["error"]


def test_options_and_other_paths(store: EventStore) -> None:
    response = handle_inspection(Request.from_url("OPTIONS", f"http://{INSPECTION_HOST}/micro/good"), store)
    assert response is not None and response.status == 200 and "POST" in dict(response.headers)["Allow"]
    assert handle_inspection(Request.from_url("GET", "http://x/v1/batch"), store) is None


def test_real_snowplow_event_filtered_over_http(server: CollectorServer) -> None:
    """A Snowplow tp2 POST to the standalone collector, then Micro-style filtering over HTTP."""
    ue = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
          "data": {"schema": SIGNUP, "data": {"plan": "free"}}}
    co = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
          "data": [{"schema": WEB_PAGE, "data": {"id": "p1"}}]}
    payload = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
               "data": [{"e": "ue", "eid": "a", "ue_pr": json.dumps(ue), "co": json.dumps(co), "p": "srv",
                         "tv": "py-1.0"},
                        {"e": "pv", "eid": "b", "url": "http://x/", "p": "srv", "tv": "py-1.0"}]}
    sent = requests.post(f"{server.url}/com.snowplowanalytics.snowplow/tp2", json=payload, timeout=5)
    assert sent.status_code == 200
    assert requests.get(f"{server.url}/micro/all", timeout=5).json() == {"total": 2, "good": 2, "bad": 0}
    found = requests.post(f"{server.url}/micro/good", json={"event_type": "ue", "contexts": [WEB_PAGE]},
                          timeout=5).json()
    assert [(e["eventType"], e["schema"], e["contexts"]) for e in found] == [("ue", SIGNUP, [WEB_PAGE])]
    assert requests.get(f"{server.url}/micro/reset", timeout=5).json() == {"total": 0, "good": 0, "bad": 0}
