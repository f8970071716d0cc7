"""Baselines: accept the findings of a reviewed report so only new ones count.

A baseline stores fingerprints (hashes of rule, tool, generic field path and
value), plus the rule id, generic field path and tool so a reviewer can read
the file. It never stores previews or values: it is meant to be committed.

Findings of kind `error` (the audit itself failed) are never baselined: that
would hide a broken audit for good.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from telemetry_audit.model import Action, FindingKind, strictest
from telemetry_audit.report.json_report import RequestRecord, action_of, active_findings, as_report

BASELINE_VERSION = 1

_INDEX = re.compile(r"\[\d+\]")
_FINGERPRINT = re.compile(r"[0-9a-f]{8,128}")
_SUMMARY_KEYS = {Action.BLOCK: "blocked", Action.REDACT: "redacted", Action.LOG: "logged"}


class BaselineError(Exception):
    """A baseline that cannot be used; the message names the file and what is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def generic_field(field: str) -> str:
    """`batch[0].properties.args[1]` -> `batch[].properties.args[]` (what fingerprints hash)."""
    return _INDEX.sub("[]", field)


def _baselinable(kind: str) -> bool:
    return kind != FindingKind.ERROR.value


def write_baseline(data: Mapping[str, Any]) -> str:
    """A baseline accepting every finding in `report` (suppressed ones included), as JSON text.

    Entries are unique by fingerprint and sorted, so the file is stable across runs.
    """
    entries: dict[str, dict[str, str]] = {}
    for request in as_report(data).get("requests", []):
        for finding in request.get("findings", []):
            if not _baselinable(finding.get("kind", "")):
                continue
            entry = {
                "fingerprint": finding["fingerprint"],
                "rule_id": finding.get("rule_id", ""),
                "field": generic_field(finding.get("field", "")),
                "tool": request.get("tool", ""),
            }
            known = entries.get(entry["fingerprint"])
            if known is None or _order(entry) < _order(known):
                entries[entry["fingerprint"]] = entry
    ordered = sorted(entries.values(), key=_order)
    return json.dumps({"version": BASELINE_VERSION, "fingerprints": ordered}, indent=2, ensure_ascii=False) + "\n"


def _order(entry: dict[str, str]) -> tuple[str, str, str, str]:
    return (entry["tool"], entry["rule_id"], entry["field"], entry["fingerprint"])


def load_baseline(path_or_text: str | os.PathLike[str]) -> frozenset[str]:
    """The fingerprints in a baseline file (or in baseline JSON text, when it starts with `{`).

    Raises `BaselineError` naming the file and the problem.
    """
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{"):
        source, text = "<baseline>", path_or_text
    else:
        source = os.fspath(path_or_text)
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError as e:
            raise BaselineError(source, "baseline file not found") from e
        except IsADirectoryError as e:
            raise BaselineError(source, "is a directory, not a baseline file") from e
        except OSError as e:
            raise BaselineError(source, f"cannot read the baseline: {e.strerror or e}") from e
        except UnicodeDecodeError as e:
            raise BaselineError(source, "not a baseline: the file is not UTF-8 text") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BaselineError(source, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e
    return _fingerprints(data, source)


def _fingerprints(data: Any, source: str) -> frozenset[str]:
    if not isinstance(data, dict):
        raise BaselineError(source, 'expected a JSON object like {"version": 1, "fingerprints": [...]}')
    if "version" not in data:
        raise BaselineError(source, "missing 'version' (expected 1)")
    if data["version"] != BASELINE_VERSION or isinstance(data["version"], bool):
        raise BaselineError(source, f"unsupported baseline version {data['version']!r} (expected {BASELINE_VERSION})")
    entries = data.get("fingerprints")
    if not isinstance(entries, list):
        problem = "missing 'fingerprints'" if entries is None else "'fingerprints' must be a list"
        raise BaselineError(source, problem)
    found: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"fingerprints[{i}]"
        if not isinstance(entry, dict):
            raise BaselineError(source, f"{where}: expected an object with a 'fingerprint', got {type(entry).__name__}")
        value = entry.get("fingerprint")
        if not isinstance(value, str):
            raise BaselineError(source, f"{where}: missing 'fingerprint'" if value is None
                                else f"{where}: 'fingerprint' must be a string")
        if not _FINGERPRINT.fullmatch(value):
            raise BaselineError(source, f"{where}: {value[:40]!r} is not a fingerprint (lower-case hex expected)")
        found.add(value)
    return frozenset(found)


def apply_baseline(report: Mapping[str, Any], fingerprints: Collection[str]) -> dict[str, Any]:
    """A copy of `report` in which findings whose fingerprint is in `fingerprints` are suppressed.

    For each request that lost findings, the decision is recomputed the way the
    engine makes it: the strictest action among the findings still acted on,
    `allow` when none remain. Matching a rule alone never logs a request (the
    engine decides from findings only), so a request whose only findings were
    baselined becomes `allow`; one that still has a `log` finding stays `log`.
    A decision never becomes stricter than it was. Requests without newly
    suppressed findings keep their decision untouched. `summary` is updated to
    match: `findings` counts findings still acted on, `suppressed` the rest.
    """
    copied: dict[str, Any] = copy.deepcopy(dict(report))
    out = as_report(copied)
    wanted = frozenset(fingerprints)
    summary = out.get("summary")
    newly = 0
    for request in out.get("requests", []):
        changed = 0
        for finding in request.get("findings", []):
            if finding.get("suppressed") or finding.get("fingerprint") not in wanted:
                continue
            if not _baselinable(finding.get("kind", "")):
                continue
            finding["suppressed"] = True
            changed += 1
        if not changed:
            continue
        newly += changed
        before = action_of(request.get("decision", "allow"))
        after = _decision(request, before)
        request["decision"] = after.value
        if summary is not None and after is not before:
            _move(summary, before, after)
    if summary is not None and newly:
        summary["findings"] = max(0, summary.get("findings", 0) - newly)
        summary["suppressed"] = summary.get("suppressed", 0) + newly
    return copied


def accepted_by_own_baseline(report: Mapping[str, Any]) -> dict[str, Any]:
    """`report` as it reads once the baseline written from it is applied: what `--write-baseline` gates on."""
    return apply_baseline(report, load_baseline(write_baseline(report)))


def _decision(request: RequestRecord, before: Action) -> Action:
    after = strictest(action_of(f.get("action", "")) for f in active_findings(request))
    return after if after.rank <= before.rank else before


def _move(summary: Any, before: Action, after: Action) -> None:
    if before in _SUMMARY_KEYS:
        key = _SUMMARY_KEYS[before]
        summary[key] = max(0, summary.get(key, 0) - 1)
    if after in _SUMMARY_KEYS:
        key = _SUMMARY_KEYS[after]
        summary[key] = summary.get(key, 0) + 1
