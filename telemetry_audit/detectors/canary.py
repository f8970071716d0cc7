"""Canary markers: unique values `run --canary` plants, found in any wrapping.

A marker is looked for as is, JSON-escaped, URL-encoded and base64-encoded
(the same spellings as environment values: see `env_values.needles_for`),
and as its sha256, sha1 and md5 hex digests, upper or lower case: a hashed
identifier is still an identifier. Gzip-wrapped bodies are opened by the
decoders before any detector runs. Markers come from
`AuditEnvironment.canaries`; with none planted this family finds nothing.

Settings: none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from telemetry_audit.detectors.base import AuditEnvironment, DetectorInfo, Match
from telemetry_audit.detectors.env_values import EnvValuesDetector, Needle, needles_for
from telemetry_audit.detectors.settings import DetectorSettings, SettingSpec
from telemetry_audit.model import FindingKind

FAMILY = "canary"
PLAIN_ID = "canary.marker"
ENCODED_ID = "canary.encoded"
HASHED_ID = "canary.hashed"

CATALOGUE: tuple[DetectorInfo, ...] = (
    DetectorInfo(PLAIN_ID, FAMILY, "Planted canary marker, as planted"),
    DetectorInfo(ENCODED_ID, FAMILY, "Planted canary marker, URL- or base64-encoded"),
    DetectorInfo(HASHED_ID, FAMILY, "Planted canary marker, as a sha256/sha1/md5 digest"),
)


def marker_needles(marker: str, label: str) -> list[Needle]:
    """Every spelling of one marker: raw, escaped, encoded and hashed."""
    found = [
        Needle(n.text, PLAIN_ID if n.detector_id.endswith(".value") else ENCODED_ID,
               n.title.replace(f"value of ${label}", f"canary {label}"), False)
        for n in needles_for(label, marker, whole_word=False)
    ]
    raw = marker.encode("utf-8", "surrogatepass")
    for algorithm in ("sha256", "sha1", "md5"):
        digest = hashlib.new(algorithm, raw).hexdigest()
        for spelling in (digest, digest.upper()):
            found.append(Needle(spelling, HASHED_ID, f"canary {label} ({algorithm} digest)", False))
    return found


class CanaryDetector:
    """Finds planted markers; reuses the literal matcher of the env-values family."""

    family = FAMILY

    def __init__(self, needles: list[Needle]) -> None:
        self._inner = EnvValuesDetector(tuple(needles))
        self.gate = self._inner.gate

    def find(self, value: str) -> Iterator[Match]:
        for match in self._inner.find(value):
            yield replace(match, kind=FindingKind.CANARY)

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        for match in self._inner.find_gated(value, hits):
            yield replace(match, kind=FindingKind.CANARY)


SETTINGS: tuple[SettingSpec, ...] = ()
"""Canary markers come from `run --canary`; the family has no settings."""


def build(settings: Mapping[str, Any], environment: AuditEnvironment) -> CanaryDetector:
    DetectorSettings(FAMILY, settings, SETTINGS)  # rejects any setting
    needles: list[Needle] = []
    for index, marker in enumerate(environment.canaries):
        if marker:
            needles.extend(marker_needles(marker, f"marker #{index + 1}"))
    return CanaryDetector(needles)
