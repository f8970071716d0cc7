"""Detector settings declared as data, and their checked reading.

Each family declares its settings as `SettingSpec`s: the catalogue turns them
into the policy JSON Schema (so a typo such as `min_lenght`, or a wrong type,
fails when the policy loads, with file, line and column) and `DetectorSettings`
reads them with the same types when the family is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SettingType(StrEnum):
    """The value types a detector setting may have."""

    FLAG = "flag"
    """true or false."""
    INTEGER = "integer"
    STRINGS = "strings"
    """A list of strings."""
    DETECTOR_IDS = "detector_ids"
    """A list of this family's detector ids."""


@dataclass(frozen=True)
class SettingSpec:
    """One setting of a detector family."""

    name: str
    type: SettingType
    default: Any
    description: str
    minimum: int = 0
    """For integers: the smallest value allowed."""

    def json_schema(self, family_ids: tuple[str, ...]) -> dict[str, Any]:
        """The JSON Schema of this setting's value (`family_ids`: the ids a `detector_ids` list may name)."""
        schema: dict[str, Any]
        if self.type is SettingType.FLAG:
            schema = {"type": "boolean"}
        elif self.type is SettingType.INTEGER:
            schema = {"type": "integer", "minimum": self.minimum}
        elif self.type is SettingType.STRINGS:
            schema = {"type": "array", "items": {"type": "string"}}
        else:
            schema = {"type": "array", "items": {"enum": list(family_ids)}}
        schema["description"] = f"{self.description} (default: {_show(self.default)})"
        return schema


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class DetectorSettings:
    """The settings of one family, read key by key against its declared specs."""

    def __init__(self, family: str, settings: Mapping[str, Any], specs: tuple[SettingSpec, ...]) -> None:
        defaults = {spec.name: spec.default for spec in specs}
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            known = ", ".join(sorted(defaults))
            raise ValueError(f"{family}: unknown setting(s) {', '.join(unknown)} (known: {known})")
        self.family = family
        self._values = {**defaults, **settings}

    def flag(self, key: str) -> bool:
        value = self._values[key]
        if not isinstance(value, bool):
            raise ValueError(f"{self.family}.{key}: expected true or false, got {value!r}")
        return value

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self._values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{self.family}.{key}: expected an integer >= {minimum}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._values[key]
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{self.family}.{key}: expected a list of strings, got {value!r}")
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"{self.family}.{key}: expected a list of strings, got {value!r}")
        return tuple(value)
