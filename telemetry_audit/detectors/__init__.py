"""The detector catalogue: one factory per family, and every detector id.

The engine builds each family once per audit context with
`FAMILIES[name](settings, environment)` and asks it about every string value
of a request. Detector ids (`<family>.<name>`) are stable: policies,
allowlists and baselines refer to them.
"""

from __future__ import annotations

from telemetry_audit.detectors import canary, env_values, paths, pii, secrets
from telemetry_audit.detectors.base import AuditEnvironment, Detector, DetectorFactory, DetectorInfo, Match

FAMILIES: dict[str, DetectorFactory] = {
    "secrets": secrets.build,
    "paths": paths.build,
    "env_values": env_values.build,
    "pii": pii.build,
    "canary": canary.build,
}

_CATALOGUE: tuple[DetectorInfo, ...] = (
    secrets.CATALOGUE + paths.CATALOGUE + env_values.CATALOGUE + pii.CATALOGUE + canary.CATALOGUE
)


def catalogue() -> tuple[DetectorInfo, ...]:
    """Every detector id with its family and title, for `rules list` and SARIF rules."""
    return _CATALOGUE


__all__ = ["FAMILIES", "AuditEnvironment", "Detector", "DetectorFactory", "DetectorInfo", "Match", "catalogue"]
