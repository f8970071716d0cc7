"""Large requests audited and acted on off the event loop (`proxy/workers.py` and the addon's large-body branch).

The worker's function runs in this process here (its pool swapped for threads, so a test can make it fail); the
real spawn pool behind a real proxy is in `test_channels.py`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from telemetry_audit.collectors.dispatch import dispatch
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import decode_request
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Decision, Request
from telemetry_audit.policy import load_policy
from telemetry_audit.proxy import workers
from telemetry_audit.proxy.addon import METADATA_KEY, TelemetryAudit
from telemetry_audit.proxy.workers import (
    OFF_LOOP_BYTES,
    Acting,
    AuditorRecipe,
    audit_in_worker,
    decision_metadata,
    dispatched,
    redacted_request,
)

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
EVENTS = 3000
ENVIRONMENT = AuditEnvironment(env={}, home="/home/alice", cwd="/home/alice/work", user="alice", hostname="box")


def batch(events: int = EVENTS, *, ids: bool = True, **extra: Any) -> bytes:
    """A PostHog batch above the off-loop threshold; each event carries a home path (redacted by default).

    Without `ids` its events have neither id nor timestamp: only a catalogued name makes it telemetry, not its shape.
    """
    body = json.dumps({"api_key": "phc_x", "batch": [
        {"event": "cli.run", **({"distinct_id": f"d{i}"} if ids else {}),
         "properties": {"cwd": f"/home/alice/project-{i}", **extra}}
        for i in range(events)]}).encode()
    assert len(body) >= OFF_LOOP_BYTES
    return body


def posthog(body: bytes, host: str = "us.i.posthog.com", path: str = "/batch/") -> Request:
    return Request("POST", "https", host, 443, path, (), (("content-type", "application/json"),), body)


def rows(path: str | Path) -> list[tuple[Any, ...]]:
    """A store's rows without id and time (what two stores recording the same request must share)."""
    with EventStore(path) as store:
        return [(e.good, e.reason, e.collector, e.tool, e.name, e.properties, e.raw, e.decision, e.request_meta)
                for e in store.all()]


@pytest.fixture
def worker() -> Iterator[None]:
    """The worker's Auditor, built in this process as a worker builds it."""
    workers._init_worker(AuditorRecipe((), frozenset(), ENVIRONMENT, False))
    yield
    workers._worker_auditor = None


def acting(tmp_path: Path, *, enforce: bool = True, offline: bool = True, block_style: str = "empty",
           collector: bool = False) -> Acting:
    return Acting(enforce=enforce, offline=offline, block_style=block_style, spool=str(tmp_path), collector=collector)


# --- what the worker does -------------------------------------------------------------------------------------


TELEMETRY_REDACT = Decision(Action.REDACT, telemetry=True)
TELEMETRY_BLOCK = Decision(Action.BLOCK, telemetry=True)


@pytest.mark.parametrize(("decision", "enforce", "offline", "style", "expected"), [
    (Decision(Action.ALLOW), True, True, "empty", None),  # not telemetry: nothing to answer
    (TELEMETRY_REDACT, True, True, "empty", False),
    (TELEMETRY_REDACT, True, False, "empty", None),  # online: it goes upstream
    (TELEMETRY_BLOCK, True, False, "empty", True),  # blocked with the emulator's success, even online
    (TELEMETRY_BLOCK, True, True, "kill", None),
    (TELEMETRY_BLOCK, True, True, "403", None),
    (TELEMETRY_BLOCK, False, True, "kill", False),  # audit mode: answered offline as it is
    (TELEMETRY_BLOCK, False, False, "empty", None),
])
def test_which_requests_the_worker_answers(tmp_path: Path, decision: Decision, enforce: bool, offline: bool,
                                           style: str, expected: bool | None) -> None:
    assert dispatched(decision, acting(tmp_path, enforce=enforce, offline=offline, block_style=style)) is expected


def test_the_worker_answers_and_stores_what_the_dispatcher_would_inline(worker: None, tmp_path: Path) -> None:
    request = posthog(batch())
    result = audit_in_worker([request], acting(tmp_path))

    auditor = Auditor(load_policy(None), ENVIRONMENT)
    decision = auditor.evaluate(request)
    assert result.decision.action is decision.action is Action.REDACT
    inline_store = tmp_path / "inline.sqlite"
    with EventStore(inline_store) as store:
        answer = dispatch(decode_request(redacted_request(request, decision)), store,
                          decision=decision_metadata(result.decision))
    assert result.prepared is not None and not result.prepared.blocked
    assert (result.prepared.status, result.prepared.headers, result.prepared.body) == (
        answer.status, answer.headers, answer.body)
    stored = rows(result.prepared.rows)
    assert stored == rows(inline_store)
    assert len(stored) == EVENTS and all(good for good, *_ in stored)
    assert "/home/alice" not in json.dumps([row[5] for row in stored])  # the emulator got the redacted batch
    result.prepared.discard()
    assert os.listdir(tmp_path) == ["inline.sqlite"]


def test_the_strictest_name_wins(worker: None, tmp_path: Path) -> None:
    body = batch(4000, ids=False)  # the Host header names a harmless host; the SNI names PostHog's (`audited_names`)
    result = audit_in_worker([posthog(body, "example.org", "/upload"), posthog(body, path="/upload")],
                             acting(tmp_path))
    assert result.index == 1 and result.decision.telemetry and result.prepared is not None


def test_a_blocked_batch_is_one_bad_row(worker: None, tmp_path: Path) -> None:
    result = audit_in_worker([posthog(batch(token=GITHUB_TOKEN))], acting(tmp_path))
    assert result.decision.action is Action.BLOCK
    assert result.prepared is not None and result.prepared.blocked and result.prepared.status == 200
    [row] = rows(result.prepared.rows)
    assert row[:2] == (False, "blocked by policy") and GITHUB_TOKEN not in json.dumps(row)


@pytest.mark.parametrize(("extra", "offline", "style"), [
    ({}, False, "empty"),  # redacted, and sent upstream
    ({"token": GITHUB_TOKEN}, True, "kill"),
])
def test_nothing_is_answered_or_left_behind_when_the_proxy_does_not_answer(
        worker: None, tmp_path: Path, extra: dict[str, str], offline: bool, style: str) -> None:
    result = audit_in_worker([posthog(batch(**extra))], acting(tmp_path, offline=offline, block_style=style))
    assert result.prepared is None and os.listdir(tmp_path) == []


def test_a_dispatcher_failure_propagates_and_leaves_no_rows(worker: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("emulator bug")

    monkeypatch.setattr(workers, "dispatch", explode)
    with pytest.raises(RuntimeError, match="emulator bug"):
        audit_in_worker([posthog(batch())], acting(tmp_path))
    assert os.listdir(tmp_path) == []



def test_the_worker_audits_with_the_collector_paused_and_resumes_it(worker: None, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A large body's tree would make the cyclic collector walk it, again and again, while the audit runs; the
    worker pauses it, and resumes it when done, even when the dispatcher fails."""
    seen: list[bool] = []
    answer = workers.dispatch

    def watching(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return answer(*args, **kwargs)

    monkeypatch.setattr(workers, "dispatch", watching)
    audit_in_worker([posthog(batch())], acting(tmp_path))
    assert seen == [False] and gc.isenabled()

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("emulator bug")

    monkeypatch.setattr(workers, "dispatch", explode)
    with pytest.raises(RuntimeError):
        audit_in_worker([posthog(batch())], acting(tmp_path))
    assert gc.isenabled()


# --- the addon's large-body branch ------------------------------------------------------------------------------


def large_flow(body: bytes) -> http.HTTPFlow:
    request = http.Request.make("POST", "https://us.i.posthog.com/batch/", body,
                                {"Content-Type": "application/json"})
    return tflow.tflow(req=request)


def run_large(addon: TelemetryAudit, tmp_path: Path, body: bytes, **options: Any) -> http.HTTPFlow:
    """Send one large flow through the addon on a running loop, its pool swapped for a thread; wait for it."""
    [flow] = run_large_flows(addon, tmp_path, [body], **options)
    return flow


def run_large_flows(addon: TelemetryAudit, tmp_path: Path, bodies: list[bytes],
                    **options: Any) -> list[http.HTTPFlow]:
    """Send large flows through the addon together, on a running loop, its pool swapped for as many threads as
    flows (their audits end together); wait for them all."""
    async def scenario() -> list[http.HTTPFlow]:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, taudit_log=str(tmp_path / "audit.jsonl"), taudit_store=str(tmp_path / "s.sqlite"),
                           **options)
            assert addon.pool is not None
            workers._init_worker(addon.pool.recipe)
            with ThreadPoolExecutor(len(bodies)) as threads:
                addon.pool.executor = lambda: threads  # type: ignore[method-assign]
                flows = [large_flow(body) for body in bodies]
                for flow in flows:
                    addon.request(flow)
                    assert flow.intercepted  # waiting for the worker, while the loop goes on
                for _ in range(6000):
                    if not any(flow.intercepted for flow in flows):
                        break
                    await asyncio.sleep(0.01)
                assert not any(flow.intercepted for flow in flows)
            spool = addon.pool.spool()
            assert os.listdir(spool) == []  # the worker's rows were moved in (or dropped), never left behind
            addon.done()
            return flows

    try:
        return asyncio.run(scenario())
    finally:
        workers._worker_auditor = None


def log_records(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("record") == "request"]


def test_a_large_request_is_audited_recorded_answered_and_stored(tmp_path: Path) -> None:
    flow = run_large(TelemetryAudit(ENVIRONMENT), tmp_path, batch())
    assert flow.response is not None and flow.response.status_code == 200 and flow.error is None
    assert flow.metadata[METADATA_KEY]["decision"] == "redact"
    [record] = log_records(tmp_path)
    assert record["decision"] == "redact" and record["answered_by"] == "emulator:posthog"
    assert len(record["findings"]) + record.get("findings_omitted", 0) >= EVENTS
    with EventStore(tmp_path / "s.sqlite") as store:
        assert store.counts(collector="posthog") == {"total": EVENTS, "good": EVENTS, "bad": 0}
        [first] = store.all(limit=1)
    assert first.decision is not None and first.decision["decision"] == "redact"
    assert "/home/alice" not in json.dumps(first.properties)


def test_large_requests_finishing_together_are_each_answered_and_stored(tmp_path: Path) -> None:
    """Their rows move into the store one batch after the other (two copies at once once killed one flow)."""
    flows = run_large_flows(TelemetryAudit(ENVIRONMENT), tmp_path, [batch()] * 3)
    assert [(f.response and f.response.status_code, f.error) for f in flows] == [(200, None)] * 3
    with EventStore(tmp_path / "s.sqlite") as store:
        assert store.counts(collector="posthog") == {"total": 3 * EVENTS, "good": 3 * EVENTS, "bad": 0}


def test_a_worker_that_fails_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("emulator bug")

    monkeypatch.setattr(workers, "dispatch", explode)
    flow = run_large(TelemetryAudit(ENVIRONMENT), tmp_path, batch())
    [record] = log_records(tmp_path)
    assert record["decision"] == "block"  # the policy's error_action
    assert any(f["rule_id"] == "audit-error" for f in record["findings"])
    assert flow.request.raw_content == batch()  # nothing was rewritten or sent on; the tool got a local answer
    assert flow.response is not None and flow.response.status_code == 200


def test_acting_that_fails_after_the_worker_kills_the_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: EventStore, path: str, **kwargs: Any) -> Iterator[int]:
        raise OSError("disk gone")

    monkeypatch.setattr(EventStore, "absorbing", explode)
    flow = run_large(TelemetryAudit(ENVIRONMENT), tmp_path, batch())
    assert flow.error is not None and flow.error.msg == flow.error.KILLED_MESSAGE  # answered, but not stored


def test_telemetry_no_emulator_speaks_keeps_its_masked_payload(worker: None, tmp_path: Path) -> None:
    """Built in the worker, where the body is decoded (the proxy would otherwise decode megabytes again)."""
    result = audit_in_worker([posthog(batch(), "telemetry.example.test", "/ingest")], acting(tmp_path, offline=True))
    assert result.decision.telemetry and result.payload is not None
    assert result.payload["format"] == "json" and result.payload["truncated"]
    assert "/home/alice" not in json.dumps(result.payload)
    assert result.prepared is not None
    [row] = rows(result.prepared.rows)
    assert row[-1]["payload"] == result.payload  # the store keeps it instead of the raw body


def test_the_collector_answers_what_is_not_telemetry(worker: None, tmp_path: Path) -> None:
    request = Request("POST", "http", "127.0.0.1", 9, "/nowhere", (), (), b"x" * OFF_LOOP_BYTES)
    result = audit_in_worker([request], acting(tmp_path, offline=True, collector=True))
    assert result.prepared is not None and result.prepared.status == 404
