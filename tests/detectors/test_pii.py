"""Tests for telemetry_audit/detectors/pii.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors import pii
from telemetry_audit.detectors.base import AuditEnvironment
from tests.detectors.helpers import PATHOLOGICAL, flagged

ENV = AuditEnvironment(user="alice", hostname="alice-thinkpad.corp.example")
DETECTOR = pii.build({}, ENV)

TABLE: list[tuple[str, str | None]] = [
    ("alice.smith@example.com", "pii.email"),
    ("logged in as dev+ci@initech.io.", "pii.email"),
    ("alice", "pii.user"),
    ("/home/alice/work", "pii.user"),
    ("C:\\Users\\Alice\\x", "pii.user"),
    ("ALICE-THINKPAD", "pii.hostname"),
    ("host alice-thinkpad.corp.example", "pii.hostname"),
    ("3c:22:fb:9a:10:7e", "pii.mac-address"),
    ("A4-83-E7-01-02-03", "pii.mac-address"),
    ("connect ECONNREFUSED 81.2.69.142:443", "pii.ip-address"),
    ("2a00:1450:4001:82b::200e", "pii.ip-address"),
    ("git@github.com:alice/billing-api.git", "pii.git-remote"),
    ("ssh://git@gitlab.com/team/repo.git", "pii.git-remote"),
    ("https://bob@gitlab.example.com/team/repo.git", "pii.url-user"),
    ("malice", None),
    ("alice2", None),
    ("10.0.0.12", None),
    ("192.168.1.20", None),
    ("127.0.0.1", None),
    ("fe80::1", None),
    ("::1", None),
    ("00:00:00:00:00:00", None),
    ("6.18.44-fc-v769", None),
    ("1.2.3.4.5", None),
    ("07:58:27", None),
    ("2026-11-22T07:58:27.763893865Z", None),
    ("0ba1fd90-e64a-11f1-a508-991b2c0cd370", None),
    ("@serverless/dashboard-plugin", None),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", None),
    ("https://github.com/serverless/serverless", None),
    ("https://git@github.com/owner/repo", None),
    ("posthog-go (version: 2.0.0)", None),
    ("", None),
]


@pytest.mark.parametrize(("value", "expected"), TABLE)
def test_pii(value: str, expected: str | None) -> None:
    ids = flagged(DETECTOR, value)
    assert (expected in ids) if expected else ids == []


def test_private_ips_setting() -> None:
    assert flagged(pii.build({"private_ips": True}, ENV), "10.0.0.12") == ["pii.ip-address"]


def test_generic_and_short_names_are_not_looked_for() -> None:
    detector = pii.build({}, AuditEnvironment(user="root", hostname="localhost"))
    assert flagged(detector, "root on localhost") == []
    assert flagged(pii.build({}, AuditEnvironment(user="al")), "al") == []
    assert flagged(pii.build({"ignore_users": ["alice"]}, ENV), "alice") == []


def test_ignore_emails() -> None:
    detector = pii.build({"ignore_emails": ["example.com", "noreply@github.com"]}, ENV)
    assert flagged(detector, "bob@example.com noreply@github.com") == []
    assert flagged(detector, "bob@example.org") == ["pii.email"]


@pytest.mark.parametrize("bad", [{"private_ips": "no"}, {"disable": ["pii.phone"]}, {"ignore_users": "a"}])
def test_bad_settings_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="pii"):
        pii.build(bad, ENV)


@pytest.mark.parametrize("value", PATHOLOGICAL, ids=lambda v: f"{v[:12]!r}x{len(v)}")
def test_pathological_values_complete(value: str) -> None:
    detector = pii.build({"private_ips": True}, AuditEnvironment(user="aaa", hostname="a.a"))
    for d in (DETECTOR, detector):
        flagged(d, value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abcdefABC:.-@/ alice"), max_size=200) | st.text())
def test_never_raises(value: str) -> None:
    flagged(pii.build({"private_ips": True}, ENV), value)
