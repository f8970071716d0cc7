"""The decision engine: one request and one policy in, one `Decision` out.

Like pip-audit's auditor it prints nothing and knows nothing of mitmproxy.
The strictest action among a request's findings wins; a redacting decision
carries the rewritten body in the request's own format and encoding.

An adapter reads each request once and shares it: `Auditor.decode(request)`
gives the `DecodedRequest` (plain body, parsed document) that `Auditor.audit`
decides on and an emulator answers from; `Auditor.evaluate` does both.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from telemetry_audit import endpoints
from telemetry_audit.decoders import (
    DROP,
    SCAN_TEXT_EMBEDDED_GATE,
    DecodedRequest,
    DecodeProblem,
    body_leaves,
    decode_request,
    fields_near,
    header_and_url_fields,
    header_scan_text,
    holds_embedded,
    rewrite_body,
    rewrite_values,
    scan_text,
    scan_text_pieces,
)
from telemetry_audit.decoders.formats import LARGE_DOCUMENT_BYTES, collector_paused
from telemetry_audit.detectors import FAMILIES
from telemetry_audit.detectors.base import AuditEnvironment, Detector, JointGate, Match
from telemetry_audit.model import (
    ENGINE_RULES,
    Action,
    Decision,
    FieldValue,
    Finding,
    FindingKind,
    Limits,
    RedactMode,
    Request,
    fingerprint,
    mask,
    strictest,
)
from telemetry_audit.policy.model import ConditionHits, ForbidSpec, Policy, Rule

_ROUTE_CACHE_SIZE = 4096
_MATCH_CAP = 500
"""Matches of one family over a whole request beyond which every value is scanned alone (detectors stop at
their own caps, so a value past one would otherwise go unseen)."""
_FIELD_CACHE_SIZE = 65536
"""Entries of the per-generic-path verdict caches (field allow-lists, custom pattern scopes) before a reset."""
_REMEMBERED_VALUE_CHARS = 256
_REMEMBERED_VALUES = 4096
"""Detectors' matches in values up to this long are remembered, this many at a time (`_find_in_value`): ids,
names, keys and command words repeat within and across requests, and each read runs RE2 (microseconds of
wrapper however short the value), keyword sets and entropy again."""

_NOT_PAYLOAD_FIELDS = ("header.", "url.", "key:")
"""Scanned by detectors, but not payload fields an allow-list documents."""


@dataclass(frozen=True)
class _PatternDetector:
    """A policy's own `pattern:` entry, run like any detector."""

    family: str
    detector_id: str
    title: str
    regex: Any

    def find(self, value: str) -> Iterator[Match]:
        """Its matches in `value` (the engine remembers them for short values: `Auditor._find_in_value`)."""
        for found in self.regex.finditer(value):
            start, end = found.span()
            if end > start:
                yield Match(self.detector_id, FindingKind.SECRET, self.title, start, end)


@dataclass
class _Candidate:
    """A finding before allowlists, dedupe and redaction are applied."""

    finding: Finding
    field: FieldValue
    start: int
    end: int
    redact: RedactMode
    rule: Rule | None


@dataclass
class _HeadersRead:
    """What `_glance` reads from one set of request headers, once: clients repeat theirs."""

    text: str | None
    """`header_scan_text` of the headers."""
    name_says_secret: dict[int, bool] = field(default_factory=dict)
    """Per key-context detector (by id): whether a header's name says secret over a credential-like value."""
    cookie_says_secret: dict[int, bool] = field(default_factory=dict)
    """Per key-context detector: the same of a cookie's name."""


@dataclass(frozen=True)
class _GlancePlan:
    """What `_glance` asks of one rule set's detectors."""

    joint: JointGate | None
    """Every detector's gate as one set; None when RE2 cannot run it (each detector then runs its own pass)."""
    asked: list[tuple[int, Detector, Any, bool]]
    """(position among the rule set's detectors, detector, its `find_in_scan_text` or None, whether it has a gate),
    custom patterns left out (the glance never judges them)."""
    all_gated: bool
    """Whether every asked detector has a gate: then no gate hit means none is asked."""
    key_context: list[tuple[Detector, Any]]
    """The asked detectors that read names (headers' and cookies' too), with their `find_in_scan_text`."""
    embedded: int
    """The joint gate's position of `SCAN_TEXT_EMBEDDED_GATE` (after the detectors')."""


def _settings_key(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


class Auditor:
    """Evaluates many requests against one policy in one audit environment.

    Detectors are built once per (family, settings) and reused, so the cost
    per request is the scan itself.
    """

    def __init__(
        self,
        policy: Policy,
        environment: AuditEnvironment | None = None,
        *,
        audit_all: bool = False,
        limits: Limits | None = None,
        fast_path: bool = True,
    ) -> None:
        self.policy = policy
        self.environment = environment or AuditEnvironment.current()
        self.audit_all = audit_all
        self.limits = limits or Limits.from_settings(policy.settings)
        self.fast_path = fast_path
        self._detectors: dict[tuple[str, str, str], Detector] = {}
        self._routes: dict[tuple[str, str, str, str, bool], tuple[bool, tuple[Rule, ...]]] = {}
        self._groups: dict[tuple[str, ...], list[tuple[Detector, list[tuple[Rule, ForbidSpec]]]]] = {}
        self._headers_read: dict[tuple[tuple[str, str], ...], _HeadersRead] = {}
        """Per header set (clients repeat theirs): its scan text and the key-context verdicts on its names."""
        self._key_context: dict[int, tuple[Any, Any, Any]] = {}
        self._secret_names: dict[tuple[int, str], str] = {}
        """Per detector (by id; each lives as long as this auditor): its key-context methods, or Nones."""
        self._payload_verdict: tuple[bytes, str, str, bool] | None = None
        self._payload_read: tuple[Request, DecodedRequest] | None = None
        """The last body `route` judged by its payload: its verdict, and its read for `decode` (see `route`)."""
        self._reported: dict[tuple[int, str], bool] = {}
        """Per (field policy, generic path): whether a field there is reported (neither allowed nor ignored)."""
        self._in_scope: dict[tuple[int, str], bool] = {}
        """Per (forbid entry, generic path): whether the entry's `fields:` scope covers the path."""
        self._shape_verdicts: dict[tuple[tuple[str, ...], frozenset[str]], bool] = {}
        """Per (rule set, generic paths of a payload): whether a `fields:` check reports one of them."""
        self._scopes: dict[tuple[tuple[str, ...], int, frozenset[str]], dict[str, list[tuple[Rule, ForbidSpec]]]] = {}
        """Per (rule set, custom pattern, generic paths of a request): the paths its entries cover, and by which."""
        self._allowlists: dict[tuple[str, ...], tuple[Any, ...]] = {}
        self._request_fields: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
        self._ids: dict[int, tuple[tuple[Rule, ...], tuple[str, ...], str, Decision]] = {}
        self._shapes: dict[tuple[str, ...], tuple[bool, bool]] = {}
        """Per rule set: (any rule has a `fields:` check, any forbid entry is a custom pattern or has a `when`)."""
        self._joint_gates: dict[tuple[int | None, ...], JointGate] = {}
        """Per sequence of gated detectors (by id; they live as long as this auditor): their joint gate."""
        self._glance_plans: dict[tuple[str, ...], _GlancePlan] = {}
        """Per rule set: its detectors' joint gate, run once over a scan text, and who `_glance` asks after it."""
        self._values_read: dict[int, dict[str, tuple[Match, ...]]] = {}
        """Per detector, per short value: its matches (`_find_in_value`)."""

    def _secret_name(self, detector: Detector, strength: Any, generic: str) -> str:
        """The name `generic` holds its value under when it may say secret to `detector`, else "" (cached)."""
        key = (id(detector), generic)
        name = self._secret_names.get(key)
        if name is None:
            if len(self._secret_names) >= _ROUTE_CACHE_SIZE:
                self._secret_names.clear()
            name = _field_name(generic)
            if name and strength is not None and not strength(name):
                name = ""
            self._secret_names[key] = name
        return name

    def key_context_of(self, detector: Detector) -> tuple[Any, Any, Any]:
        """(find_in_scan_text, find_under, strength) of a detector that reads field names, else Nones; looked up
        once, not per request."""
        found = self._key_context.get(id(detector))
        if found is None:
            found = self._key_context[id(detector)] = (
                getattr(detector, "find_in_scan_text", None), getattr(detector, "find_under", None),
                getattr(detector, "strength", None))
        return found

    def detector_for(self, spec: ForbidSpec) -> Detector:
        """The configured detector for a forbid entry (built on first use)."""
        if spec.family == "custom":
            key = ("custom", spec.custom_id, spec.pattern.pattern)
            if key not in self._detectors:
                self._detectors[key] = _PatternDetector("custom", spec.custom_id, spec.title or spec.custom_id,
                                                        spec.pattern)
            return self._detectors[key]
        settings = {**self.policy.settings.detectors.get(spec.family, {}), **spec.settings}
        key = (spec.family, "", _settings_key(settings))
        if key not in self._detectors:
            factory = FAMILIES.get(spec.family)
            if factory is None:
                raise KeyError(f"unknown detector family {spec.family!r}")
            self._detectors[key] = factory(settings, self.environment)
        return self._detectors[key]

    def is_telemetry(self, request: Request) -> bool:
        return self.audit_all or endpoints.is_telemetry(request, self.policy.settings.telemetry_hosts)

    def recognised(self, request: Request) -> bool:
        """Whether `request` is telemetry by its names or its payload, whatever `audit_all` says: a request audited
        only because everything is keeps the answer it would have had (offline: none)."""
        if endpoints.is_telemetry(request, self.policy.settings.telemetry_hosts):
            return True
        return bool(request.body) and request.method not in ("GET", "HEAD") and \
            self._payload_says_telemetry(request, None)

    def route(self, request: Request, decoded: DecodedRequest | None = None) -> tuple[bool, tuple[Rule, ...]]:
        """(is telemetry, matching rules), by the request's names, then by its payload.

        By name (method, host, path, User-Agent and, for GET pixels, whether the query speaks a pixel protocol):
        cached. A request its names do not make telemetry, but that carries a body, is telemetry when the body
        looks like analytics events (`endpoints.looks_like_analytics_event`): the body is read for that once,
        from `decoded` when the caller has it, and `decode` hands the same read on.
        """
        found = self._route_by_name(request)
        if found[0] or not request.body or request.method in ("GET", "HEAD"):
            return found
        if self._payload_says_telemetry(request, decoded):
            return True, self.policy.rules_for(request, True)
        return found

    def _payload_says_telemetry(self, request: Request, decoded: DecodedRequest | None) -> bool:
        """Whether the body looks like analytics events; remembered for the last body (every name a request goes
        by shares one body) and its read kept for `decode`."""
        key = (request.body, request.header("content-type"), request.header("content-encoding"))
        if self._payload_verdict is not None and self._payload_verdict[0] is key[0] and \
                self._payload_verdict[1:3] == key[1:]:
            return self._payload_verdict[3]
        read = decoded or decode_request(request, self.limits)
        tree = read.body_tree
        verdict = isinstance(tree, dict | list) and endpoints.looks_like_analytics_event(tree)
        self._payload_read = (request, read) if verdict and decoded is None else None
        self._payload_verdict = (*key, verdict)
        return verdict

    def _route_by_name(self, request: Request) -> tuple[bool, tuple[Rule, ...]]:
        pixel = endpoints.pixel_says_telemetry(request)
        key = (request.method, request.host, request.path, request.header("user-agent"), pixel)
        found = self._routes.get(key)
        if found is None:
            is_telemetry = self.is_telemetry(request)
            found = (is_telemetry, self.policy.rules_for(request, is_telemetry))
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[key] = found
        return found

    def _ids_of(self, rules: tuple[Rule, ...]) -> tuple[tuple[str, ...], str]:
        """(rule ids, tool) of a rule set, memoised by the tuple's identity (`route` hands out one tuple per
        route; the entry keeps it alive, so its id cannot be reused while cached)."""
        entry = self._rule_set(rules)
        return entry[1], entry[2]

    def _passed(self, rules: tuple[Rule, ...]) -> Decision:
        """The decision for a request under `rules` with nothing to say (one frozen value per rule set)."""
        return self._rule_set(rules)[3]

    def _rule_set(self, rules: tuple[Rule, ...]) -> tuple[tuple[Rule, ...], tuple[str, ...], str, Decision]:
        entry = self._ids.get(id(rules))
        if entry is not None and entry[0] is rules:
            return entry
        if len(self._ids) >= _ROUTE_CACHE_SIZE:
            self._ids.clear()
        ids = tuple(rule.id for rule in rules)
        tool = next((r.tool for r in reversed(rules) if r.tool), "")
        entry = self._ids[id(rules)] = (rules, ids, tool, Decision(Action.ALLOW, (), True, tool, ids))
        return entry

    def detector_groups(self, rules: tuple[Rule, ...]) -> list[tuple[Detector, list[tuple[Rule, ForbidSpec]]]]:
        """Each detector the rules use, with the (rule, forbid entry) pairs that use it; built once per rule set."""
        key = self._ids_of(rules)[0]  # ids are unique within a policy
        groups = self._groups.get(key)
        if groups is None:
            by_detector: dict[int, tuple[Detector, list[tuple[Rule, ForbidSpec]]]] = {}
            for rule in rules:
                for spec in rule.forbid:
                    detector = self.detector_for(spec)
                    by_detector.setdefault(id(detector), (detector, []))[1].append((rule, spec))
            groups = self._groups[key] = list(by_detector.values())
        return groups

    def decode(self, request: Request) -> DecodedRequest:
        """Read `request` once (content codings, charset, format) within this policy's limits.

        Hand the result to `audit` and to whatever else needs the body (an emulator): nothing decodes again.
        """
        read, self._payload_read = self._payload_read, None
        if read is not None and read[0] is request:  # `route` read it to see the payload
            return read[1]
        return decode_request(request, self.limits)

    def evaluate(self, request: Request) -> Decision:
        """Decode and decide `request` (a request no rule applies to is not decoded at all)."""
        if len(request.body) < LARGE_DOCUMENT_BYTES:
            return self._decode_and_audit(request)
        with collector_paused():
            # Returns with the body's tree already freed: nothing is left for the collector to walk on resuming.
            return self._decode_and_audit(request)

    def _decode_and_audit(self, request: Request) -> Decision:
        is_telemetry, rules = self.route(request)  # may read the body (a payload shape)
        if not rules:
            return Decision(Action.ALLOW, telemetry=False)
        decoded = self.decode(request)
        return self._audit(decoded, self._with_payload_rules(decoded, is_telemetry, rules))

    def audit(self, decoded: DecodedRequest) -> Decision:
        """Decide a request `decode` already read; never raises for any request content."""
        if len(decoded.request.body) < LARGE_DOCUMENT_BYTES:
            return self._route_and_audit(decoded)
        with collector_paused():
            return self._route_and_audit(decoded)

    def _route_and_audit(self, decoded: DecodedRequest) -> Decision:
        is_telemetry, rules = self.route(decoded.request, decoded)
        if not rules:
            return Decision(Action.ALLOW, telemetry=False)
        return self._audit(decoded, self._with_payload_rules(decoded, is_telemetry, rules))

    def _with_payload_rules(self, decoded: DecodedRequest, is_telemetry: bool, rules: tuple[Rule, ...]) -> tuple[
            Rule, ...]:
        """The routed rules plus those whose `payload:` shape this body has (a tool pack's payload on any host).

        Only for a request read anyway; a policy without shapes returns at once, and a shape tests the body's
        top-level keys before anything else.
        """
        tree = decoded.body_tree
        if not isinstance(tree, dict) or not any(key in tree for key in self.policy.payload_keys):
            return rules  # no shape can match: the common case costs a lookup per shape key
        return self.policy.with_payload_rules(
            rules, decoded.request, is_telemetry, decoded.body_tree, decoded.plain_body,
            lambda: (item.generic_path for item in decoded.fields))

    def _audit(self, decoded: DecodedRequest, rules: tuple[Rule, ...]) -> Decision:
        rule_ids, tool = self._ids_of(rules)
        try:
            return self._evaluate(decoded, rules, tool, rule_ids)
        except Exception as e:  # auditing must fail closed, never open
            candidate = self._engine_candidate("audit-error", "body", tool, f"auditing failed: {type(e).__name__}: {e}",
                                               (type(e).__name__,))
            return Decision(candidate.finding.action, (candidate.finding,), True, tool, rule_ids)

    def _evaluate(
        self, decoded: DecodedRequest, rules: tuple[Rule, ...], tool: str, rule_ids: tuple[str, ...]
    ) -> Decision:
        fields: list[FieldValue] | None = None
        flagged: set[int] | None = None
        if self.fast_path:
            glance = self._glance(decoded, rules)
            if glance is not None:
                headers_text, spans, flagged = glance
                has_field_rules, has_custom = self._shape(rules)
                if not has_field_rules and not has_custom:
                    if not flagged:
                        return self._passed(rules)
                    fields = fields_near(decoded, headers_text, spans)  # with no span: the header and URL fields
                elif not flagged and self._documented(decoded, rules):
                    return self._passed(rules)
        if fields is None:
            fields = decoded.fields  # may add problems (limits met while walking)
        candidates = [self._problem_candidate(problem, tool) for problem in decoded.read_problems]
        if any(problem.where == "body" and problem.rule_id == "oversize" and "max_body_bytes" in problem.reason
               for problem in decoded.read_problems):
            return self._decide(decoded, candidates, tool, rules)  # not read at all: nothing else to say
        for rule in rules:
            if rule.fields is not None and rule.fields.unknown is not None:
                candidates.extend(self._field_candidates(rule, fields, tool))
        candidates.extend(self._detector_candidates(rules, fields, tool, flagged))
        return self._decide(decoded, candidates, tool, rules)

    def _documented(self, decoded: DecodedRequest, rules: tuple[Rule, ...]) -> bool:
        """True when no `fields:` check reports a field and no custom pattern matches, read from generic paths
        and values alone (`body_leaves`); False when that cannot be told so (the full path then decides).

        With no detector flagged by `_glance`, that is exactly when the full path finds nothing.
        """
        request_values = self._request_values(decoded.request)
        leaves = body_leaves(decoded, len(request_values))
        if leaves is None:
            return False
        body, keys = leaves
        rule_ids = self._ids_of(rules)[0]
        # Clients repeat their payload's shape: what depends only on the set of generic paths is kept per set.
        payload_generics = frozenset(generic for generic, _ in body) | {generic for generic, _ in request_values}
        field_rules = [rule for rule in rules if rule.fields is not None and rule.fields.unknown is not None]
        if field_rules:  # cookies are payload fields too (headers, the URL and keys are not: see the verdict)
            key = (rule_ids, payload_generics)
            reports_any = self._shape_verdicts.get(key)
            if reports_any is None:
                if len(self._shape_verdicts) >= _ROUTE_CACHE_SIZE:
                    self._shape_verdicts.clear()
                reports_any = self._shape_verdicts[key] = any(
                    self._field_reported(rule, generic) for generic in payload_generics for rule in field_rules)
            if reports_any:
                return False
        patterns = [(d, users) for d, users in self.detector_groups(rules) if isinstance(d, _PatternDetector)]
        if not patterns:
            return True
        values = (*request_values, *body, *keys)
        generics = payload_generics | {generic for generic, _ in keys}
        for detector, users in patterns:
            covered = self._scope(rule_ids, detector, users, generics)
            if not covered:
                continue
            for generic, value in values:
                specs = covered.get(generic)
                if specs is None or value is None or value is True or value is False:
                    continue
                text = value if type(value) is str else str(value)  # as `FieldValue.text` spells it
                if not text:
                    continue
                for match in self._find_in_value(detector, text):
                    if any(_may_report(spec, text, match) for _, spec in specs):
                        return False
        return True

    def _scope(self, rule_ids: tuple[str, ...], detector: _PatternDetector, users: list[tuple[Rule, ForbidSpec]],
               generics: frozenset[str]) -> dict[str, list[tuple[Rule, ForbidSpec]]]:
        """The generic paths among `generics` that a custom pattern's entries cover, each with the entries that
        cover it (cached per set of paths: clients repeat their payload's shape)."""
        key = (rule_ids, id(detector), generics)
        covered = self._scopes.get(key)
        if covered is None:
            if len(self._scopes) >= _ROUTE_CACHE_SIZE:
                self._scopes.clear()
            covered = self._scopes[key] = {
                generic: covering for generic in generics if (covering := self._covering(users, generic))}
        return covered

    def _field_reported(self, rule: Rule, generic: str) -> bool:
        """Whether `rule`'s `fields:` check reports a field at generic path `generic` (cached per path)."""
        policy = rule.fields
        assert policy is not None and policy.unknown is not None
        reported = self._reported  # keyed by the policy's id: it outlives these caches (the auditor holds it)
        verdict = reported.get((id(policy), generic))
        if verdict is None:
            if len(reported) >= _FIELD_CACHE_SIZE:
                reported.clear()
            verdict = reported[(id(policy), generic)] = not (
                generic.startswith(_NOT_PAYLOAD_FIELDS) or policy.is_allowed(generic) or policy.is_ignored(generic))
        return verdict

    def _request_values(self, request: Request) -> list[tuple[str, Any]]:
        """(generic path, value) of the header and URL fields of `request` (cached: clients repeat them)."""
        key = (request.headers, request.path, request.host)
        found = self._request_fields.get(key)
        if found is None:
            if len(self._request_fields) >= _ROUTE_CACHE_SIZE:
                self._request_fields.clear()
            found = self._request_fields[key] = [(f.generic_path, f.value) for f in header_and_url_fields(request)]
        return found

    def _covering(self, users: list[tuple[Rule, ForbidSpec]], generic: str) -> list[tuple[Rule, ForbidSpec]]:
        """The (rule, forbid entry) pairs whose `fields:` scope covers generic path `generic` (no scope: all)."""
        in_scope = self._in_scope
        covering: list[tuple[Rule, ForbidSpec]] = []
        for rule, spec in users:
            if spec.fields_regex is None:
                covering.append((rule, spec))
                continue
            key = (id(spec), generic)
            covered = in_scope.get(key)
            if covered is None:
                if len(in_scope) >= _FIELD_CACHE_SIZE:
                    in_scope.clear()
                covered = in_scope[key] = spec.fields_regex.match(generic) is not None
            if covered:
                covering.append((rule, spec))
        return covering

    def _shape(self, rules: tuple[Rule, ...]) -> tuple[bool, bool]:
        """(any rule checks `fields:`, any forbid entry is a custom pattern or has a `when`) of a rule set (cached).

        Either needs every field: a `when` reads other fields of the same record, which `fields_near` may leave out.
        """
        key = self._ids_of(rules)[0]
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= _ROUTE_CACHE_SIZE:
                self._shapes.clear()
            shape = self._shapes[key] = (
                any(rule.fields is not None and rule.fields.unknown is not None for rule in rules),
                any(spec.family == "custom" or spec.when is not None for rule in rules for spec in rule.forbid))
        return shape

    def _problem_candidate(self, problem: DecodeProblem, tool: str) -> _Candidate:
        if problem.rule_id == "decode":
            message = f"cannot decode {problem.where}: {problem.reason}"
        else:
            message = f"{problem.where} not fully inspected: {problem.reason}"
        return self._engine_candidate(problem.rule_id, problem.where, tool, message)

    def _glance(
        self, decoded: DecodedRequest, rules: tuple[Rule, ...]
    ) -> tuple[str, list[tuple[int, int]], set[int]] | None:
        """(header text, spans every detector finds in the request's `scan_text`, ids of the detectors that may
        find anything in the request), or None when the scan text cannot stand in for the fields.

        Most telemetry is clean: no span, and the request passes without a field per value. With spans, only
        the fields around them are read (`fields_near`). Either way the decision is exactly the one reading
        every field gives. A detector that finds nothing in the scan text finds nothing in any field, so with
        `fields:` checks or custom patterns (which need every field) only the detectors it flags are run per
        field. Custom patterns are never judged here (they may anchor on a value's own start and end).
        """
        plan = self._glance_plan(rules)
        headers = decoded.request.headers
        headers_read = self._headers_read.get(headers)
        if headers_read is None:
            if len(self._headers_read) >= _ROUTE_CACHE_SIZE:
                self._headers_read.clear()
            headers_read = self._headers_read[headers] = _HeadersRead(header_scan_text(headers))
        headers_text = headers_read.text
        joint = plan.joint
        text = scan_text(decoded, headers_text, embedded_gate=joint is not None) if headers_text is not None else None
        if text is None or headers_text is None:
            return None
        spans: list[tuple[int, int]] = []
        flagged: set[int] = set()
        exact = True
        starts = scan_text_pieces(decoded, headers_text, len(text))
        pieces = [(start, text[start:end]) for start, end in zip(starts, [*starts[1:], len(text)], strict=True)] \
            if len(starts) > 1 else [(0, text)]
        # One pass of the joint gate per piece says which detectors may find anything in it; the others are not
        # asked (but for what a key-context detector reads in the headers, which the gate does not see).
        piece_hits = [joint.hits(piece) for _, piece in pieces] if joint is not None else None
        if piece_hits is not None and any(plan.embedded in by_detector for by_detector in piece_hits):
            if holds_embedded(decoded):
                return None  # a string holds a document: the scan text cannot stand in for its fields
            for by_detector in piece_hits:
                by_detector.pop(plan.embedded, None)
        if piece_hits is not None and plan.all_gated and not any(piece_hits):
            # The common clean request: no gate entry hits. Only header and cookie names are left to judge.
            for detector, find_in_scan_text in plan.key_context:
                if self._headers_say_secret(detector, find_in_scan_text, headers_read, headers):
                    break
                if self._cookie_says_secret(detector, headers_read, decoded.request):
                    flagged.add(id(detector))
            else:
                return headers_text, spans, flagged
        for position, detector, find_in_scan_text, has_gate in plan.asked:
            gated = piece_hits is not None and has_gate
            header_secret = gated and find_in_scan_text is not None and \
                self._headers_say_secret(detector, find_in_scan_text, headers_read, headers)
            for number, (offset, piece) in enumerate(pieces):
                hits: list[int] | None = None
                if gated:
                    assert piece_hits is not None
                    hits = piece_hits[number].get(position)
                    if hits is None:
                        if not (offset == 0 and header_secret):
                            continue  # the gate says this detector finds nothing here
                        hits = []
                if find_in_scan_text is not None:
                    # Key context also sees the body's `name: value` pairs, each header and each cookie. One of a
                    # body pair is placed at its value, so the full path reads that value under its name; a cookie's
                    # only flags the detector (`fields_near` always reads cookies); any other (a header's, or an OTLP
                    # attribute found at its name) comes unplaced: every field is read.
                    found: Iterable[Any] = find_in_scan_text(piece, headers if offset == 0 else (), hits)
                elif hits is not None:
                    found = detector.find_gated(piece, hits)  # type: ignore[attr-defined]
                else:
                    found = detector.find(piece)
                stopped = False
                for count, item in enumerate(found):
                    match, placed = item if find_in_scan_text is not None else (item, True)
                    flagged.add(id(detector))
                    if not placed or count >= _MATCH_CAP:
                        exact, stopped = False, True  # unplaced, or the detector may stop at its own cap
                        break
                    if match.end > match.start:
                        spans.append((offset + match.start, offset + match.end))
                if stopped:
                    break  # this detector is flagged, and every field will be read: its other pieces add nothing
            if find_in_scan_text is not None and self._cookie_says_secret(detector, headers_read, decoded.request):
                flagged.add(id(detector))
        if not exact and self._shape(rules) == (False, False):
            return None  # spans cannot stand in for the fields: read every field
        return headers_text, spans, flagged

    def joint_gate(self, rules: tuple[Rule, ...]) -> JointGate | None:
        """The joint gate `_glance` runs for a rule set; None when each detector runs its own pass."""
        return self._glance_plan(rules).joint

    def _glance_plan(self, rules: tuple[Rule, ...]) -> _GlancePlan:
        """What `_glance` asks of a rule set's detectors (built once per rule set)."""
        key = self._ids_of(rules)[0]
        plan = self._glance_plans.get(key)
        if plan is None:
            groups = self.detector_groups(rules)
            gates = [None if isinstance(detector, _PatternDetector) else getattr(detector, "gate", None)
                     for detector, _ in groups]
            # Rule sets that use the same detectors in the same order share one joint gate (and its DFA memory).
            same = tuple(None if gate is None else id(detector) for (detector, _), gate in zip(groups, gates,
                                                                                             strict=True))
            joint = self._joint_gates.get(same)
            if joint is None:
                # The last entry is for `scan_text(embedded_gate=True)`.
                joint = self._joint_gates[same] = JointGate([*gates, (SCAN_TEXT_EMBEDDED_GATE,)])
            asked = [(position, detector, self.key_context_of(detector)[0], gates[position] is not None)
                     for position, (detector, _) in enumerate(groups) if not isinstance(detector, _PatternDetector)]
            plan = self._glance_plans[key] = _GlancePlan(
                joint if joint.usable else None, asked, all(has_gate for *_, has_gate in asked),
                [(detector, find) for _, detector, find, _ in asked if find is not None], len(gates))
        return plan

    def _headers_say_secret(self, detector: Detector, find_in_scan_text: Any, headers_read: _HeadersRead,
                            headers: tuple[tuple[str, str], ...]) -> bool:
        """Whether key context finds a credential under a header's name (once per header set). The joint gate
        reads the scan text, which holds header values without their names."""
        verdict = headers_read.name_says_secret.get(id(detector))
        if verdict is None:
            verdict = headers_read.name_says_secret[id(detector)] = \
                next(iter(find_in_scan_text("", headers, ())), None) is not None
        return verdict

    def _cookie_says_secret(self, detector: Detector, headers_read: _HeadersRead, request: Request) -> bool:
        """Whether a cookie's own name says secret to `detector` over a credential-like value: the scan text
        holds the Cookie header's value, not each cookie's name, so this asks what the full path asks of
        each `cookie.<name>` field (once per header set: cookies are headers)."""
        verdict = headers_read.cookie_says_secret.get(id(detector))
        if verdict is None:
            verdict = headers_read.cookie_says_secret[id(detector)] = self._read_cookies_for_secret(detector, request)
        return verdict

    def _read_cookies_for_secret(self, detector: Detector, request: Request) -> bool:
        _, find_under, strength = self.key_context_of(detector)
        if find_under is None:
            return False
        for generic, value in self._request_values(request):
            if generic.startswith("cookie.") and isinstance(value, str) and value:
                name = self._secret_name(detector, strength, generic)
                if name and next(iter(find_under(name, value)), None) is not None:
                    return True
        return False

    def _engine_candidate(
        self, rule_id: str, where: str, tool: str, message: str, parts: tuple[str, ...] | None = None
    ) -> _Candidate:
        """A finding of one of the engine's own rules (`ENGINE_RULES`), its action from the policy settings."""
        rule = ENGINE_RULES[rule_id]
        settings = self.policy.settings
        action, severity = rule.action_for(settings), rule.severity_for(settings)
        # The fingerprint leaves out the reason and sizes, so a baseline entry survives small changes (`parts`
        # replaces `where` in it: the ids' fingerprints are what baselines already store).
        finding = Finding(rule_id, rule.kind, where, severity, action, "",
                          fingerprint(rule_id, tool, *((where,) if parts is None else parts)), message[:500])
        return _Candidate(finding, FieldValue(where, None, where), 0, 0, RedactMode.MASK, None)

    def _field_candidates(self, rule: Rule, fields: list[FieldValue], tool: str) -> Iterator[_Candidate]:
        policy = rule.fields
        assert policy is not None and policy.unknown is not None
        for item in fields:
            generic = item.generic_path
            if not self._field_reported(rule, generic):
                continue
            text = item.text
            kind = policy.unknown_kind
            what = "undocumented field" if kind is FindingKind.UNDOCUMENTED else "field not in the allow-list"
            finding = Finding(
                rule_id=rule.id,
                kind=kind,
                field=item.path,
                severity=policy.unknown_severity,
                action=policy.unknown,
                preview=mask(text),
                fingerprint=fingerprint(rule.id, tool, generic, "<field>"),
                message=f"{what}: {generic}",
                detector="fields.unknown",
            )
            yield _Candidate(finding, item, 0, len(text), policy.redact, rule)

    def _detector_candidates(
        self, rules: tuple[Rule, ...], fields: list[FieldValue], tool: str, flagged: set[int] | None = None
    ) -> list[_Candidate]:
        """Candidates of every detector the rules use over `fields`; with `flagged` (from `_glance`), detectors
        other than custom patterns that are not in it found nothing in the whole request and are skipped."""
        groups = self.detector_groups(rules)
        if flagged is not None:
            groups = [(d, users) for d, users in groups if isinstance(d, _PatternDetector) or id(d) in flagged]
        if not groups:
            return []
        values = [(item, item.text) for item in fields if item.value is not None and not isinstance(item.value, bool)]
        # One pass per family over all of the request's values joined by newlines (no pattern crosses one):
        # most telemetry is clean, and a family that finds nothing in the whole finds nothing in a part.
        # On a hit, only the values its matches touch are scanned alone, so positions and per-value
        # context stay exact without a scan per value of a large batch.
        joined: str | None = None
        starts: list[int] = []
        out: list[_Candidate] = []
        hits: dict[int, ConditionHits] = {}  # per `when` condition: where its field has one of its values
        generics: frozenset[str] | None = None
        for detector, users in groups:
            if isinstance(detector, _PatternDetector):
                if generics is None:
                    generics = frozenset(item.generic_path for item, _ in values)
                covered = self._scope(self._ids_of(rules)[0], detector, users, generics)
                out.extend(self._pattern_candidates(detector, covered, values, fields, hits, tool))
                continue
            if joined is None:
                texts = [text for _, text in values]
                joined = "\n".join(texts)
                starts = list(accumulate((len(text) + 1 for text in texts), initial=0))
            # Other detectors scan alone only the values their matches in the joined text touch.
            scanned = set(self._touched_values(detector, joined, starts, len(values)))
            # Key context (a credential under a secret-sounding name) needs each value's field name; only
            # values under a name that may say secret (`strength`, per distinct field path) are looked at again.
            _, find_under, strength = self.key_context_of(detector)
            named: dict[str, str] = {}
            if find_under is not None:
                for generic in {item.generic_path for item, _ in values}:
                    name = self._secret_name(detector, strength, generic)
                    if name:
                        named[generic] = name
            if not scanned and not named:
                continue
            indexes = sorted(scanned | {k for k, (item, _) in enumerate(values) if item.generic_path in named})
            for index in indexes:
                item, text = values[index]
                scan_each = index in scanned
                if not text:
                    continue
                matches: tuple[Match, ...] = self._find_in_value(detector, text) if scan_each else ()
                if named and find_under is not None:
                    held_under = named.get(item.generic_path)
                    if held_under:
                        matches += tuple(find_under(held_under, text, matches))
                for match in matches:
                    for rule, spec in users:
                        if spec.fields_regex is not None and not spec.fields_regex.match(item.generic_path):
                            continue
                        if _reports(spec, item, text, match, fields, hits):
                            out.append(self._match_candidate(rule, spec, item, text, match, tool))
        return out

    def _pattern_candidates(
        self, detector: _PatternDetector, covered: dict[str, list[tuple[Rule, ForbidSpec]]],
        values: list[tuple[FieldValue, str]], fields: list[FieldValue], hits: dict[int, ConditionHits], tool: str,
    ) -> Iterator[_Candidate]:
        """A custom pattern over each value (it may anchor on a value's start or end) whose generic path is in
        `covered` (from `_scope`: its entries' `fields:` scopes; an entry without a scope covers every value)."""
        if not covered:
            return
        for item, text in values:
            if not text:
                continue
            covering = covered.get(item.generic_path)
            if not covering:
                continue
            for match in self._find_in_value(detector, text):
                for rule, spec in covering:
                    if _reports(spec, item, text, match, fields, hits):
                        yield self._match_candidate(rule, spec, item, text, match, tool)

    def _find_in_value(self, detector: Detector, text: str) -> tuple[Match, ...]:
        """`detector.find(text)`, remembered for short values (`_REMEMBERED_VALUE_CHARS`): a collector's write key,
        a client's `Authorization`, ids and command words repeat across requests."""
        if len(text) > _REMEMBERED_VALUE_CHARS:
            return tuple(detector.find(text))
        seen = self._values_read.get(id(detector))
        if seen is None:
            seen = self._values_read[id(detector)] = {}
        found = seen.get(text)
        if found is None:
            if len(seen) >= _REMEMBERED_VALUES:
                seen.clear()  # per detector: one with many distinct values does not evict the others'
            found = seen[text] = tuple(detector.find(text))
        return found

    @staticmethod
    def _touched_values(detector: Detector, joined: str, starts: list[int], count: int) -> Iterable[int]:
        """Indexes of the values the detector's matches in `joined` overlap (every value when it may have
        stopped early at its match cap: then nothing past the cap would be seen)."""
        touched: set[int] = set()
        found = 0
        for match in detector.find(joined):
            found += 1
            if found >= _MATCH_CAP:
                return range(count)
            first = bisect_right(starts, match.start) - 1
            last = bisect_right(starts, max(match.end - 1, match.start)) - 1
            touched.update(range(max(first, 0), min(last, count - 1) + 1))
        return sorted(touched)

    def _match_candidate(
        self, rule: Rule, spec: ForbidSpec, item: FieldValue, text: str, match: Match, tool: str
    ) -> _Candidate:
        value = text[match.start : match.end]
        finding = Finding(
            rule_id=rule.id,
            kind=spec.kind or match.kind,
            field=item.path,
            severity=spec.severity,
            action=spec.action,
            preview=mask(value),
            fingerprint=fingerprint(rule.id, tool, item.generic_path, match.detector_id, value),
            message=f"{match.title} in {item.path}",
            detector=match.detector_id,
        )
        return _Candidate(finding, item, match.start, match.end, spec.redact, rule)

    def _accepted(self, candidate: _Candidate, rules: tuple[Rule, ...]) -> bool:
        """Accepted by the policy-wide allowlist or by that of any rule matching the request.

        Request-scoped, so a tool pack can accept what its own collector legitimately receives (its
        `Authorization` header) from findings any rule raised, the default policy's included.
        """
        finding = candidate.finding
        if finding.kind is FindingKind.ERROR:
            return False  # a broken audit is never accepted
        allowlists = self._allowlists_of(rules)
        if not allowlists:
            return False
        text = candidate.field.text[candidate.start : candidate.end] if candidate.field.value is not None else ""
        return any(
            a.accepts(candidate.field.generic_path, text, finding.fingerprint, finding.detector) for a in allowlists
        )

    def _allowlists_of(self, rules: tuple[Rule, ...]) -> tuple[Any, ...]:
        """The allowlists that may accept a finding of a request `rules` match: the policy's and the rules' own,
        without the empty ones (cached per rule set)."""
        key = self._ids_of(rules)[0]
        found = self._allowlists.get(key)
        if found is None:
            if len(self._allowlists) >= _ROUTE_CACHE_SIZE:
                self._allowlists.clear()
            found = self._allowlists[key] = tuple(
                a for a in (*self.policy.allowlists, *(rule.allowlist for rule in rules)) if not a.empty)
        return found

    def _decide(
        self,
        decoded: DecodedRequest,
        candidates: list[_Candidate],
        tool: str,
        rules: tuple[Rule, ...],
    ) -> Decision:
        rule_ids = self._ids_of(rules)[0]
        # One finding per (field, span, detector): the strictest of the rules that flagged it.
        unique: dict[tuple[str, int, int, str, FindingKind], _Candidate] = {}
        for candidate in candidates:
            f = candidate.finding
            key = (f.field, candidate.start, candidate.end, f.detector, f.kind)
            kept = unique.get(key)
            if kept is None or f.action.rank > kept.finding.action.rank:
                unique[key] = candidate
        kept_candidates: list[_Candidate] = []
        for candidate in unique.values():
            if self._accepted(candidate, rules):
                candidate = _Candidate(
                    _replace_suppressed(candidate.finding), candidate.field, candidate.start, candidate.end,
                    candidate.redact, candidate.rule,
                )
            kept_candidates.append(candidate)
        kept_candidates = _hide_flagged_keys(kept_candidates)
        findings = tuple(c.finding for c in kept_candidates)
        action = strictest(f.action for f in findings if not f.suppressed)
        if action is not Action.REDACT:
            return Decision(action, findings, True, tool, rule_ids)
        try:
            body, query, headers = _redact(decoded, [c for c in kept_candidates if _redacts(c)])
        except Exception as e:  # cannot rewrite safely: fail closed
            finding = self._engine_candidate("redact-failed", "body", tool, f"cannot redact this request: {e}",
                                             ()).finding
            return Decision(Action.BLOCK, findings + (finding,), True, tool, rule_ids)
        return Decision(action, findings, True, tool, rule_ids, redacted_body=body, redacted_query=query,
                        redacted_headers=headers)


def _reports(spec: ForbidSpec, item: FieldValue, text: str, match: Match, fields: list[FieldValue],
             hits: dict[int, ConditionHits]) -> bool:
    """Whether a match in scope is a finding of forbid entry `spec`: its detector id, not one of its
    `except_values`, and where its `when` condition holds (looked up once per request in `hits`)."""
    if spec.detector_id and match.detector_id != spec.detector_id:
        return False
    if spec.except_regex is not None and spec.excepts(text[match.start:match.end]):
        return False
    if spec.when is not None:
        if id(spec.when) not in hits:
            hits[id(spec.when)] = spec.when.hits(fields)
        if not spec.when.holds_for(item, hits[id(spec.when)]):
            return False
    return True


def _may_report(spec: ForbidSpec, text: str, match: Match) -> bool:
    """`_reports` without the record around the value: a match with a `when` may report (the full path decides)."""
    if spec.detector_id and match.detector_id != spec.detector_id:
        return False
    return spec.when is not None or spec.except_regex is None or not spec.excepts(text[match.start:match.end])


def _field_name(generic: str) -> str:
    """The name a value at generic path `generic` is held under (JSON key, header, query or form parameter);
    empty for list items and keys."""
    if generic.startswith("key:"):
        return ""
    if generic.endswith('"]'):  # a quoted step (`attributes["db.password"]`): the name inside the quotes
        start = generic.rfind('["')
        try:
            name = json.loads(generic[start + 1:-1])
        except ValueError:
            return ""
        return name if isinstance(name, str) else ""
    if generic.endswith("]"):
        return ""
    return generic.rsplit(".", 1)[-1]


def _hide_flagged_keys(candidates: list[_Candidate]) -> list[_Candidate]:
    """A key that is itself a finding (a token used as a key) must not reappear in clear in any field path."""
    flagged = {c.field.text for c in candidates if c.field.path.startswith("key:") and c.field.value}
    if not flagged:
        return candidates
    from dataclasses import replace

    def hide(text: str) -> str:
        for key in sorted(flagged, key=len, reverse=True):
            text = text.replace(key, mask(key))
        return text

    return [
        _Candidate(replace(c.finding, field=hide(c.finding.field), message=hide(c.finding.message)), c.field,
                   c.start, c.end, c.redact, c.rule)
        for c in candidates
    ]


def _replace_suppressed(finding: Finding) -> Finding:
    from dataclasses import replace

    return replace(finding, suppressed=True)


def _redacts(candidate: _Candidate) -> bool:
    return not candidate.finding.suppressed and candidate.finding.action is Action.REDACT


def _rewritten(group: list[_Candidate]) -> Any:
    """The new value of one field after redacting every span found in it.

    Drop wins over hash over mask; masked spans are merged first, so a user name inside a home path
    cannot leave the rest of the path behind.
    """
    modes = {c.redact for c in group}
    item = group[0].field
    original = item.text
    if RedactMode.DROP in modes:
        return DROP
    if RedactMode.HASH in modes:
        return "sha256:" + hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    whole = [c for c in group if c.end <= c.start or c.finding.kind in (FindingKind.FIELD, FindingKind.UNDOCUMENTED)]
    if whole or not isinstance(item.value, str):
        return f"[REDACTED:{(whole or group)[0].finding.kind.value}]"
    spans: list[list[Any]] = []
    for candidate in sorted(group, key=lambda c: (c.start, -c.end)):
        if spans and candidate.start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], candidate.end)
        else:
            spans.append([candidate.start, candidate.end, candidate.finding.kind.value])
    text = original
    for start, end, kind in reversed(spans):
        text = text[:start] + f"[REDACTED:{kind}]" + text[end:]
    return text


def _redact(
    decoded: DecodedRequest, candidates: list[_Candidate]
) -> tuple[bytes, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Rewrite body, query and headers so no redacting finding's value remains."""
    request = decoded.request
    by_locator: dict[tuple[Any, ...], list[_Candidate]] = {}
    for candidate in candidates:
        if not candidate.field.locator:
            raise ValueError(f"{candidate.field.path} cannot be rewritten (undecoded body)")
        by_locator.setdefault(candidate.field.locator, []).append(candidate)
    new_values = {locator: _rewritten(group) for locator, group in by_locator.items()}

    body_edits = {k: v for k, v in new_values.items() if k[0] not in ("header", "query")}
    query_edits = {k[1:]: v for k, v in new_values.items() if k[0] == "query"}
    header_edits = {str(k[1]): v for k, v in new_values.items() if k[0] == "header"}

    body = request.body
    if body_edits:
        body = rewrite_body(decoded, body_edits)
    query = request.query
    if query_edits and decoded.query_tree is not None:
        rewrite_values(decoded.query_tree, query_edits)
        query = tuple((str(k), _as_text(v)) for k, v in decoded.query_tree.pairs if k is not None)
    headers = tuple(
        (name, value if name.lower() not in header_edits else _as_text(header_edits[name.lower()]))
        for name, value in request.headers
        if header_edits.get(name.lower()) is not DROP
    )
    return body, query, headers


def _as_text(value: Any) -> str:
    from telemetry_audit.decoders.formats import Embedded, embed_to_string

    if isinstance(value, Embedded):
        return embed_to_string(value)
    return "" if value is DROP else str(value)
