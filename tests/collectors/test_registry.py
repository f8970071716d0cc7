"""`COLLECTORS` and `find_collector()`: by host for the proxy, by path for the standalone server."""

from __future__ import annotations

import json

import pytest

from telemetry_audit.collectors import COLLECTORS, COLLECTORS_BY_NAME, find_collector
from telemetry_audit.model import Request

UA_BATCH = b"v=1&tid=UA-1&cid=1&t=event"
AMPLITUDE_BATCH = json.dumps({"api_key": "k", "events": []}).encode()


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        ("https://api.segment.io/v1/batch", b"", "segment"),
        ("https://tracking.serverlessteam.com/v1/track", b"", "serverless-v1"),
        ("https://us.i.posthog.com/batch/", b"", "posthog"),
        ("https://us.i.posthog.com/track", b"", "posthog"),
        ("https://telemetry.ion.sst.dev/batch/", b"", "sst-ion"),
        ("https://api-js.mixpanel.com/track/", b"", "mixpanel"),
        ("https://api2.amplitude.com/batch", b"", "amplitude"),
        ("https://www.google-analytics.com/batch", b"", "universal-analytics"),
        ("https://region1.google-analytics.com/mp/collect", b"", "ga4"),
        ("https://collector.example.org/com.snowplowanalytics.snowplow/tp2", b"", "snowplow"),
        ("https://o1.ingest.us.sentry.io/api/5/envelope/", b"", "sentry"),
        ("https://westeurope-5.in.applicationinsights.azure.com/v2.1/track", b"", "app-insights"),
        ("https://api.honeycomb.io/v1/traces", b"", "otlp"),
        ("https://telemetry.werf.io/v1/traces", b"", "werf"),
        ("https://analytics.localstack.cloud/v1/session", b"", "localstack"),
        ("https://telemetry.sst.dev/events", b"", "sst-v2"),
        ("https://sp-notifications-and-metrics-v1.serverless-platform.com/", b"", "serverless-v3"),
        ("https://core.serverless.com/api/events/publish/bulk", b"", "serverless-v4"),
        ("https://example.com/v1/track", b"", None),
    ],
)
def test_by_host(url: str, body: bytes, expected: str | None) -> None:
    collector = find_collector(Request.from_url("POST", url, {}, body))
    assert (collector.name if collector else None) == expected


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/track", b"", "segment"),
        ("/api/framework/track", b"", "serverless-v1"),
        ("/batch/", b"", "posthog"),
        ("/e/", b"", "posthog"),
        ("/track", b"", "mixpanel"),
        ("/track/", b"", "mixpanel"),
        ("/batch", UA_BATCH, "universal-analytics"),
        ("/batch", AMPLITUDE_BATCH, "amplitude"),
        ("/2/httpapi", b"", "amplitude"),
        ("/mp/collect", b"", "ga4"),
        ("/collect", b"", "universal-analytics"),
        ("/api/12/envelope/", b"", "sentry"),
        ("/v2/track", b"", "app-insights"),
        ("/v1/traces", b"", "otlp"),
        ("/otlp/v1/metrics", b"", "otlp"),
        ("/v1/events", b"", "localstack"),
        ("/events", b"", "sst-v2"),
        ("/", b"[{}]", "serverless-v3"),
        ("/", b"{}", None),
        ("/api/events/publish/bulk", b"", "serverless-v4"),
        ("/nothing", b"", None),
    ],
)
def test_by_path(path: str, body: bytes, expected: str | None) -> None:
    collector = find_collector(Request.from_url("POST", f"http://127.0.0.1:9090{path}", {}, body), by_path=True)
    assert (collector.name if collector else None) == expected


def test_names_are_unique() -> None:
    assert len(COLLECTORS_BY_NAME) == len(COLLECTORS)
