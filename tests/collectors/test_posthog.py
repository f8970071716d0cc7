"""PostHog, driven by the official posthog client, plus posthog-js' encodings and SST v3/v4's captures."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
import requests
from posthog import Posthog

from telemetry_audit.collectors import find_collector
from telemetry_audit.collectors.posthog import PostHogCollector
from telemetry_audit.decoders import decode_request
from telemetry_audit.model import Request

from .conftest import CollectorServer, bad_reasons, good_events, inspect, load_capture


@pytest.mark.parametrize("gzip_body", [False, True])
def test_official_client_capture_is_accepted(server: CollectorServer, gzip_body: bool) -> None:
    errors: list[Exception] = []
    client = Posthog(
        "phc_test",
        host=server.url,
        sync_mode=True,
        gzip=gzip_body,
        max_retries=0,
        on_error=lambda e, batch: errors.append(e),
        enable_local_evaluation=False,
    )
    client.capture("cli.start", distinct_id="user-1", properties={"args": ["deploy"], "cpu_count": 2})
    client.flush()
    client.shutdown()

    assert errors == []
    (event,) = good_events(server, collector="posthog")
    assert (event["name"], event["distinct_id"], event["tool"]) == ("cli.start", "user-1", "posthog")
    assert event["properties"]["args"] == ["deploy"]
    assert event["context"]["api_key"] == "phc_test"
    assert event["context"]["$lib"] == "posthog-python"
    assert event["timestamp"]


def test_official_client_feature_flags_get_an_empty_answer(server: CollectorServer) -> None:
    client = Posthog("phc_test", host=server.url, sync_mode=True, max_retries=0, enable_local_evaluation=False)
    assert client.evaluate_flags("user-1").get_flag("new-ui") is None
    client.shutdown()
    (event,) = good_events(server, event="$flags")
    assert event["distinct_id"] == "user-1"


def _js_event() -> list[dict[str, object]]:
    return [{"event": "$pageview", "properties": {"token": "phc_js", "distinct_id": "d1", "$lib": "web"}}]


def test_posthog_js_gzip_js_body(server: CollectorServer) -> None:
    body = gzip.compress(json.dumps(_js_event()).encode())
    response = requests.post(
        f"{server.url}/e/",
        params={"compression": "gzip-js", "ver": "1.0"},
        data=body,
        headers={"Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.json() == {"status": 1}
    assert [e["name"] for e in good_events(server)] == ["$pageview"]


def test_posthog_js_base64_form_body(server: CollectorServer) -> None:
    data = base64.b64encode(json.dumps(_js_event()).encode()).decode()
    response = requests.post(f"{server.url}/i/v0/e/", params={"compression": "base64"}, data={"data": data}, timeout=5)
    assert response.json() == {"status": 1}
    (event,) = good_events(server)
    assert (event["distinct_id"], event["context"]["api_key"]) == ("d1", "phc_js")


@pytest.mark.parametrize("capture", ["sst-v4.17.1-posthog-batch", "sst-v4.17.1-telemetry-disable-cmd-offline"])
def test_sst_v4_captures_replayed_by_path_are_attributed_to_sst(server: CollectorServer, capture: str) -> None:
    method, path, headers, body = load_capture(capture)
    response = requests.request(method, server.url + path, headers=dict(headers), data=body, timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": 1})
    events = good_events(server, tool="sst")
    assert [e["name"] for e in events] == ["cli.start", "cli.error"]
    assert events[1]["properties"]["error"] == "Could not install pulumi"


def test_sst_v4_capture_by_host_uses_the_sst_emulator(server: CollectorServer) -> None:
    method, path, headers, body = load_capture("sst-v4.17.1-posthog-batch")
    request = Request.from_url(method, "https://telemetry.ion.sst.dev" + path, headers, body)
    collector = find_collector(request)
    assert collector is not None and collector.name == "sst-ion"
    assert {e.tool for e in collector.handle(decode_request(request)).events} == {"sst"}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{oops", 400, "Malformed request data: invalid JSON"),
        (b'{"batch": [{"event": "x", "distinct_id": "d"}]}', 401, "API key not provided"),
        (b'{"api_key": "k", "batch": [{"distinct_id": "d"}]}', 400, "Invalid payload: batch[0]: All events must have"),
    ],
)
def test_bad_requests_get_posthogs_errors(server: CollectorServer, body: bytes, status: int, reason: str) -> None:
    response = requests.post(f"{server.url}/batch/", data=body, timeout=5)
    assert response.status_code == status
    assert response.json()["detail"].startswith(reason)
    assert bad_reasons(server)[0].startswith(reason)


def test_bare_batch_path_is_not_posthogs_by_path_alone() -> None:
    request = Request.from_url("POST", "http://127.0.0.1/batch", {}, b'{"api_key": "k", "events": []}')
    assert not PostHogCollector().matches_path(decode_request(request))
    assert PostHogCollector().matches(Request.from_url("POST", "https://us.i.posthog.com/batch", {}, b""))


def test_official_client_local_evaluation_loads_no_flag_definitions(server: CollectorServer) -> None:
    """With a personal API key the SDK polls `/flags/definitions`; no flags means every flag is its default."""
    client = Posthog("phc_test", host=server.url, personal_api_key="phx_personal", sync_mode=True, max_retries=0)
    client.load_feature_flags()
    assert client.feature_flags == []
    assert client.get_feature_flag("new-ui", "user-1", only_evaluate_locally=True) is None
    client.shutdown()
    (event,) = good_events(server, event="$flags_definitions")
    assert event["context"]["api_key"] == "phc_test"


def test_flag_definitions_need_a_bearer_key(server: CollectorServer) -> None:
    response = requests.get(f"{server.url}/flags/definitions", params={"token": "phc"}, timeout=5)
    assert response.status_code == 401 and response.json()["type"] == "authentication_error"


def test_a_batch_with_one_invalid_event_is_rejected_whole(server: CollectorServer) -> None:
    body = {"api_key": "phc", "batch": [{"event": "ok", "distinct_id": "d"}, {"event": "x"}]}
    response = requests.post(f"{server.url}/batch/", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["code"] == "invalid_payload"
    assert good_events(server) == []
    assert bad_reasons(server, collector="posthog")[0].startswith("Invalid payload: batch[1]")


def test_ai_events_may_exceed_the_capture_event_limit(server: CollectorServer) -> None:
    """posthog-python allows 8 MiB AI events (`AI_MAX_MSG_SIZE`) on `/i/v0/ai/batch/`, under the 20 MB cap."""
    body = {"api_key": "phc", "batch": [{"event": "$ai_generation", "distinct_id": "d",
                                         "properties": {"$ai_input": "x" * 3_000_000}}]}
    assert requests.post(f"{server.url}/i/v0/ai/batch/", json=body, timeout=10).status_code == 200


LZ64_BATCH = (
    "N4IghgDglg+g1gUwJ4gFwggCwMYwC4IDOeIANCAEZh7aZoDaoCAbggHYnoAkEYA5iygIA7mRAATKMShtseGFHFoJARjEQATgHsICDXiGE0o"
    "LtgCuGje3kWANssx48EVAHpXAD1cAfsWzQqAL6BALqBQA"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # compressToBase64 output of lz-string 1.5.0 (the library posthog-js used for `lz64`).
        (LZ64_BATCH,
         '{"api_key":"phc_test","batch":[{"event":"$pageview","distinct_id":"d1","properties":'
         '{"$current_url":"http://x/ü","n":1}}]}'),
        ("IY18ZXQRkA==", "a" * 45 + "b"),
        ("jUEAJKemg05oeVEgpgtgewFYEsSF4NwAHtA=", "€ 日本語 emoji 😀"),
        ("B5A=", "x"),
    ],
)
def test_lz64_decompression_matches_lz_string(text: str, expected: str) -> None:
    from telemetry_audit.collectors.lzstring import decompress_from_base64

    assert decompress_from_base64(text) == expected


def test_posthog_js_lz64_form_body(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/e/", params={"compression": "lz64"}, data={"data": LZ64_BATCH}, timeout=5)
    assert response.status_code == 200
    (event,) = good_events(server)
    assert (event["name"], event["distinct_id"]) == ("$pageview", "d1")
    assert event["properties"]["$current_url"] == "http://x/ü"


@pytest.mark.parametrize("text", ["", "!!!", "A", "AAAA", "////"])
def test_malformed_lz64_is_a_value_error_or_empty(text: str) -> None:
    from telemetry_audit.collectors.lzstring import decompress_from_base64

    try:
        assert decompress_from_base64(text) in ("",)
    except ValueError:
        pass


def test_ai_batch_endpoint_is_a_capture_endpoint(server: CollectorServer) -> None:
    event = {"event": "$ai_generation", "distinct_id": "d", "properties": {"$ai_model": "m"}}
    body = {"api_key": "phc", "batch": [event]}
    response = requests.post(f"{server.url}/i/v0/ai/batch/", json=body, timeout=5)
    assert response.status_code == 200
    assert [e["name"] for e in good_events(server)] == ["$ai_generation"]


def test_an_event_over_2_mb_is_413(server: CollectorServer) -> None:
    body = {"api_key": "phc", "batch": [{"event": "big", "distinct_id": "d", "properties": {"p": "x" * 2_200_000}}]}
    response = requests.post(f"{server.url}/batch/", json=body, timeout=10)
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert len(inspect(server, "bad", collector="posthog")) == 1
