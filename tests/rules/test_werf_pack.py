"""rules/werf.yaml on OTLP protobuf requests built to werf's published schema (tests/rules/werf_otlp.py)."""

from __future__ import annotations

import importlib.util
import json

from telemetry_audit.cli import main
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action
from telemetry_audit.policy import load_policy
from tests.rules import werf_otlp
from tests.rules.audit import OTLP, ROOT, audit, capture, environment, forbidden, undocumented

SPAN = "resourceSpans[].scopeSpans[].spans[]"
USER_ID = ("werf.promises", "werf.user-id", "resourceSpans[0].scopeSpans[0].spans[0].attributes.userID", "log")


def _without_user_id(event: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in event.items() if k != "userID"}


def test_pack_validates() -> None:
    assert main(["rules", "validate", str(ROOT / "rules" / "werf.yaml")]) == 0


def test_fixtures_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate", OTLP / "generate_werf_captures.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, data in generator.fixtures().items():
        assert (OTLP / name).read_text("utf-8") == generator.render(data), f"regenerate {name}"


def test_documented_fields_pass() -> None:
    events = (_without_user_id(werf_otlp.command_started()), _without_user_id(werf_otlp.command_exited()))
    decision = audit(werf_otlp.werf_request(*events), "werf")
    assert (decision.tool, decision.action, decision.findings) == ("werf", Action.ALLOW, ())


def test_fixture_reports_the_undocumented_user_id() -> None:
    # werf sends userID; its page says the data "is not associated with users in any way".
    decision = audit(capture("werf-CommandStarted", OTLP), "werf")
    assert undocumented(decision) == [f"{SPAN}.attributes.userID"]
    assert forbidden(decision) == {USER_ID}
    assert decision.action is Action.LOG


def test_an_undocumented_attribute_is_reported() -> None:
    event = _without_user_id(werf_otlp.command_started(gitBranch="feature/payroll"))
    event["attributes"] = {**werf_otlp.ENVIRONMENT, "kubeVersion": "1.30"}
    decision = audit(werf_otlp.werf_request(event), "werf")
    assert undocumented(decision) == [f"{SPAN}.attributes.attributes.kubeVersion", f"{SPAN}.attributes.gitBranch"]
    assert forbidden(decision) == set()


def test_a_home_path_inside_event_data_is_redacted() -> None:
    error = "open /home/alice/work/demo/werf.yaml: no such file or directory"
    event = _without_user_id(werf_otlp.command_exited(eventData={"exitCode": 1, "durationMs": 12, "error": error}))
    decision = audit(werf_otlp.werf_request(event), "werf")
    field = "resourceSpans[0].scopeSpans[0].spans[0].attributes.eventData.error"
    assert undocumented(decision) == [f"{SPAN}.attributes.eventData.error"]
    assert ("default.paths", "paths.home-dir", field, "redact") in forbidden(decision)
    assert decision.action is Action.REDACT

    assert decision.redacted_body is not None
    span = werf_otlp.parse(decision.redacted_body).resource_spans[0].scope_spans[0].spans[0]
    attributes = {kv.key: kv.value for kv in span.attributes}
    event_data = json.loads(attributes["eventData"].string_value)  # still a JSON string, re-serialised
    assert "/home/alice" not in event_data["error"] and "[REDACTED:path]" in event_data["error"]
    assert (event_data["exitCode"], attributes["command"].string_value) == (1, "werf converge")


OTHER_HOST = "https://otel.corp.example/v1/traces"


def test_other_otlp_traffic_is_not_werf() -> None:
    # An application's own spans (no werf event attributes) on another collector: not werf's, whatever host.
    app_span = {"http.method": "GET", "http.route": "/orders", "schemaVersion": 1, "eventType": "request"}
    for url in (OTHER_HOST, werf_otlp.URL.replace("telemetry.werf.io", "telemetry.example.org")):
        decision = audit(werf_otlp.werf_request(app_span, url=url), "werf")
        assert decision.tool == "" and not {"werf.events", "werf.promises"} & set(decision.rule_ids)


def test_werf_spans_sent_elsewhere_are_werf_by_their_shape() -> None:
    # WERF_TELEMETRY_TRACE_URL moves the spans to any host: the payload shape gives werf's attribution and checks.
    event = _without_user_id(werf_otlp.command_started(projectID="https://gitlab.acme.example/payroll/api.git",
                                                       gitBranch="feature/payroll"))
    decision = audit(werf_otlp.werf_request(event, url=OTHER_HOST), "werf")
    assert decision.tool == "werf" and {"werf.events", "werf.promises"} <= set(decision.rule_ids)
    assert undocumented(decision) == [f"{SPAN}.attributes.gitBranch"]
    assert ("werf.promises", "werf.project-id-not-a-digest",
            "resourceSpans[0].scopeSpans[0].spans[0].attributes.projectID", "redact") in forbidden(decision)
    assert decision.action is Action.REDACT


def test_a_shape_needs_every_werf_key() -> None:
    # Three of the four event attributes are not werf's shape.
    event = {k: v for k, v in _without_user_id(werf_otlp.command_started()).items() if k != "executionID"}
    assert audit(werf_otlp.werf_request(event, url=OTHER_HOST), "werf").tool == ""


def test_a_shape_never_makes_a_request_be_decoded() -> None:
    # Without --audit-all a request no rule reads is not decoded, so a shape cannot match it: werf's spans on a
    # path that is not telemetry pass as ordinary traffic, exactly like any other tool's there.
    request = werf_otlp.werf_request(_without_user_id(werf_otlp.command_started()),
                                     url="https://collector.corp.example/ingest/spans")
    decision = Auditor(load_policy(["werf"]), environment()).evaluate(request)
    assert (decision.telemetry, decision.tool, decision.action) == (False, "", Action.ALLOW)


def test_optout_switches_load() -> None:
    (switch,) = load_policy(["werf"]).optout
    assert (switch.tool, switch.kind, switch.name, switch.value, switch.expected) == (
        "werf", "env", "WERF_TELEMETRY", "0", "stops")


def test_a_project_id_that_is_not_a_sha256_is_a_violation() -> None:
    # The page promises a checksum of the git origin URL; a raw URL there identifies the project.
    event = _without_user_id(werf_otlp.command_started(projectID="https://gitlab.acme.example/payroll/api.git"))
    decision = audit(werf_otlp.werf_request(event), "werf")
    assert ("werf.promises", "werf.project-id-not-a-digest", "resourceSpans[0].scopeSpans[0].spans[0].attributes"
            ".projectID", "redact") in forbidden(decision)
    assert decision.action is Action.REDACT


def test_the_envelope_allow_list_names_each_key() -> None:
    # `service.*`, `scope`, `status` and `trdl*` wildcards each let an identifier through in a probe.
    request = werf_otlp.werf_request(_without_user_id(werf_otlp.command_started()))
    decision = audit(request, "werf")
    assert decision.findings == ()
    rule = load_policy(["werf"]).rule("werf.events")
    assert rule is not None and rule.fields is not None
    for probe in ("resourceSpans[].resource.attributes.service.owner_email",
                  "resourceSpans[].scopeSpans[].scope.attributes",
                  "resourceSpans[].scopeSpans[].spans[].status.message",
                  "resourceSpans[].scopeSpans[].spans[].attributes.attributes.trdlUser"):
        assert not rule.fields.is_allowed(probe), probe


def test_the_trdl_group_channel_is_documented_by_its_exact_key() -> None:
    environment_attributes = {**werf_otlp.ENVIRONMENT, "groupChannel": "2 stable", "trdlUser": "alice"}
    event = _without_user_id(werf_otlp.command_started(attributes=environment_attributes))
    decision = audit(werf_otlp.werf_request(event), "werf")
    assert undocumented(decision) == [f"{SPAN}.attributes.attributes.trdlUser"]
