"""Helpers for the rule-pack tests: a fixed audit environment, captures, and findings as plain tuples."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from telemetry_audit.captures import load_requests
from telemetry_audit.decoders import DecodeLimits, decode_request
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Decision, FindingKind, Request
from telemetry_audit.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
OTLP = ROOT / "tests" / "data" / "otlp"

BASE_ENV = {"HOME": "/home/alice", "USER": "alice", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def environment(**extra_env: str) -> AuditEnvironment:
    """The audited process, fixed (never this machine's): user alice on alice-laptop."""
    return AuditEnvironment(
        env={**BASE_ENV, **extra_env},
        home="/home/alice",
        cwd="/home/alice/work/demo",
        user="alice",
        hostname="alice-laptop",
    )


def capture(name: str, folder: Path = CAPTURES) -> Request:
    (request,) = load_requests(str(folder / f"{name}.json"))
    return request


def audit(request: Request, *packs: str, env: AuditEnvironment | None = None) -> Decision:
    return Auditor(load_policy(list(packs)), env or environment(), audit_all=True).evaluate(request)


def undocumented(decision: Decision) -> list[str]:
    """Generic paths of the undocumented findings, sorted and deduplicated."""
    return sorted({f.message.split(": ", 1)[1] for f in decision.findings if f.kind is FindingKind.UNDOCUMENTED})


def forbidden(decision: Decision) -> set[tuple[str, str, str, str]]:
    """(rule id, detector, field, action) of every finding that is not about documentation."""
    return {
        (f.rule_id, f.detector, f.field, f.action.value)
        for f in decision.findings
        if f.kind is not FindingKind.UNDOCUMENTED
    }


def json_request(url: str, body: Any, headers: Mapping[str, str] | None = None) -> Request:
    return Request.from_url("POST", url, {"Content-Type": "application/json", **(headers or {})},
                            json.dumps(body).encode())


def redacted_json(request: Request, decision: Decision) -> Any:
    """The body the proxy would forward after redaction, parsed."""
    assert decision.redacted_body is not None
    return json.loads(decision.redacted_body)


def decoded_values(body: bytes, url: str, content_type: str = "application/json") -> dict[str, Any]:
    """Field path -> value of a (redacted) body."""
    request = Request.from_url("POST", url, {"Content-Type": content_type}, body)
    return {f.path: f.value for f in decode_request(request, DecodeLimits()).fields}
