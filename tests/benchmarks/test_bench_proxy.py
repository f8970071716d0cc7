"""Smoke test for `benchmarks/bench_proxy.py`: a tiny run through real proxies on 127.0.0.1 gives sane figures.

Nothing here is timed: the figures only have to be well-formed, every request answered 200, and every
request seen by the telemetry-audit proxies recorded in their audit logs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from benchmarks import bench_proxy
from telemetry_audit.collectors import find_collector
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Request
from telemetry_audit.policy import load_policy

TINY = bench_proxy.Config(requests=8, concurrency=2, latency_requests=4, warmup=1, new_connection_requests=4,
                          repeat=1, max_seconds=30.0)


def test_corpus_is_one_kilobyte_json_that_the_default_policy_allows() -> None:
    auditor = Auditor(load_policy(), AuditEnvironment(env={}, home="/home/alice", cwd="/home/alice/work",
                                                      user="alice", hostname="alice-laptop"))
    corpus = bench_proxy.make_corpus(20)
    assert {t.host for t in corpus} == {"api.segment.io", "us.i.posthog.com"}
    for telemetry in corpus:
        assert len(set(telemetry.bodies)) == len(telemetry.bodies)
        for body in telemetry.bodies:
            assert 1000 <= len(body) <= 1100
            json.loads(body)
            request = Request.from_url("POST", f"https://{telemetry.host}{telemetry.path}", telemetry.headers, body)
            assert find_collector(request) is not None
            decision = auditor.evaluate(request)
            assert decision.telemetry and decision.action is Action.ALLOW, decision.findings


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([3.0, 1.0, 2.0], 50, 2.0),
    ([float(v) for v in range(1, 101)], 99, 99.0),
    ([5.0], 99, 5.0),
])
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert bench_proxy.percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(bench_proxy.percentile([], 50))


@pytest.fixture(scope="module")
def figures() -> dict[str, object]:
    if not Path(TINY.mitmdump).exists():
        pytest.skip(f"no mitmdump at {TINY.mitmdump}")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    result = bench_proxy.run_benchmark(TINY)
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity  # the test process is not left pinned
    return result


def test_every_target_and_scheme_has_sane_figures(figures: dict) -> None:
    rows = {(row["scheme"], row["target"]): row for row in figures["rows"]}
    assert set(rows) == {(s, t) for s in bench_proxy.SCHEMES for t in bench_proxy.TARGETS}
    expected = TINY.requests + TINY.latency_requests + TINY.new_connection_requests
    for (scheme, target), row in rows.items():
        assert row["errors"] == 0, (scheme, target)
        assert row["requests"] == expected and row["statuses"] == {"200": expected}
        assert row["rps"] > 0 and row["new_connection_rps"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] and 0 < row["load_p50_ms"] <= row["load_p99_ms"]
        assert row["client_cpu"] >= 0
        if target == bench_proxy.DIRECT:
            assert row["added_p50_ms"] is None and row["rps_vs_bare"] is None
        else:
            assert isinstance(row["added_p50_ms"], float) and isinstance(row["added_p99_ms"], float)
            assert row["rps_vs_bare"] > 0
    assert rows[("http", bench_proxy.BARE)]["rps_vs_bare"] == 1.0


def test_the_auditing_proxies_recorded_every_request(figures: dict) -> None:
    audits = figures["audits"]
    assert {a["target"] for a in audits} == {bench_proxy.OURS, bench_proxy.ADDON}
    for audit in audits:
        assert audit["sent"] > 0 and audit["audited"] == audit["sent"], audit


def test_report_names_every_target_and_the_ratios(figures: dict) -> None:
    report = bench_proxy.format_report(figures)
    for label in bench_proxy.TARGET_LABELS.values():
        assert label in report
    assert "http: telemetry-audit proxy / bare mitmdump:" in report
    assert "https: addon in mitmdump / bare mitmdump:" in report


def test_main_prints_json_for_one_target(capsys: pytest.CaptureFixture[str]) -> None:
    bench_proxy.main(["--requests", "4", "--concurrency", "2", "--latency-requests", "2", "--warmup", "1",
                      "--new-connection-requests", "0", "--repeat", "1", "--scheme", "http",
                      "--target", "telemetry-audit", "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert [(r["scheme"], r["target"]) for r in figures["rows"]] == [("http", "direct"), ("http", "telemetry-audit")]
    assert figures["rows"][1]["rps_vs_bare"] is None  # no bare mitmdump to compare with
    assert figures["rows"][1]["new_connection_rps"] is None


def test_main_rejects_fewer_requests_than_connections() -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_proxy.main(["--requests", "2", "--concurrency", "4"])
    assert exit_info.value.code == 2


def test_stall_scenario_reports_every_small_request_and_the_slow_ones() -> None:
    """Against a local server that answers small requests at once and the large one after 0.6 s (no proxy)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            if b"/batch/" in head.split(b"\r\n")[0]:
                time.sleep(0.6)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        figures = bench_proxy.stall_scenario("127.0.0.1", server.getsockname()[1], interval=0.05,
                                             body=b'{"batch":[]}')
    finally:
        server.close()
    assert figures["large_status"] == 200 and figures["large_seconds"] >= 0.6
    assert figures["small_requests"] >= 3 and figures["small_answered"] == figures["small_requests"]
    assert figures["median_small_seconds"] <= figures["p99_small_seconds"] <= figures["worst_small_seconds"]
    assert figures["over_half_second"] == 0
    assert all(latency > bench_proxy.SLOW_SMALL_SECONDS for _, latency in figures["slow_small"])


def test_stall_body_holds_a_path_or_an_email_in_every_event() -> None:
    batch = json.loads(bench_proxy.stall_body(100))["batch"]
    assert len(batch) == 100
    assert all(("/home/" in json.dumps(e)) != ("@" in json.dumps(e)) for e in batch)
