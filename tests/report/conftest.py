"""Report fixtures: hand-built JSON reports modelled on real telemetry (tests/data/reports/)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.report.samples import SARIF_SCHEMA, load


@pytest.fixture
def ci_report() -> dict[str, Any]:
    """LocalStack session (secret + detector-id finding), a clean event, SST batch (field finding and a
    suppressed key), werf OTLP (decode finding) and one non-telemetry request."""
    return load("ci_run")


@pytest.fixture
def clean_report() -> dict[str, Any]:
    return load("clean")


@pytest.fixture
def make_finding() -> Callable[..., dict[str, Any]]:
    def make(**overrides: Any) -> dict[str, Any]:
        finding: dict[str, Any] = {
            "rule_id": "sst-telemetry",
            "kind": "field",
            "field": "batch[0].properties.args[0]",
            "severity": "medium",
            "action": "block",
            "preview": "--st…[23 chars]",
            "fingerprint": "0123456789abcdef0123456789abcdef",
        }
        finding.update(overrides)
        return finding

    return make


@pytest.fixture
def make_request() -> Callable[..., dict[str, Any]]:
    def make(findings: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "method": "POST",
            "url": "https://us.i.posthog.com/batch/",
            "host": "us.i.posthog.com",
            "path": "/batch/",
            "tool": "sst",
            "decision": "allow",
            "time": 1732271240.877,
            "rule_ids": ["sst-telemetry"],
            "findings": findings or [],
        }
        request.update(overrides)
        return request

    return make


@pytest.fixture
def make_report(ci_report: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """A report with the fixture policy and the given requests (summary left as in the fixture)."""

    def make(requests: list[dict[str, Any]]) -> dict[str, Any]:
        report = copy.deepcopy(ci_report)
        report["requests"] = requests
        return report

    return make


@pytest.fixture
def sarif_schema() -> dict[str, Any]:
    return json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
