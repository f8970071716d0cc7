"""The detector interface: what every detector family implements.

A detector family (secrets, paths, env values, personal data) is built once
per audit context and then asked about many string values. It reports
`Match`es (positions inside the value); the engine turns them into findings
with masked previews and fingerprints, so detectors never format plaintext.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from telemetry_audit.model import FindingKind


@dataclass(frozen=True)
class Match:
    """One detected span inside a value."""

    detector_id: str
    """Stable id, `<family>.<name>`, e.g. `secrets.github-pat`; never renamed once shipped."""
    kind: FindingKind
    title: str
    start: int
    end: int


@dataclass(frozen=True)
class AuditEnvironment:
    """What the detectors know about the audited process and its machine.

    The proxy fills this from the command it runs; `check` from its own process.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    home: str = ""
    cwd: str = ""
    user: str = ""
    hostname: str = ""
    canaries: tuple[str, ...] = ()
    """Marker values planted by `run --canary`."""

    @classmethod
    def current(cls, env: Mapping[str, str] | None = None, cwd: str | None = None) -> AuditEnvironment:
        """The environment of this process (or of `env`, for a child about to run)."""
        env = dict(os.environ if env is None else env)
        try:
            user = env.get("USER") or env.get("USERNAME") or getpass.getuser()
        except Exception:  # getpass raises OSError (or KeyError) without a passwd entry
            user = ""
        return cls(
            env=env,
            home=env.get("HOME") or os.path.expanduser("~"),
            cwd=cwd or os.getcwd(),
            user=user,
            hostname=socket.gethostname(),
        )


class Detector(Protocol):
    """A family of detectors, configured and ready to scan values."""

    @property
    def family(self) -> str:
        """`secrets`, `paths`, `env_values`, `pii`, `canary` or `custom`."""
        ...

    def find(self, value: str) -> Iterator[Match]:
        """Every match in `value`; must run in time linear in `len(value)`."""
        ...


class DetectorFactory(Protocol):
    """Builds a detector family from its policy settings and the audit environment."""

    def __call__(self, settings: Mapping[str, Any], environment: AuditEnvironment) -> Detector: ...


@dataclass(frozen=True)
class DetectorInfo:
    """One entry of the catalogue (`rules list`, SARIF `tool.driver.rules`)."""

    id: str
    """Stable detector id, `<family>.<name>`."""
    family: str
    title: str
