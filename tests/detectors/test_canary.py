"""Canary markers are found in every wrapping, and nothing else is."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote

import pytest

from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.detectors.canary import build
from telemetry_audit.model import FindingKind

TOKEN = "tacanary_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5"
USER = "tacanary1f2e3d4c5b6a"
ENV = AuditEnvironment(canaries=(TOKEN, USER))

CASES = [
    (f"token={TOKEN}", "canary.marker"),
    (json.dumps({"t": TOKEN})[7:-2], "canary.marker"),
    (base64.b64encode(f"user:{TOKEN}".encode()).decode(), "canary.encoded"),
    (base64.urlsafe_b64encode(f"xx{TOKEN}yy".encode()).decode(), "canary.encoded"),
    (quote(f"/home/{USER}/x y", safe=""), "canary.marker"),
    (hashlib.sha256(USER.encode()).hexdigest(), "canary.hashed"),
    (hashlib.md5(USER.encode()).hexdigest().upper(), "canary.hashed"),
    (f"id={hashlib.sha1(TOKEN.encode()).hexdigest()}", "canary.hashed"),
    ("tacanary_ but not the marker", None),
    (hashlib.sha256(b"someone else").hexdigest(), None),
    ("", None),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_canary_spellings(value: str, expected: str | None) -> None:
    matches = list(build({}, ENV).find(value))
    if expected is None:
        assert matches == []
    else:
        assert [m.detector_id for m in matches][:1] == [expected]
        assert all(m.kind is FindingKind.CANARY for m in matches)


def test_no_markers_no_findings() -> None:
    assert list(build({}, AuditEnvironment()).find(TOKEN)) == []
