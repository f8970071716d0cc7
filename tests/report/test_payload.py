from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Request
from telemetry_audit.policy import load_policy
from telemetry_audit.report.build import AuditedRequest, build_report
from telemetry_audit.report.payload import MAX_NODES, pointer
from tests.factories import json_request, raw_request

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def _entry(request: Request) -> dict[str, Any]:
    policy = load_policy(None)
    auditor = Auditor(policy, AuditEnvironment(env={}, home="/home/u", cwd="/home/u/w", user="u"), audit_all=True)
    report = build_report([AuditedRequest(request, auditor.evaluate(request))], policy, with_payload=True)
    return report["requests"][0]


def test_flagged_value_is_masked_and_marked() -> None:
    entry = _entry(json_request({"event": "e", "properties": {"token": TOKEN, "n": 3}}))
    payload = entry["payload"]
    assert TOKEN not in json.dumps(entry)
    props = payload["body"]["properties"]
    assert props["n"] == 3 and props["token"].startswith("ghp_") and "chars]" in props["token"]
    indexes = payload["marks"]["/body/properties/token"]
    assert entry["findings"][indexes[0]]["field"] == "properties.token"


def test_embedded_base64_json_is_opened_and_masked() -> None:
    inner = base64.b64encode(json.dumps({"k": TOKEN}).encode()).decode()
    entry = _entry(raw_request(f"data={inner}".encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert TOKEN not in json.dumps(entry)
    assert "/body/data/k" in entry["payload"]["marks"]


@pytest.mark.parametrize(
    ("headers", "name"),
    [({"Authorization": "Bearer abcdefghijklmnop"}, "authorization"), ({"Cookie": "sid=abcdefghijklmnop"}, "cookie")],
)
def test_credential_headers_are_always_masked(headers: dict[str, str], name: str) -> None:
    entry = _entry(json_request({"event": "e"}, headers=headers))
    assert "abcdefghijklmnop" not in json.dumps(entry)
    assert entry["payload"]["headers"][name].endswith("chars]")


def test_flagged_query_values_are_masked() -> None:
    entry = _entry(Request.from_url("GET", f"https://api.segment.io/v1/p?t={TOKEN}&a=1"))
    assert TOKEN not in json.dumps(entry)
    assert entry["payload"]["query"]["t"].endswith("chars]")


def test_undecodable_body_is_shown_as_text_and_a_secret_in_it_masked() -> None:
    clean = _entry(raw_request(b"\x00\x01not json", headers={"Content-Type": "application/json"}))
    assert clean["payload"]["format"] == "raw"
    leaky = _entry(raw_request(f"garbage {TOKEN} {{".encode(), headers={"Content-Type": "application/json"}))
    assert TOKEN not in json.dumps(leaky)


def test_huge_payload_is_truncated() -> None:
    entry = _entry(json_request({"items": list(range(MAX_NODES + 10))}))
    assert entry["payload"]["truncated"] is True
    assert len(json.dumps(entry["payload"])) < 200_000


def test_pointer_escapes_per_rfc6901() -> None:
    assert pointer("body", "a/b", "c~d", 0) == "/body/a~1b/c~0d/0"


def test_payload_is_opt_in() -> None:
    policy = load_policy(None)
    request = json_request({"event": "e"})
    report = build_report([AuditedRequest(request, Auditor(policy, audit_all=True).evaluate(request))], policy)
    assert "payload" not in report["requests"][0]


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://api.segment.io/v1/track", {f"X-{TOKEN}": "1"}),
        (f"https://{TOKEN.lower()}.segment.io/v1/track", {"Host": f"{TOKEN.lower()}.segment.io"}),
    ],
    ids=["header name", "host label in the Host header"],
)
def test_a_token_in_a_header_name_or_the_host_is_masked_in_the_payload(url: str, headers: dict[str, str]) -> None:
    request = json_request({"event": "e"}, url=url, headers=headers)
    entry = _entry(request)
    assert entry["decision"] == "block"
    assert TOKEN.lower() not in json.dumps(entry["payload"]).lower()
    assert entry["payload"]["body"] == {"event": "e"}
