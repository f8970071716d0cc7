"""Collector emulators: answer analytics collectors offline and normalise what they receive.

`COLLECTORS` is the explicit registry; `find_collector()` picks the emulator
for a request, by host name first (the proxy sees the real host), or by path
alone for the standalone server where everything arrives at 127.0.0.1. Order
matters only for the path fallback, where more specific protocols come first.
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


def find_collector(request: Request, *, by_path: bool = False) -> Collector | None:
    """The emulator for `request`: by host (and path); with `by_path`, else by path alone."""
    for collector in COLLECTORS:
        if collector.matches(request):
            return collector
    if by_path:
        for collector in COLLECTORS:
            if collector.matches_path(request):
                return collector
    return None
