"""The decision engine: actions, strictest-wins, redaction in the original encoding, allowlists, failure modes."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import time
from pathlib import Path
from typing import Any

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_audit.decoders import decode_request
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, FindingKind, Limits, Request
from telemetry_audit.policy import load_policy
from tests.factories import json_request, raw_request

ENV = AuditEnvironment(
    env={"LOCALSTACK_AUTH_TOKEN": "ls-FAKE-TOKEN-1234", "HOME": "/home/alice", "SHELL": "/bin/bash"},
    home="/home/alice",
    cwd="/home/alice/projects/app",
    user="alice",
    hostname="alice-laptop",
)
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def policy_from(tmp_path: Path, text: str, *extra: str) -> Any:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy([*extra, str(path)])


def auditor(tmp_path: Path, text: str | None = None, **kwargs: Any) -> Auditor:
    policy = policy_from(tmp_path, text) if text else load_policy(["default"])  # the bare default
    return Auditor(policy, ENV, **kwargs)


@functools.cache
def shared_auditor(fast_path: bool = True, default_packs: bool = False) -> Auditor:
    """One auditor per configuration for the property tests: building the detector catalogue takes a while, and
    an auditor's caches never change its decisions."""
    policy = load_policy() if default_packs else load_policy(["default"])
    return Auditor(policy, ENV, fast_path=fast_path)


def fields(body: bytes, headers: dict[str, str] | None = None) -> dict[str, object]:
    decoded = decode_request(Request.from_url("POST", "https://x.test/e", headers or {}, body))
    return {f.path: f.value for f in decoded.fields}


# --- default policy on realistic events ----------------------------------------------------------------------

DEFAULT_CASES = [
    ("clean event",
     {"event": "cli.start", "properties": {"version": "1.2.3", "id": "0ba1fd90-e64a-11f1-a508-991b2c0cd370"}},
     Action.ALLOW, set()),
    ("github token blocks", {"event": "x", "properties": {"token": GITHUB_TOKEN}}, Action.BLOCK, {FindingKind.SECRET}),
    ("env value redacts", {"payload": {"api_key": "ls-FAKE-TOKEN-1234"}}, Action.REDACT, {FindingKind.ENV}),
    ("a credential under a secret name blocks", {"payload": {"db_password": "Zq8vL2pR5tW9yB3k"}}, Action.BLOCK,
     {FindingKind.SECRET}),
    ("home path redacts", {"error": "ENOENT: /home/alice/projects/app/serverless.yml"}, Action.REDACT,
     {FindingKind.PATH}),
    ("email redacts", {"user": "alice@example.com"}, Action.REDACT, {FindingKind.PII}),
    ("secret and path: strictest wins", {"a": GITHUB_TOKEN, "b": "/home/alice/x"}, Action.BLOCK,
     {FindingKind.SECRET, FindingKind.PATH}),
]


@pytest.mark.parametrize(("name", "body", "action", "kinds"), DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_default_policy_decisions(tmp_path: Path, name: str, body: dict[str, Any], action: Action,
                                  kinds: set[FindingKind]) -> None:
    decision = auditor(tmp_path).evaluate(json_request(body))
    assert decision.telemetry
    assert decision.action is action
    assert {f.kind for f in decision.active_findings} >= kinds
    for finding in decision.findings:
        assert GITHUB_TOKEN not in finding.preview and "ls-FAKE-TOKEN-1234" not in finding.preview


def test_non_telemetry_request_is_not_audited(tmp_path: Path) -> None:
    request = json_request({"token": GITHUB_TOKEN}, url="https://registry.npmjs.org/left-pad")
    decision = auditor(tmp_path).evaluate(request)
    assert decision.action is Action.ALLOW and not decision.telemetry and not decision.findings
    assert auditor(tmp_path, audit_all=True).evaluate(request).action is Action.BLOCK


def test_redaction_keeps_gzip_and_removes_every_leak(tmp_path: Path) -> None:
    body = json.dumps({"payload": {"api_key": "ls-FAKE-TOKEN-1234", "cwd": "/home/alice/projects/app",
                                   "version": "2026.8.2"}}).encode()
    request = raw_request(gzip.compress(body), url="https://analytics.localstack.cloud/v1/session",
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    decision = auditor(tmp_path).evaluate(request)
    assert decision.action is Action.REDACT
    assert decision.redacted_body is not None
    plain = gzip.decompress(decision.redacted_body)  # still gzip
    assert b"ls-FAKE-TOKEN-1234" not in plain and b"/home/alice" not in plain
    assert json.loads(plain)["payload"]["version"] == "2026.8.2"


REDACT_MODES = [
    ("mask", lambda v: v.startswith("[REDACTED") or "[REDACTED:" in v),
    ("hash", lambda v: v.startswith("sha256:")),
    ("drop", None),
]


@pytest.mark.parametrize(("mode", "check"), REDACT_MODES, ids=[m[0] for m in REDACT_MODES])
def test_redact_modes(tmp_path: Path, mode: str, check: Any) -> None:
    policy = f"""
rules:
  - id: no-email
    match: {{telemetry: true}}
    forbid:
      - detector: pii
        action: redact
        redact: {mode}
"""
    decision = auditor(tmp_path, policy).evaluate(json_request({"user": "alice@example.com", "n": 1}))
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    out = json.loads(decision.redacted_body)
    if check is None:
        assert "user" not in out and out["n"] == 1
    else:
        assert check(out["user"]) and "alice" not in out["user"]


def test_query_and_header_values_are_redacted(tmp_path: Path) -> None:
    request = Request.from_url("GET", "https://api.mixpanel.com/track?email=alice%40example.com&v=1",
                               {"X-User": "alice@example.com"})
    decision = auditor(tmp_path).evaluate(request)
    assert decision.action is Action.REDACT
    assert decision.redacted_query is not None and dict(decision.redacted_query)["v"] == "1"
    assert "alice" not in dict(decision.redacted_query)["email"]
    assert decision.redacted_headers is not None and "alice" not in dict(decision.redacted_headers)["X-User"]


def test_redaction_inside_base64_form_value(tmp_path: Path) -> None:
    data = base64.b64encode(json.dumps({"event": "x", "properties": {"email": "alice@example.com"}}).encode())
    request = raw_request(b"data=" + data, url="https://api.mixpanel.com/track",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    decision = auditor(tmp_path).evaluate(request)
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    values = fields(decision.redacted_body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert values["data.event"] == "x" and "alice" not in str(values["data.properties.email"])


# --- field allow-lists ---------------------------------------------------------------------------------------

FIELDS_POLICY = """
rules:
  - id: sst-v4
    tool: sst
    match: {hosts: [telemetry.ion.sst.dev], paths: ["/batch/"]}
    fields:
      allow:
        - api_key
        - batch[].type
        - batch[].event
        - path: batch[].properties.*_version
          source: seeds/sst-telemetry.md
        - batch[].properties.system_**
      unknown: redact
      unknown_kind: undocumented
"""


def test_unknown_fields_are_findings_and_dropped(tmp_path: Path) -> None:
    body = {"api_key": "phc_x", "batch": [{"type": "capture", "event": "cli.start",
                                           "properties": {"sst_version": "4.17.1", "system_platform": "linux",
                                                          "args": ["deploy", "--stage", "prod"]}}]}
    decision = auditor(tmp_path, FIELDS_POLICY).evaluate(
        json_request(body, url="https://telemetry.ion.sst.dev/batch/"))
    assert decision.tool == "sst"
    flagged = sorted(f.field for f in decision.findings if f.kind is FindingKind.UNDOCUMENTED)
    assert flagged == ["batch[0].properties.args[0]", "batch[0].properties.args[1]", "batch[0].properties.args[2]"]
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    out = json.loads(decision.redacted_body)
    assert out["batch"][0]["properties"] == {"sst_version": "4.17.1", "system_platform": "linux", "args": []}


def test_field_rule_does_not_apply_to_other_hosts(tmp_path: Path) -> None:
    decision = auditor(tmp_path, FIELDS_POLICY).evaluate(json_request({"anything": 1}))
    assert not decision.telemetry or not decision.findings


# --- allowlists ----------------------------------------------------------------------------------------------

ALLOWLIST_CASES = [
    ("by field", "allowlist: {fields: [properties.contact], detectors: [pii]}"),
    ("by value regex", "allowlist: {values: ['.*@example\\.com'], detectors: [pii.email]}"),
    ("by detector", "allowlist: {detectors: [pii.email]}"),
    ("by family", "allowlist: {detectors: [pii]}"),
]


@pytest.mark.parametrize(("name", "allowlist"), ALLOWLIST_CASES, ids=[c[0] for c in ALLOWLIST_CASES])
def test_allowlists_suppress(tmp_path: Path, name: str, allowlist: str) -> None:
    policy = f"""
rules:
  - id: pii
    match: {{telemetry: true}}
    forbid: [{{detector: pii, action: block}}]
    {allowlist}
"""
    decision = auditor(tmp_path, policy).evaluate(json_request({"properties": {"contact": "bob@example.com"}}))
    assert decision.findings and all(f.suppressed for f in decision.findings)
    assert decision.action is Action.ALLOW


def test_fingerprint_baseline_suppresses_only_known_findings(tmp_path: Path) -> None:
    first = auditor(tmp_path).evaluate(json_request({"a": "bob@example.com", "b": "carol@example.com"}))
    known = next(f for f in first.findings if f.field == "a")
    policy = load_policy(extra_allowlist=[known.fingerprint])
    second = Auditor(policy, ENV).evaluate(json_request({"a": "bob@example.com", "b": "carol@example.com"}))
    assert {f.field: f.suppressed for f in second.findings} == {"a": True, "b": False}
    assert second.action is Action.REDACT


def test_fingerprints_are_stable_and_hide_the_value(tmp_path: Path) -> None:
    one = auditor(tmp_path).evaluate(json_request({"t": GITHUB_TOKEN}))
    two = auditor(tmp_path).evaluate(json_request({"t": GITHUB_TOKEN}))
    assert [f.fingerprint for f in one.findings] == [f.fingerprint for f in two.findings]
    assert all(GITHUB_TOKEN not in f.fingerprint and len(f.fingerprint) == 32 for f in one.findings)


# --- custom patterns, decode failures, size, errors ----------------------------------------------------------


def test_custom_pattern_and_pathological_input_is_linear(tmp_path: Path) -> None:
    policy = """
rules:
  - id: custom
    match: {telemetry: true}
    forbid:
      - pattern: '(a+)+b'
        id: catastrophic-in-backtracking-engines
        kind: secret
        action: block
"""
    audit = auditor(tmp_path, policy)
    started = time.perf_counter()
    decision = audit.evaluate(json_request({"v": "a" * 1_000_000 + "!"}))
    elapsed = time.perf_counter() - started
    assert decision.action is Action.ALLOW
    assert audit.evaluate(json_request({"v": "aaab"})).action is Action.BLOCK
    # Not a timing assertion: Python's backtracking `re` would take longer than the universe's age here.
    assert elapsed < 60


@pytest.mark.parametrize(("setting", "expected"), [("log", Action.LOG), ("block", Action.BLOCK)])
def test_decode_failure_follows_settings(tmp_path: Path, setting: str, expected: Action) -> None:
    policy = f"settings: {{decode_failure: {setting}}}\nrules:\n  - id: all\n    match: {{telemetry: true}}\n"
    decision = auditor(tmp_path, policy).evaluate(
        raw_request(b'{"broken', headers={"Content-Type": "application/json"}))
    assert decision.action is expected
    assert [f.kind for f in decision.findings] == [FindingKind.DECODE]


def test_secret_in_undecodable_body_still_blocks(tmp_path: Path) -> None:
    decision = auditor(tmp_path).evaluate(
        raw_request(f'{{"t": "{GITHUB_TOKEN}", broken'.encode(), headers={"Content-Type": "application/json"}))
    assert decision.action is Action.BLOCK


def test_gzip_bomb_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))
    decision = auditor(tmp_path).evaluate(
        raw_request(bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}))
    # It cannot be inspected, so it gets the oversize action (block), not the decode action (log).
    assert any(f.kind is FindingKind.SIZE and "limit" in f.message for f in decision.findings)
    assert decision.action is Action.BLOCK


def test_a_leak_past_the_field_limit_is_not_let_through(tmp_path: Path) -> None:
    events = [{"n": i} for i in range(110_000)] + [{"token": GITHUB_TOKEN}]
    decision = auditor(tmp_path, limits=Limits(max_fields=100_000)).evaluate(json_request({"batch": events}))
    assert decision.action is Action.BLOCK
    assert any(f.kind is FindingKind.SIZE and "fields" in f.message for f in decision.findings)


FAST_PATH_VALUES = st.sampled_from([
    GITHUB_TOKEN, "alice@example.com", "/home/alice/x", "ls-FAKE-TOKEN-1234", "--password hunter2hunter2",
    "C:\\Users\\alice\\x", "10.0.0.1", "8.8.8.8", "00:1a:2b:3c:4d:5e", "alice", "alice-laptop",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1", "https://bob:s3cretpass@host.test/x",
    "4.17.1", "2026-11-22T07:58:27Z", "0ba1fd90-e64a-11f1-a508-991b2c0cd370", "plain words",
    base64.b64encode(json.dumps({"t": GITHUB_TOKEN}).encode()).decode(),
    " " + base64.urlsafe_b64encode(json.dumps(["/home/alice/x"]).encode()).decode().rstrip("=") + " ",
    "example-words-here", "environment", "W3sidCI6MX1d",
])
fast_path_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | FAST_PATH_VALUES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | FAST_PATH_VALUES, children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=fast_path_json, header=st.none() | FAST_PATH_VALUES)
def test_the_fast_path_decides_exactly_as_the_full_path(tmp_path: Path, value: Any, header: str | None) -> None:
    request = json_request(value, headers={"X-Client": header} if header else None)
    fast = shared_auditor(True, True).evaluate(request)
    full = shared_auditor(False, True).evaluate(request)
    assert fast.action is full.action
    assert [f.to_dict() for f in fast.findings] == [f.to_dict() for f in full.findings]
    assert fast.redacted_body == full.redacted_body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=fast_path_json, header=st.none() | FAST_PATH_VALUES, indent=st.sampled_from([None, 1]))
def test_reading_only_the_fields_around_matches_decides_as_reading_all(
    monkeypatch: pytest.MonkeyPatch, value: Any, header: str | None, indent: int | None
) -> None:
    import telemetry_audit.decoders as decoders

    monkeypatch.setattr(decoders, "_LOCAL_SUBTREE_CHARS", 0)  # descend to the smallest subtree, whatever its size
    request = raw_request(json.dumps(value, indent=indent).encode(),
                          headers={"Content-Type": "application/json", **({"X-Client": header} if header else {})})
    near = shared_auditor(True, True).evaluate(request)
    full = shared_auditor(False, True).evaluate(request)
    assert [f.to_dict() for f in near.findings] == [f.to_dict() for f in full.findings]
    assert (near.action, near.redacted_body) == (full.action, full.redacted_body)


def test_oversize_body_is_blocked_uninspected(tmp_path: Path) -> None:
    policy = "settings: {max_body_bytes: 100}\nrules:\n  - id: all\n    match: {telemetry: true}\n"
    decision = auditor(tmp_path, policy).evaluate(json_request({"x": "y" * 200}))
    assert decision.action is Action.BLOCK and decision.findings[0].kind is FindingKind.SIZE


def test_redacting_an_undecodable_body_fails_closed(tmp_path: Path) -> None:
    policy = "settings: {decode_failure: redact}\nrules:\n  - id: all\n    match: {telemetry: true}\n"
    decision = auditor(tmp_path, policy).evaluate(raw_request(b"\x00\x01binary", headers={"Content-Type": "x/y"}))
    assert decision.action is Action.BLOCK


def test_detector_crash_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit import detectors

    class Exploding:
        family = "pii"

        def find(self, value: str) -> Any:
            raise RuntimeError("boom")

    monkeypatch.setitem(detectors.FAMILIES, "pii", lambda settings, env: Exploding())
    decision = auditor(tmp_path).evaluate(json_request({"a": "b"}))
    assert decision.action is Action.BLOCK
    assert decision.findings[0].kind is FindingKind.ERROR


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60)
    | st.sampled_from([GITHUB_TOKEN, "alice@example.com", "/home/alice/x", "ls-FAKE-TOKEN-1234",
                       "eyJhbGciOiJIUzI1NiJ9", '{"nested": "/Users/bob/x"}']),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, encoding=st.sampled_from(["", "gzip"]))
def test_engine_never_crashes_and_redaction_removes_what_it_flags(tmp_path: Path, value: Any, encoding: str) -> None:
    body = json.dumps(value).encode()
    headers = {"Content-Type": "application/json"}
    if encoding:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    audit = shared_auditor()
    decision = audit.evaluate(raw_request(body, headers=headers))
    assert decision.action in Action
    if decision.action is Action.REDACT:
        assert decision.redacted_body is not None
        again = audit.evaluate(raw_request(decision.redacted_body, headers=headers))
        assert again.action in (Action.ALLOW, Action.LOG)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=1024))
def test_engine_never_crashes_on_bytes(tmp_path: Path, body: bytes) -> None:
    decision = shared_auditor().evaluate(raw_request(body, headers={"Content-Type": "application/json"}))
    assert decision.action in Action


# --- redaction of overlapping spans, anchored custom patterns, kinds, request-scoped allowlists -----------


def test_overlapping_spans_are_redacted_together(tmp_path: Path) -> None:
    # The user name sits inside the home path: both are findings; nothing of the path may survive.
    decision = auditor(tmp_path).evaluate(
        json_request({"rawCommand": "deploy --config /home/alice/work/demo/sst.config.ts --stage dev"}))
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    out = json.loads(decision.redacted_body)["rawCommand"]
    assert "alice" not in out and "work/demo" not in out and "config.ts" not in out
    assert out.startswith("deploy --config [REDACTED:") and out.endswith(" --stage dev")


def test_anchored_custom_pattern_matches_each_value(tmp_path: Path) -> None:
    policy = """
rules:
  - id: argv
    match: {telemetry: true}
    forbid:
      - pattern: '^--'
        id: flag-values
        kind: field
        action: log
        fields: ["args[]"]
"""
    decision = auditor(tmp_path, policy).evaluate(json_request({"args": ["deploy", "--stage", "prod"], "x": "y"}))
    assert [(f.field, f.kind) for f in decision.findings] == [("args[1]", FindingKind.FIELD)]


def test_pack_allowlist_covers_findings_of_other_rules_on_its_requests(tmp_path: Path) -> None:
    pack = """
extends: [default]
rules:
  - id: vendor
    match: {hosts: [core.serverless.com]}
    allowlist: {fields: [header.authorization], detectors: [secrets]}
"""
    token = "Bearer " + GITHUB_TOKEN
    audit = Auditor(policy_from(tmp_path, pack), ENV)
    own = audit.evaluate(json_request({"e": 1}, url="https://core.serverless.com/api/events/publish/bulk",
                                      headers={"Authorization": token}))
    assert own.action is Action.ALLOW and own.findings and all(f.suppressed for f in own.findings)
    other = audit.evaluate(json_request({"e": 1}, headers={"Authorization": token}))
    assert other.action is Action.BLOCK  # the allowlist is scoped to the requests its rule matches


# --- regressions from the fail-open review ---------------------------------------------------------------------

FAIL_OPEN_CASES = [
    ("secret in the URL path", Request.from_url("POST", f"https://api.segment.io/v1/track/{GITHUB_TOKEN}",
                                                {"Content-Type": "application/json"}, b"{}")),
    ("secret as a JSON key", json_request({GITHUB_TOKEN: 1})),
    ("secret as a query key", Request.from_url("GET", f"https://api.mixpanel.com/track?{GITHUB_TOKEN}=1")),
    ("secret in a transport header", json_request({"e": 1}, headers={"Accept-Language": GITHUB_TOKEN})),
    ("base64 JSON in a custom header", json_request({"e": 1}, headers={
        "X-Payload": base64.b64encode(json.dumps({"t": GITHUB_TOKEN}).encode()).decode()})),
    ("base64 JSON with spaces around it", json_request({"e": " " + base64.b64encode(
        json.dumps({"t": GITHUB_TOKEN}).encode()).decode() + " "})),
    ("UTF-16 JSON", raw_request(json.dumps({"t": GITHUB_TOKEN}).encode("utf-16-le"),
                                headers={"Content-Type": "application/json"})),
    ("duplicate JSON key hiding a value", raw_request(f'{{"t": "{GITHUB_TOKEN}", "t": "x"}}'.encode(),
                                                      headers={"Content-Type": "application/json"})),
    ("two Content-Encoding lines", Request.from_url(
        "POST", "https://api.segment.io/v1/track",
        [("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Encoding", "br")],
        brotli.compress(gzip.compress(json.dumps({"t": GITHUB_TOKEN}).encode())))),
    ("form past the field limit", raw_request(b"a=1&" * 100_001 + f"t={GITHUB_TOKEN}".encode(),
                                              headers={"Content-Type": "application/x-www-form-urlencoded"})),
]


@pytest.mark.parametrize(("name", "request_"), FAIL_OPEN_CASES, ids=[c[0] for c in FAIL_OPEN_CASES])
@pytest.mark.parametrize("fast_path", [True, False])
def test_nothing_forbidden_gets_through(tmp_path: Path, name: str, request_: Request, fast_path: bool) -> None:
    decision = Auditor(load_policy(), ENV, fast_path=fast_path).evaluate(request_)
    assert decision.action is Action.BLOCK, (name, [f.to_dict() for f in decision.findings])
    for finding in decision.findings:
        assert GITHUB_TOKEN not in json.dumps(finding.to_dict()), name


def test_a_secret_key_never_appears_in_finding_paths(tmp_path: Path) -> None:
    decision = auditor(tmp_path).evaluate(json_request({GITHUB_TOKEN: {"cwd": "/home/alice/x"}}))
    assert decision.action is Action.BLOCK
    assert all(GITHUB_TOKEN not in f.field and GITHUB_TOKEN not in f.message for f in decision.findings)


def test_redacting_a_path_in_the_url_fails_closed(tmp_path: Path) -> None:
    request = Request.from_url("POST", "https://api.segment.io/v1/u/home/alice/x", {"Content-Type": "application/json"},
                               b'{"e": 1}')
    decision = auditor(tmp_path).evaluate(request)
    assert decision.action is Action.BLOCK  # a URL path cannot be rewritten: the redaction blocks instead


def test_allowlist_criteria_combine(tmp_path: Path) -> None:
    # default.vendor-auth accepts the generic Authorization detector in that header on vendor hosts only:
    # the same credential in a body field is still a finding.
    credential = "Bearer Zk3jQ9vT2mXp8LwR5nYc7HdA4sGe6UbF"
    audit = auditor(tmp_path)
    in_header = audit.evaluate(json_request({"e": 1}, headers={"Authorization": credential}))
    in_body = audit.evaluate(json_request({"properties": {"cmd": f"curl -H 'Authorization: {credential}'"}}))
    assert in_header.action is Action.ALLOW and all(f.suppressed for f in in_header.findings)
    assert in_body.action is Action.BLOCK


# --- decode once, byte-exact redaction, bodies that do not decode cleanly ---------------------------------


def test_decode_once_and_audit_the_same_decoded_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import telemetry_audit.decoders as decoders
    from telemetry_audit.decoders import formats

    calls = {"decompress": 0, "parse": 0}
    real_decompress, real_parse = decoders.decompress_partial, formats.parse_json

    def counting_decompress(*args: Any) -> Any:
        calls["decompress"] += 1
        return real_decompress(*args)

    def counting_parse(*args: Any) -> Any:
        calls["parse"] += 1
        return real_parse(*args)

    monkeypatch.setattr(decoders, "decompress_partial", counting_decompress)
    monkeypatch.setattr(formats, "parse_json", counting_parse)
    body = gzip.compress(json.dumps({"user": "bob@example.com", "n": 1.50}).encode())
    request = raw_request(body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    audit = auditor(tmp_path)
    decoded = audit.decode(request)
    decision = audit.audit(decoded)
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    assert calls == {"decompress": 1, "parse": 1}
    assert decoded.request is request and decoded.plain_body == gzip.decompress(body)
    assert audit.evaluate(request) == decision


SPLICE_CASES = [
    ("numbers and spacing", b'{ "n": 1.50, "e": 1e5, "big": 1E400, "user" :"bob@example.com", "z":[1 ,2] }\n',
     b'{ "n": 1.50, "e": 1e5, "big": 1E400, "user" :"[REDACTED:pii]", "z":[1 ,2] }\n'),
    ("key order and escapes", b'{"z":"\\u00e9","user":"x bob@example.com y","a":-0.0}',
     b'{"z":"\\u00e9","user":"x [REDACTED:pii] y","a":-0.0}'),
    ("inside a JSON string", b'{"data":"{\\"user\\": \\"bob@example.com\\", \\"n\\": 1.50}", "k": 2.0}',
     b'{"data":"{\\"user\\": \\"[REDACTED:pii]\\", \\"n\\": 1.50}", "k": 2.0}'),
]


@pytest.mark.parametrize(("name", "body", "expected"), SPLICE_CASES, ids=[c[0] for c in SPLICE_CASES])
def test_redaction_changes_only_the_redacted_values(tmp_path: Path, name: str, body: bytes, expected: bytes) -> None:
    decision = auditor(tmp_path).evaluate(raw_request(body, headers={"Content-Type": "application/json"}))
    assert decision.action is Action.REDACT
    assert decision.redacted_body == expected
    assert b"Infinity" not in decision.redacted_body


OTHER_FORMAT_CASES = [
    ("ndjson", "application/x-ndjson", b'{"n": 1.50}\r\n\n{"user":"bob@example.com", "e": 1e5}\n',
     b'{"n": 1.50}\r\n\n{"user":"[REDACTED:pii]", "e": 1e5}\n'),
    ("form", "application/x-www-form-urlencoded", b"a=1.50&b=x+y&user=bob%40example.com&c=%7E",
     b"a=1.50&b=x+y&user=%5BREDACTED%3Apii%5D&c=%7E"),
]


@pytest.mark.parametrize(("name", "content_type", "body", "expected"), OTHER_FORMAT_CASES,
                         ids=[c[0] for c in OTHER_FORMAT_CASES])
def test_redaction_of_other_text_formats_keeps_the_rest(tmp_path: Path, name: str, content_type: str, body: bytes,
                                                        expected: bytes) -> None:
    decision = auditor(tmp_path).evaluate(raw_request(body, headers={"Content-Type": content_type}))
    assert decision.action is Action.REDACT and decision.redacted_body == expected


@pytest.mark.parametrize(("bom", "charset"), [(b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                                              (b"", "utf-16-be"), (b"\xff\xfe\x00\x00", "utf-32-le")])
def test_redaction_keeps_the_charset_and_byte_order_mark(tmp_path: Path, bom: bytes, charset: str) -> None:
    text = '{"user": "bob@example.com", "n": 1.50}'
    decision = auditor(tmp_path).evaluate(raw_request(bom + text.encode(charset),
                                                      headers={"Content-Type": "application/json"}))
    assert decision.action is Action.REDACT and decision.redacted_body is not None
    assert decision.redacted_body == bom + text.replace("bob@example.com", "[REDACTED:pii]").encode(charset)


def test_dropping_a_value_keeps_the_rest_as_sent(tmp_path: Path) -> None:
    policy = ("rules:\n  - id: r\n    match: {telemetry: true}\n"
              "    forbid:\n      - {detector: pii, action: redact, redact: drop}\n")
    body = b'{"a": 1.50, "user": "bob@example.com", "b": [1E400, "carol@example.com"]}'
    decision = auditor(tmp_path, policy).evaluate(raw_request(body, headers={"Content-Type": "application/json"}))
    assert decision.redacted_body == b'{"a": 1.50, "b": [1E400]}'


UNINSPECTABLE_CASES = [
    ("gzip then trailing bytes", {"Content-Encoding": "gzip"}, gzip.compress(b'{"e": "ok"}') + b"more"),
    ("truncated gzip", {"Content-Encoding": "gzip"}, gzip.compress(b'{"e": "ok"}' * 50)[:-10]),
    ("truncated br", {"Content-Encoding": "br"}, brotli.compress(b'{"e": "ok"}' * 50)[:-3]),
    ("binary body", {}, bytes(range(256)) * 4),
    ("protobuf with raw bytes", {"Content-Type": "application/x-protobuf"}, b"\x12\x04\xff\xfe\x00\x80"),
    ("duplicate key", {}, b'{"e": "ok", "e": "other"}'),
]


@pytest.mark.parametrize(("name", "headers", "body"), UNINSPECTABLE_CASES, ids=[c[0] for c in UNINSPECTABLE_CASES])
def test_what_is_not_fully_inspected_blocks_by_default(tmp_path: Path, name: str, headers: dict[str, str],
                                                        body: bytes) -> None:
    decision = auditor(tmp_path).evaluate(raw_request(body, headers={"Content-Type": "application/json", **headers}))
    assert decision.action is Action.BLOCK
    assert "uninspectable" in {f.rule_id for f in decision.findings}


def test_a_secret_in_the_readable_part_of_a_truncated_body_is_still_found(tmp_path: Path) -> None:
    body = gzip.compress(json.dumps({"t": GITHUB_TOKEN, "pad": "x" * 4000}).encode())[:-20]
    decision = auditor(tmp_path).evaluate(raw_request(body, headers={"Content-Encoding": "gzip"}))
    assert {f.kind for f in decision.findings} >= {FindingKind.SECRET}


def test_quoted_field_paths_in_findings_and_allowlists(tmp_path: Path) -> None:
    body = {"tags": {"ai.device.id": "bob@example.com"}}
    finding = next(iter(auditor(tmp_path).evaluate(json_request(body)).active_findings))
    assert finding.field == 'tags["ai.device.id"]'
    policy = 'rules: []\nallowlist:\n  fields: [\'tags["ai.device.id"]\']\n  detectors: [pii]\n'
    assert auditor(tmp_path, policy).evaluate(json_request(body)).action is Action.ALLOW


def test_every_id_the_engine_reports_is_in_its_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit.model import ENGINE_RULES

    audit = Auditor(policy_from(tmp_path, "settings: {max_body_bytes: 100}\nrules: []\n", "default"), ENV)
    ids = {f.rule_id for request in (raw_request(b"x" * 200), raw_request(b"\x00\xff" * 10),
                                     raw_request(b"plain words", headers={"Content-Type": "text/plain"}))
           for f in audit.evaluate(request).findings}
    ids |= {f.rule_id for f in auditor(tmp_path).evaluate(Request.from_url(
        "POST", "https://api.segment.io/home/alice/x", {}, b"")).findings if f.rule_id == "redact-failed"}
    monkeypatch.setattr(Auditor, "_evaluate", lambda *a: 1 / 0)
    ids |= {f.rule_id for f in auditor(tmp_path).evaluate(json_request({"a": 1})).findings}
    assert ids == {"oversize", "uninspectable", "decode", "redact-failed", "audit-error"}
    assert ids <= set(ENGINE_RULES)
