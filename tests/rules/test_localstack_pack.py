"""rules/localstack.yaml on real LocalStack captures: the raw auth token is blocked, with or without the env var."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telemetry_audit.cli import main
from telemetry_audit.model import Action
from telemetry_audit.policy import load_policy
from tests.rules.audit import ROOT, audit, capture, environment, forbidden, json_request, undocumented

TOKEN_FINDING = ("localstack.credentials", "localstack.auth-token", "payload.api_key", "block")


def _events(*events: dict[str, object]) -> dict[str, object]:
    return {"events": [{"name": "cli_cmd", "metadata": {"client_time": "2026-11-22 07:57:10.032389"}, **e}
                       for e in events]}


def test_pack_validates() -> None:
    assert main(["rules", "validate", str(ROOT / "rules" / "localstack.yaml")]) == 0


@pytest.mark.parametrize(
    "name",
    ["localstack-cli_cmd-config-show", "localstack-cli_cmd-via-HTTP_PROXY", "localstack-cli_cmd-with-DO_NOT_TRACK=1"],
)
def test_cli_cmd_events_conform(name: str) -> None:
    decision = audit(capture(name), "localstack")
    assert (decision.tool, decision.action, decision.findings) == ("localstack", Action.ALLOW, ())


def test_env_var_names_event_is_undocumented() -> None:
    decision = audit(capture("localstack-events-bus"), "localstack")
    assert undocumented(decision) == ["events[].payload.env_vars[]"]
    assert forbidden(decision) == set()
    assert decision.action is Action.LOG


def test_session_auth_token_is_blocked_without_the_env_var() -> None:
    decision = audit(capture("localstack-session"), "localstack")
    assert decision.tool == "localstack"
    assert undocumented(decision) == ["payload.edition", "payload.product"]
    assert forbidden(decision) == {TOKEN_FINDING}
    assert decision.action is Action.BLOCK


def test_session_auth_token_is_blocked_as_an_env_value_too() -> None:
    env = environment(LOCALSTACK_AUTH_TOKEN="ls-FAKE-TOKEN-1234")
    decision = audit(capture("localstack-session"), "localstack", env=env)
    assert forbidden(decision) == {
        TOKEN_FINDING,
        ("localstack.credentials", "env_values.value", "payload.api_key", "block"),
    }
    assert decision.action is Action.BLOCK


def test_default_policy_alone_does_not_catch_the_fake_token() -> None:
    # The reason for the pack's own `ls-` pattern: the built-in detector wants a UUID-shaped token.
    decision = audit(capture("localstack-session"), "default")
    assert decision.action is Action.ALLOW


@pytest.mark.parametrize(
    ("params", "flagged"),
    [
        (["file"], False),
        (["format_", "stack-name"], False),
        (["file=/tmp/x.yml"], True),
        (["my bucket"], True),
        (["MyBucket"], True),
        (["us-east-1"], True),
        (["8080"], True),
    ],
)
def test_parameter_values_are_redacted(params: list[str], flagged: bool) -> None:
    body = _events({"payload": {"cmd": "localstack config validate", "params": params}})
    decision = audit(json_request("https://analytics.localstack.cloud/v1/events", body), "localstack")
    ids = {f.detector for f in decision.findings}
    assert ("localstack.param-value" in ids) is flagged
    assert decision.action is (Action.REDACT if flagged else Action.ALLOW)


def test_aws_resource_names_are_redacted() -> None:
    body = {"events": [{
        "name": "aws_request",
        "metadata": {"session_id": "s", "client_time": "t"},
        "payload": {"service": "lambda", "operation": "Invoke", "status_code": 404,
                    "err_msg": "Function not found: arn:aws:lambda:us-east-1:000000000000:function:payroll-export"},
    }]}
    decision = audit(json_request("https://analytics.localstack.cloud/v1/events", body), "localstack")
    assert forbidden(decision) == {
        ("localstack.promises", "localstack.aws-resource-name", "events[0].payload.err_msg", "redact"),
        # the ARN's `function:payroll-export` names the function too
        ("localstack.promises", "localstack.named-resource", "events[0].payload.err_msg", "redact"),
    }
    assert b"payroll-export" not in (decision.redacted_body or b"")


def test_user_agent_match_does_not_take_other_clients() -> None:
    request = json_request("http://127.0.0.1:4566/v1/events", _events({"payload": {"cmd": "x"}}),
                           {"User-Agent": "python-requests/2.32"})
    assert audit(request, "localstack").tool == ""


def test_optout_switches_load() -> None:
    optout = load_policy(["localstack"]).optout
    assert {(s.kind, s.name, s.value, s.expected) for s in optout} == {
        ("env", "DISABLE_EVENTS", "1", "stops"),
        ("env", "DO_NOT_TRACK", "1", "ignored"),
    }


@pytest.mark.parametrize("message", [
    "The specified bucket does not exist: acme-invoices",
    "Queue 'orders-prod' not found",
    "invalid parameter name=acme-db-password",
])
def test_resource_names_inside_error_messages_are_redacted(message: str) -> None:
    body = _events({"name": "aws_request", "payload": {"service": "s3", "err_msg": message}})
    decision = audit(json_request("https://analytics.localstack.cloud/v1/events", body), "localstack")
    assert "localstack.named-resource" in {f.detector for f in decision.findings}
    assert decision.action is Action.REDACT


def test_no_policy_names_localstack_and_checks_its_documented_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # With no --policy, the shipped tool packs apply: the Tool column names LocalStack and an undocumented
    # field of its session event is reported against its documentation.
    data = json.loads((ROOT / "tests" / "data" / "captures" / "localstack-session.json").read_text())
    data["body_json"]["payload"]["cwd_name"] = "billing-api"
    path = tmp_path / "session.json"
    path.write_text(json.dumps(data))
    main(["check", "-f", "json", str(path)])
    [request] = json.loads(capsys.readouterr().out)["requests"]
    assert request["tool"] == "localstack"
    assert ("payload.cwd_name", "undocumented") in {(f["field"], f["kind"]) for f in request["findings"]}
