"""Tests for telemetry_audit/detectors/secrets.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors import secrets
from telemetry_audit.detectors.base import AuditEnvironment
from tests.detectors.corpus import SECRET_FORMATS
from tests.detectors.helpers import PATHOLOGICAL, flagged

ENV = AuditEnvironment()
DETECTOR = secrets.build({}, ENV)

# Fake values, generated from the documented formats (deterministic).
_rng = random.Random(7)
GENERATED = [(detector_id, make(_rng)) for detector_id, make in SECRET_FORMATS.items() for _ in range(3)]

POSITIVES: list[tuple[str, str]] = [
    ("AKIAIOSFODNN7EXAMPLE", "secrets.aws-access-key-id"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secrets.aws-secret-access-key"),
    ("AKIAZ2Q4X7W3VBN5M6L8 wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "secrets.aws-secret-access-key"),
    ("ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5", "secrets.github-pat"),
    ("Authorization: token ghs_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5", "secrets.github-app-token"),
    ("glpat-Xy7_kP2mQ9vR4tW8zB1c", "secrets.gitlab-pat"),
    ("https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/a1b2C3d4E5f6G7h8I9j0K1l2", "secrets.slack-webhook"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "secrets.stripe-secret-key"),
    ("AIzaSyD3x9Qm4Lw0pV7bT2nR8kJ5hF1gC6sE0aZ", "secrets.google-api-key"),
    ("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", "secrets.huggingface-token"),
    ("dd_api_key: 0f3c5a9e7b1d2c4e6f8a0b1c2d3e4f5a", "secrets.datadog-api-key"),
    ("TWILIO_API_KEY=SK0f3c5a9e7b1d2c4e6f8a0b1c2d3e4f5a", "secrets.twilio-credential"),
    ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "secrets.jwt"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
     "secrets.private-key"),
    ("postgres://app:Sup3rS3cret@db.internal:5432/app", "secrets.postgres-uri"),
    ("deploy --password Hunter2isBack!", "secrets.generic-assignment"),
    ('{"client_secret":"q8Vt2LmZx9RkP4sW"}', "secrets.generic-assignment"),
    ("Bearer eyJraWQiOiJ4In0abcdefghijklmnop", "secrets.authorization-header"),
    ("ls-QmVyTz7d-4821-9023-NwPq-x7KdLr2mZq9A", "secrets.localstack-auth-token"),
    *[(value, detector_id) for detector_id, value in GENERATED],
]

NEGATIVES: list[str] = [
    "",
    "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p",  # PostHog project keys are public by design
    "0ba1fd90-e64a-11f1-a508-991b2c0cd370",
    "8aff786d2cbc38a65d40668e2b6880e551ce807ce89fa3e291919df9350bc75f",
    "790876e0482177168ae878cc17b929d7ec267df3",
    "zvdendhdnrdaonumwdtmrumxwwetewrs",
    "gen_b2e28554-7d0",
    "2026-11-22T07:58:27.763893865Z",
    "3.40.0",
    "ls-FAKE-TOKEN-1234",  # not the LocalStack format; env_values catches the real variable
    "ls-0f7d3dd0-4edd-4642-b560-24fd999dff2f",  # a lower-case UUID with a prefix is an id
    "Asia/Tokyo",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",  # placeholder: fails the entropy floor
    "password=${DB_PASSWORD}",
    "password: <your-password>",
    "token=12345678901",
    "https://user:password@example.com/",
    "https://github.com/serverless/serverless",
    "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxIn0.x",  # header has neither alg nor typ
    "the basic idea of a bearer bond",
    "tokenizer: gpt2",
    "key-value store",
    "sk-this-is-not-a-key",
    "Could not install pulumi",
]


@pytest.mark.parametrize(("value", "expected"), POSITIVES)
def test_flags_secret(value: str, expected: str) -> None:
    assert expected in flagged(DETECTOR, value)


@pytest.mark.parametrize("value", NEGATIVES)
def test_does_not_flag_benign(value: str) -> None:
    assert flagged(DETECTOR, value) == []


def test_span_is_the_secret_inside_a_message() -> None:
    token = "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"
    value = f"fatal: Authentication failed for token {token} (401)"
    (match,) = DETECTOR.find(value)
    assert value[match.start:match.end] == token
    assert match.kind.value == "secret"


def test_hex_behind_an_aws_keyword_is_only_a_generic_credential() -> None:
    # A 40-character hex digest never reaches the 4.0 bits/char floor of AWS secret keys,
    # but a hex value assigned to a secret-looking key is still reported (Heroku tokens are hex).
    value = "aws_secret_access_key = 0123456789abcdef0123456789abcdef01234567"
    assert flagged(DETECTOR, value) == ["secrets.generic-assignment"]


def test_generic_yields_to_specific() -> None:
    value = "token=ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"
    assert flagged(DETECTOR, value) == ["secrets.github-pat"]


def test_settings_disable_and_generic() -> None:
    jwt = POSITIVES[12][0]
    assert flagged(secrets.build({"disable": ["secrets.jwt"]}, ENV), jwt) == []
    assert flagged(secrets.build({"generic": False}, ENV), "deploy --password Hunter2isBack!") == []


def test_high_entropy_is_opt_in() -> None:
    value = "Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A9PT0xMjM0aGVsbG8K9xQ"
    opaque = "q8Vt2LmZx9RkP4sW7nB3cD6fG1hJ5kL0"
    assert flagged(DETECTOR, opaque) == []
    enabled = secrets.build({"high_entropy": True}, ENV)
    assert flagged(enabled, opaque) == ["secrets.high-entropy"]
    assert flagged(enabled, "0ba1fd90-e64a-11f1-a508-991b2c0cd370") == []
    assert flagged(enabled, "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p") == []
    del value


@pytest.mark.parametrize("bad", [{"generic": "yes"}, {"disable": ["secrets.nope"]}, {"unknown": 1},
                                 {"disable": "secrets.jwt"}])
def test_bad_settings_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="secrets"):
        secrets.build(bad, ENV)


def test_every_pattern_has_a_generated_positive() -> None:
    assert {p.id for p in secrets.PATTERNS} - set(SECRET_FORMATS) == {"secrets.high-entropy"}


@pytest.mark.parametrize("value", PATHOLOGICAL, ids=lambda v: f"{v[:12]!r}x{len(v)}")
def test_pathological_values_complete(value: str) -> None:
    for detector in (DETECTOR, secrets.build({"high_entropy": True}, ENV)):
        flagged(detector, value)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises(value: str) -> None:
    flagged(secrets.build({"high_entropy": True}, ENV), value)
