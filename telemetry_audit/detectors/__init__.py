"""The detector catalogue: one factory per family, every detector id and every setting.

The engine builds each family once per audit context with
`FAMILIES[name](settings, environment)` and asks it about every string value
of a request. Detector ids (`<family>.<name>`) are stable: policies,
allowlists and baselines refer to them.

This catalogue is the single source of truth for what a policy may name: the
policy JSON Schema's detector ids and settings are generated from it
(`detector_schema`), so a typo in a policy is a load error, never a silent
non-match, and `rules list --detectors` prints it (`detector_rows`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telemetry_audit.detectors import canary, env_values, paths, pii, secrets
from telemetry_audit.detectors.base import AuditEnvironment, Detector, DetectorFactory, DetectorInfo, Match
from telemetry_audit.detectors.settings import SettingSpec


@dataclass(frozen=True)
class FamilyInfo:
    """One detector family as a policy sees it."""

    name: str
    title: str
    factory: DetectorFactory
    detectors: tuple[DetectorInfo, ...]
    settings: tuple[SettingSpec, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.detectors)


FAMILY_INFO: tuple[FamilyInfo, ...] = (
    FamilyInfo("secrets", "credentials: provider tokens, private keys, passwords", secrets.build, secrets.CATALOGUE,
               secrets.SETTINGS),
    FamilyInfo("paths", "file-system paths that identify a user or project", paths.build, paths.CATALOGUE,
               paths.SETTINGS),
    FamilyInfo("env_values", "values of the audited process's environment variables", env_values.build,
               env_values.CATALOGUE, env_values.SETTINGS),
    FamilyInfo("pii", "personal data: e-mail, user and host names, addresses", pii.build, pii.CATALOGUE,
               pii.SETTINGS),
    FamilyInfo("canary", "markers planted by `run --canary`", canary.build, canary.CATALOGUE, canary.SETTINGS),
)

FAMILIES: dict[str, DetectorFactory] = {family.name: family.factory for family in FAMILY_INFO}

_CATALOGUE: tuple[DetectorInfo, ...] = tuple(d for family in FAMILY_INFO for d in family.detectors)


def catalogue() -> tuple[DetectorInfo, ...]:
    """Every detector id with its family and title, for `rules list` and SARIF rules."""
    return _CATALOGUE


def detector_references() -> tuple[str, ...]:
    """Everything a policy's `detector:` may name: each family, then each detector id."""
    return tuple(f.name for f in FAMILY_INFO) + tuple(d.id for d in _CATALOGUE)


def detector_rows() -> list[tuple[str, str, str]]:
    """(id, family, one-line description) of every detector, for `rules list --detectors`."""
    return [(d.id, d.family, d.title) for d in _CATALOGUE]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was most likely meant to be (a typo), or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def detector_schema() -> dict[str, Any]:
    """JSON Schema pieces generated from the catalogue, for the policy schema.

    `reference`: a detector family or id; `family_settings`: the settings object of each family;
    `settings_by_family`: `if`/`then` pairs tying a forbid entry's `settings` to its detector's family.
    """
    references = list(detector_references())
    family_settings: dict[str, Any] = {}
    for family in FAMILY_INFO:
        family_settings[family.name] = {
            "type": "object",
            "additionalProperties": False,
            "description": f"Settings of the {family.name} family ({family.title}).",
            "properties": {s.name: s.json_schema(family.ids) for s in family.settings},
        }
    settings_by_family = [
        {
            "if": {"required": ["detector"], "properties": {"detector": {"pattern": f"^{family.name}(\\.|$)"}}},
            "then": {"properties": {"settings": {"$ref": f"#/$defs/detector_settings/{family.name}"}}},
        }
        for family in FAMILY_INFO
    ]
    return {"reference": {"enum": references}, "family_settings": family_settings,
            "settings_by_family": settings_by_family}


__all__ = [
    "FAMILIES",
    "FAMILY_INFO",
    "AuditEnvironment",
    "Detector",
    "DetectorFactory",
    "DetectorInfo",
    "FamilyInfo",
    "Match",
    "catalogue",
    "closest",
    "detector_references",
    "detector_rows",
    "detector_schema",
]
