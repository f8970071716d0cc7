"""rules/serverless.yaml on real Serverless v3 captures, and on v1/v4 requests built from the documents."""

from __future__ import annotations

import pytest

from telemetry_audit.cli import main
from telemetry_audit.model import Action
from telemetry_audit.policy import load_policy
from tests.rules.audit import ROOT, audit, capture, forbidden, json_request, undocumented

NODE_FETCH = "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"
LOCAL_USER_ID = ("serverless.promises", "serverless.local-user-id", "[0].frameworkLocalUserId", "log")

# What `sls print` outside a service sends that neither page lists.
PRINT_UNDOCUMENTED = [
    "[].cliName",
    "[].commandDurationMs",
    "[].failureReason.code",
    "[].failureReason.kind",
    "[].firstLocalInstallationTimestamp",
    "[].frameworkLocalUserId",
    "[].installationType",
    "[].isAutoUpdateEnabled",
    "[].isUsingCompose",
    "[].notificationsMode",
    "[].outcome",
]
# `sls deploy` in a service adds these (npmDependencies: the service's dependency names).
DEPLOY_UNDOCUMENTED = sorted([
    *PRINT_UNDOCUMENTED,
    "[].commandOptionNames[]",
    "[].config.configValidationMode",
    "[].config.functions[].url",
    "[].config.paramsCount",
    "[].didCreateService",
    "[].dockerVersion",
    "[].hasLocalCredentials",
    "[].isConfigValid",
    "[].isDockerInstalled",
    "[].npmDependencies[]",
])

V1_TRACK = {
    "userId": "3b1c6a5e-5c1a-4d2e-9f0a-0d6a7a1c9e11",
    "event": "framework_stat",
    "properties": {
        "version": 1,
        "command": {"name": "deploy", "isRunInService": True},
        "service": {"numberOfCustomPlugins": 0, "hasCustomResourcesDefined": False,
                    "hasVariablesInCustomSectionDefined": False, "hasCustomVariableSyntaxDefined": False},
        "provider": {"name": "aws", "runtime": "nodejs4.3", "stage": "dev", "region": "us-east-1"},
        "functions": {"numberOfFunctions": 2, "memorySizeAndTimeoutPerFunction": [{"memorySize": 1024, "timeout": 6}]},
        "events": {"numberOfEvents": 3, "numberOfEventsPerType": [{"name": "http", "count": 2}],
                   "eventNamesPerFunction": [["http", "s3"], ["http"]]},
        "general": {"userId": "3b1c6a5e-5c1a-4d2e-9f0a-0d6a7a1c9e11", "timestamp": 1478000000, "timezone": "UTC",
                    "operatingSystem": "linux", "serverlessVersion": "1.0.3", "nodeJsVersion": "v6.9.1"},
    },
}


def test_pack_validates() -> None:
    assert main(["rules", "validate", str(ROOT / "rules" / "serverless.yaml")]) == 0


@pytest.mark.parametrize(
    "name",
    ["serverless3-01", "serverless3-print-with-DO_NOT_TRACK=1", "serverless3-print-with-HTTP_PROXY-set-went-direct",
     "serverless3-tls-real-host"],
)
def test_print_captures(name: str) -> None:
    decision = audit(capture(name), "serverless")
    assert decision.tool == "serverless"
    assert undocumented(decision) == PRINT_UNDOCUMENTED
    assert forbidden(decision) == {LOCAL_USER_ID}
    assert decision.action is Action.LOG


def test_deploy_capture_reports_npm_dependencies() -> None:
    decision = audit(capture("serverless3-02"), "serverless")
    assert undocumented(decision) == DEPLOY_UNDOCUMENTED
    assert forbidden(decision) == {LOCAL_USER_ID}
    assert decision.action is Action.LOG


@pytest.mark.parametrize(
    ("url", "agent", "is_serverless"),
    [
        ("http://127.0.0.1:18081/", NODE_FETCH, True),
        ("http://localhost:18081/", NODE_FETCH, True),
        ("https://example.com/", NODE_FETCH, False),  # node-fetch's default User-Agent is not Serverless'
        ("http://127.0.0.1:18081/", "curl/8.5.0", False),
        ("http://127.0.0.1:18081/metrics", NODE_FETCH, False),
    ],
)
def test_local_catcher_match_is_narrow(url: str, agent: str, is_serverless: bool) -> None:
    decision = audit(json_request(url, [{"command": "print"}], {"User-Agent": agent}), "serverless")
    assert (decision.tool == "serverless") is is_serverless


def test_v1_segment_track_with_documented_fields_passes() -> None:
    request = json_request("https://api.segment.io/v1/track", V1_TRACK, {"User-Agent": NODE_FETCH})
    decision = audit(request, "serverless")
    assert (decision.tool, decision.action, decision.findings) == ("serverless", Action.ALLOW, ())


def test_v1_undocumented_field_is_reported() -> None:
    body = {**V1_TRACK, "properties": {**V1_TRACK["properties"], "cwd": "demo"}}  # type: ignore[dict-item]
    decision = audit(json_request("https://tracking.serverlessteam.com/v1/track", body), "serverless")
    assert undocumented(decision) == ["properties.cwd"]


def test_other_segment_clients_are_not_serverless() -> None:
    request = json_request("https://api.segment.io/v1/track", V1_TRACK, {"User-Agent": "analytics-node/6.2.0"})
    assert audit(request, "serverless").tool == ""


def test_v4_stacktrace_paths_are_redacted() -> None:
    body = {"events": [{"source": "cli", "event": {
        "event": "command.error", "timestamp": 1700000000000,
        "error": {"stacktrace": "at deploy (/home/alice/work/demo/node_modules/x/index.js:1:2)"}}}]}
    decision = audit(json_request("https://core.serverless.com/api/events/publish/bulk", body), "serverless")
    assert undocumented(decision) == ["events[].event.error.stacktrace"]
    assert decision.action is Action.REDACT
    assert b"/home/alice" not in (decision.redacted_body or b"")


def test_optout_switches_load() -> None:
    optout = load_policy(["serverless"]).optout
    assert {(s.kind, s.name or s.path or " ".join(s.command), s.expected) for s in optout} == {
        ("env", "SLS_TELEMETRY_DISABLED", "stops"),
        ("env", "SLS_TRACKING_DISABLED", "stops"),
        ("file", "~/.serverlessrc", "stops"),
        ("command", "serverless slstats --disable", "stops"),
        ("command", "serverless tracking --disable", "stops"),
        ("env", "DO_NOT_TRACK", "ignored"),
    }


def test_optout_expectations_follow_the_tool_version() -> None:
    # Serverless v3 is not expected to honour v1's `serverless tracking --disable`.
    switches = load_policy(["serverless"]).optout
    v3 = {" ".join(s.command) or s.name or s.path for s in switches if s.applies_to("3.40.0")}
    v1 = {" ".join(s.command) or s.name or s.path for s in switches if s.applies_to("1.83.3")}
    assert "serverless tracking --disable" not in v3 and "serverless slstats --disable" in v3
    assert "serverless tracking --disable" in v1 and "serverless slstats --disable" not in v1


def test_the_v1_authorization_allowlist_names_its_detector() -> None:
    # node-fetch's User-Agent is shared by many Node programs: a GitHub token in that header to a Segment
    # host is blocked with the tool packs on, as with the bare default.
    request = json_request("https://api.segment.io/v1/track", {"event": "x", "type": "track"}, {
        "User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Authorization": "Bearer ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"})
    decision = audit(request)
    assert decision.tool == "serverless" and decision.action is Action.BLOCK
