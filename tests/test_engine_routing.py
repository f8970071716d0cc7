"""The engine's routing: telemetry by name (catalogue, host, path), then by payload shape.

A request to a host outside the catalogue, on a path that says nothing, is telemetry when its body looks like
analytics events; then it is audited with the full policy. An ordinary JSON body stays other traffic.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Request
from telemetry_audit.policy import load_policy

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
PLANTED_SECRETS = (GITHUB_TOKEN,)
"""Swept for in every file the suite wrote (`tests/conftest.py`): none may hold it in clear."""
NEUTRAL = "https://api.internal-tool.test/v2/sync"
"""A host no catalogue entry names and a path no telemetry rule reads."""


@pytest.fixture(scope="module")
def auditor() -> Auditor:
    return Auditor(load_policy(None))


def post(body: Any, *, url: str = NEUTRAL, raw: bytes | None = None, headers: dict[str, str] | None = None,
         method: str = "POST") -> Request:
    content = raw if raw is not None else json.dumps(body).encode()
    request = Request.from_url(method, url, body=content)
    pairs = (("content-type", "application/json"), *(headers or {}).items())
    return Request(request.method, request.scheme, request.host, request.port, request.path, request.query,
                   tuple(pairs), request.body)


EVENTS = [
    ({"event": "cli.command", "anonymousId": "a-1", "timestamp": "2026-11-30T10:00:00Z"}, "segment-like"),
    ({"batch": [{"event": "build", "properties": {"ms": 12}}], "distinct_id": "d-1"}, "batch inheriting an id"),
    ([{"eventType": "session_start", "device_id": "dev-9", "time": 1764496800}], "amplitude-like list"),
    ({"events": [{"name": "run", "timestamp": 1, "user_id": "u"}]}, "generic name with time and id"),
]
BENIGN = [
    ({"name": "my-package", "version": "1.2.3", "dependencies": {"left-pad": "^1.0.0"}}, "package manifest"),
    ({"query": "query { viewer { login } }", "variables": {}}, "graphql"),
    ({"type": "commit", "message": "fix", "author": "alice"}, "a record with a type but no time or id"),
    ([{"id": 1, "title": "issue"}, {"id": 2, "title": "other"}], "a list of records"),
    ({"event": "push", "repository": "o/r"}, "an event name without time or id (a webhook setting)"),
]


@pytest.mark.parametrize(("body", "what"), EVENTS, ids=[what for _, what in EVENTS])
def test_an_analytics_payload_to_a_neutral_endpoint_is_telemetry(auditor: Auditor, body: Any, what: str) -> None:
    is_telemetry, rules = auditor.route(post(body))
    assert is_telemetry and rules
    assert auditor.evaluate(post(body)).telemetry


@pytest.mark.parametrize(("body", "what"), BENIGN, ids=[what for _, what in BENIGN])
def test_an_ordinary_json_body_stays_other_traffic(auditor: Auditor, body: Any, what: str) -> None:
    assert auditor.route(post(body)) == (False, ())
    decision = auditor.evaluate(post(body))
    assert not decision.telemetry and decision.action is Action.ALLOW and not decision.findings


def test_payload_telemetry_is_audited_with_the_full_policy(auditor: Auditor) -> None:
    body = {"event": "cli.login", "anonymousId": "a-1", "properties": {"token": GITHUB_TOKEN,
                                                                        "cwd": "/home/alice/secret-project"}}
    decision = auditor.evaluate(post(body))
    assert decision.telemetry and decision.action is Action.BLOCK
    assert {f.kind.value for f in decision.findings} >= {"secret", "path"}


def test_a_compressed_analytics_payload_is_recognised(auditor: Auditor) -> None:
    raw = gzip.compress(json.dumps({"event": "x", "userId": "u-1"}).encode())
    assert auditor.route(post(None, raw=raw, headers={"content-encoding": "gzip"}))[0]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_requests_without_a_body_are_routed_by_name_only(auditor: Auditor, method: str) -> None:
    assert auditor.route(post({"event": "x", "userId": "u"}, method=method)) == (False, ())


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe\x00garbage", b"{not json", b'"just a string"', b"[1, 2, 3]",
                                 b"{" * 100_000])
def test_bodies_that_are_not_events_stay_other_traffic(auditor: Auditor, raw: bytes) -> None:
    assert auditor.route(post(None, raw=raw)) == (False, ())


def test_the_body_is_read_once_for_routing_and_audit(auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    import telemetry_audit.engine as engine

    reads: list[Request] = []
    real = engine.decode_request

    def counting(request: Request, *args: Any) -> Any:
        reads.append(request)
        return real(request, *args)

    monkeypatch.setattr(engine, "decode_request", counting)
    request = post({"event": "x", "anonymousId": "a", "n": 1})
    assert auditor.route(request)[0]
    decoded = auditor.decode(request)
    assert auditor.audit(decoded).telemetry
    assert len(reads) == 1


def test_the_same_body_under_another_name_is_judged_once(auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    import telemetry_audit.engine as engine

    reads: list[Request] = []
    real = engine.decode_request
    monkeypatch.setattr(engine, "decode_request", lambda r, *a: reads.append(r) or real(r, *a))
    first = post({"name": "pkg", "version": "1"})
    second = Request(first.method, first.scheme, "other-name.test", first.port, first.path, first.query,
                     first.headers, first.body)
    assert auditor.route(first) == (False, ()) and auditor.route(second) == (False, ())
    assert len(reads) == 1
