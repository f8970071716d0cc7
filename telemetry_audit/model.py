"""Plain data types shared by the core and its adapters.

Nothing here knows about mitmproxy: adapters convert their own flow objects
into a `Request` and act on the returned `Decision`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class Severity(StrEnum):
    """How bad a finding is; ordered from least to most severe."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = list(Severity)


class Action(StrEnum):
    """What happens to a request; ordered from least to most strict."""

    ALLOW = "allow"
    LOG = "log"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _ACTION_ORDER.index(self)


_ACTION_ORDER = list(Action)


def strictest(actions: Iterable[Action]) -> Action:
    """The strictest of `actions`, `Action.ALLOW` for none."""
    return max(actions, key=lambda a: a.rank, default=Action.ALLOW)


class FindingKind(StrEnum):
    """The family a finding belongs to (stable: appears in reports)."""

    SECRET = "secret"
    PATH = "path"
    ENV = "env"
    PII = "pii"
    FIELD = "field"
    DECODE = "decode"
    UNDOCUMENTED = "undocumented"
    CANARY = "canary"
    SIZE = "size"
    ERROR = "error"


@dataclass(frozen=True)
class EngineRule:
    """A rule id the engine itself reports (no policy rule behind it)."""

    id: str
    """Stable: appears in reports and baselines, never renamed."""
    kind: FindingKind
    description: str
    severity: Severity
    action_setting: str = ""
    """The policy setting giving its action; empty when the action is always `block`."""
    severity_setting: str = ""
    """The policy setting giving its severity; empty for `severity`."""

    def action_for(self, settings: Any) -> Action:
        """Its action under a policy's `Settings`."""
        return Action(getattr(settings, self.action_setting)) if self.action_setting else Action.BLOCK

    def severity_for(self, settings: Any) -> Severity:
        """Its severity under a policy's `Settings`."""
        return Severity(getattr(settings, self.severity_setting)) if self.severity_setting else self.severity


ENGINE_RULES: Mapping[str, EngineRule] = {
    rule.id: rule
    for rule in (
        EngineRule("decode", FindingKind.DECODE,
                   "A telemetry body could not be decoded into fields; its text was scanned as a whole.",
                   Severity.LOW, "decode_failure", "decode_severity"),
        EngineRule("uninspectable", FindingKind.DECODE,
                   "Part of a telemetry body could not be read (truncated or trailing compressed data, binary "
                   "content, an unknown encoding, duplicate keys): what was not read was not inspected.",
                   Severity.MEDIUM, "oversize_action"),
        EngineRule("oversize", FindingKind.SIZE,
                   "A telemetry body exceeded a size limit (max_body_bytes, or a limit derived from it) and was "
                   "not fully inspected.", Severity.MEDIUM, "oversize_action"),
        EngineRule("audit-error", FindingKind.ERROR,
                   "Auditing a request failed; it was handled as the policy's error_action says.",
                   Severity.HIGH, "error_action"),
        EngineRule("redact-failed", FindingKind.ERROR,
                   "A request could not be rewritten safely, so it was blocked instead of redacted.", Severity.HIGH),
    )
}
"""Every id the engine reports without a policy rule, with its one description (SARIF, reports, docs)."""


class RedactMode(StrEnum):
    """How a redacting action rewrites the offending value."""

    MASK = "mask"
    HASH = "hash"
    DROP = "drop"


MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Every size bound of the core in one place, built from the policy's settings.

    Decoders, the engine and the emulators read these; nothing else spells a size limit.
    """

    max_body_bytes: int = 8 * MIB
    """A body larger than this (as sent) is not inspected: an `oversize` finding."""
    max_decoded_bytes: int = 16 * MIB
    """A body may expand to this after its content codings are undone (more is a compression bomb)."""
    max_depth: int = 64
    """Nesting depth of a decoded document."""
    max_embedded_depth: int = 4
    """Documents inside strings inside documents."""
    max_fields: int = 8 * MIB
    """Leaves of one request: never fewer than the smallest JSON of `max_decoded_bytes` can hold."""

    @classmethod
    def from_body_limit(cls, max_body_bytes: int) -> Limits:
        """The limits that follow from a policy's `max_body_bytes`.

        A body may inflate to twice its limit, and every leaf of that much JSON (`[0,0,...]`: two bytes a
        leaf) fits under the field limit, so a body under the size limit is never refused for its field count.
        """
        body = max(int(max_body_bytes), 1)
        return cls(max_body_bytes=body, max_decoded_bytes=2 * body, max_fields=max(body, 1024))

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """From a policy's `Settings` (typed loosely: `policy` imports this module)."""
        return cls.from_body_limit(settings.max_body_bytes)


@dataclass(frozen=True)
class Request:
    """One outbound HTTP request as the core sees it.

    `host` is the name the client asked for (not a resolved address);
    `headers` keep their order and case as sent.
    """

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def from_url(
        cls,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]] | dict[str, str] = (),
        body: bytes = b"",
    ) -> Request:
        """Build a request from a full URL (convenient in tests and for captures)."""
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 80)
        pairs = tuple(headers.items()) if isinstance(headers, dict) else tuple(headers)
        return cls(
            method=method.upper(),
            scheme=scheme,
            host=(parts.hostname or "").lower(),
            port=port,
            path=parts.path or "/",
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
            headers=pairs,
            body=body,
        )

    def header(self, name: str, default: str = "") -> str:
        """The first header called `name` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    # Read by routing, decoding and emulators alike: each worked out once per request (a frozen dataclass keeps
    # `cached_property` values in the instance's `__dict__`, outside its fields, equality and hash).
    @cached_property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased."""
        return self.header("content-type").split(";", 1)[0].strip().lower()

    @cached_property
    def content_encodings(self) -> tuple[str, ...]:
        """Content codings in the order they were applied, across every Content-Encoding line (RFC 9110)."""
        raw = ",".join(value for key, value in self.headers if key.lower() == "content-encoding")
        return tuple(c.strip().lower() for c in raw.split(",") if c.strip() and c.strip().lower() != "identity")

    @property
    def url(self) -> str:
        """The URL without its query string (query values may be sensitive)."""
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


@dataclass(frozen=True)
class FieldValue:
    """One leaf of a decoded request: where it is and what it holds."""

    path: str
    """Concrete path, e.g. `batch[0].properties.args[1]`, `header.authorization`."""
    value: str | int | float | bool | None
    generic_path: str = ""
    """The path with indexes removed (`batch[].properties.args[]`), used by allow-lists."""
    locator: tuple[Any, ...] = ()
    """Where the value sits in the decoded document, for redaction."""

    @property
    def text(self) -> str:
        """The value as a string for detectors (`None` and booleans in JSON spelling)."""
        value = self.value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def fingerprint(*parts: str) -> str:
    """A stable, non-reversible id for a finding (what baselines store)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:32]


def mask(value: str) -> str:
    """A preview of `value` that never shows enough of it to be useful.

    Long values keep a short prefix (so `ghp_`/`AKIA` stay recognisable) and
    their length; short values show nothing but their length.
    """
    n = len(value)
    keep = 4 if n >= 16 else 2 if n >= 10 else 0
    return f"{value[:keep]}…[{n} chars]" if keep else f"…[{n} chars]"


@dataclass(frozen=True)
class Finding:
    """One thing a policy objects to in one request."""

    rule_id: str
    """The policy rule (or detector) that produced it; stable across releases."""
    kind: FindingKind
    field: str
    """Concrete field path where it was found."""
    severity: Severity
    action: Action
    preview: str
    """A masked preview: never the plaintext."""
    fingerprint: str
    """Hash of rule, tool, generic field path and value: what baselines accept."""
    message: str = ""
    detector: str = ""
    """The detector id (e.g. `secrets.github-pat`) when a detector produced it."""
    suppressed: bool = False
    """True when an allowlist or baseline accepted it: reported, never acted on."""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rule_id": self.rule_id,
            "kind": self.kind.value,
            "field": self.field,
            "severity": self.severity.value,
            "action": self.action.value,
            "preview": self.preview,
            "fingerprint": self.fingerprint,
        }
        if self.message:
            out["message"] = self.message
        if self.detector:
            out["detector"] = self.detector
        if self.suppressed:
            out["suppressed"] = True
        return out


LISTED_FINDINGS = 1000
"""At most this many findings of one request are listed in the log and the reports; the rest are counted."""


@dataclass(frozen=True)
class Decision:
    """What the engine decided for one request."""

    action: Action
    findings: tuple[Finding, ...] = ()
    telemetry: bool = False
    """True when some policy rule applied to the request."""
    tool: str = ""
    rule_ids: tuple[str, ...] = ()
    """The policy rules that matched the request."""
    redacted_body: bytes | None = None
    """For `REDACT`: the rewritten body, in the original content type and encoding."""
    redacted_query: tuple[tuple[str, str], ...] | None = None
    redacted_headers: tuple[tuple[str, str], ...] | None = None
    omitted_findings: int = 0
    """Findings counted but not listed (a very large body: the first `LISTED_FINDINGS` are listed)."""

    @property
    def active_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.suppressed)
