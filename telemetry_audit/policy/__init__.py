"""Load, validate and compose policy packs into one `Policy`.

Files load in order; each file's `extends` load before it. A rule whose id
appears again in a later file replaces the earlier one; settings merge key by
key with later values winning; allowlists and opt-out switches accumulate.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import re2

from telemetry_audit.catalogue import TOOLS
from telemetry_audit.detectors import closest, detector_references
from telemetry_audit.model import Action, FindingKind, RedactMode, Severity
from telemetry_audit.policy.errors import PolicyError
from telemetry_audit.policy.model import (
    Allowlist,
    Condition,
    FieldPolicy,
    ForbidSpec,
    MatchSpec,
    OptOutSwitch,
    PayloadShape,
    Policy,
    Rule,
    Settings,
    compile_alternation,
    field_glob_to_regex,
    glob_to_regex,
    path_steps,
)

if TYPE_CHECKING:
    from telemetry_audit.policy.loader import LoadedDocument

__all__ = [
    "Policy",
    "PolicyError",
    "Rule",
    "builtin_pack_names",
    "builtin_pack_path",
    "default_references",
    "load_policy",
    "policy_schema",
    "tool_pack_names",
]

BUILTIN_PREFIX = "<builtin>/"
_QUIET = re2.Options()
_QUIET.log_errors = False


def builtin_pack_names() -> list[str]:
    """Names of the packs shipped in `rules/` (usable as `--policy NAME` and in `extends`)."""
    folder = resources.files("telemetry_audit.rules")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


BARE_DEFAULT = "default"
COMPOSITE_PACKS = frozenset({BARE_DEFAULT, "all"})
"""Built-in packs that are not a tool's own: the default policy, and `all` (which names the tool packs)."""


def tool_pack_names() -> list[str]:
    """The shipped tool packs (Serverless, LocalStack, SST, werf, ...): every built-in pack but the composites."""
    return [name for name in builtin_pack_names() if name not in COMPOSITE_PACKS]


def default_references() -> list[str]:
    """What applies with no `--policy`: `default` plus every shipped tool pack.

    Tool packs' rules match only their own tools' requests, so they add tool attribution, documented-field
    checks and promises without touching other traffic. `--policy default` alone is the bare default.
    """
    return [BARE_DEFAULT, *tool_pack_names()]


def builtin_pack_path(name: str) -> Path | None:
    candidate = resources.files("telemetry_audit.rules").joinpath(f"{name}.yaml")
    return Path(str(candidate)) if candidate.is_file() else None


def _resolve(reference: str, relative_to: str | None) -> tuple[str, str]:
    """(display name, filesystem path) for a pack reference: a built-in name or a path."""
    is_name = "/" not in reference and "\\" not in reference and not reference.endswith((".yaml", ".yml"))
    if is_name:
        path = builtin_pack_path(reference)
        if path is None:
            names = ", ".join(builtin_pack_names())
            raise PolicyError(reference, f"no built-in policy pack named {reference!r}",
                              hint=f"built-in packs: {names}")
        return f"{BUILTIN_PREFIX}{reference}.yaml", str(path)
    if relative_to and not os.path.isabs(reference) and not relative_to.startswith(BUILTIN_PREFIX):
        reference = os.path.normpath(os.path.join(os.path.dirname(relative_to), reference))
    elif relative_to and relative_to.startswith(BUILTIN_PREFIX):
        path = builtin_pack_path(Path(reference).stem)
        if path is not None:
            return f"{BUILTIN_PREFIX}{Path(reference).name}", str(path)
    return reference, reference


def policy_schema() -> dict[str, Any]:
    """The JSON Schema every policy file is validated against (see `loader.policy_schema`)."""
    from telemetry_audit.policy.loader import policy_schema as schema

    return schema()


def _is_shipped(path: str) -> bool:
    """Whether `path` is one of the packs in the package's own `rules/` folder (not a user file of that name)."""
    folder = os.path.realpath(str(resources.files("telemetry_audit.rules")))
    return os.path.dirname(os.path.realpath(path)) == folder


def _read(display: str, path: str) -> LoadedDocument:
    """Read, parse and validate one file; a shipped pack is not validated again (a test validates each one)."""
    try:
        source = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise PolicyError(display, "policy file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(display, f"cannot read policy file: {e}") from None
    # The YAML reader and the schema come with the first file read: a proxy child handed its policy loaded
    # (`proxy.handover`) never reads one, and imports neither.
    from telemetry_audit.policy.loader import parse_yaml, validate

    shipped = _is_shipped(path)
    document = parse_yaml(display, source, shipped=shipped)
    if not shipped:
        validate(document)
    return document


def _regex(document: LoadedDocument, path: tuple[str | int, ...], pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_QUIET)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise document.error(path, f"invalid regular expression {pattern!r}: {reason}",
                             "patterns use RE2 syntax (linear time): no look-around or back-references") from None


def _alternation(document: LoadedDocument, path: tuple[str | int, ...], patterns: list[str]) -> Any:
    for index, pattern in enumerate(patterns):
        _regex(document, path + (index,), pattern)
    combined = compile_alternation(patterns)
    return None if combined is None else re2.compile(combined.pattern, options=_QUIET)


def _field_alternation(document: LoadedDocument, path: tuple[str | int, ...], patterns: list[str]) -> Any:
    return _alternation(document, path, [field_glob_to_regex(p) for p in patterns])


def _payload_shape(document: LoadedDocument, path: tuple[str | int, ...], raw: Mapping[str, Any]) -> PayloadShape:
    """A `payload:` shape; each field path must be a plain generic path under one of its `keys` (so the cheap key
    test is a true first test, and a typo cannot make a shape that matches nothing or everything)."""
    keys = frozenset(raw["keys"])
    names: list[bytes] = []
    for index, field_path in enumerate(raw["fields"]):
        steps = path_steps(field_path)
        where = path + ("fields", index)
        if "".join(steps) != field_path or "*" in field_path or not steps or steps[0] not in keys:
            raise document.error(
                where, f"{_where(where)}: {field_path!r} is not a field path under the shape's keys",
                f"write a generic path starting with one of {sorted(keys)}, no wildcards, e.g. "
                f"`{sorted(keys)[0]}[].name` (`[]` for any index)")
        last = steps[-1].lstrip(".")
        if last.startswith('["'):
            last = last[2:-2]
        if last != "[]":
            names.append(last.encode("utf-8"))
    return PayloadShape(keys=keys, fields=frozenset(raw["fields"]), names=tuple(names))


def _check_payload_tool(document: LoadedDocument, path: tuple[str | int, ...], raw: Mapping[str, Any]) -> None:
    """A rule that claims a payload shape on any host attributes what it finds to its `tool`: that tool must be one
    the telemetry catalogue knows, so a typo cannot attribute traffic to a tool that does not exist."""
    if not any("payload" in m for m in (raw["match"] if isinstance(raw["match"], list) else [raw["match"]])):
        return
    tools = {entry.tool.lower(): entry.tool for entry in TOOLS}
    tool = raw.get("tool", "")
    if tool.lower() not in tools:
        guess = closest(tool.lower(), list(tools)) if tool else None
        hint = f"did you mean {tools[guess]!r}? " if guess else ""
        raise document.error(
            path + ("tool",), f"{_where(path)}: a rule with a `payload:` match must name a catalogued `tool`"
            + (f" ({tool!r} is not one)" if tool else ""),
            f"{hint}the payload shape attributes requests on any host to that tool "
            "(tools: telemetry_audit/catalogue.py)")


def _match_spec(document: LoadedDocument, path: tuple[str | int, ...], raw: Mapping[str, Any]) -> MatchSpec:
    paths = tuple(raw.get("paths", ()))
    agents = tuple(raw.get("user_agents", ()))
    return MatchSpec(
        payload=_payload_shape(document, path + ("payload",), raw["payload"]) if "payload" in raw else None,
        hosts=tuple(h.lower() for h in raw.get("hosts", ())),
        paths=paths,
        methods=tuple(m.upper() for m in raw.get("methods", ())),
        user_agents=agents,
        telemetry=raw.get("telemetry"),
        path_regex=_alternation(document, path + ("paths",), [glob_to_regex(p) for p in paths]),
        user_agent_regex=_alternation(document, path + ("user_agents",), [glob_to_regex(a, "\x00") for a in agents]),
    )


FIELD_FINDINGS = "fields.unknown"
"""The detector name of `fields:` findings (an allowlist may accept them)."""


def _where(path: tuple[str | int, ...]) -> str:
    """`rules[0].allowlist`: a path as the schema errors spell it."""
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")


def _check_allowlist_detectors(
    document: LoadedDocument, path: tuple[str | int, ...], names: list[str], custom_ids: frozenset[str]
) -> None:
    """Every detector an allowlist names exists: a typo there would accept nothing, or the wrong thing."""
    known = {*detector_references(), FIELD_FINDINGS, *custom_ids}
    for index, name in enumerate(names):
        if name not in known:
            guess = closest(name, known)
            hint = f"did you mean {guess!r}? " if guess else ""
            raise document.error(
                path + ("detectors", index),
                f"{_where(path + ('detectors', index))}: allowlist names an unknown detector {name!r}",
                f"{hint}name a detector family or id (`telemetry-audit rules list --detectors`), "
                f"`{FIELD_FINDINGS}`, or the `id` of a custom pattern",
            )


def _allowlist(
    document: LoadedDocument,
    path: tuple[str | int, ...],
    raw: Mapping[str, Any] | None,
    custom_ids: frozenset[str] = frozenset(),
) -> Allowlist:
    if not raw:
        return Allowlist()
    _check_allowlist_detectors(document, path, list(raw.get("detectors", [])), custom_ids)
    return Allowlist(
        fields_regex=_field_alternation(document, path + ("fields",), raw.get("fields", [])),
        values_regex=_alternation(document, path + ("values",), list(raw.get("values", []))),
        fingerprints=frozenset(raw.get("fingerprints", [])),
        detectors=frozenset(raw.get("detectors", [])),
    )


def _field_policy(document: LoadedDocument, path: tuple[str | int, ...], raw: Mapping[str, Any]) -> FieldPolicy:
    allow: list[str] = []
    sources: dict[str, str] = {}
    for entry in raw.get("allow", []):
        if isinstance(entry, str):
            allow.append(entry)
        else:
            allow.append(entry["path"])
            if entry.get("source"):
                sources[entry["path"]] = entry["source"]
    unknown = raw.get("unknown")
    return FieldPolicy(
        allow=tuple(allow),
        allow_regex=_field_alternation(document, path + ("allow",), allow),
        sources=sources,
        unknown=Action(unknown) if unknown else None,
        unknown_severity=Severity(raw.get("unknown_severity", "low")),
        unknown_kind=FindingKind(raw.get("unknown_kind", "field")),
        redact=RedactMode(raw.get("redact", "drop")),
        ignore_regex=_field_alternation(document, path + ("ignore",), raw.get("ignore", [])),
    )


def _forbid(
    document: LoadedDocument,
    path: tuple[str | int, ...],
    raw: Mapping[str, Any],
    rule_action: Action,
    rule_severity: Severity,
    default_redact: RedactMode,
) -> ForbidSpec:
    detector = raw.get("detector", "")
    family, _, name = detector.partition(".")
    pattern = _regex(document, path + ("pattern",), raw["pattern"]) if "pattern" in raw else None
    return ForbidSpec(
        family=family if detector else "custom",
        detector_id=detector if name else "",
        pattern=pattern,
        custom_id=raw.get("id", ""),
        title=raw.get("title", ""),
        fields_regex=_field_alternation(document, path + ("fields",), raw.get("fields", [])),
        action=Action(raw.get("action", rule_action.value)),
        severity=Severity(raw.get("severity", rule_severity.value)),
        redact=RedactMode(raw.get("redact", default_redact.value)),
        settings=dict(raw.get("settings", {})),
        source=raw.get("source", ""),
        kind=FindingKind(raw["kind"]) if "kind" in raw else None,
        except_regex=_alternation(document, path + ("except_values",), list(raw.get("except_values", []))),
        when=Condition(raw["when"]["field"], frozenset(str(v) for v in raw["when"]["equals"]))
        if "when" in raw else None,
    )


def _rule(
    document: LoadedDocument, index: int, raw: Mapping[str, Any], default_redact: RedactMode,
    custom_ids: frozenset[str] = frozenset(),
) -> Rule:
    path: tuple[str | int, ...] = ("rules", index)
    _check_payload_tool(document, path, raw)
    raw_match = raw["match"]
    matches = raw_match if isinstance(raw_match, list) else [raw_match]
    match_path = path + ("match",)
    specs = tuple(
        _match_spec(document, match_path + ((i,) if isinstance(raw_match, list) else ()), m)
        for i, m in enumerate(matches)
    )
    action = Action(raw.get("action", "log"))
    severity = Severity(raw.get("severity", "medium"))
    forbid = tuple(
        _forbid(document, path + ("forbid", i), entry, action, severity, default_redact)
        for i, entry in enumerate(raw.get("forbid", []))
    )
    fields = _field_policy(document, path + ("fields",), raw["fields"]) if "fields" in raw else None
    return Rule(
        id=raw["id"],
        match=specs,
        description=raw.get("description", ""),
        tool=raw.get("tool", ""),
        severity=severity,
        action=action,
        fields=fields,
        forbid=forbid,
        allowlist=_allowlist(document, path + ("allowlist",), raw.get("allowlist"), custom_ids),
        metadata=dict(raw.get("metadata", {})),
        file=document.file,
        line=document.position(path)[0],
    )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Composer:
    """Loads files (and what they extend) in order, detecting cycles."""

    def __init__(self) -> None:
        self.documents: list[LoadedDocument] = []
        self.seen: set[str] = set()

    def add(self, reference: str, relative_to: str | None = None, chain: tuple[str, ...] = ()) -> None:
        display, path = _resolve(reference, relative_to)
        key = os.path.realpath(path)
        if key in chain:
            raise PolicyError(display, f"`extends` forms a cycle back to {display}",
                              hint="a pack may not extend itself, directly or through others")
        if key in self.seen:
            return
        document = _read(display, path)
        for index, parent in enumerate(document.data.get("extends", [])):
            try:
                self.add(parent, display if display.startswith(BUILTIN_PREFIX) else path, chain + (key,))
            except PolicyError as e:
                if e.line:
                    raise
                raise document.error(("extends", index), f"extends {parent!r}: {e.message}", e.hint) from None
        self.seen.add(key)
        self.documents.append(document)


def load_policy(references: Sequence[str] | None = None, *, extra_allowlist: Iterable[str] = ()) -> Policy:
    """Compose `references` (paths or built-in names) into a `Policy`; with none, `default_references()`."""
    composer = _Composer()
    for reference in references or default_references():
        composer.add(reference)

    settings_raw: dict[str, Any] = {}
    for document in composer.documents:
        settings_raw = _merge(settings_raw, document.data.get("settings", {}))
    default_redact = RedactMode(settings_raw.get("redact", "mask"))

    custom_ids = frozenset(
        entry["id"] for document in composer.documents for raw in document.data.get("rules", [])
        for entry in raw.get("forbid", []) if "pattern" in entry
    )
    rules: dict[str, Rule] = {}
    allowlists: list[Allowlist] = []
    optout: list[OptOutSwitch] = []
    for document in composer.documents:
        for index, raw in enumerate(document.data.get("rules", [])):
            rule = _rule(document, index, raw, default_redact, custom_ids)
            rules.pop(rule.id, None)  # a later file's rule replaces (and moves after) the earlier one
            if not raw.get("disabled"):
                rules[rule.id] = rule
        allowlists.append(_allowlist(document, ("allowlist",), document.data.get("allowlist"), custom_ids))
        tool = document.data.get("name", Path(document.file).stem)
        for raw in document.data.get("optout", []):
            optout.append(
                OptOutSwitch(
                    tool=tool,
                    kind=raw["kind"],
                    name=raw.get("name", ""),
                    value=raw.get("value", "1"),
                    path=raw.get("path", ""),
                    content=raw.get("content", ""),
                    command=tuple(raw.get("command", [])),
                    source=raw.get("source", ""),
                    expected=raw.get("expected", "stops"),
                    versions=tuple(raw.get("versions", [])),
                )
            )

    settings = Settings(
        max_body_bytes=int(settings_raw.get("max_body_bytes", Settings.max_body_bytes)),
        oversize_action=Action(settings_raw.get("oversize_action", "block")),
        decode_failure=Action(settings_raw.get("decode_failure", "log")),
        decode_severity=Severity(settings_raw.get("decode_severity", "low")),
        error_action=Action(settings_raw.get("error_action", "block")),
        redact=default_redact,
        telemetry_hosts=tuple(settings_raw.get("telemetry_hosts", ())),
        detectors={k: dict(v) for k, v in settings_raw.get("detectors", {}).items()},
    )
    return Policy(
        rules=tuple(rules.values()),
        settings=settings,
        allowlists=tuple(a for a in (*allowlists, Allowlist(fingerprints=frozenset(extra_allowlist))) if not a.empty),
        files=tuple(d.file for d in composer.documents),
        optout=tuple(optout),
    )
