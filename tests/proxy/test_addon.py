"""The mitmproxy addon in mitmproxy's own test harness (taddons/tflow): options, actions, metadata, log."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow

from telemetry_audit.proxy.addon import METADATA_KEY, TelemetryAudit

GITHUB_TOKEN = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"
PLANTED_SECRETS = (GITHUB_TOKEN,)


def telemetry_flow(body: Any, host: str = "api.segment.io", path: str = "/v1/track",
                   headers: dict[str, str] | None = None, raw: bytes | None = None) -> http.HTTPFlow:
    content = raw if raw is not None else json.dumps(body).encode()
    request = http.Request.make("POST", f"https://{host}{path}", content,
                                {"Content-Type": "application/json", **(headers or {})})
    return tflow.tflow(req=request)


@pytest.fixture
def addon() -> TelemetryAudit:
    return TelemetryAudit()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_secret_is_blocked_with_an_empty_success_and_annotated(addon: TelemetryAudit, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_log=str(log))
        flow = telemetry_flow({"event": "x", "properties": {"token": GITHUB_TOKEN}})
        addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 200
    assert json.loads(flow.response.content) == {"success": True}  # Segment's own success shape
    meta = flow.metadata[METADATA_KEY]
    assert meta["decision"] == "block" and meta["findings"][0]["kind"] == "secret"
    assert flow.marked and "secret" in flow.comment and GITHUB_TOKEN not in flow.comment
    [record] = records(log)
    assert record["decision"] == "block" and GITHUB_TOKEN not in log.read_text()


def test_redaction_rewrites_gzip_body_and_length(addon: TelemetryAudit) -> None:
    body = gzip.compress(json.dumps({"event": "x", "cwd": "/home/alice/private"}).encode())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_offline=False)
        flow = telemetry_flow(None, raw=body, headers={"Content-Encoding": "gzip", "Content-Length": str(len(body))})
        addon.request(flow)
    assert flow.response is None  # online: the rewritten request goes upstream
    assert flow.request.headers["content-encoding"] == "gzip"
    assert int(flow.request.headers["content-length"]) == len(flow.request.raw_content)
    assert b"/home/alice" not in gzip.decompress(flow.request.raw_content)


def test_audit_mode_modifies_nothing(addon: TelemetryAudit) -> None:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_mode="audit", taudit_offline=False)
        flow = telemetry_flow({"token": GITHUB_TOKEN})
        before = flow.request.raw_content
        addon.request(flow)
    assert flow.response is None and flow.request.raw_content == before
    assert flow.metadata[METADATA_KEY]["decision"] == "block"


@pytest.mark.parametrize(("style", "check"), [
    ("kill", lambda f: f.error is not None or f.killable is False),
    ("403", lambda f: f.response is not None and f.response.status_code == 403),
])
def test_block_styles(addon: TelemetryAudit, style: str, check: Any) -> None:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_block_style=style)
        flow = telemetry_flow({"token": GITHUB_TOKEN})
        addon.request(flow)
    assert check(flow)


def test_offline_answers_with_the_emulated_collector_and_stores_events(addon: TelemetryAudit) -> None:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_offline=True, taudit_inspection_token="s3ssion-token")
        flow = telemetry_flow({"type": "track", "event": "deploy", "userId": "u1"})
        addon.request(flow)
        assert flow.response is not None and json.loads(flow.response.content) == {"success": True}
        stranger = tflow.tflow(req=http.Request.make("GET", "http://telemetry-audit.local/micro/good"))
        addon.request(stranger)  # tflow's client is no local user we can name, and it has no token
        assert stranger.response is not None and stranger.response.status_code == 403
        inspect = tflow.tflow(req=http.Request.make("GET", "http://telemetry-audit.local/micro/good",
                                                    headers={"X-Telemetry-Audit-Token": "s3ssion-token"}))
        addon.request(inspect)
    assert inspect.response is not None and inspect.response.status_code == 200
    listing = json.loads(inspect.response.content)
    assert "deploy" in json.dumps(listing)


def test_offline_is_the_default(addon: TelemetryAudit) -> None:
    with taddons.context(addon):
        flow = tflow.tflow(req=http.Request.make("GET", "https://pypi.org/simple/"))
        addon.request(flow)
        assert flow.response is not None and flow.response.status_code == 502


def test_non_telemetry_passes_online_and_fails_offline(addon: TelemetryAudit) -> None:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_offline=False)
        flow = tflow.tflow(req=http.Request.make("GET", "https://pypi.org/simple/"))
        addon.request(flow)
        assert flow.response is None and METADATA_KEY not in flow.metadata
        tctx.configure(addon, taudit_offline=True)
        flow = tflow.tflow(req=http.Request.make("GET", "https://pypi.org/simple/"))
        addon.request(flow)
        assert flow.response is not None and flow.response.status_code == 502


def test_broken_policy_raises_options_error_naming_file_and_line(addon: TelemetryAudit, tmp_path: Path) -> None:
    policy = tmp_path / "broken.yaml"
    policy.write_text("rules:\n  - id: x\n    match: {telemetry: true}\n    severity: urgent\n")
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError) as caught:
            tctx.configure(addon, taudit_policy=[str(policy)])
    assert f"{policy}:4:15" in str(caught.value)


def test_unwritable_log_is_refused_at_configure(addon: TelemetryAudit, tmp_path: Path) -> None:
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="cannot open audit log"):
            tctx.configure(addon, taudit_log=str(tmp_path / "missing-dir" / "audit.jsonl"))


def test_log_failure_stops_the_proxy_and_kills_the_flow(addon: TelemetryAudit, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit.proxy import auditlog

    log = tmp_path / "audit.jsonl"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_log=str(log))

        def fail(fd: int, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(auditlog.os, "write", fail)
        shutdowns: list[bool] = []
        monkeypatch.setattr(tctx.master, "shutdown", lambda: shutdowns.append(True))
        flow = telemetry_flow({"event": "x"})
        addon.request(flow)
    assert shutdowns == [True]
    assert flow.error is not None  # killed: nothing went through unrecorded


def test_adapter_failure_fails_closed(addon: TelemetryAudit, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit.proxy import addon as addon_module

    def explode(flow: Any) -> Any:
        raise RuntimeError("adapter bug")

    with taddons.context(addon):
        monkeypatch.setattr(addon_module, "request_from_flow", explode)
        flow = telemetry_flow({"event": "x"})
        addon.request(flow)
    assert flow.metadata[METADATA_KEY]["decision"] == "block"


def test_streaming_is_switched_off_for_inspection(addon: TelemetryAudit) -> None:
    with taddons.context(addon):
        flow = telemetry_flow({"event": "x"})
        flow.request.stream = True
        addon.requestheaders(flow)
    assert not flow.request.stream


def test_flows_already_answered_are_left_alone(addon: TelemetryAudit) -> None:
    with taddons.context(addon):
        flow = tflow.tflow(resp=True)
        before = flow.response
        addon.request(flow)
    assert flow.response is before and METADATA_KEY not in flow.metadata


def test_a_harmless_host_header_does_not_dodge_the_audit(addon: TelemetryAudit) -> None:
    with taddons.context(addon):
        flow = telemetry_flow({"token": GITHUB_TOKEN})  # to api.segment.io...
        flow.request.headers["Host"] = "docs.example.org"  # ...claiming to be for somebody else
        addon.request(flow)
    assert flow.metadata[METADATA_KEY]["decision"] == "block"


def test_the_proxy_reads_a_body_once_for_the_audit_and_the_emulator(addon: TelemetryAudit,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode once: the engine's `DecodedRequest` is what the emulator answers from (one decompression in all),
    even with the Host header naming the collector a second time."""
    import gzip

    import telemetry_audit.decoders as decoders_module
    from telemetry_audit.collectors import dispatch as dispatch_module

    calls: list[tuple[str, ...]] = []
    real = decoders_module.decompress_partial

    def counting(data: bytes, encodings: tuple[str, ...], limit: int) -> Any:
        calls.append(tuple(encodings))
        return real(data, encodings, limit)

    handed: list[Any] = []
    real_dispatch = dispatch_module.dispatch

    def recording(decoded: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(decoded)
        return real_dispatch(decoded, *args, **kwargs)

    monkeypatch.setattr(decoders_module, "decompress_partial", counting)
    monkeypatch.setattr(addon_module_for_dispatch(), "dispatch", recording)
    body = gzip.compress(json.dumps({"type": "track", "event": "deploy", "userId": "u1"}).encode())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_offline=True)
        flow = telemetry_flow(None, raw=b"", headers={"Content-Encoding": "gzip", "Host": "api.segment.io"})
        flow.request.raw_content = body  # as sent: `Request.make` would encode the content once more
        addon.request(flow)
    assert flow.response is not None and json.loads(flow.response.content) == {"success": True}
    assert calls == [("gzip",)]
    [decoded] = handed
    assert decoded.plain_body is not None and b"deploy" in decoded.plain_body


def addon_module_for_dispatch() -> Any:
    from telemetry_audit.proxy import addon as addon_module

    return addon_module


def test_option_changes_reach_the_next_flow(addon: TelemetryAudit, tmp_path: Path) -> None:
    """The addon reads its options once per `configure`: a change must still decide the very next flow."""
    log = tmp_path / "audit.jsonl"
    secret = {"event": "x", "properties": {"token": GITHUB_TOKEN}}
    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_log=str(log), taudit_block_style="403")
        blocked = telemetry_flow(secret)
        addon.request(blocked)
        tctx.configure(addon, taudit_mode="audit", taudit_session="s-2")
        audited = telemetry_flow(secret)
        addon.request(audited)
    assert blocked.response is not None and blocked.response.status_code == 403
    assert audited.response is not None and json.loads(audited.response.content) == {"success": True}
    first, second = records(log)
    assert (first["mode"], first["enforced"], "session" in first) == ("enforce", True, False)
    assert (second["mode"], second["enforced"], second["session"]) == ("audit", False, "s-2")


@pytest.mark.parametrize(("status", "body", "headers"), [
    (200, b'{"success":true}', (("Content-Type", "application/json"),)),
    (204, b"", ()),
    (299, b"\x00\x01", (("Content-Type", "image/gif"), ("X-Two", "1"), ("x-two", "2"))),
    (418, "ünïcode".encode(), (("Content-Type", "text/plain; charset=utf-8"),)),
    # Headers the content setter acts on: the answer goes through `Response.make` as before.
    (200, b'{"a":1}', (("Content-Encoding", "gzip"), ("Content-Type", "application/json"))),
    (200, b"abc", (("Content-Length", "3"), ("X-After", "y"))),
    (200, b"abc", (("Transfer-Encoding", "chunked"),)),
])
def test_local_answers_are_built_as_response_make_builds_them(
        status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
    from telemetry_audit.proxy.addon import _headers, _response

    built, made = _response(status, body, headers), http.Response.make(status, body, _headers(headers))
    state, expected = built.get_state(), made.get_state()
    for moment in ("timestamp_start", "timestamp_end"):
        assert state.pop(moment) == pytest.approx(expected.pop(moment), abs=5)
    assert state == expected
    assert built.trailers is None and built.content == made.content


def test_a_local_answer_leaves_nothing_for_the_garbage_collector() -> None:
    """Each flow's decoded fields and decision are freed when its hook returns, not held in a reference cycle
    (mitmproxy's field check keeps a raised `TypeError` and its frames for `trailers=None`)."""
    import gc

    from telemetry_audit.proxy.addon import _response

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        _response(200, b'{"success":true}', (("Content-Type", "application/json"),))
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert garbage == []


@pytest.mark.parametrize(("host_header", "http_version"), [
    ("api.segment.io", "HTTP/1.1"),
    ("API.Segment.IO:8443", "HTTP/1.1"),
    ("[::1]:8080", "HTTP/1.1"),
    ("127.0.0.1", "HTTP/1.1"),
    ("bad host:notaport", "HTTP/1.1"),
    ("", "HTTP/1.1"),
    (None, "HTTP/1.1"),
    ("us.i.posthog.com", "HTTP/2.0"),
    (None, "HTTP/2.0"),
])
def test_the_host_header_is_read_as_pretty_host_reads_it_also_a_second_time(
        addon: TelemetryAudit, host_header: str | None, http_version: str) -> None:
    flow = telemetry_flow({"event": "x"})
    flow.request.http_version = http_version
    if http_version == "HTTP/2.0":
        flow.request.authority = host_header or ""
        flow.request.headers.pop("Host", None)
    elif host_header is None:
        flow.request.headers.pop("Host", None)
    else:
        flow.request.headers["Host"] = host_header
    assert addon._pretty_host(flow.request) == flow.request.pretty_host
    assert addon._pretty_host(flow.request) == flow.request.pretty_host  # from the cache


@pytest.mark.parametrize(("host", "path", "method", "body"), [
    ("api.segment.io", "/v1/track", "POST", b'{"event":"x"}'),
    ("api.segment.io", "/v1/nothing-here", "POST", b"{}"),
    ("us.i.posthog.com", "/batch/", "POST", b'{"batch":[]}'),
    ("collector.example.com", "/com.snowplowanalytics.snowplow/tp2", "POST", b'{"data":[]}'),
    ("otel.example.com", "/v1/traces", "POST", b"{}"),  # by path alone: never remembered
    ("docs.example.org", "/index.html", "GET", b""),
])
def test_the_emulator_of_a_route_is_the_one_find_collector_picks(
        addon: TelemetryAudit, host: str, path: str, method: str, body: bytes) -> None:
    from telemetry_audit.collectors import find_collector
    from telemetry_audit.decoders import decode_request
    from telemetry_audit.model import Request

    request = Request(method, "https", host, 443, path, (), (("content-type", "application/json"),), body)
    decoded = decode_request(request)
    expected = find_collector(decoded, by_path=True)
    assert addon._collector(request, decoded) is expected
    assert addon._collector(request, None) is expected  # again, from the cache where it may be
    assert all(found is not None for found in addon._collectors_by_route.values())
    if expected is not None and find_collector(request) is None:
        assert addon._collectors_by_route == {}  # picked by path and shape: picked again next time


def test_the_route_caches_start_afresh_when_full(addon: TelemetryAudit, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit.model import Request
    from telemetry_audit.proxy import addon as addon_module

    monkeypatch.setattr(addon_module, "ROUTE_CACHE_SIZE", 3)
    sizes = []
    for kind in ("track", "identify", "page", "screen", "group", "alias", "batch"):
        assert addon._collector(Request("POST", "https", "api.segment.io", 443, f"/v1/{kind}"), None) is not None
        flow = telemetry_flow({"event": "x"})
        flow.request.headers["Host"] = f"{kind}.example.org"
        assert addon._pretty_host(flow.request) == f"{kind}.example.org"
        sizes.append((len(addon._collectors_by_route), len(addon._hosts_by_authority)))
    assert sizes == [(1, 1), (2, 2), (3, 3), (1, 1), (2, 2), (3, 3), (1, 1)]


def test_a_store_in_memory_writes_behind_on_the_loop_and_the_inspection_api_sees_every_row(
        addon: TelemetryAudit) -> None:
    """Rows of a store in memory wait `STORE_FLUSH_SECONDS` and go in together; a read never misses one."""
    import asyncio

    from telemetry_audit.proxy.addon import STORE_FLUSH_SECONDS

    async def scenario() -> list[int]:
        pending = []
        with taddons.context(addon) as tctx:
            tctx.configure(addon, taudit_offline=True, taudit_inspection_token="t0ken")
            assert addon.store is not None and addon.store.write_behind
            for n in range(3):
                addon.request(telemetry_flow({"type": "track", "event": f"e{n}", "userId": "u1"}))
                pending.append(addon.store.pending)
            await asyncio.sleep(STORE_FLUSH_SECONDS * 4)
            pending.append(addon.store.pending)
            addon.request(telemetry_flow({"type": "track", "event": "last", "userId": "u1"}))
            pending.append(addon.store.pending)
            inspect = tflow.tflow(req=http.Request.make("GET", "http://telemetry-audit.local/micro/good",
                                                        headers={"X-Telemetry-Audit-Token": "t0ken"}))
            addon.request(inspect)  # reads what is still held back too
            assert inspect.response is not None
            listing = json.dumps(json.loads(inspect.response.content))
            assert all(f'"e{n}"' in listing for n in range(3)) and '"last"' in listing
            addon.request(telemetry_flow({"type": "track", "event": "at-exit", "userId": "u1"}))
            store = addon.store
            addon.done()  # writes what it still holds before closing
            assert store.pending == 0
        return pending

    assert asyncio.run(scenario()) == [1, 2, 3, 0, 1]


def test_a_store_file_has_each_row_committed_before_the_answer(addon: TelemetryAudit, tmp_path: Path) -> None:
    """Another process (the pytest plugin, `sqlite3`) reads the file: nothing is held back there."""
    import asyncio
    import sqlite3

    path = tmp_path / "events.sqlite"

    async def scenario() -> list[str]:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, taudit_offline=True, taudit_store=str(path))
            assert addon.store is not None and not addon.store.write_behind
            addon.request(telemetry_flow({"type": "track", "event": "deploy", "userId": "u1"}))
            with sqlite3.connect(path) as other:
                return [row[0] for row in other.execute("SELECT name FROM events")]

    assert asyncio.run(scenario()) == ["deploy"]
