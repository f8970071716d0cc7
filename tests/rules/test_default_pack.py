"""rules/default.yaml: vendor write keys recognised by protocol, not by host; nothing else accepted."""

from __future__ import annotations

import base64

import pytest

from telemetry_audit.model import Action, Request
from tests.factories import json_request
from tests.rules.audit import audit

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
WRITE_KEY = "Zq8vL2pR5tW9yB3kQm7xN4cD"
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


@pytest.mark.parametrize("url", [
    "https://api.segment.io/v1/batch",
    "https://events.acme-analytics.example/v1/track",  # a Segment-compatible collector on its own host
    "http://127.0.0.1:8088/v1/batch",
])
def test_segment_write_key_is_accepted_by_protocol_on_any_host(url: str) -> None:
    body = {"writeKey": WRITE_KEY, "batch": [{"type": "track", "event": "x", "anonymousId": "a"}]}
    decision = audit(json_request(body, url=url, headers={"Authorization": BASIC}), "default")
    assert decision.action is Action.ALLOW
    assert all(f.suppressed for f in decision.findings)


def test_a_provider_token_in_the_write_key_header_is_still_blocked() -> None:
    request = json_request({"batch": []}, url="https://events.acme-analytics.example/v1/batch",
                           headers={"Authorization": "Bearer " + GITHUB_TOKEN, "User-Agent": "node-fetch/1.0"})
    assert audit(request, "default").action is Action.BLOCK


def test_the_same_key_off_protocol_is_a_secret() -> None:
    request = json_request({"writeKey": WRITE_KEY}, url="https://events.acme-analytics.example/v2/upload")
    decision = audit(request, "default")
    assert decision.action is Action.BLOCK
    assert {f.detector for f in decision.findings} == {"secrets.key-context"}


def test_amplitude_api_key_in_its_protocol_is_accepted() -> None:
    body = {"api_key": "0123456789abcdef0123456789abcdef"[::-1], "events": [{"event_type": "x", "user_id": "u"}]}
    decision = audit(json_request(body, url="https://api2.amplitude.com/2/httpapi"), "default")
    assert decision.action is Action.ALLOW


@pytest.mark.parametrize(("headers", "expected"), [
    ({"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/111.0.0.0 "
                    "Safari/537.36"}, Action.ALLOW),
    ({"X-Forwarded-For": "81.2.69.142"}, Action.REDACT),
])
def test_a_four_part_version_in_a_user_agent_is_not_an_address(headers: dict[str, str], expected: Action) -> None:
    request = Request.from_url("POST", "https://api.segment.io/v1/track",
                               {"Content-Type": "application/json", **headers}, b'{"event": "x", "v": "8.0.0.0"}')
    assert audit(request, "default").action is expected
