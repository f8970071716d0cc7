"""Checked reading of a family's policy settings.

Settings come from user-written YAML, so a typo (`min_lenght`) or a wrong
type must fail when the policy loads, with the family and key in the message,
rather than silently keep a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DetectorSettings:
    """The settings of one family, read key by key against known defaults."""

    def __init__(self, family: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
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
