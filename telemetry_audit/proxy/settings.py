"""The auditing proxy's options, declared once.

The addon declares its mitmproxy options (`taudit_*`) from these fields, `ProxySession` hands a
`ProxySettings` to the proxy child, and the CLI and the pytest plugin take their choices from here. This
module imports nothing of mitmproxy, so the CLI can use it without paying for mitmproxy's import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

OPTION_PREFIX = "taudit_"

MODES: tuple[str, ...] = ("enforce", "audit")
BLOCK_STYLES: tuple[str, ...] = ("empty", "kill", "403")
UNKNOWN_HOST_CHOICES: tuple[str, ...] = ("fail", "pass")


def _option(help: str, choices: Sequence[str] | None = None) -> dict[str, Any]:
    return {"help": help, "choices": tuple(choices) if choices else None}


@dataclass(frozen=True)
class ProxySettings:
    """Everything that decides how the proxy audits and answers (one field per `taudit_*` option)."""

    policy: tuple[str, ...] = field(default=(), metadata=_option(
        "Policy files or built-in pack names, composed in order (default: the built-in policy)."))
    mode: str = field(default="enforce", metadata=_option(
        "enforce: block and redact as the policy says; audit: record decisions, modify nothing.", MODES))
    log: str = field(default="", metadata=_option("Append one JSON line per request to this file."))
    offline: bool = field(default=True, metadata=_option(
        "Answer telemetry with the emulated collectors; nothing is sent upstream."))
    offline_unknown: str = field(default="fail", metadata=_option(
        "Offline: what happens to requests that are not telemetry (fail as with no network, or pass upstream).",
        UNKNOWN_HOST_CHOICES))
    audit_all: bool = field(default=False, metadata=_option(
        "Audit every request with the full policy, not only those recognised as telemetry."))
    block_style: str = field(default="empty", metadata=_option(
        "How a blocked request is answered: an empty success (so the tool neither fails nor retries), a killed "
        "connection, or 403.", BLOCK_STYLES))
    env_file: str = field(default="", metadata=_option(
        "JSON file with the audited process's environment (mitmdump users; `run` hands it over in memory)."))
    store: str = field(default="", metadata=_option(
        "SQLite file keeping the events the emulated collectors received (default: in memory)."))
    baseline: str = field(default="", metadata=_option("Baseline file of accepted finding fingerprints."))
    client_process: bool = field(default=False, metadata=_option(
        "Name the local process behind each audited connection (Linux; scans /proc once per connection, a few "
        "ms: on for `telemetry-audit run`)."))
    session: str = field(default="", metadata=_option(
        "An id written on every audit-log record, so a report counts only this session's requests in a "
        "shared log."))
    inspection_token: str = field(default="", metadata=_option(
        "A secret that opens the /micro inspection API (header X-Telemetry-Audit-Token) to clients of other "
        "local users; clients of the proxy's own user need none."))
    collector: bool = field(default=False, metadata=_option(
        "Standalone collector: every request, whatever its host, is answered by the emulated collectors (routed "
        "by host, path and payload; 404 for what none speaks) and /micro is served on any host."))

    def to_options(self) -> dict[str, Any]:
        """The mitmproxy option values (`taudit_*`)."""
        out: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            out[OPTION_PREFIX + spec.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_options(cls, options: Any) -> ProxySettings:
        """Read the `taudit_*` values back from mitmproxy's options object."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            value = getattr(options, OPTION_PREFIX + spec.name)
            values[spec.name] = tuple(value) if isinstance(value, list | tuple) else value
        return cls(**values)


@dataclass(frozen=True)
class OptionSpec:
    """One `taudit_*` option as mitmproxy's loader wants it."""

    name: str
    typespec: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None


def option_specs() -> tuple[OptionSpec, ...]:
    """Every option, for the addon's `load()`."""
    defaults = ProxySettings()
    specs = []
    for spec in fields(ProxySettings):
        default = getattr(defaults, spec.name)
        typespec: Any = Sequence[str] if isinstance(default, tuple) else type(default)
        specs.append(OptionSpec(OPTION_PREFIX + spec.name, typespec, list(default) if isinstance(default, tuple)
                                else default, spec.metadata["help"], spec.metadata["choices"]))
    return tuple(specs)


def validate(settings: ProxySettings) -> list[str]:
    """What is wrong with `settings` (an empty list when nothing is), in the user's words."""
    problems = []
    for spec in fields(ProxySettings):
        choices = spec.metadata["choices"]
        value = getattr(settings, spec.name)
        if choices and value not in choices:
            problems.append(f"{spec.name.replace('_', '-')} must be one of {', '.join(choices)}, not {value!r}")
    return problems


def settings_from_mapping(values: Mapping[str, Any]) -> ProxySettings:
    """Settings from keyword arguments (the pytest marker); `ValueError` names unknown keys and bad choices."""
    known = {spec.name for spec in fields(ProxySettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; expected: {', '.join(sorted(known))}")
    settings = ProxySettings(**values)
    problems = validate(settings)
    if problems:
        raise ValueError("; ".join(problems))
    return settings
