"""Tests for telemetry_audit/detectors/__init__.py: the registry and the catalogue."""

from __future__ import annotations

import re

from telemetry_audit.detectors import FAMILIES, FAMILY_INFO, catalogue, detector_rows
from telemetry_audit.detectors.base import AuditEnvironment, Match
from telemetry_audit.detectors.spans import outermost
from telemetry_audit.model import FindingKind
from telemetry_audit.policy import policy_schema

ID = re.compile(r"^(secrets|paths|env_values|pii|canary)\.[a-z0-9-]+$")


def test_families() -> None:
    assert set(FAMILIES) == {"secrets", "paths", "env_values", "pii", "canary"}
    for name, factory in FAMILIES.items():
        detector = factory({}, AuditEnvironment())
        assert detector.family == name
        assert list(detector.find("")) == []


def test_catalogue_ids_are_unique_and_well_formed() -> None:
    entries = catalogue()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    for entry in entries:
        assert ID.match(entry.id), entry.id
        assert entry.id.split(".", 1)[0] == entry.family
        assert entry.title


def test_every_id_and_setting_is_in_the_policy_schema() -> None:
    # The schema is generated from the catalogue: every id is usable in `forbid: - detector: ...`,
    # and every family's settings are exactly the declared ones.
    schema = policy_schema()
    references = schema["$defs"]["detector_reference"]["enum"]
    assert set(references) == {e.id for e in catalogue()} | set(FAMILIES)
    for family in FAMILY_INFO:
        declared = schema["$defs"]["detector_settings"][family.name]["properties"]
        assert set(declared) == {s.name for s in family.settings}


def test_detector_rows_list_every_detector_once() -> None:
    rows = detector_rows()
    assert [r[0] for r in rows] == [e.id for e in catalogue()]
    assert all(family and title for _, family, title in rows)


def test_reported_ids_are_catalogued(environment: AuditEnvironment) -> None:
    from tests.detectors.corpus import build_all, flatten, load

    known = {e.id for e in catalogue()}
    detectors = build_all(environment)
    for record in load():
        for _, value in flatten(record.event):
            for detector in detectors.values():
                for match in detector.find(value):
                    assert match.detector_id in known


def test_outermost_keeps_the_enclosing_span() -> None:
    def m(start: int, end: int, name: str) -> Match:
        return Match(name, FindingKind.PII, name, start, end)

    kept = outermost([m(5, 8, "inner"), m(0, 10, "outer"), m(12, 14, "other"), m(0, 10, "same")])
    assert [k.detector_id for k in kept] == ["outer", "other"]
