"""The policy the session hands its proxy child: the same decisions as a policy loaded from the files, taken only
for the options it was loaded from, and a clear error for anything else on the pipe."""

from __future__ import annotations

import base64
import pickle
import zlib
from typing import Any

import pytest
from mitmproxy.test import taddons

from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Request
from telemetry_audit.policy import load_policy
from telemetry_audit.policy.model import Policy
from telemetry_audit.proxy import addon as addon_module
from telemetry_audit.proxy.addon import TelemetryAudit
from telemetry_audit.proxy.handover import HandedPolicy, decode_policy, encode_policy
from tests.factories import json_request

GITHUB_TOKEN = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"

REQUESTS = [
    json_request({"event": "cli_run", "properties": {"token": GITHUB_TOKEN}}),
    json_request({"event": "cli_run", "properties": {"cwd": "/home/alice/src/secret-project"}}),
    json_request({"event": "cli_run", "properties": {"email": "alice@example.com"}}),
    json_request({"event": "cli_run", "properties": {"version": "1.2.3"}}),
    json_request({"event": "page"}, url="https://us.i.posthog.com/batch/"),
    Request.from_url("GET", "https://example.org/index.html", {}, b""),
]


def _summary(auditor: Auditor, request: Request) -> tuple[Any, ...]:
    decision = auditor.evaluate(request)
    return (decision.action, decision.telemetry, decision.tool, decision.rule_ids, decision.redacted_body,
            tuple((f.rule_id, f.detector, f.field, f.severity, f.action, f.fingerprint, f.suppressed)
                  for f in decision.findings))


@pytest.mark.parametrize("sources", [(), ("default",)])
def test_a_handed_policy_decides_as_the_one_loaded_from_the_files(sources: tuple[str, ...]) -> None:
    loaded = load_policy(list(sources) or None)
    handed = decode_policy(encode_policy(loaded, sources, ""))
    assert handed.sources == sources and handed.baseline == ""
    environment = AuditEnvironment.current({"HOME": "/home/alice", "USER": "alice"})
    fresh, copy = Auditor(loaded, environment), Auditor(handed.policy, environment)
    assert [_summary(copy, r) for r in REQUESTS] == [_summary(fresh, r) for r in REQUESTS]
    assert handed.policy.files == loaded.files and len(handed.policy.rules) == len(loaded.rules)


@pytest.mark.parametrize(("sources", "baseline", "fits"), [
    ((), "", True),
    (["default"], "", False),
    ((), "/tmp/baseline.json", False),
])
def test_a_handed_policy_fits_only_the_options_it_was_loaded_from(sources: Any, baseline: str, fits: bool) -> None:
    handed = HandedPolicy(Policy(rules=()), (), "")
    assert handed.fits(sources, baseline) is fits


def test_a_policy_that_cannot_be_pickled_is_not_handed() -> None:
    unpicklable = Policy(rules=(), files=(lambda: None,))  # type: ignore[arg-type]
    assert encode_policy(unpicklable, (), "") == ""


def _encoded(value: object) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(value))).decode("ascii")


@pytest.mark.parametrize(("text", "message"), [
    ("not base64 !", "cannot be read"),
    (base64.b64encode(b"not zlib").decode(), "cannot be read"),
    (base64.b64encode(zlib.compress(b"not a pickle")).decode(), "cannot be read"),
    (_encoded(((), "", {"rules": []})), "is not one the session wrote"),
    (_encoded(("default", "", Policy(rules=()))), "is not one the session wrote"),
    (_encoded([1, 2]), "cannot be read"),
])
def test_anything_else_is_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_policy(text)


def test_the_addon_takes_a_fitting_policy_instead_of_loading_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    handed = decode_policy(encode_policy(load_policy(None), (), ""))
    loads: list[Any] = []
    monkeypatch.setattr(addon_module, "load_policy", lambda *args, **kwargs: loads.append(args) or load_policy(None))
    audit = TelemetryAudit(policy=handed)
    with taddons.context(audit) as tctx:
        tctx.configure(audit)
        assert audit.auditor is not None and audit.auditor.policy is handed.policy
    assert loads == []


@pytest.mark.parametrize(("sources", "baseline"), [(("default",), ""), ((), "baseline.json")])
def test_the_addon_loads_the_files_when_the_options_name_others(sources: tuple[str, ...], baseline: str) -> None:
    handed = HandedPolicy(load_policy(["default"]), sources, baseline)
    audit = TelemetryAudit(policy=handed)
    with taddons.context(audit) as tctx:
        tctx.configure(audit)  # its options: the default policy, no baseline
        assert audit.auditor is not None and audit.auditor.policy is not handed.policy
        assert audit.auditor.policy.files == load_policy(None).files
    assert audit.handed_policy is None  # never taken later, whatever the options say then
