"""The compiled policy: plain frozen dataclasses the engine evaluates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import re2

from telemetry_audit.hosts import host_matches
from telemetry_audit.model import Action, FieldValue, FindingKind, RedactMode, Request, Severity


def _translate(glob: str, one_segment: str, one_char: str | None) -> str:
    """A glob as RE2: `**` any text, `*` one segment (`one_segment`), `?` one character when given."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append(one_segment)
            i += 1
        elif glob[i] == "?" and one_char is not None:
            out.append(one_char)
            i += 1
        else:
            out.append(re2.escape(glob[i]))
            i += 1
    return "".join(out)


def glob_to_regex(glob: str, separator: str = "/") -> str:
    """A glob as an RE2 pattern: `**` crosses separators, `*` and `?` do not."""
    sep = re2.escape(separator)
    return _translate(glob, f"[^{sep}]*", f"[^{sep}]")


_QUOTED_NAME = r'\["(?:[^"\\]|\\.)*"\]'
"""A quoted name in a field path: `["ai.device.id"]` (JSON string escapes inside)."""


def field_glob_to_regex(pattern: str) -> str:
    """A field path pattern as RE2 over generic paths (`a.b[].c`, `tags["ai.device.id"]`).

    `*` is one name, `**` any depth, `[]`/`[*]` any index; a name with dots, brackets or quotes is written
    quoted as the decoders spell it (`tags["ai.device.id"]`; inside the quotes `*` is any text:
    `attributes["service.*"]`); a whole-name `*` also matches a quoted name. A pattern also covers
    everything beneath it (allowing `versions` allows `versions.node`).
    """
    out: list[str] = []
    i = 0
    text = pattern.replace("[*]", "[]")
    while i < len(text):
        if text.startswith('["', i):
            end = i + 2
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            end = text.find("]", end)
            end = len(text) if end < 0 else end + 1
            out.append(r"(?:[^\"\\]|\\.)*".join(re2.escape(piece) for piece in text[i:end].split("*")))
            i = end
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            whole = (i == 0 or text[i - 1] == ".") and (i + 1 == len(text) or text[i + 1] in ".[")
            if whole and i and out and out[-1] == re2.escape("."):
                out[-1] = f"(?:\\.[^.\\[]*|{_QUOTED_NAME})"
            elif whole:
                out.append(f"(?:[^.\\[]*|{_QUOTED_NAME})")
            else:
                out.append(r"[^.\[]*")
            i += 1
        else:
            out.append(re2.escape(text[i]))
            i += 1
    return "".join(out) + r"(?:$|[.\[].*)"


_PATH_STEP = re2.compile(r'\["(?:[^"\\]|\\.)*"\]|\[[0-9]*\]|\.?[^.\[]+')
"""One step of a field path: a quoted name, a list index (`[3]`, generic `[]`), or a plain name."""


def path_steps(path: str) -> list[str]:
    """`events[0].metadata.session_id` -> `events`, `[0]`, `.metadata`, `.session_id` (joined, the path again)."""
    return [m.group(0) for m in _PATH_STEP.finditer(path)]


def compile_alternation(patterns: list[str]) -> Any:
    """One RE2 program matching any of `patterns` in full, or None for none."""
    if not patterns:
        return None
    return re2.compile("^(?:" + "|".join(f"(?:{p})" for p in patterns) + ")$")


@dataclass(frozen=True)
class PayloadShape:
    """A tool's payload recognised by its shape on any host (werf's spans when `WERF_TELEMETRY_TRACE_URL` moves it).

    `keys` are top-level keys of the decoded body, tested first (a set test on a document already parsed);
    only then are `fields` looked for: generic field paths the body must all hold. Each field's last name must
    also appear in the plain body, a substring test that spares the field walk for most look-alikes.
    """

    keys: frozenset[str]
    fields: frozenset[str]
    names: tuple[bytes, ...] = ()
    """The last name of each field path, as bytes (the cheap second test)."""

    def has_keys(self, tree: Any) -> bool:
        """The first test: the body is an object with every one of `keys` (a few dict lookups)."""
        if not isinstance(tree, dict):
            return False
        for key in self.keys:
            if key not in tree:
                return False
        return True

    def matches(self, tree: Any, plain_body: bytes | None, generic_paths: Callable[[], Iterable[str]]) -> bool:
        if not self.has_keys(tree):
            return False
        if plain_body is not None and not all(name in plain_body for name in self.names):
            return False
        return self.fields <= set(generic_paths())


@dataclass(frozen=True)
class MatchSpec:
    """Which requests a rule applies to; every given criterion must hold.

    With `payload`, the spec never matches on the request line and headers alone (routing): it is tried on
    the decoded body of a request another rule already reads, so it never makes a request be decoded.
    """

    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    telemetry: bool | None = None
    path_regex: Any = None
    user_agent_regex: Any = None
    payload: PayloadShape | None = None

    def matches(self, request: Request, is_telemetry: bool) -> bool:
        return self.payload is None and self.matches_request(request, is_telemetry)

    def matches_request(self, request: Request, is_telemetry: bool) -> bool:
        """Every criterion but the payload shape holds."""
        if self.telemetry is not None and self.telemetry != is_telemetry:
            return False
        if self.methods and request.method.upper() not in self.methods:
            return False
        if self.hosts and not host_matches(request.host, self.hosts):
            return False
        if self.path_regex is not None and not self.path_regex.match(request.path):
            return False
        if self.user_agent_regex is not None and not self.user_agent_regex.match(request.header("user-agent")):
            return False
        return True


@dataclass(frozen=True)
class FieldPolicy:
    """The documented fields of a request, and what to do with the rest."""

    allow: tuple[str, ...] = ()
    allow_regex: Any = None
    sources: Mapping[str, str] = field(default_factory=dict)
    unknown: Action | None = None
    unknown_severity: Severity = Severity.LOW
    unknown_kind: FindingKind = FindingKind.FIELD
    redact: RedactMode = RedactMode.DROP
    ignore_regex: Any = None

    def is_allowed(self, generic_path: str) -> bool:
        return self.allow_regex is not None and self.allow_regex.match(generic_path) is not None

    def is_ignored(self, generic_path: str) -> bool:
        return self.ignore_regex is not None and self.ignore_regex.match(generic_path) is not None


_REMEMBERED_MATCH_CHARS = 256
_REMEMBERED_MATCHES = 4096
"""`ForbidSpec.excepts` remembers its verdict on matches up to this long, this many at a time."""


@dataclass(frozen=True)
class ForbidSpec:
    """One detector (family, single detector, or custom pattern) and what its findings do."""

    family: str
    """`secrets`, `paths`, `env_values`, `pii`, `canary` or `custom`."""
    detector_id: str = ""
    """Restrict the family to one detector id (`secrets.github-pat`)."""
    pattern: Any = None
    custom_id: str = ""
    title: str = ""
    fields_regex: Any = None
    action: Action = Action.LOG
    severity: Severity = Severity.MEDIUM
    redact: RedactMode = RedactMode.MASK
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: FindingKind | None = None
    """The kind reported for this entry's findings; None keeps the detector's own (custom patterns: secret)."""
    except_regex: Any = None
    """A match whose text fully matches this (`except_values`) is not a finding: the documented values."""
    when: Condition | None = None
    """Only where this holds (`when`): e.g. in events whose `name` is `cli_cmd`."""

    _excepted: dict[str, bool] = field(default_factory=dict, init=False, compare=False, repr=False)
    """`excepts` verdicts already given: the documented values repeat in every request."""

    def excepts(self, matched: str) -> bool:
        if self.except_regex is None:
            return False
        verdict = self._excepted.get(matched)
        if verdict is None:
            verdict = self.except_regex.match(matched) is not None
            if len(matched) <= _REMEMBERED_MATCH_CHARS:
                if len(self._excepted) >= _REMEMBERED_MATCHES:
                    self._excepted.clear()
                self._excepted[matched] = verdict
        return verdict


@dataclass(frozen=True)
class Condition:
    """A forbid entry applies only where a field of the same record has one of some values.

    The record is the list item the finding's field and `field` share (`events[].metadata.session_id` and
    `events[].name`: the same event); with no list in common, the whole request (a header and `events[].name`:
    any event of the request).
    """

    field: str
    """A generic field path, e.g. `events[].name`."""
    equals: frozenset[str]

    def hits(self, fields: Iterable[FieldValue]) -> ConditionHits:
        """Where, in one request, the condition's field has one of the values (built once per request)."""
        return ConditionHits(tuple(f.path for f in fields if f.generic_path == self.field and f.value is not None
                                   and f.text in self.equals))

    def holds_for(self, item: FieldValue, hits: ConditionHits) -> bool:
        """True when the record `item` belongs to holds a hit (a set lookup: batches of any size stay linear)."""
        if not hits.paths:
            return False
        mine, theirs = path_steps(item.generic_path), path_steps(self.field)
        shared = 0
        for index, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                break
            if a == "[]":
                shared = index + 1
        if shared == 0:
            return True
        return "".join(path_steps(item.path)[:shared]) in hits.records(shared)


@dataclass
class ConditionHits:
    """The concrete paths where a condition holds in one request, and their records by depth (cached)."""

    paths: tuple[str, ...]
    _records: dict[int, frozenset[str]] = field(default_factory=dict)

    def records(self, depth: int) -> frozenset[str]:
        """The first `depth` steps of each hit: the records (`events[3]`) the condition holds in."""
        found = self._records.get(depth)
        if found is None:
            found = self._records[depth] = frozenset("".join(path_steps(p)[:depth]) for p in self.paths)
        return found


@dataclass(frozen=True)
class Allowlist:
    """Findings accepted on purpose. Every criterion an entry gives must hold (fields AND values AND
    detectors AND fingerprints), so `{fields: [header.authorization], detectors: [secrets.authorization-header]}`
    accepts that detector in that header only; an entry with no criterion accepts nothing."""

    fields_regex: Any = None
    values_regex: Any = None
    fingerprints: frozenset[str] = frozenset()
    detectors: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return (self.fields_regex is None and self.values_regex is None and not self.fingerprints
                and not self.detectors)

    def accepts(self, generic_path: str, value: str, fingerprint: str, detector: str) -> bool:
        if self.empty:
            return False
        if self.fingerprints and fingerprint not in self.fingerprints:
            return False
        if self.detectors and not (
            detector and (detector in self.detectors or detector.split(".", 1)[0] in self.detectors)
        ):
            return False
        if self.fields_regex is not None and self.fields_regex.match(generic_path) is None:
            return False
        return self.values_regex is None or self.values_regex.match(value) is not None


@dataclass(frozen=True)
class Rule:
    """One policy rule, as written in a pack, with where it was written."""

    id: str
    match: tuple[MatchSpec, ...]
    description: str = ""
    tool: str = ""
    severity: Severity = Severity.MEDIUM
    action: Action = Action.LOG
    fields: FieldPolicy | None = None
    forbid: tuple[ForbidSpec, ...] = ()
    allowlist: Allowlist = Allowlist()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0

    def applies_to(self, request: Request, is_telemetry: bool) -> bool:
        return any(m.matches(request, is_telemetry) for m in self.match)

    @cached_property
    def reads_other_fields(self) -> bool:
        """A forbid entry looks beyond its own match: a custom pattern (anchored on a whole value) or a `when`."""
        return any(spec.family == "custom" or spec.when is not None for spec in self.forbid)

    @cached_property
    def payload_specs(self) -> tuple[MatchSpec, ...]:
        return tuple(m for m in self.match if m.payload is not None)


@dataclass(frozen=True)
class OptOutSwitch:
    """A documented way to turn a tool's telemetry off."""

    tool: str
    kind: str
    name: str = ""
    value: str = "1"
    path: str = ""
    content: str = ""
    command: tuple[str, ...] = ()
    source: str = ""
    expected: str = "stops"
    versions: tuple[str, ...] = ()
    """The tool releases this applies to (`3.x`, `2026.8`); empty: every release."""

    def applies_to(self, version: str) -> bool:
        """True when a tool of `version` (`3.40.0`; empty when unknown) is covered by this switch."""
        if not self.versions or not version:
            return True
        parts = version.lstrip("v").split(".")
        for pattern in self.versions:
            wanted = pattern.split(".")
            if all(w == "x" or (i < len(parts) and parts[i] == w) for i, w in enumerate(wanted)):
                return True
        return False


def switches_for_version(switches: tuple[OptOutSwitch, ...], version: str) -> tuple[OptOutSwitch, ...]:
    """The switches `optout-check` expects something of for a tool of `version` (`3.40.0`).

    With a version, only the switches that apply to it (`versions:`). Without one, a switch bound to some
    versions is still tried, but without an expectation (it cannot fail the check), and each switch once.
    """
    if version:
        return tuple(s for s in switches if s.applies_to(version))
    kept: list[OptOutSwitch] = []
    seen: set[tuple[str, str, str, tuple[str, ...]]] = set()
    for switch in switches:
        key = (switch.kind, switch.name, switch.path, switch.command)
        if key in seen:
            continue
        seen.add(key)
        kept.append(replace(switch, expected="") if switch.versions else switch)
    return tuple(kept)


@dataclass(frozen=True)
class Settings:
    """Policy-wide settings (later files override earlier ones key by key)."""

    max_body_bytes: int = 8 * 1024 * 1024
    oversize_action: Action = Action.BLOCK
    decode_failure: Action = Action.LOG
    decode_severity: Severity = Severity.LOW
    error_action: Action = Action.BLOCK
    redact: RedactMode = RedactMode.MASK
    telemetry_hosts: tuple[str, ...] = ()
    detectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Every rule from every file, composed in order."""

    rules: tuple[Rule, ...]
    settings: Settings = Settings()
    allowlists: tuple[Allowlist, ...] = ()
    """Policy-wide allowlists (one per file, plus a baseline's fingerprints): each applies on its own."""
    files: tuple[str, ...] = ()
    optout: tuple[OptOutSwitch, ...] = ()

    def rules_for(self, request: Request, is_telemetry: bool) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.applies_to(request, is_telemetry))

    @cached_property
    def payload_rules(self) -> tuple[Rule, ...]:
        """Rules with a `payload:` match entry (tried on the decoded body)."""
        return tuple(rule for rule in self.rules if rule.payload_specs)

    @cached_property
    def payload_keys(self) -> frozenset[str]:
        """Every top-level key some payload shape needs: a body with none of them matches no shape."""
        return frozenset(key for rule in self.payload_rules for spec in rule.payload_specs
                         if spec.payload is not None for key in spec.payload.keys)

    def with_payload_rules(
        self, routed: tuple[Rule, ...], request: Request, is_telemetry: bool, tree: Any, plain_body: bytes | None,
        generic_paths: Callable[[], Iterable[str]],
    ) -> tuple[Rule, ...]:
        """`routed` plus the rules whose payload shape the decoded body has, in policy order.

        The engine calls this only for a request it reads anyway (`routed` is not empty): a shape never makes
        a request be decoded, and a policy without shapes costs one attribute test.
        """
        if not self.payload_rules:
            return routed
        paths: list[str] = []

        def cached_paths() -> list[str]:
            if not paths:
                paths.extend(generic_paths())
            return paths

        present = {id(rule) for rule in routed}
        added = [
            rule for rule in self.payload_rules
            if id(rule) not in present and any(
                spec.payload is not None and spec.payload.has_keys(tree)  # the key set first: most bodies stop here
                and spec.matches_request(request, is_telemetry)
                and spec.payload.matches(tree, plain_body, cached_paths)
                for spec in rule.payload_specs)
        ]
        if not added:
            return routed
        chosen = {id(rule) for rule in (*routed, *added)}
        return tuple(rule for rule in self.rules if id(rule) in chosen)

    def rule(self, rule_id: str) -> Rule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None
