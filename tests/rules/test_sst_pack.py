"""rules/sst.yaml on real SST v2 and v4 captures: documented fields pass, argv and IDs are reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from telemetry_audit.cli import main
from telemetry_audit.model import Action, Request
from telemetry_audit.policy import load_policy
from tests.rules.audit import CAPTURES, ROOT, audit, capture, forbidden, json_request, undocumented

V2_CONTEXT = ["context.anonymousId", "context.projectId", "context.sessionId"]
V4_IDS = ["batch[].properties.error", "batch[].properties.project_id", "batch[].properties.session_id",
          "batch[].properties.user_id"]


def test_pack_validates() -> None:
    assert main(["rules", "validate", str(ROOT / "rules" / "sst.yaml")]) == 0


@pytest.mark.parametrize(
    ("name", "expected_undocumented", "expected_forbidden"),
    [
        ("sst-v2.49.8-CLI_COMMAND", V2_CONTEXT, set()),
        (
            "sst-v2.49.8-CLI_COMMAND_SUCCEEDED",
            # `rawCommand` is the documented "command invoked"; its `--stage dev` is what sst.argv reports
            [*V2_CONTEXT, "events[].properties.duration"],
            {("sst.promises", "sst.argv", "events[0].properties.rawCommand", "log")},
        ),
        (
            "sst-v4.17.1-posthog-batch",
            # `args: ["version"]` is the documented "command invoked": no argv finding; the cli.error
            # event's message is the kind of error the page says is not collected.
            V4_IDS,
            {("sst.promises", "sst.error", "batch[1].properties.error", "log")},
        ),
        (
            "sst-v4.17.1-telemetry-disable-cmd-offline",
            V4_IDS,
            # `args: ["telemetry", "disable"]` is the command; the cli.error event's message is the kind of
            # error the page says is not collected.
            {("sst.promises", "sst.error", "batch[1].properties.error", "log")},
        ),
    ],
)
def test_real_captures(name: str, expected_undocumented: list[str], expected_forbidden: set[tuple[str, ...]]) -> None:
    decision = audit(capture(name), "sst")
    assert decision.tool == "sst"
    assert undocumented(decision) == expected_undocumented
    assert forbidden(decision) == expected_forbidden
    assert decision.action is (Action.LOG if decision.findings else Action.ALLOW)


def test_argv_carrying_a_home_path_is_redacted() -> None:
    body = {
        "context": {},
        "environment": {"sstVersion": "2.49.8"},
        "events": [{"name": "CLI_COMMAND_SUCCEEDED",
                    "properties": {"rawCommand": "deploy --config /home/alice/work/demo/sst.config.ts"}}],
    }
    decision = audit(json_request("https://telemetry.sst.dev/events", body), "sst")
    assert decision.action is Action.REDACT
    assert ("default.paths", "paths.home-dir", "events[0].properties.rawCommand", "redact") in forbidden(decision)
    assert b"/home/alice" not in (decision.redacted_body or b"")


def test_documented_fields_only_pass() -> None:
    body = {"environment": {"sstVersion": "2.49.8", "cpuCount": 2, "isCI": False},
            "events": [{"name": "CLI_COMMAND", "properties": {"command": "deploy"}}]}
    decision = audit(json_request("https://telemetry.sst.dev/events", body), "sst")
    assert (decision.action, decision.findings, decision.tool) == (Action.ALLOW, (), "sst")


def test_optout_switches_load() -> None:
    switches = {(s.kind, s.name or s.path or " ".join(s.command), s.expected, s.versions)
                for s in load_policy(["sst"]).optout}
    assert switches == {
        ("env", "SST_TELEMETRY_DISABLED", "stops", ()),
        ("command", "npx sst telemetry disable", "stops", ()),
        ("file", "~/.config/sst/telemetry-disable", "stops", ("3.x", "4.x")),
        ("env", "DO_NOT_TRACK", "stops", ("3.x", "4.x")),
        ("env", "DO_NOT_TRACK", "ignored", ("2.x",)),
    }


@pytest.mark.parametrize(("version", "expected"), [
    ("2.49.8", {("SST_TELEMETRY_DISABLED", "stops"), ("npx sst telemetry disable", "stops"),
                ("DO_NOT_TRACK", "ignored")}),
    ("4.17.1", {("SST_TELEMETRY_DISABLED", "stops"), ("npx sst telemetry disable", "stops"),
                ("~/.config/sst/telemetry-disable", "stops"), ("DO_NOT_TRACK", "stops")}),
])
def test_optout_expectations_follow_the_tool_version(version: str, expected: set[tuple[str, str]]) -> None:
    # v2 is not expected to honour v3's `telemetry-disable` file; v4 is expected to honour DO_NOT_TRACK.
    applying = {(s.name or s.path or " ".join(s.command), s.expected)
                for s in load_policy(["sst"]).optout if s.applies_to(version)}
    assert applying == expected
    assert all(s.tool == "sst" and s.source for s in load_policy(["sst"]).optout)


@pytest.mark.parametrize(("args", "flagged"), [
    (["deploy"], False),
    (["telemetry", "disable"], False),
    (["deploy", "--stage", "prod"], True),
    (["deploy", "--config=/srv/app/sst.config.ts"], True),
    (["secret", "set", "StripeKey", "value"], True),  # positional values: not command words
    (["add", "aws"], True),
    (["secret", "list"], False),
    (["tunnel", "install"], False),
])
def test_v4_argv_is_flagged_only_with_options_or_values(args: list[str], flagged: bool) -> None:
    body = {"api_key": "phc_x", "batch": [{"event": "cli.start", "properties": {"args": args}}]}
    decision = audit(json_request("https://telemetry.ion.sst.dev/batch/", body), "sst")
    assert any(f.detector == "sst.argv" for f in decision.findings) is flagged


def test_an_absolute_path_outside_home_is_redacted() -> None:
    body = {"api_key": "phc_x", "batch": [{"event": "cli.error", "properties": {
        "args": ["deploy"], "message": "cannot read /srv/builds/acme/sst.config.ts"}}]}
    decision = audit(json_request("https://telemetry.ion.sst.dev/batch/", body), "sst")
    assert decision.action is Action.REDACT
    assert b"/srv/builds" not in (decision.redacted_body or b"")


def _edited(name: str, edit: Callable[[Any], None]) -> Request:
    """A real capture with its JSON body edited (method, path and headers as captured)."""
    body = json.loads((CAPTURES / f"{name}.json").read_text())["body_json"]
    edit(body)
    request = capture(name)
    headers = tuple((k, v) for k, v in request.headers if k.lower() not in ("content-length", "transfer-encoding"))
    return replace(request, headers=headers, body=json.dumps(body).encode())


@pytest.mark.parametrize("name", ["sst-v2.49.8-CLI_COMMAND", "sst-v4.17.1-posthog-batch"])
def test_real_ids_are_opaque(name: str) -> None:
    # v2's SHA-256 digests, v4's random 32-letter ids and 40-hex project id: no identifier finding.
    assert not [f for f in audit(capture(name), "sst").findings if f.detector == "sst.identifier"]


@pytest.mark.parametrize(("name", "where", "value", "field"), [
    ("sst-v2.49.8-CLI_COMMAND", ("context", "anonymousId"), "alice", "context.anonymousId"),
    ("sst-v2.49.8-CLI_COMMAND", ("context", "projectId"), "git@github.com:acme/billing-api.git", "context.projectId"),
    ("sst-v4.17.1-posthog-batch", ("batch", 0, "properties", "project_id"), "acme-billing-api",
     "batch[0].properties.project_id"),
    ("sst-v4.17.1-posthog-batch", ("batch", 0, "distinct_id"), "alice-laptop", "batch[0].distinct_id"),
    ("sst-v4.17.1-posthog-batch", ("batch", 1, "properties", "session_id"), "0f7d3dd0",
     "batch[1].properties.session_id"),
])
def test_an_identifying_id_is_redacted(name: str, where: tuple[Any, ...], value: str, field: str) -> None:
    # "No data we collect is personally identifiable": an id that is not random or a digest names someone.
    def plant(body: Any) -> None:
        node = body
        for step in where[:-1]:
            node = node[step]
        node[where[-1]] = value

    decision = audit(_edited(name, plant), "sst")
    assert ("sst.promises", "sst.identifier", field, "redact") in forbidden(decision)
    assert decision.action is Action.REDACT
    assert value.encode() not in (decision.redacted_body or b"")


def test_the_optout_report_says_which_versions_each_switch_covers() -> None:
    from telemetry_audit.optout import RunOutcome, optout_report
    from telemetry_audit.policy.model import switches_for_version

    policy = load_policy(["sst"])
    record = {"method": "POST", "host": "telemetry.sst.dev", "path": "/events", "tool": "sst", "decision": "log"}
    sent, silent = RunOutcome(0, (record,)), RunOutcome(0, ())
    switches = switches_for_version(policy.optout, "2.49.8")
    report = optout_report("sst", policy, ["sst", "version"], sent, [(s, silent) for s in switches])
    covered = {(e["switch"]["name"] or e["switch"]["path"] or " ".join(e["switch"]["command"])): e["switch"]["versions"]
               for e in report["switches"]}
    # v2 is expected to honour its own command and variable (every version) and to ignore DO_NOT_TRACK (2.x);
    # v3's file is not among the switches a v2 run is judged by
    assert covered == {"SST_TELEMETRY_DISABLED": [], "npx sst telemetry disable": [], "DO_NOT_TRACK": ["2.x"]}
