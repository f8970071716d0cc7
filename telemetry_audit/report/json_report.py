"""The JSON report: the stable interchange format every writer consumes.

The engine produces this dict; `json` output is the dict itself, and the other
writers (SARIF, JUnit, Markdown, the terminal table) and the baseline read it
and nothing else. The TypedDicts below document its exact shape; `check_report`
checks a report read back from a file before anything is written from it.

Values in a report are already safe to show: URLs have their sensitive query
values masked and findings carry only masked previews and fingerprints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, NotRequired, TypedDict, cast

from telemetry_audit.model import Action, FindingKind, Severity

REPORT_VERSION = 1


class ToolInfo(TypedDict):
    name: str
    version: str


class Summary(TypedDict):
    requests: int
    """Every request the proxy saw (telemetry or not)."""
    telemetry: int
    """Requests recognised as telemetry (by their names or payload) that some policy rule applied to."""
    audited_only: NotRequired[int]
    """Other requests audited with the whole policy because `--audit-all` asked; listed under `requests` with
    `audited_only: true` (absent from reports written before it was counted)."""
    blocked: int
    redacted: int
    logged: int
    findings: int
    """Findings acted on (not suppressed)."""
    suppressed: int
    """Findings an allowlist or the baseline accepted."""


def _required_keys(typed: type) -> list[str]:
    """The keys of a TypedDict not marked `NotRequired` (`__required_keys__` cannot tell here: this module's
    annotations are strings, so the marker is unseen at run time)."""
    return [key for key, note in typed.__annotations__.items()
            if not str(getattr(note, "__forward_arg__", note)).startswith("NotRequired[")]


class RuleRecord(TypedDict):
    id: str
    description: str
    severity: str
    """`info`, `low`, `medium`, `high` or `critical`."""
    action: str
    """`allow`, `log`, `redact` or `block`."""
    tool: str
    file: str
    """Repository-relative path of the YAML file, or `<builtin>/default.yaml`."""
    line: int


class PolicyInfo(TypedDict):
    files: list[str]
    rules: list[RuleRecord]


class FindingRecord(TypedDict):
    rule_id: str
    """A policy rule id, or a detector id such as `secrets.github-pat`."""
    kind: str
    field: str
    severity: str
    action: str
    preview: str
    """Masked: never the plaintext."""
    fingerprint: str
    message: NotRequired[str]
    detector: NotRequired[str]
    suppressed: NotRequired[bool]


class RequestRecord(TypedDict):
    method: str
    url: str
    """Query values with findings are masked."""
    host: str
    path: str
    tool: str
    decision: str
    time: float | None
    rule_ids: list[str]
    findings: list[FindingRecord]
    telemetry: NotRequired[bool]
    """Optional; when absent a request is telemetry if it has a tool, matched rules or findings."""


class Report(TypedDict):
    version: int
    tool: ToolInfo
    summary: Summary
    policy: PolicyInfo
    requests: list[RequestRecord]


class ReportError(Exception):
    """A report file that is not a telemetry-audit JSON report (says where and what)."""


def write_json(report: Mapping[str, Any]) -> str:
    """The report itself, as pretty-printed JSON."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def read_report(path: str | os.PathLike[str]) -> Report:
    """Load and check a JSON report written earlier (e.g. to convert it to SARIF)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ReportError(f"{name}: cannot read the report: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{name}: not a JSON report: {e}") from e
    return check_report(data, source=name)


def check_report(data: object, source: str = "<report>") -> Report:
    """Return `data` as a `Report` if it has the report's shape, else raise `ReportError`.

    Extra keys are allowed (newer engines may add some); missing keys, wrong
    types and unknown enum values are not.
    """
    _Checker(source).report(data)
    return data  # type: ignore[return-value]


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> ReportError:
        return ReportError(f"{self.source}: {where}: {what}" if where else f"{self.source}: {what}")

    def obj(self, value: object, where: str, keys: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        for key, expected in keys.items():
            if key not in value:
                raise self.fail(where, f"missing key {key!r}")
            item = value[key]
            # bool is an int in Python; a report never means True by 1.
            if isinstance(item, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
                raise self.fail(_join(where, key), f"expected {_names(expected)}, got bool")
            if not isinstance(item, expected):
                raise self.fail(_join(where, key), f"expected {_names(expected)}, got {type(item).__name__}")
        return value

    def enum(self, value: str, where: str, allowed: type[Severity] | type[Action] | type[FindingKind]) -> None:
        names = [m.value for m in allowed]
        if value not in names:
            raise self.fail(where, f"unknown value {value!r} (expected one of {', '.join(names)})")

    def report(self, data: object) -> None:
        top = self.obj(data, "", {"version": int, "tool": dict, "summary": dict, "policy": dict, "requests": list})
        if top["version"] != REPORT_VERSION:
            raise self.fail("version", f"unsupported report version {top['version']} (expected {REPORT_VERSION})")
        self.obj(top["tool"], "tool", {"name": str, "version": str})
        self.obj(top["summary"], "summary", dict.fromkeys(_required_keys(Summary), int))
        policy = self.obj(top["policy"], "policy", {"files": list, "rules": list})
        for i, name in enumerate(policy["files"]):
            if not isinstance(name, str):
                raise self.fail(f"policy.files[{i}]", "expected a string")
        for i, rule in enumerate(policy["rules"]):
            where = f"policy.rules[{i}]"
            keys: dict[str, type | tuple[type, ...]] = {k: str for k in ("id", "description", "severity", "action")}
            keys |= {"tool": str, "file": str, "line": int}
            checked = self.obj(rule, where, keys)
            self.enum(checked["severity"], f"{where}.severity", Severity)
            self.enum(checked["action"], f"{where}.action", Action)
        for i, request in enumerate(top["requests"]):
            self.request(request, f"requests[{i}]")

    def request(self, request: object, where: str) -> None:
        keys: dict[str, type | tuple[type, ...]] = {k: str for k in ("method", "url", "host", "path", "tool")}
        keys |= {"decision": str, "time": (int, float, type(None)), "rule_ids": list, "findings": list}
        checked = self.obj(request, where, keys)
        self.enum(checked["decision"], f"{where}.decision", Action)
        for j, rule_id in enumerate(checked["rule_ids"]):
            if not isinstance(rule_id, str):
                raise self.fail(f"{where}.rule_ids[{j}]", "expected a string")
        for j, finding in enumerate(checked["findings"]):
            fwhere = f"{where}.findings[{j}]"
            keys = {k: str for k in ("rule_id", "kind", "field", "severity", "action", "preview", "fingerprint")}
            found = self.obj(finding, fwhere, keys)
            self.enum(found["kind"], f"{fwhere}.kind", FindingKind)
            self.enum(found["severity"], f"{fwhere}.severity", Severity)
            self.enum(found["action"], f"{fwhere}.action", Action)
            for key, expected in (("message", str), ("detector", str), ("suppressed", bool)):
                if key in found and not isinstance(found[key], expected):
                    raise self.fail(f"{fwhere}.{key}", f"expected {expected.__name__}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


# Accessors shared by the writers, so each one reads the report the same way. They take any
# mapping (the engine's plain dict, a `Report`, JSON read back) and return the typed records.


def as_report(report: Mapping[str, Any]) -> Report:
    """`report` typed as a `Report` (no checking: see `check_report`)."""
    return cast(Report, report)


def is_telemetry(request: Mapping[str, Any]) -> bool:
    """Whether a request was audited as telemetry (the `telemetry` key wins when present)."""
    flag = request.get("telemetry")
    if flag is not None:
        return bool(flag)
    return bool(request.get("tool") or request.get("rule_ids") or request.get("findings"))


def telemetry_requests(report: Mapping[str, Any]) -> list[RequestRecord]:
    """The audited telemetry requests, in report order."""
    return [r for r in as_report(report).get("requests", []) if is_telemetry(r)]


def active_findings(request: Mapping[str, Any]) -> list[FindingRecord]:
    """Findings acted on: everything not suppressed by an allowlist or the baseline."""
    return [f for f in request.get("findings", []) if not f.get("suppressed")]


def suppressed_findings(request: Mapping[str, Any]) -> list[FindingRecord]:
    return [f for f in request.get("findings", []) if f.get("suppressed")]


def iter_findings(report: Mapping[str, Any]) -> Iterator[tuple[RequestRecord, FindingRecord]]:
    """Every finding with its request, suppressed ones included, in report order."""
    for request in as_report(report).get("requests", []):
        for finding in request.get("findings", []):
            yield request, finding


def rules_by_id(report: Mapping[str, Any]) -> dict[str, RuleRecord]:
    """Policy rules by id; when two packs reuse an id, the first one loaded wins."""
    out: dict[str, RuleRecord] = {}
    for rule in as_report(report).get("policy", {}).get("rules", []):
        out.setdefault(rule["id"], rule)
    return out


def request_target(request: Mapping[str, Any]) -> str:
    """`host/path`, how requests are named in tables and test cases."""
    path = request.get("path") or "/"
    return f"{request.get('host', '')}{path if path.startswith('/') else '/' + path}"


def action_of(value: str) -> Action:
    """The `Action` for a report string; unknown strings count as `block` so nothing is under-reported."""
    try:
        return Action(value)
    except ValueError:
        return Action.BLOCK


def severity_of(value: str) -> Severity:
    """The `Severity` for a report string; unknown strings count as `high`."""
    try:
        return Severity(value)
    except ValueError:
        return Severity.HIGH
