"""Tests for telemetry_audit/detectors/env_values.py."""

from __future__ import annotations

import base64
import json
import random
import string
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors import env_values
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Request
from telemetry_audit.policy import load_policy
from tests.detectors.helpers import PATHOLOGICAL, flagged

TOKEN = "ls-FAKE-TOKEN-1234"
PASSWORD = "p@ss w/rd+x"
ENV = AuditEnvironment(env={
    "LOCALSTACK_AUTH_TOKEN": TOKEN,
    "DB_PASSWORD": PASSWORD,
    "PIN_TOKEN": "k9Zq",
    "COMPANY": "Initech Widgets",
    "SHORT": "abc12",
    "PATH": "/usr/local/bin:/usr/bin:/home/alice/bin",
    "TERM": "xterm-256color",
    "LANG": "en_US.UTF-8",
    "SHELL": "/bin/bash",
    "DEBUG": "1",
    "CI": "true",
    "AWS_SECRET_ACCESS_KEY": "test",
    "JAVA_HOME": "/usr/lib/jvm/java-17",
    "UID_NUMBER": "1000",
})
DETECTOR = env_values.build({}, ENV)

TABLE: list[tuple[str, bool]] = [
    (TOKEN, True),
    (f"api_key={TOKEN}", True),
    (quote(PASSWORD, safe=""), True),
    (quote_plus(PASSWORD), True),
    (base64.b64encode(f"svc:{PASSWORD}".encode()).decode(), True),
    (base64.b64encode(f"xy{TOKEN}".encode()).decode(), True),
    (base64.urlsafe_b64encode(f"{TOKEN}?".encode()).decode(), True),
    (json.dumps({"msg": PASSWORD})[1:-1], True),
    ("pin k9Zq used", True),
    ("pin k9Zqx used", False),  # short values only as whole words
    ("Initech Widgets Ltd", True),
    ("abc12", False),  # not secret-looking and shorter than min_length
    ("/usr/local/bin", False),
    ("xterm-256color", False),
    ("en_US.UTF-8", False),
    ("true", False),
    ("1", False),
    ("stage test", False),  # dummy credentials such as `test` are ignored
    ("/usr/lib/jvm/java-17", False),
    ("1000", False),
    ("LOCALSTACK_AUTH_TOKEN", False),  # the name is not secret
    ("", False),
]


@pytest.mark.parametrize(("value", "should_flag"), TABLE)
def test_env_values(value: str, should_flag: bool) -> None:
    assert bool(flagged(DETECTOR, value)) is should_flag


def test_title_names_the_variable() -> None:
    (match,) = DETECTOR.find(f"session api_key={TOKEN}")
    assert match.title == "value of $LOCALSTACK_AUTH_TOKEN"
    assert match.detector_id == "env_values.value"
    (encoded,) = DETECTOR.find(quote(PASSWORD, safe=""))
    assert encoded.detector_id == "env_values.value-encoded"
    assert "$DB_PASSWORD" in encoded.title


def test_settings() -> None:
    assert flagged(env_values.build({"min_length": 4}, ENV), "abc12") == ["env_values.value"]
    assert flagged(env_values.build({"ignore_names": ["localstack_*"]}, ENV), TOKEN) == []
    assert flagged(env_values.build({"ignore_values": [TOKEN]}, ENV), TOKEN) == []
    assert flagged(env_values.build({"sensitive_names": ["SHORT"]}, ENV), "x abc12 y") == ["env_values.value"]
    assert flagged(env_values.build({"disable": ["env_values.value-encoded"]}, ENV), quote_plus(PASSWORD)) == []


def test_empty_environment() -> None:
    assert flagged(env_values.build({}, AuditEnvironment()), "anything at all") == []


def test_base64_cores_are_alignment_independent() -> None:
    for prefix in ("", "a", "ab", "abc"):
        blob = base64.b64encode(f"{prefix}{TOKEN}tail".encode()).decode()
        assert any(core in blob for core in env_values.base64_cores(TOKEN))


@pytest.mark.parametrize("bad", [{"min_length": "6"}, {"min_length": 0}, {"ignore_names": "PATH"}, {"x": 1}])
def test_bad_settings_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="env_values"):
        env_values.build(bad, ENV)


@pytest.mark.parametrize("value", PATHOLOGICAL, ids=lambda v: f"{v[:12]!r}x{len(v)}")
def test_pathological_values_complete(value: str) -> None:
    hostile_env = AuditEnvironment(env={"A_TOKEN": "aaaa", "B_SECRET": "/home/", "C_KEY": "a.a.a."})
    for detector in (DETECTOR, env_values.build({}, hostile_env)):
        flagged(detector, value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=6), st.text())
def test_never_raises(env: dict[str, str], value: str) -> None:
    detector = env_values.build({}, AuditEnvironment(env=env))
    flagged(detector, value)
    for secret in env.values():
        flagged(detector, secret)


def test_a_large_environment_builds_and_its_values_are_found() -> None:
    """Found by measuring: about 500 variables of 40 characters (a Kubernetes pod's service variables, a CI
    runner's) outgrew RE2's default set budget, the set did not compile, and every request ended as an audit
    error. The set's budget now grows until it compiles; the values are found, clean text passes."""
    rng = random.Random(7)
    env = {f"SERVICE_{i}_TOKEN": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(40))
           for i in range(800)}
    detector = env_values.build({}, AuditEnvironment(env=env))
    assert len(detector.gate) > 2100  # past where the default budget failed
    for name in ("SERVICE_0_TOKEN", "SERVICE_799_TOKEN"):
        found = list(detector.find(f"x {env[name]} y"))
        assert [(m.start, m.end) for m in found] == [(2, 42)]
    assert list(detector.find("nothing of the environment here " * 20)) == []


def test_an_auditor_in_a_large_environment_redacts_instead_of_failing() -> None:
    rng = random.Random(8)
    env = {f"SERVICE_{i}_HOST": "".join(rng.choice(string.ascii_lowercase) for _ in range(40)) for i in range(800)}
    auditor = Auditor(load_policy(["default"]), AuditEnvironment(env=env, home="/home/a", cwd="/home/a/w"))
    leak = Request.from_url("POST", "https://api.segment.io/v1/track", {"content-type": "application/json"},
                            json.dumps({"event": "e", "properties": {"host": env["SERVICE_412_HOST"]}}).encode())
    decision = auditor.evaluate(leak)
    assert [f.detector for f in decision.findings] == ["env_values.value"]
    clean = Request.from_url("POST", "https://api.segment.io/v1/track", {"content-type": "application/json"},
                             b'{"event": "e"}')
    assert auditor.evaluate(clean).action is Action.ALLOW
