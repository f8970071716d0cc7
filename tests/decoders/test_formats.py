"""`collector_paused`: a large body is read and audited with the cyclic garbage collector paused, and resumed after."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator

import pytest

from telemetry_audit.decoders.formats import LARGE_DOCUMENT_BYTES, collector_paused
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action
from telemetry_audit.policy import load_policy
from tests.factories import json_request


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection that runs meanwhile, with thresholds low enough that any reading of a
    large body would trigger many."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.set_threshold(500, 5, 5)
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)


def test_a_large_size_pauses_and_resumes() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_resumes_after_an_error() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("audit failed")
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_nested_and_concurrent_pauses_resume_once_the_last_ends() -> None:
    inside = threading.Event()
    release = threading.Event()

    def other_audit() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_audit)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other audit still runs
    release.set()
    thread.join(10)
    assert gc.isenabled()


def large_batch(events: int = 2000) -> bytes:
    event = {"event": "cli_cmd", "properties": {"command": "deploy", "duration_ms": 4127, "flags": ["--stage", "dev"],
                                               "ids": [{"k": i} for i in range(8)]}}
    return json.dumps({"batch": [event] * events, "api_key": "phc_" + "a" * 40}).encode()


def test_evaluating_a_large_body_runs_no_collection(collections: list[int]) -> None:
    body = large_batch()
    assert len(body) >= LARGE_DOCUMENT_BYTES
    auditor = Auditor(load_policy(["default"]), AuditEnvironment())
    request = json_request(json.loads(body), url="https://us.i.posthog.com/batch/")
    auditor.evaluate(json_request({"event": "warm-up"}))  # builds the detectors
    gc.collect()  # no young object left over from the set-up counts toward the next collection
    collections.clear()
    decision = auditor.evaluate(request)
    assert decision.action is Action.ALLOW
    assert collections == []
    assert gc.isenabled()


def test_the_same_body_below_the_size_would_collect(collections: list[int]) -> None:
    """The other side of the test above: reading this many containers does trigger collections unpaused."""
    json.loads(large_batch())
    assert collections
