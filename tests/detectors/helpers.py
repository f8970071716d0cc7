"""Small helpers shared by the detector tests."""

from __future__ import annotations

from telemetry_audit.detectors.base import Detector

PATHOLOGICAL: tuple[str, ...] = (
    "a" * 1_000_000,
    "ghp_" * 250_000,
    "-----BEGIN PRIVATE KEY-----" + "A" * 1_000_000,
    "/home/" * 170_000,
    "@" + "a." * 500_000,
    ("x" * 30 + "=") * 32_000,
    "1." * 500_000,
    ":" * 1_000_000,
    "password=" * 110_000,
    "https://" + "a:" * 500_000 + "@",
    "\\\\" * 500_000,
    "é" * 500_000,
)
"""Hostile 1 MB values: repetition, unterminated structures, near-misses, non-ASCII."""


def flagged(detector: Detector, value: str) -> list[str]:
    """The detector ids `detector` reports for `value`, checking every span."""
    ids = []
    for match in detector.find(value):
        assert 0 <= match.start < match.end <= len(value)
        ids.append(match.detector_id)
    return ids
