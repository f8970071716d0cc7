"""Which requests are telemetry: the catalogue, name and path rules, the payload shape, and the false positives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telemetry_audit.catalogue import CATALOGUE, TOOLS
from telemetry_audit.endpoints import (
    TELEMETRY_HOSTS,
    catalogue_entry,
    host_says_telemetry,
    is_telemetry,
    looks_like_analytics_event,
    path_says_telemetry,
    telemetry_reason,
)
from telemetry_audit.model import Request


def request(method: str, url: str, body: bytes = b"") -> Request:
    return Request.from_url(method, url, body=body)


# ---- the catalogue --------------------------------------------------------------------------------------------------


def test_catalogue_names_at_least_30_tools_each_with_a_source() -> None:
    tools = {entry.tool for entry in TOOLS}
    assert len(tools) >= 30, sorted(tools)
    for entry in CATALOGUE:
        assert entry.hosts, entry
        assert entry.source.startswith(("https://", "measured:")), entry


@pytest.mark.parametrize(
    ("method", "url", "body", "tool"),
    [
        ("POST", "https://telemetry.nextjs.org/api/v1/record", b"", "Next.js"),
        ("POST", "https://telemetry.nuxtjs.com/", b"", "Nuxt"),
        ("POST", "https://telemetry.astro.build/api/v1/record", b"", "Astro"),
        ("POST", "https://analytics.gatsbyjs.com/events", b"", "Gatsby"),
        ("POST", "https://www.google-analytics.com/g/collect?v=2&tid=G-VETNJBW8L4&cid=1", b"en=run_command",
         "Angular CLI"),
        ("POST", "https://telemetry.vercel.com/api/vercel-cli/v1/events", b"", "Vercel CLI"),
        ("POST", "https://telemetry.vercel.com/api/turborepo/v1/events", b"", "Turborepo"),
        ("POST", "https://storybook.js.org/event-log", b"", "Storybook"),
        ("POST", "https://cdp.expo.dev/v1/batch", b"", "Expo CLI / EAS CLI"),
        ("POST", "https://browser-http-intake.logs.datadoghq.eu/v1/input/abc?ddsource=yarn", b"", "Yarn (Berry)"),
        ("GET", "https://checkpoint.prisma.io/check/prisma?version=5", b"", "Prisma"),
        ("POST", "https://sparrow.cloudflare.com/api/v1/event", b"", "Cloudflare Wrangler"),
        ("POST", "https://monorail-edge.shopifysvc.com/v1/produce", b"", "Shopify CLI"),
        ("POST", "https://www.google-analytics.com/mp/collect?api_secret=x&measurement_id=G-PDN0QWHQJR", b"{}",
         "Firebase CLI"),
        ("POST", "https://www.google-analytics.com/mp/collect?api_secret=x&measurement_id=G-OTHER", b"{}",
         "Flutter / Dart"),
        ("GET", "https://checkpoint-api.hashicorp.com/v1/check/terraform?version=1.9.0", b"",
         "HashiCorp Checkpoint (Terraform, Packer, Vagrant, Consul, ...)"),
        ("POST", "https://aws-serverless-tools-telemetry.us-west-2.amazonaws.com/metrics", b"", "AWS SAM CLI"),
        ("POST", "https://api.cli.amplify.aws/v1.0/metrics", b"", "AWS Amplify CLI"),
        ("POST", "https://dc.services.visualstudio.com/v2/track", b'[{"iKey":"74cc1c9e-3e6e-4d05-b3fc-dde9101d0254"}]',
         ".NET CLI"),
        ("POST", "https://westeurope-5.in.applicationinsights.azure.com/v2/track",
         b'{"iKey":"c4395b75-49cc-422c-bc95-c7d51aef5d46"}', "Azure CLI"),
        ("POST", "https://dc.services.visualstudio.com/v2/track", b'{"iKey":"someone-else"}',
         "Azure Application Insights"),
        ("POST", "https://eu-central-1-1.aws.cloud2.influxdata.com/api/v2/write?bucket=analytics", b"", "Homebrew"),
        ("POST", "https://tracking.serverlessteam.com/v1/track", b"", "Serverless Framework"),
        ("POST", "https://analytics.localstack.cloud/v1/events", b"", "LocalStack"),
        ("POST", "https://telemetry.ion.sst.dev/batch/", b"", "SST"),
        ("POST", "https://telemetry.werf.io/v1/traces", b"", "werf"),
        ("POST", "https://fishtownanalytics.sinter-collect.com/com.snowplowanalytics.snowplow/tp2", b"", "dbt"),
        ("POST", "https://stats.greatexpectations.io/great_expectations/v1/usage_statistics", b"",
         "Great Expectations"),
        ("HEAD", "https://huggingface.co/api/telemetry/gradio/initiated", b"",
         "Hugging Face (huggingface_hub, TGI, TEI)"),
        ("POST", "https://api.gradio.app/gradio-initiated-analytics/", b"", "Gradio"),
        ("POST", "https://metrics.semgrep.dev/", b"", "Semgrep"),
        ("POST", "https://us.i.posthog.com/batch/", b"", "PostHog"),
        ("POST", "https://o1.ingest.sentry.io/api/1/envelope/", b"", "Sentry"),
    ],
)
def test_requests_are_attributed_to_their_tool(method: str, url: str, body: bytes, tool: str) -> None:
    sent = request(method, url, body)
    entry = catalogue_entry(sent)
    assert entry is not None and entry.tool == tool
    assert telemetry_reason(sent) == f"catalogue: {tool}"


@pytest.mark.parametrize(
    "url",
    [
        "https://storybook.js.org/docs/get-started",  # the docs site: only /event-log is telemetry
        "https://huggingface.co/api/models/gpt2",  # the Hub's API: only /api/telemetry/** is
        "https://huggingface.co/gpt2/resolve/main/config.json",
        "https://api.gradio.app/pkg-version",
        "https://cdp.expo.dev/",
    ],
)
def test_path_specific_entries_leave_the_rest_of_the_host_alone(url: str) -> None:
    assert catalogue_entry(request("GET", url)) is None
    assert not is_telemetry(request("GET", url))


def test_telemetry_hosts_cover_every_catalogued_host() -> None:
    assert "telemetry.nextjs.org" in TELEMETRY_HOSTS and "checkpoint.prisma.io" in TELEMETRY_HOSTS
    assert len(TELEMETRY_HOSTS) == len(set(TELEMETRY_HOSTS))


# ---- telemetry we have no entry for ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "reason"),
    [
        ("POST", "https://telemetry.nuxt.com/", "host name"),
        ("POST", "https://collector.telemetry.test/anything", "host name"),
        ("GET", "https://telemetry.example.org/ping", "host name"),
        ("POST", "https://api-telemetry.example.com/x", "host name"),
        ("POST", "https://metrics.example.io/", "host name"),
        ("POST", "https://usage-analytics.vendor.dev/", "host name"),
        ("POST", "https://api.vendor.dev/v1/batch", "path"),
        ("POST", "https://api.vendor.dev/i/v0/e/", "path"),
        ("POST", "https://api.vendor.dev/api/v2/events", "path"),
        ("POST", "https://api.vendor.dev/v1/event", "path"),
        ("POST", "https://api.vendor.dev/telemetry", "path"),
        ("POST", "https://api.vendor.dev/collect?v=1", "path"),
        ("POST", "https://api.vendor.dev/api/telemetry/cli", "path"),
        ("POST", "https://api.vendor.dev/v3/analytics/report", "path"),
        ("POST", "https://api.vendor.dev/event-log", "path"),
        ("PUT", "https://api.vendor.dev/v1/traces", None),
        ("POST", "https://my-own-collector.example/anything", None),
        ("GET", "https://api.vendor.dev/v1/batch", None),
    ],
)
def test_name_and_path_rules(method: str, url: str, reason: str | None) -> None:
    assert telemetry_reason(request(method, url)) == reason


def test_policy_telemetry_hosts_count() -> None:
    sent = request("POST", "https://collector.internal.example/ingest/x")
    assert telemetry_reason(sent) is None
    assert telemetry_reason(sent, ["*.internal.example"]) == "policy telemetry_hosts"


ORDINARY = [
    # npm registry: metadata, tarballs, publish, audit, search, login
    ("GET", "https://registry.npmjs.org/analytics"),
    ("GET", "https://registry.npmjs.org/@segment%2fanalytics-next"),
    ("GET", "https://registry.npmjs.org/@opentelemetry/api/-/api-1.9.0.tgz"),
    ("GET", "https://registry.npmjs.org/posthog-node"),
    ("GET", "https://registry.npmjs.org/events/-/events-3.3.0.tgz"),
    ("GET", "https://registry.npmjs.org/batch"),
    ("GET", "https://registry.npmjs.org/track"),
    ("GET", "https://registry.npmjs.org/metrics"),
    ("PUT", "https://registry.npmjs.org/analytics"),
    ("PUT", "https://registry.npmjs.org/batch"),
    ("PUT", "https://registry.npmjs.org/events"),
    ("PUT", "https://registry.npmjs.org/@scope%2ftelemetry"),
    ("POST", "https://registry.npmjs.org/-/npm/v1/security/advisories/bulk"),
    ("POST", "https://registry.npmjs.org/-/npm/v1/security/audits/quick"),
    ("GET", "https://registry.npmjs.org/-/v1/search?text=analytics&size=20"),
    ("POST", "https://registry.npmjs.org/-/v1/login"),
    ("GET", "https://registry.yarnpkg.com/telemetry"),
    # PyPI: simple index, JSON API, files, upload
    ("GET", "https://pypi.org/simple/posthog/"),
    ("GET", "https://pypi.org/simple/opentelemetry-exporter-otlp/"),
    ("GET", "https://pypi.org/simple/analytics-python/"),
    ("GET", "https://pypi.org/simple/metrics/"),
    ("GET", "https://pypi.org/simple/events/"),
    ("GET", "https://pypi.org/pypi/analytics-python/json"),
    ("GET", "https://pypi.org/pypi/telemetry/json"),
    ("GET", "https://files.pythonhosted.org/packages/ab/cd/analytics_python-1.4.0-py2.py3-none-any.whl"),
    ("POST", "https://upload.pypi.org/legacy/"),
    # GitHub web and git
    ("GET", "https://github.com/PostHog/posthog"),
    ("GET", "https://github.com/segmentio/analytics-next/releases/download/v1/analytics.tgz"),
    ("GET", "https://github.com/open-telemetry/opentelemetry-collector/archive/refs/heads/main.tar.gz"),
    ("GET", "https://github.com/org/telemetry.git/info/refs?service=git-upload-pack"),
    ("POST", "https://github.com/org/telemetry.git/git-upload-pack"),
    ("POST", "https://github.com/org/analytics.git/git-receive-pack"),
    ("GET", "https://raw.githubusercontent.com/org/metrics/main/README.md"),
    ("GET", "https://objects.githubusercontent.com/github-production-release-asset/1/2"),
    # GitHub REST and GraphQL
    ("GET", "https://api.github.com/repos/o/r/events"),
    ("GET", "https://api.github.com/users/u/events"),
    ("GET", "https://api.github.com/events"),
    ("GET", "https://api.github.com/repos/o/r/traffic/views"),
    ("GET", "https://api.github.com/repos/o/r/stats/contributors"),
    ("GET", "https://api.github.com/repos/o/r/issues/1/events"),
    ("POST", "https://api.github.com/repos/o/telemetry/issues"),
    ("POST", "https://api.github.com/repos/o/analytics/pulls"),
    ("POST", "https://api.github.com/repos/o/metrics/issues/1/comments"),
    ("POST", "https://api.github.com/repos/o/r/dispatches"),
    ("POST", "https://api.github.com/repos/o/r/actions/workflows/ci.yml/dispatches"),
    ("POST", "https://api.github.com/repos/o/r/git/refs"),
    ("POST", "https://api.github.com/repos/o/r/statuses/abc123"),
    ("POST", "https://api.github.com/repos/o/r/check-runs"),
    ("POST", "https://api.github.com/graphql"),
    ("POST", "https://api.github.com/markdown"),
    ("PATCH", "https://api.github.com/repos/o/events"),
    ("DELETE", "https://api.github.com/repos/o/r/hooks/1"),
    # other registries and APIs developer tools call
    ("GET", "https://crates.io/api/v1/crates/metrics/0.23.0/download"),
    ("GET", "https://index.crates.io/me/tr/metrics"),
    ("GET", "https://proxy.golang.org/go.opentelemetry.io/otel/@v/list"),
    ("GET", "https://repo.maven.apache.org/maven2/io/micrometer/micrometer-core/maven-metadata.xml"),
    ("GET", "https://rubygems.org/api/v1/gems/analytics-ruby.json"),
    ("POST", "https://registry-1.docker.io/v2/library/metrics/blobs/uploads/"),
    ("GET", "https://registry-1.docker.io/v2/library/events/manifests/latest"),
    ("POST", "https://api.openai.com/v1/chat/completions"),
    ("POST", "https://sts.amazonaws.com/"),
    ("POST", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations"),
    ("POST", "https://oauth2.googleapis.com/token"),
    ("POST", "https://api.stripe.com/v1/payment_intents"),
    ("GET", "https://nodejs.org/dist/index.json"),
    ("GET", "https://storybook.js.org/versions.json"),
    ("GET", "https://huggingface.co/api/models?search=analytics"),
]


@pytest.mark.parametrize(("method", "url"), ORDINARY)
def test_ordinary_requests_stay_ordinary(method: str, url: str) -> None:
    assert telemetry_reason(request(method, url)) is None


def test_false_positive_rate_on_ordinary_urls_is_zero() -> None:
    """The measured number, printed for the report (`pytest -s`)."""
    flagged = [(m, u) for m, u in ORDINARY if is_telemetry(request(m, u))]
    print(f"\nordinary URLs flagged as telemetry: {len(flagged)} of {len(ORDINARY)}")
    assert flagged == []


@pytest.mark.parametrize(
    "host",
    ["registry.npmjs.org", "pypi.org", "github.com", "api.github.com", "telemetry", "analyticsx.com", "", "[::1]"],
)
def test_ordinary_host_names(host: str) -> None:
    assert not host_says_telemetry(host)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get", "PUT", "PATCH", "DELETE"])
def test_reading_methods_never_count_by_path(method: str) -> None:
    assert not path_says_telemetry(method, "/v1/batch")
    assert not path_says_telemetry(method, "/api/telemetry/x")


# ---- payload shape --------------------------------------------------------------------------------------------------

NEXT_JS = {
    "context": {"anonymousId": "a1", "projectId": "p1", "sessionId": "s1"},
    "meta": {"systemPlatform": "linux"},
    "events": [{"eventName": "NEXT_BUILD_COMPLETED", "fields": {"durationInSeconds": 3}}],
}
GA4 = {"client_id": "c1", "timestamp_micros": "1700000000000000", "events": [{"name": "command", "params": {}}]}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"event": "cli.start", "anonymousId": "a1"}, True),  # Segment track
        ({"type": "track", "event": "x", "timestamp": "2024-01-01T00:00:00Z"}, True),
        ({"batch": [{"event": "x", "properties": {"distinct_id": "d"}}]}, True),  # PostHog batch
        ({"api_key": "k", "batch": [{"event": "$pageview", "distinct_id": "d", "timestamp": 1}]}, True),
        ([{"event_type": "launch", "device_id": "d", "time": 1700000000000}], True),  # Amplitude
        (NEXT_JS, True),
        (GA4, True),
        ({"timestamp": 1700000000, "context": {"projectHash": "h"}, "events": [{"name": "command", "command": "dev",
                                                                               "projectSession": "s"}]}, True),
        ({"name": "x", "timestamp": 1, "userId": "u"}, True),
        # ordinary API bodies
        ({"name": "my-repo", "private": True}, False),
        ({"title": "bug", "body": "crash", "labels": ["bug"]}, False),
        ({"event_type": "deploy", "client_payload": {"sha": "abc"}}, False),  # GitHub repository_dispatch
        ({"_id": "pkg", "name": "pkg", "time": {"created": "2020"}, "versions": {}}, False),  # npm publish
        ({"name": "x", "type": "module", "version": "1.0.0"}, False),  # package.json
        ({"name": "x", "timestamp": 1}, False),  # a generic name needs an id too
        ({"event": "x"}, False),  # a name alone is not enough
        ({"events": [{"foo": 1}], "userId": "u"}, False),
        ({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}, False),
        # bad input
        (None, False),
        ("event", False),
        (42, False),
        ([], False),
        ({}, False),
        ({"event": ["not", "a", "name"], "userId": "u"}, False),
        ({"event": "", "userId": "u"}, False),
        ({"a": {"b": {"c": {"d": {"event": "x", "userId": "u"}}}}}, False),  # not a batch key: not searched
    ],
)
def test_looks_like_analytics_event(document: Any, expected: bool) -> None:
    assert looks_like_analytics_event(document) is expected


def test_deep_and_wide_documents_are_bounded() -> None:
    deep: Any = {"event": "x", "userId": "u"}
    for _ in range(10_000):
        deep = {"events": [deep]}
    assert looks_like_analytics_event(deep) is False  # beyond 3 levels: not searched, no recursion error
    wide = {"events": [{"foo": i} for i in range(100_000)] + [{"event": "x", "userId": "u"}]}
    assert looks_like_analytics_event(wide) is False  # only the first 50 items are read


def test_payload_reason_needs_the_document() -> None:
    body = json.dumps({"event": "cli.start", "anonymousId": "a1"}).encode()
    sent = request("POST", "https://my-own-collector.example/in", body)
    assert telemetry_reason(sent) is None
    assert telemetry_reason(sent, document=json.loads(body)) == "payload"
