"""Key-name context (`secrets.key-context`): a credential under a name that says secret.

Tested on the detector (name and value tables), through the engine on both of
its paths (the per-field path and the scan-text fast path must decide alike),
and on hostile values.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.detectors.secrets import KEY_CONTEXT_ID, build, name_strength
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Request
from telemetry_audit.policy import load_policy
from tests.detectors.helpers import PATHOLOGICAL
from tests.factories import json_request

DETECTOR = build({}, AuditEnvironment())
ENV = AuditEnvironment(env={}, home="/home/alice", cwd="/home/alice/app", user="alice", hostname="alice-laptop")

FLAGGED = [
    ("aws_secret_access_key", "Zk3mQ9pLx2Vb7Rt5Yw1Nc8Hd4Gf6Js0KaB3eU7i"),  # 40 characters of base64
    ("dd_api_key", "a3f91c0e7b2d4f6a8c1e3b5d7f9a0c2e"),  # 32 hex
    ("DD_APP_KEY", "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"),
    ("db_password", "Tr0ub4dor&3-horse"),
    ("dbPassword", "hunter2-Horse9"),
    ("client_secret", "Xq7-kP2_vL9mR4tZ8wB1"),
    ("x-api-key", "k8Jd7Hs6Gf5Dd4Ss3Aa2"),
    ("authToken", "mF9xQ2vR7kL3pZ8wN4cY"),
    ("auth", "mF9xQ2vR7kL3pZ8wN4cY"),
    ("private_key", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("passphrase", "correct-Horse-42-battery"),
    ("license_key", "LK-93HD-82JD-72HS-19XK"),
    ("signing_key", "sk9Fh3Jd8Kw2Lq7Xm4Nz"),
    ("vault_token", "hvs.CAESIJ0aZ8wqA3kP9mF"),
    ("credentials", "u5Rk9Lp2Wz7Nq4Xc8Vb1"),
    ("MY_APP_SECRET", "Zq8#vL2!pR5tW9yB"),
    ("encryption_key", "Qm9rT2xwZk3mQ9pLx2Vb7Rt5"),  # `*_key`: long and random enough
]

QUIET = [
    ("token_count", "42"),
    ("password_set", "true"),
    ("secret_scanning_enabled", "false"),
    ("api_key", "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p"),  # PostHog project key: public by design
    ("publishable_key", "pk_live_51H8sK2eZvKYlo2C0aBcDeFgH"),
    ("keyboard_layout", "us"),
    ("token", "0ba1fd90-e64a-11f1-a508-991b2c0cd370"),  # a UUID
    ("token_type", "Bearer"),
    ("password", "changeme"),
    ("password", "<redacted>"),
    ("password", "[REDACTED:secret]"),
    ("password", "********"),
    ("api_key", "${DD_API_KEY}"),
    ("api_key", "{{ secrets.KEY }}"),
    ("api_key", "your-api-key-here"),
    ("secret", "1.2.3.4"),
    ("token", "2026-11-22T07:58:27Z"),
    ("token_url", "https://auth.example.com/oauth/token"),
    ("secret_path", "/run/secrets/db"),
    ("password", "hunter2"),  # shorter than 8
    ("password", "correcthorsebatterystaple"),  # one character class: words, not a credential shape
    ("author", "Jane Q. Developer"),
    ("max_tokens", "4096"),
    ("input_tokens", "1234567"),
    ("cache_key", "v1-linux-node18-abc"),  # `*_key` needs a long, random value
    ("sort_key", "createdAtDescending"),
    ("api_key", "ls-FAKE-TOKEN-1234"),  # says it is fake
    ("password", "pass word with spaces"),
    ("aws_access_key_id", "ASIAEXAMPLEEXAMPLE12"),  # a name ending in `id` names an id
]


@pytest.mark.parametrize(("name", "value"), FLAGGED)
def test_credential_under_a_secret_name_is_flagged(name: str, value: str) -> None:
    [match] = DETECTOR.find_under(name, value)
    assert match.detector_id == KEY_CONTEXT_ID and (match.start, match.end) == (0, len(value))


@pytest.mark.parametrize(("name", "value"), QUIET)
def test_benign_look_alikes_stay_quiet(name: str, value: str) -> None:
    assert list(DETECTOR.find_under(name, value)) == []


def test_a_specific_detector_match_wins_over_key_context() -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    found = tuple(DETECTOR.find(token))
    assert [m.detector_id for m in found] == ["secrets.github-pat"]
    assert list(DETECTOR.find_under("github_token", token, found)) == []


@pytest.mark.parametrize("order", ["strong name first", "weak name first"])
def test_a_remembered_verdict_is_per_name_strength(order: str) -> None:
    """A short value is a credential under `password` (strength 2) but not under `cache_key` (strength 1 wants
    20 characters): the verdict the detector remembers per value must not leak from one name to the other."""
    detector = build({}, AuditEnvironment())
    value = "Zk3mQ9pLx2Vb7Rt"
    names = ["password", "cache_key"] if order == "strong name first" else ["cache_key", "password"]
    for _ in range(2):  # the second round reads the remembered verdicts
        found = {name: len(list(detector.find_under(name, value))) for name in names}
        assert found == {"password": 1, "cache_key": 0}


def test_a_remembered_match_is_per_detector() -> None:
    """The engine remembers a short value's matches per detector: a value that is an env value to one
    family must not come back as a match of another."""
    environment = AuditEnvironment(env={"DEPLOY_TARGET": "billing-prod-eu"}, home="/home/alice",
                                   cwd="/home/alice/app", user="alice", hostname="alice-laptop")
    auditor = Auditor(load_policy(["default"]), environment)
    leak = json_request({"userId": "u1", "target": "billing-prod-eu in /home/alice/app/main.py"})
    for _ in range(2):  # one value, read by three families; the second round reads the remembered matches
        decision = auditor.evaluate(leak)
        assert {f.detector.split(".")[0] for f in decision.findings} == {"env_values", "paths", "pii"}
        assert {f.field for f in decision.findings} == {"target"}


@pytest.mark.parametrize(("name", "strength"), [
    ("password", 2), ("DB_PASSWORD", 2), ("apiKey", 2), ("APIKey", 2), ("x-auth-token", 2), ("Authorization", 2),
    ("cache_key", 1), ("PRIVATE_KEY", 2), ("is_password_set", 0), ("password_length", 0), ("keys", 0),
])
def test_name_strength(name: str, strength: int) -> None:
    assert name_strength(name) == strength


def test_settings_turn_it_off_or_add_names() -> None:
    value = "Zk3mQ9pLx2Vb7Rt5Yw1N"
    assert list(build({"key_context": False}, AuditEnvironment()).find_under("password", value)) == []
    assert list(build({"disable": [KEY_CONTEXT_ID]}, AuditEnvironment()).find_under("password", value)) == []
    assert list(build({"generic": False}, AuditEnvironment()).find_under("password", value)) == []
    assert list(DETECTOR.find_under("acme_sig", value)) == []
    assert len(list(build({"secret_names": ["acme_*"]}, AuditEnvironment()).find_under("acme_sig", value))) == 1


@pytest.mark.parametrize("value", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_hostile_values_are_linear(value: str) -> None:
    started = time.perf_counter()
    list(DETECTOR.find_under("password", value))
    list(DETECTOR.find_in_scan_text("\x00\npassword\n\x00\n: \n\x00\n" + value + "\n\x00\n"))
    assert time.perf_counter() - started < 5


# --- through the engine --------------------------------------------------------------------------------------

def _decide(request: Request, fast_path: bool) -> Any:
    return Auditor(load_policy(["default"]), ENV, fast_path=fast_path).evaluate(request)


WHERE = [
    ("json body", json_request({"event": "x", "properties": {"dd_api_key": "a3f91c0e7b2d4f6a8c1e3b5d7f9a0c2e"}})),
    ("pretty json body", Request.from_url("POST", "https://api.segment.io/v1/track",
                                          {"Content-Type": "application/json"},
                                          json.dumps({"db_password": "Tr0ub4dor&3-horse"}, indent=2).encode())),
    ("header", json_request({"event": "x"}, headers={"X-Api-Key": "k8Jd7Hs6Gf5Dd4Ss3Aa2"})),
    ("query", Request.from_url("GET", "https://api.mixpanel.com/track?event=x&access_token=mF9xQ2vR7kL3pZ8wN4cY")),
    ("form", Request.from_url("POST", "https://api.segment.io/v1/track",
                              {"Content-Type": "application/x-www-form-urlencoded"},
                              b"event=x&client_secret=Xq7-kP2_vL9mR4tZ8wB1")),
    ("otlp attribute", Request.from_url("POST", "https://telemetry.example/v1/traces",
                                        {"Content-Type": "application/json"}, json.dumps({"resourceSpans": [{
                                            "resource": {"attributes": [{"key": "db.password", "value": {
                                                "stringValue": "Tr0ub4dor&3-horse"}}]}}]}).encode())),
]


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(("where", "request_"), WHERE, ids=[w[0] for w in WHERE])
def test_key_context_blocks_on_both_engine_paths(where: str, request_: Request, fast_path: bool) -> None:
    decision = _decide(request_, fast_path)
    assert decision.action is Action.BLOCK
    assert KEY_CONTEXT_ID in {f.detector for f in decision.findings}


def test_benign_look_alikes_pass_the_engine() -> None:
    body = {name: value for name, value in QUIET if not value.startswith(("/", "https:"))}
    body["event"] = "cli.start"
    for fast_path in (True, False):
        decision = _decide(json_request(body), fast_path)
        assert KEY_CONTEXT_ID not in {f.detector for f in decision.findings}, decision.findings


NAMES = st.sampled_from(["password", "db_password", "api_key", "token_count", "secret_scanning_enabled", "auth",
                         "keyboard_layout", "x", "key", "value", "stringValue", "dd_api_key", "cache_key"])
VALUES = st.sampled_from(["Tr0ub4dor&3-horse", "a3f91c0e7b2d4f6a8c1e3b5d7f9a0c2e", "42", "true", "changeme",
                          "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p", "us", "Zk3mQ9pLx2Vb7Rt5Yw1NcB3eU7i"])
DOCUMENTS = st.recursive(
    st.none() | st.booleans() | st.integers() | VALUES | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(NAMES, children, max_size=4)
    | st.builds(lambda k, v: {"key": k, "value": {"stringValue": v}}, NAMES, VALUES)
    | st.builds(lambda k, v: {"attributes": [{"key": k, "value": {"stringValue": v}}]}, NAMES, VALUES),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=DOCUMENTS, header=st.none() | st.tuples(NAMES, VALUES), indent=st.sampled_from([None, 1]))
def test_the_fast_path_decides_key_context_as_the_full_path(
    document: Any, header: tuple[str, str] | None, indent: int | None
) -> None:
    request = Request.from_url("POST", "https://api.segment.io/v1/batch", {
        "Content-Type": "application/json", **({header[0]: header[1]} if header else {})},
        json.dumps(document, indent=indent).encode())
    fast, full = _decide(request, True), _decide(request, False)
    assert fast.action is full.action
    assert [f.to_dict() for f in fast.findings] == [f.to_dict() for f in full.findings]


# --- the other false positives from real traffic --------------------------------------------------------------

@pytest.mark.parametrize(("value", "flagged"), [
    ("Mozilla/5.0 (X11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/111.0.0.0 Safari/537.36", False),
    ("8.0.0.0", False),
    ("runtime v1.2.3.4", False),
    ("dotnet version 4.2.1.7", False),
    ("connect ECONNREFUSED 81.2.69.142:443", True),
    ("81.2.69.142", True),
])
def test_four_part_versions_are_not_ip_addresses(value: str, flagged: bool) -> None:
    from telemetry_audit.detectors import pii

    found = [m.detector_id for m in pii.build({}, ENV).find(value)]
    assert ("pii.ip-address" in found) is flagged


@pytest.mark.parametrize(("name", "value", "looked_for"), [
    ("NODE_VERSION", "20.11.1", False),
    ("PYTHON_VERSION", "3.12.1", False),
    ("DOTNET_VERSION", "8.0.0.0", False),
    ("YARN_VERSION", "1.22.19", False),
    ("NODE_VERSION", "my-private-build-x7", True),  # not a version: still a value of the environment
    ("APP_RELEASE", "20.11.1", True),  # not a version variable: still looked for
])
def test_version_variables_holding_versions_are_ignored(name: str, value: str, looked_for: bool) -> None:
    from telemetry_audit.detectors import env_values

    detector = env_values.build({}, AuditEnvironment(env={name: value}))
    assert bool(list(detector.find(f"runtime {value} ok"))) is looked_for
