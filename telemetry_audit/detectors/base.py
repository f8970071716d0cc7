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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2

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


class GatedDetector(Detector, Protocol):
    """A detector whose `find` starts with one `re2.Set` pass, and that lets the engine run that pass for it.

    The engine joins the gates of every detector a request is checked with into one set and runs it once over
    the request's scan text (one DFA pass instead of one per family); a detector no entry of its gate hit is
    not asked at all. That is exact because of the contract below.
    """

    gate: tuple[str, ...]
    """RE2 patterns: a text that none of them matches holds no match for `find_gated` (a detector with work
    that no pattern predicts adds the empty pattern, which matches every text)."""

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        """`find(value)`, given `hits`: the indexes of the `gate` entries that match somewhere in `value`."""
        ...


ALWAYS = ""
"""The gate entry that matches every text."""


SET_MAX_MEM = 8 << 20
"""RE2's default memory budget, where a set's budget starts."""
SET_MAX_MEM_LIMIT = 1 << 30
"""Where `gate_set` stops growing a set's budget."""


def gate_set(entries: Iterable[str], max_mem: int | None = None) -> Any:
    """An unanchored `re2.Set` of `entries`, compiled, whose `Match(text)` gives the indexes of those that match.

    A set whose program outgrows its budget does not compile (RE2 has no slower fallback for sets): the budget is
    grown fourfold until it does. The env-values family needs that where the environment is large (a Kubernetes
    pod's service variables, a CI runner's: about 500 variables of 40 characters outgrew the default 8 MiB, and
    every request then ended as an audit error). The budget caps what RE2 may use, it allocates as it needs.
    """
    entries = list(entries)
    budget = max_mem or SET_MAX_MEM
    while True:
        options = re2.Options()
        options.max_mem = budget
        found = re2.Set.SearchSet(options)
        for entry in entries:
            found.Add(entry)
        try:
            found.Compile()
        except re2.error:
            if budget >= SET_MAX_MEM_LIMIT:
                raise
            budget *= 4
            continue
        return found


JOINT_GATE_MAX_MEM = 32 << 20
"""RE2's memory budget for a joint gate: its DFA has the states of every family's gate at once, and with the
default 8 MiB it thrashed on some texts (measured: 16 us for a 1.4 KB text of e-mail characters, 10 us here)."""
_PROBE = r"\A\z"
"""An entry only the empty text matches: were the DFA unable to run at all, `Match("")` would not report it."""


class JointGate:
    """The gates of several detectors as one set: one pass over a text tells which entries of each one hit.

    `gates[i]` is detector i's `gate`, or None for a detector with no gate (asked as usual). `usable` is False
    when RE2 cannot run the joined set (its program beyond the memory budget): the caller then runs each
    detector's own pass.
    """

    def __init__(self, gates: Sequence[tuple[str, ...] | None]) -> None:
        entries: list[str] = [_PROBE]
        owners: list[tuple[int, int]] = [(-1, 0)]
        for position, gate in enumerate(gates):
            for local, entry in enumerate(gate or ()):
                entries.append(entry)
                owners.append((position, local))
        self._owners = owners
        self._set: Any = None
        try:
            joined = gate_set(entries, JOINT_GATE_MAX_MEM)
        except re2.error:
            return
        if 0 in (joined.Match("") or ()):
            self._set = joined

    @property
    def usable(self) -> bool:
        return self._set is not None

    def hits(self, text: str) -> dict[int, list[int]]:
        """Per detector (its position in `gates`), the indexes of its gate's entries that match in `text`."""
        found = self._set.Match(text)
        if not found:
            return {}
        by_detector: dict[int, list[int]] = {}
        owners = self._owners
        for index in found:
            position, local = owners[index]
            if position >= 0:
                by_detector.setdefault(position, []).append(local)
        return by_detector


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
