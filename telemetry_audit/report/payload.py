"""The masked payload tree of one request: what the HTML report shows as a collapsible tree.

The JSON report's `payload` entry (optional, additive) holds the decoded request as plain JSON:

    {"format": "json", "headers": {...}, "query": {...}, "body": <tree>, "marks": {"/body/cwd": [0]},
     "truncated": false}

Every value a finding points at is replaced by that finding's masked preview, keys of a container with a
key finding are masked, credential headers are always masked, and `marks` maps a JSON Pointer (RFC 6901)
into this object to the indexes of the request's findings at that value, so a viewer can highlight each
finding at its field without parsing field paths. Nothing here holds a flagged value in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telemetry_audit.decoders import EMBEDDED, DecodedRequest, DecodeLimits, decode_request
from telemetry_audit.decoders.formats import Embedded, FormPairs
from telemetry_audit.model import Decision, Finding, Request, mask

MAX_NODES = 5000
"""Values beyond this many are left out (`truncated: true`): a report stays a readable size."""
MAX_STRING = 2000
"""Longer strings are cut to this many characters (plus `…[N chars]`)."""
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)
"""Headers masked whatever the findings say: they hold credentials by definition."""
HOST_HEADERS = frozenset({"host", ":authority"})
"""Headers naming the host: masked when a finding is in the host name."""


def pointer(*steps: str | int) -> str:
    """A JSON Pointer (RFC 6901) from path steps."""
    return "".join("/" + str(step).replace("~", "~0").replace("/", "~1") for step in steps)


class _Builder:
    """Walks a decoded tree once, with the same locators as the decoder's flattener."""

    def __init__(self, by_locator: dict[tuple[Any, ...], list[int]], findings: Sequence[Finding],
                 masked_keys: set[str]) -> None:
        self.by_locator = by_locator
        self.findings = findings
        self.masked_keys = masked_keys
        self.marks: dict[str, list[int]] = {}
        self.nodes = 0
        self.truncated = False

    def leaf(self, value: Any, locator: tuple[Any, ...], where: tuple[str | int, ...]) -> Any:
        flagged = self.by_locator.get(locator)
        if flagged:
            self.marks[pointer(*where)] = flagged
            return self.findings[flagged[0]].preview or mask(str(value))
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str) and len(value) > MAX_STRING:
            return f"{value[:MAX_STRING]}…[{len(value)} chars]"
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return str(value)

    def key(self, name: Any) -> str:
        text = str(name)
        return mask(text) if text in self.masked_keys else text

    def walk(self, node: Any, locator: tuple[Any, ...], where: tuple[str | int, ...], depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > 64:
            self.truncated = True
            return "…"
        if isinstance(node, Embedded):
            return self.walk(node.tree, locator + (EMBEDDED,), where, depth + 1)
        if isinstance(node, FormPairs):
            names = [self.key(pair[0]) for pair in node.pairs]
            if len(set(names)) == len(names):
                return {name: self.walk(pair[1], locator + (i, 1), where + (name,), depth + 1)
                        for i, (name, pair) in enumerate(zip(names, node.pairs, strict=True))}
            return [[name, self.walk(pair[1], locator + (i, 1), where + (i, 1), depth + 1)]
                    for i, (name, pair) in enumerate(zip(names, node.pairs, strict=True))]
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for name, value in node.items():
                shown = self.key(name)
                out[shown] = self.walk(value, locator + (name,), where + (shown,), depth + 1)
            return out
        if isinstance(node, list):
            return [self.walk(value, locator + (i,), where + (i,), depth + 1) for i, value in enumerate(node)]
        return self.leaf(node, locator, where)


def payload_tree(request: Request, decision: Decision, decoded: DecodedRequest | None = None) -> dict[str, Any]:
    """The masked payload object for `request` (see the module docstring)."""
    decoded = decoded or decode_request(request, DecodeLimits())
    findings = decision.findings
    by_path: dict[str, list[int]] = {}
    for index, finding in enumerate(findings):
        by_path.setdefault(finding.field, []).append(index)
    by_locator: dict[tuple[Any, ...], list[int]] = {}
    masked_keys: set[str] = set()
    for field in decoded.fields:
        indexes = by_path.get(field.path)
        if not indexes:
            continue
        if field.path.startswith("key:"):
            masked_keys.add(field.text)
        elif field.locator:
            by_locator.setdefault(field.locator, indexes)
    builder = _Builder(by_locator, findings, masked_keys)

    headers: dict[str, Any] = {}
    # A token in a host label is in the Host header too; a flagged header name is masked as a key is.
    host_flagged = any(f.field == "url.host" for f in findings)
    for name, value in request.headers:
        lowered = name.lower()
        key = mask(lowered) if lowered in masked_keys else lowered
        flagged = by_path.get(f"header.{lowered}")
        if flagged:
            builder.marks[pointer("headers", key)] = flagged
            shown = findings[flagged[0]].preview or mask(value)
        elif lowered in CREDENTIAL_HEADERS or (host_flagged and lowered in HOST_HEADERS):
            shown = mask(value)
        else:
            shown = builder.leaf(value, ("header", lowered, "unflagged"), ("headers", key))
        headers[key] = f"{headers[key]}, {shown}" if key in headers else shown

    out: dict[str, Any] = {"format": decoded.body_format, "headers": headers}
    if decoded.query_tree is not None:
        query_flagged = any(f.field.startswith(("query.", "key:query")) for f in findings)
        query: dict[str, Any] = {}
        for i, (name, value) in enumerate(request.query):
            key = mask(name) if any(f.field.startswith("key:query") for f in findings) else name
            query[key] = mask(value) if query_flagged else value
            flagged = by_locator.get(("query", i, 1))
            if flagged:
                builder.marks[pointer("query", key)] = flagged
        out["query"] = query
    if decoded.body_tree is not None:
        out["body"] = builder.walk(decoded.body_tree, (), ("body",))
    elif decoded.body_format == "raw" and request.body:
        flagged = [i for i, f in enumerate(findings) if f.field == "body" and f.detector]
        if flagged:
            builder.marks[pointer("body")] = flagged
            out["body"] = findings[flagged[0]].preview
        else:
            out["body"] = builder.leaf(request.body.decode("utf-8", "replace"), ("raw-body",), ("body",))
    for index, finding in enumerate(findings):
        if finding.field == "body" and not finding.detector and "body" in out:
            builder.marks.setdefault(pointer("body"), []).append(index)
    out["marks"] = builder.marks
    out["truncated"] = builder.truncated
    return out
