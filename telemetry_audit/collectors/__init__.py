"""Collector emulators: answer analytics collectors offline and normalise what they receive.

`COLLECTORS` is the explicit registry; `find_collector()` picks the emulator
for a request, by its vendor's host name first, then (`by_path`) by path and
payload shape, for self-hosted collectors and for the standalone server where
everything arrives at 127.0.0.1. Order matters only for the path fallback,
where more specific protocols come first. `collectors.dispatch` answers and
records with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from telemetry_audit.collectors.amplitude import AmplitudeCollector
from telemetry_audit.collectors.app_insights import AppInsightsCollector
from telemetry_audit.collectors.base import Collector, CollectorResponse, Event
from telemetry_audit.collectors.google_analytics import Ga4Collector, UniversalAnalyticsCollector
from telemetry_audit.collectors.localstack import LocalStackCollector
from telemetry_audit.collectors.mixpanel import MixpanelCollector
from telemetry_audit.collectors.otlp import OtlpCollector, WerfCollector
from telemetry_audit.collectors.posthog import PostHogCollector, SstIonCollector
from telemetry_audit.collectors.segment import SegmentCollector, ServerlessV1Collector
from telemetry_audit.collectors.sentry import SentryCollector
from telemetry_audit.collectors.serverless import ServerlessV3Collector, ServerlessV4Collector
from telemetry_audit.collectors.snowplow import SnowplowCollector
from telemetry_audit.collectors.sst import SstV2Collector
from telemetry_audit.decoders import DecodedRequest, decode_request
from telemetry_audit.model import Request

__all__ = ["COLLECTORS", "COLLECTORS_BY_NAME", "Collector", "CollectorResponse", "Event", "find_collector"]

COLLECTORS: tuple[Collector, ...] = (
    SegmentCollector(),
    ServerlessV1Collector(),
    PostHogCollector(),
    SstIonCollector(),
    MixpanelCollector(),
    # Universal Analytics before Amplitude: both own `/batch`, UA's is form lines.
    UniversalAnalyticsCollector(),
    AmplitudeCollector(),
    Ga4Collector(),
    SnowplowCollector(),
    SentryCollector(),
    AppInsightsCollector(),
    # Generic OTLP before werf: by path it takes every `/v1/traces` and still recognises werf's spans.
    OtlpCollector(),
    WerfCollector(),
    LocalStackCollector(),
    SstV2Collector(),
    ServerlessV3Collector(),
    ServerlessV4Collector(),
)

COLLECTORS_BY_NAME: Mapping[str, Collector] = MappingProxyType({c.name: c for c in COLLECTORS})


def find_collector(request: Request | DecodedRequest, *, by_path: bool = False) -> Collector | None:
    """The emulator for `request`: by its vendor's host (and path); with `by_path`, else by path and shape.

    The path fallback reads the body (`/batch` is Amplitude's JSON or Universal Analytics' form lines):
    pass the `DecodedRequest` when you have it, a plain `Request` is decoded here.
    """
    plain = request if isinstance(request, Request) else request.request
    if plain is None:
        raise ValueError("DecodedRequest without its request: build it with decode_request()")
    for collector in COLLECTORS:
        if collector.matches(plain):
            return collector
    if by_path:
        decoded = request if isinstance(request, DecodedRequest) else decode_request(request)
        for collector in COLLECTORS:
            if collector.matches_path(decoded):
                return collector
    return None
