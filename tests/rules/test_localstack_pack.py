"""rules/localstack.yaml on real LocalStack captures: the raw auth token is blocked, with or without the env var."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.cli import main
from telemetry_audit.model import Action, FindingKind, Request
from telemetry_audit.policy import load_policy
from tests.rules.audit import (
    CAPTURES,
    ROOT,
    audit,
    capture,
    environment,
    forbidden,
    json_request,
    redacted_json,
    undocumented,
)

TOKEN_FINDING = ("localstack.credentials", "localstack.auth-token", "payload.api_key", "block")


def capture_body(name: str) -> Any:
    return json.loads((CAPTURES / f"{name}.json").read_text())["body_json"]


def _events(*events: dict[str, object]) -> dict[str, object]:
    return {"events": [{"name": "cli_cmd", "metadata": {"client_time": "2026-11-22 07:57:10.032389"}, **e}
                       for e in events]}


def test_pack_validates() -> None:
    assert main(["rules", "validate", str(ROOT / "rules" / "localstack.yaml")]) == 0


SESSION_ID = "0f7d3dd0-4edd-4642-b560-24fd999dff2f"
CLI_CAPTURES = ["localstack-cli_cmd-config-show", "localstack-cli_cmd-via-HTTP_PROXY",
                "localstack-cli_cmd-with-DO_NOT_TRACK=1"]
SESSION_LINK = {
    ("localstack.promises", "localstack.cli-session-link", "events[0].metadata.session_id", "redact"),
    ("localstack.promises", "localstack.cli-session-link", "header.localstack-session-id", "redact"),
}


def _edited(name: str, edit: Callable[[dict[str, Any]], None]) -> Request:
    """A real capture with its JSON body edited (headers, method and path as captured)."""
    body = capture_body(name)
    edit(body)
    request = capture(name)
    headers = tuple((k, v) for k, v in request.headers if k.lower() != "content-length")
    return replace(request, headers=headers, body=json.dumps(body).encode())


@pytest.mark.parametrize("name", CLI_CAPTURES)
def test_real_cli_cmd_events_are_tied_to_the_session(name: str) -> None:
    # The page: CLI invocations are "not connected to the session". Every real cli_cmd event carries the
    # session id in its metadata and its request the session header: both are the one finding the pack makes.
    decision = audit(capture(name), "localstack")
    assert (decision.tool, decision.action, undocumented(decision)) == ("localstack", Action.REDACT, [])
    assert forbidden(decision) == SESSION_LINK
    assert {f.kind for f in decision.findings} == {FindingKind.PII}
    body = redacted_json(capture(name), decision)
    assert "session_id" not in body["events"][0]["metadata"]
    assert body["events"][0]["payload"] == capture_body(name)["events"][0]["payload"]  # the rest is kept
    assert decision.redacted_headers is not None
    assert "localstack-session-id" not in {k.lower() for k, _ in decision.redacted_headers}


def test_aws_request_events_keep_their_documented_session() -> None:
    # The same capture with its event turned into the documented aws_request: the session link is documented there.
    def to_aws_request(body: dict[str, Any]) -> None:
        body["events"][0].update(name="aws_request", payload={"service": "sqs", "operation": "DeleteQueue",
                                                               "status_code": 200})

    decision = audit(_edited("localstack-cli_cmd-config-show", to_aws_request), "localstack")
    assert (decision.action, decision.findings) == (Action.ALLOW, ())


def test_a_mixed_batch_drops_the_session_of_its_cli_event_only() -> None:
    def add_aws_request(body: dict[str, Any]) -> None:
        body["events"].insert(0, {"name": "aws_request",
                                  "metadata": {"session_id": SESSION_ID, "client_time": "t"},
                                  "payload": {"service": "s3", "operation": "ListBuckets", "status_code": 200}})

    decision = audit(_edited("localstack-cli_cmd-config-show", add_aws_request), "localstack")
    assert forbidden(decision) == {
        ("localstack.promises", "localstack.cli-session-link", "events[1].metadata.session_id", "redact"),
        # the header ties every event of the request to the session, the cli_cmd one included
        ("localstack.promises", "localstack.cli-session-link", "header.localstack-session-id", "redact"),
    }
    body = json.loads(decision.redacted_body or b"")
    assert body["events"][0]["metadata"]["session_id"] == SESSION_ID
    assert "session_id" not in body["events"][1]["metadata"]


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
        (["file"], []),
        (["format_"], []),
        (["docker", "detached", "no_banner", "host_dns", "stack"], []),
        (["file=/tmp/x.yml"], ["file=/tmp/x.yml"]),
        (["my bucket"], ["my bucket"]),
        (["MyBucket"], ["MyBucket"]),
        (["us-east-1"], ["us-east-1"]),
        (["8080"], ["8080"]),
        # any value, not only one with odd characters: these look like parameter names
        (["prod"], ["prod"]),
        (["acme-invoices"], ["acme-invoices"]),
        (["format_", "billing_api"], ["billing_api"]),
        (["stack-name"], ["stack-name"]),  # click names use `_`: never a name the CLI sends
    ],
)
def test_parameter_values_are_redacted(params: list[str], flagged: list[str]) -> None:
    def set_params(body: dict[str, Any]) -> None:
        body["events"][0]["payload"]["params"] = params

    decision = audit(_edited("localstack-cli_cmd-config-show", set_params), "localstack")
    found = [f for f in decision.findings if f.detector == "localstack.param-value"]
    assert sorted(params[int(f.field.rsplit("[", 1)[1][:-1])] for f in found) == sorted(flagged)
    assert all(f.kind is FindingKind.PII for f in found)
    sent = json.loads(decision.redacted_body or b"")["events"][0]["payload"]["params"]
    assert not set(flagged) & set(sent)
    assert [p for p in sent if p in params] == [p for p in params if p not in flagged]


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


@pytest.mark.parametrize(("message", "name"), [
    ("The specified bucket does not exist: acme-invoices", "acme-invoices"),
    ("Queue 'orders-prod' not found", "orders-prod"),
    ("invalid parameter name=acme-db-password", "acme-db-password"),
    ("Parameter /prod/db/password not found.", "/prod/db/password"),
    ("The role with name payroll-role cannot be found.", "payroll-role"),
    ("Stack with id billing-api does not exist", "billing-api"),
    ("Requested resource not found: Table: orders not found", "orders"),
    ("Bucket acme-invoices-2024 already exists", "acme-invoices-2024"),
    ("Function named payroll not found", "payroll"),
    # the page's own example, and messages that name no resource, stay quiet
    ("The specified queue does not exist for this wsdl version.", ""),
    ("The specified bucket does not exist", ""),
    ("Invalid parameter: TopicArn", ""),
    ("Table already exists", ""),
])
def test_resource_names_inside_error_messages_are_redacted(message: str, name: str) -> None:
    # The page's aws_request example with its 400 error message replaced.
    body = {"events": [{"name": "aws_request", "metadata": {"session_id": SESSION_ID, "client_time": "t"},
                        "payload": {"service": "sqs", "operation": "DeleteQueue", "status_code": 400,
                                    "err_type": "AWS.SimpleQueueService.NonExistentQueue", "err_msg": message}}]}
    decision = audit(json_request("https://analytics.localstack.cloud/v1/events", body), "localstack")
    assert ("localstack.named-resource" in {f.detector for f in decision.findings}) is bool(name)
    assert decision.action is (Action.REDACT if name else Action.ALLOW)
    if name:
        assert name.encode() not in (decision.redacted_body or b"")


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


def test_run_with_no_policy_names_localstack_and_checks_its_documented_fields(tmp_path: Path) -> None:
    # `run` with no --policy: a real proxy, a real Python client replaying the real session capture (its token
    # removed, one undocumented field added) to LocalStack's collector, answered offline by the emulator.
    body = capture_body("localstack-session")
    del body["payload"]["api_key"]
    body["payload"]["cwd_name"] = "billing-api"
    (tmp_path / "body.json").write_text(json.dumps(body))
    code = ("import json, requests; body = json.load(open('body.json')); "
            "r = requests.post('https://analytics.localstack.cloud/v1/session', json=body, "
            "headers={'User-Agent': 'localstack/2026.8.2'}, timeout=30); print(r.status_code)")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k.lower() not in {
        "http_proxy", "https_proxy", "all_proxy", "no_proxy"}}
    env["TELEMETRY_AUDIT_HOME"] = str(tmp_path / "home")
    result = subprocess.run([sys.executable, "-m", "telemetry_audit", "run", "--report", str(report), "--",
                             sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr  # undocumented fields are logged, not blocked
    assert result.stdout.strip() == "200"
    [request] = json.loads(report.read_text())["requests"]
    assert (request["host"], request["tool"], request["decision"]) == (
        "analytics.localstack.cloud", "localstack", "log")
    undocumented_fields = {f["field"] for f in request["findings"] if f["kind"] == "undocumented"}
    assert undocumented_fields == {"payload.cwd_name", "payload.edition", "payload.product"}


def test_a_large_cli_batch_loses_every_session_link() -> None:
    # 3000 cli_cmd events, each tied to the session: every link is dropped (the record lookup is per event,
    # so a large batch is not quadratic).
    def many(body: dict[str, Any]) -> None:
        body["events"] = body["events"] * 3000

    decision = audit(_edited("localstack-cli_cmd-config-show", many), "localstack")
    assert decision.action is Action.REDACT
    sent = json.loads(decision.redacted_body or b"")
    assert len(sent["events"]) == 3000
    assert not any("session_id" in event["metadata"] for event in sent["events"])
