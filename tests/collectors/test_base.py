"""Shared collector helpers."""

from __future__ import annotations

import pytest

from telemetry_audit.collectors.base import host_matches, iso_timestamp


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("api.segment.io", ("api.segment.io",), True),
        ("API.Segment.io.", ("api.segment.io",), True),
        ("o1.ingest.sentry.io", ("*.sentry.io",), True),
        ("sentry.io", ("*.sentry.io",), True),  # the apex too: see telemetry_audit/hosts.py
        ("evilsentry.io", ("*.sentry.io",), False),
    ],
)
def test_host_matches(host: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert host_matches(host, patterns) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, "2023-11-14T22:13:20.000Z"),
        (1700000000.5, "2023-11-14T22:13:20.500Z"),
        (1700000000000, "2023-11-14T22:13:20.000Z"),
        ("1700000000000000", "2023-11-14T22:13:20.000Z"),
        (1700000000000000000, "2023-11-14T22:13:20.000Z"),
        ("2026-11-22T07:58:27Z", "2026-11-22T07:58:27Z"),
        ("", None),
        (None, None),
        (True, None),
        ({"a": 1}, None),
    ],
)
def test_iso_timestamp(value: object, expected: str | None) -> None:
    assert iso_timestamp(value) == expected
