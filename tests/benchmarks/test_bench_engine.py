"""Smoke test for `benchmarks/bench_engine.py`: it runs on a tiny corpus and its figures are sane (not timed)."""

from __future__ import annotations

import math

import pytest

from benchmarks import bench_engine
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action
from telemetry_audit.policy import load_policy


def test_corpus_events_are_about_one_kilobyte_and_vary() -> None:
    events = bench_engine.make_corpus(40)
    sizes = [len(e.request.body) for e in events]
    assert all(900 <= size <= 1400 for size in sizes)
    assert len({e.request.body for e in events}) == len(events)
    assert {e.request.host for e in events} >= {"telemetry.ion.sst.dev", "tracking.serverlessteam.com"}


def test_planted_leaks_are_flagged_and_clean_events_pass() -> None:
    auditor = Auditor(load_policy(["default"]), bench_engine.ENVIRONMENT)  # what bench_engine measures
    events = bench_engine.make_corpus(200, leak_rate=0.2)
    assert any(e.leaked for e in events)
    for event in events:
        action = auditor.evaluate(event.request).action
        assert (action is not Action.ALLOW) == event.leaked, event.request.body


def test_big_request_has_the_requested_size() -> None:
    request, document = bench_engine.make_big_request(200_000)
    assert 200_000 <= len(request.body) < 205_000
    assert len(document["batch"]) > 150


def test_run_returns_sane_figures() -> None:
    pytest.importorskip("detect_secrets")
    figures = bench_engine.run(events=40, repeat=1, big_bytes=100_000, ds_events=5)
    for rate in (figures.events_per_s, figures.best_events_per_s, figures.ds_events_per_s, figures.big_mb_per_s,
                 figures.big_ds_mb_per_s):
        assert rate > 0 and math.isfinite(rate)
    assert figures.best_events_per_s >= figures.events_per_s
    assert 0 < figures.clean_events < figures.events and figures.clean_cpu_events_per_s > 0
    assert figures.leaked_cpu_us > 0 and math.isfinite(figures.leaked_cpu_us)
    assert sum(figures.actions.values()) == figures.events == 40
    assert figures.big_shipped_inspected and figures.big_leak_found
    assert figures.big_action in ("redact", "block")
    names = [name for name, _ in figures.breakdown]
    assert names[-1] == "total Auditor.evaluate"
    assert any(name.startswith("detectors: secrets") for name in names)
    assert names[:3] == ["route (telemetry by name or payload, rules)", "decode (codings, charset, JSON parse)",
                         "scan text (one string of every value)"]
    assert all(seconds >= 0 for _, seconds in figures.breakdown) and figures.breakdown[-1][1] > 0


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    bench_engine.main(["--events", "20", "--repeat", "1", "--big-mb", "0.05", "--no-detect-secrets"])
    out = capsys.readouterr().out
    assert "1 KB events, Auditor.evaluate" in out
    assert "where the time goes" in out
    assert "target 20,000 events/s" in out
