"""The Snowplow-Micro-like inspection API, as a pure function."""

from __future__ import annotations

import json

import pytest

from telemetry_audit.collectors.base import Event
from telemetry_audit.collectors.inspection import INSPECTION_HOST, handle_inspection
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.model import Request


@pytest.fixture
def store() -> EventStore:
    store = EventStore()
    store.add([Event("posthog", "sst", "cli.start"), Event("otlp", "werf", "CommandStarted")], good=True)
    store.add([], good=False, reason="bad body")
    return store


def _get(store: EventStore, path: str, method: str = "GET") -> tuple[int, dict[str, object]]:
    response = handle_inspection(Request.from_url(method, f"http://{INSPECTION_HOST}{path}"), store)
    assert response is not None
    return response.status, json.loads(response.body)


def test_all_returns_counts_and_events(store: EventStore) -> None:
    status, body = _get(store, "/micro/all")
    assert status == 200
    assert (body["total"], body["good"], body["bad"]) == (3, 2, 1)
    assert [e["event"]["name"] for e in body["events"]] == ["cli.start", "CommandStarted", None]  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/micro/good", ["cli.start", "CommandStarted"]),
        ("/micro/good?tool=werf", ["CommandStarted"]),
        ("/micro/good?event=cli.start", ["cli.start"]),
        ("/micro/good?collector=posthog", ["cli.start"]),
        ("/micro/good?limit=1", ["cli.start"]),
        ("/micro/bad", [None]),
    ],
)
def test_good_and_bad_with_filters(store: EventStore, path: str, names: list[str | None]) -> None:
    status, body = _get(store, path)
    assert status == 200
    assert [e["event"]["name"] for e in body["events"]] == names  # type: ignore[index, union-attr]
    assert body["count"] == len(names)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_reset(store: EventStore, method: str) -> None:
    assert _get(store, "/micro/reset", method) == (200, {"total": 0, "good": 0, "bad": 0})
    assert store.counts()["total"] == 0


def test_errors_and_other_paths(store: EventStore) -> None:
    assert _get(store, "/micro/nope")[0] == 404
    assert _get(store, "/micro/all?limit=x") == (400, {"error": "limit must be a non-negative integer, not 'x'"})
    assert handle_inspection(Request.from_url("GET", "http://x/v1/batch"), store) is None
