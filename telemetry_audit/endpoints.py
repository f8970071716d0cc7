"""Which requests are telemetry: known collector hosts and analytics protocol paths.

The proxy audits these (and whatever a rule pack names) and lets everything
else pass untouched unless told to audit all traffic. The list is data, kept
in one place; the collector emulators answer the same endpoints offline.
"""

from __future__ import annotations

from collections.abc import Iterable

import re2

from telemetry_audit.model import Request
from telemetry_audit.policy.model import glob_to_regex, host_matches

TELEMETRY_HOSTS: tuple[str, ...] = (
    # analytics vendors
    "api.segment.io",
    "*.segment.io",
    "*.segment.com",
    "*.posthog.com",
    "*.i.posthog.com",
    "api.mixpanel.com",
    "*.mixpanel.com",
    "api2.amplitude.com",
    "*.amplitude.com",
    "*.snowplowanalytics.com",
    "*.sentry.io",
    "*.ingest.sentry.io",
    "www.google-analytics.com",
    "*.google-analytics.com",
    "*.analytics.google.com",
    "dc.services.visualstudio.com",
    "*.applicationinsights.azure.com",
    "*.in.applicationinsights.azure.com",
    "api.honeycomb.io",
    "*.datadoghq.com",
    "browser-intake-datadoghq.com",
    "*.rudderstack.com",
    "*.heap.io",
    "*.keen.io",
    "*.bugsnag.com",
    "*.telemetry.mozilla.org",
    # the seed tools' own collectors (../shared/wire/README.md)
    "tracking.serverlessteam.com",
    "sp-notifications-and-metrics-v1.serverless-platform.com",
    "core.serverless.com",
    "analytics.localstack.cloud",
    "telemetry.sst.dev",
    "telemetry.ion.sst.dev",
    "telemetry.werf.io",
    # other well-known CLI telemetry
    "telemetry.nextjs.org",
    "telemetry.vercel.com",
    "sp.getdbt.com",
    "fishtownanalytics.sinter-collect.com",
    "checkpoint-api.hashicorp.com",
    "telemetry.astro.build",
    "telemetry.gatsbyjs.io",
    "api.turbo.build",
)

HOST_GLOBS: tuple[str, ...] = ("telemetry.*", "*.telemetry.*", "analytics.*", "*.analytics.*", "metrics.*")
"""Name shapes that announce telemetry whatever the vendor."""

TELEMETRY_PATHS: tuple[str, ...] = (
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/batch",
    "/batch/",
    "/capture",
    "/capture/",
    "/e",
    "/e/",
    "/i/v0/e",
    "/i/v0/e/",
    "/track",
    "/track/",
    "/engage",
    "/engage/",
    "/2/httpapi",
    "/com.snowplowanalytics.snowplow/tp2",
    "/api/*/envelope/",
    "/api/*/store/",
    "/v1/traces",
    "/v1/metrics",
    "/v1/logs",
    "/mp/collect",
    "/collect",
    "/v2/track",
    "/v2.1/track",
)

_PATH_REGEX = re2.compile("^(?:" + "|".join(glob_to_regex(p) for p in TELEMETRY_PATHS) + ")$")


def is_telemetry(request: Request, extra_hosts: Iterable[str] = ()) -> bool:
    """True when `request` goes to a known collector or speaks a known analytics protocol."""
    host = request.host
    if any(host_matches(pattern, host) for pattern in TELEMETRY_HOSTS):
        return True
    if any(host_matches(pattern, host) for pattern in extra_hosts):
        return True
    if any(host_matches(pattern, host) for pattern in HOST_GLOBS):
        return True
    return request.method.upper() != "GET" and _PATH_REGEX.match(request.path) is not None
