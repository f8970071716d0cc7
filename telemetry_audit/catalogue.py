"""The telemetry catalogue: which hosts (and paths) collect telemetry, and for which tool.

Data only, in one place: `endpoints.py` decides from it (and from name and payload shapes) whether a request is
telemetry, and attributes it to a tool; `run` keeps these hosts out of a user's NO_PROXY. Every tool entry names
the tool and cites where its endpoint was read (the tool's own source or documentation), so a reader can check it.
Vendor entries are analytics services that many tools share; a tool on a shared host is told apart by a `marker`
(its tracking id or a query parameter) found in the query string or body.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One collector: who sends to it, where, and the evidence."""

    tool: str
    """The tool (or, for shared services, the vendor) requests here are attributed to."""
    hosts: tuple[str, ...]
    """Host patterns (`telemetry_audit.hosts` semantics: `*.example.com` covers the apex too)."""
    paths: tuple[str, ...] = ()
    """Path globs (`*` one segment, `**` any); empty when every path on `hosts` is telemetry."""
    markers: tuple[str, ...] = ()
    """Strings in the query or body that single this tool out on a shared host (a tracking id)."""
    source: str = ""
    """Where the endpoint was read: the tool's source file or documentation page."""
    vendor: bool = False
    """True for an analytics service shared by many tools (Segment, Google Analytics, App Insights, ...)."""


VENDORS: tuple[Endpoint, ...] = (
    Endpoint("Segment", ("api.segment.io", "*.segment.io", "*.segment.com", "events.eu1.segmentapis.com"),
             source="https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/", vendor=True),
    Endpoint("PostHog", ("*.posthog.com",), source="https://posthog.com/docs/api/capture", vendor=True),
    Endpoint("Mixpanel", ("*.mixpanel.com",), source="https://developer.mixpanel.com/reference/ingestion-api",
             vendor=True),
    Endpoint("Amplitude", ("*.amplitude.com",), source="https://amplitude.com/docs/apis/analytics/http-v2",
             vendor=True),
    Endpoint("Snowplow", ("*.snowplowanalytics.com", "*.snplow.net", "*.snplow.com"),
             source="https://docs.snowplow.io/docs/sources/trackers/snowplow-tracker-protocol/", vendor=True),
    Endpoint("Sentry", ("*.sentry.io",), source="https://develop.sentry.dev/sdk/data-model/envelopes/", vendor=True),
    Endpoint("Google Analytics", ("*.google-analytics.com", "*.analytics.google.com"),
             source="https://developers.google.com/analytics/devguides/collection/protocol/ga4", vendor=True),
    Endpoint("Azure Application Insights",
             ("dc.services.visualstudio.com", "*.applicationinsights.azure.com"),
             source="https://learn.microsoft.com/azure/azure-monitor/app/ip-addresses", vendor=True),
    Endpoint("Honeycomb", ("api.honeycomb.io",), source="https://docs.honeycomb.io/api/", vendor=True),
    Endpoint("Datadog", ("*.datadoghq.com", "*.datadoghq.eu", "browser-intake-datadoghq.com"),
             source="https://docs.datadoghq.com/api/latest/logs/", vendor=True),
    Endpoint("RudderStack", ("*.rudderstack.com",), source="https://www.rudderstack.com/docs/api/http-api/",
             vendor=True),
    Endpoint("Heap", ("*.heap.io", "*.heapanalytics.com"), source="https://developers.heap.io/reference",
             vendor=True),
    Endpoint("Keen", ("*.keen.io",), source="https://keen.io/docs/api/", vendor=True),
    Endpoint("Bugsnag", ("*.bugsnag.com",), source="https://bugsnagerrorreportingapi.docs.apiary.io/", vendor=True),
    Endpoint("Vercel telemetry (other clients)", ("telemetry.vercel.com",),
             source="https://github.com/vercel/turborepo/blob/main/crates/turborepo-telemetry/src/config.rs",
             vendor=True),
    Endpoint("Mozilla Telemetry", ("*.telemetry.mozilla.org",),
             source="https://docs.telemetry.mozilla.org/concepts/pipeline/http_edge_spec", vendor=True),
)
"""Analytics services used by many tools: every request to them is telemetry."""

_WIRE = "measured: /work/shared/wire/README.md; "

TOOLS: tuple[Endpoint, ...] = (
    # -- JavaScript frameworks and their CLIs
    Endpoint("Next.js", ("telemetry.nextjs.org",), ("/api/v1/record",),
             source="https://github.com/vercel/next.js/blob/canary/packages/next/src/telemetry/post-telemetry-payload.ts"),
    Endpoint("Nuxt", ("telemetry.nuxtjs.com",),
             source="https://github.com/nuxt/telemetry/blob/main/src/module.ts (NUXT_TELEMETRY_ENDPOINT default)"),
    Endpoint("Astro", ("telemetry.astro.build",), ("/api/v1/record",),
             source="https://github.com/withastro/astro/blob/main/packages/telemetry/src/post.ts"),
    Endpoint("Gatsby", ("analytics.gatsbyjs.com",), ("/events",),
             source="https://github.com/gatsbyjs/gatsby/blob/master/packages/gatsby-telemetry/src/event-storage.ts"),
    Endpoint("Angular CLI", ("www.google-analytics.com",), ("/g/collect",), markers=("G-VETNJBW8L4",),
             source="https://github.com/angular/angular-cli/blob/main/packages/angular/cli/src/analytics/"
                    "analytics-collector.ts"),
    Endpoint("Vercel CLI", ("telemetry.vercel.com",), ("/api/vercel-cli/**",),
             source="https://github.com/vercel/vercel/blob/main/packages/cli/src/util/telemetry/index.ts"),
    Endpoint("Turborepo", ("telemetry.vercel.com",), ("/api/turborepo/**",),
             source="https://github.com/vercel/turborepo/blob/main/crates/turborepo-api-client/src/telemetry.rs"),
    Endpoint("Storybook", ("storybook.js.org",), ("/event-log",),
             source="https://github.com/storybookjs/storybook/blob/next/code/core/src/telemetry/telemetry.ts"),
    Endpoint("Expo CLI / EAS CLI", ("cdp.expo.dev",), ("/v1/batch",),
             source="https://github.com/expo/expo/tree/main/packages/@expo/cli/src/utils/telemetry "
                    "(RudderStack data plane)"),
    Endpoint("Yarn (Berry)", ("browser-http-intake.logs.datadoghq.eu",), ("/v1/input/*",), markers=("ddsource=yarn",),
             source="https://github.com/yarnpkg/berry/blob/master/packages/yarnpkg-core/sources/TelemetryManager.ts"),
    Endpoint("Prisma", ("checkpoint.prisma.io",),
             source="https://www.npmjs.com/package/checkpoint-client (endpoint: defaults to https://checkpoint.prisma.io)"),
    Endpoint("Cloudflare Wrangler", ("sparrow.cloudflare.com",), ("/api/v1/event",),
             source="https://github.com/cloudflare/workers-sdk/blob/main/packages/wrangler/src/metrics/"
                    "metrics-dispatcher.ts"),
    Endpoint("Shopify CLI", ("monorail-edge.shopifysvc.com",), ("/v1/produce", "/unstable/produce_batch"),
             source="https://github.com/Shopify/cli/blob/main/packages/cli-kit/src/public/node/monorail.ts"),
    Endpoint("Firebase CLI", ("www.google-analytics.com",), ("/mp/collect", "/debug/mp/collect"),
             markers=("G-PDN0QWHQJR", "G-KYP2JMPFC0"),
             source="https://github.com/firebase/firebase-tools/blob/master/src/track.ts"),
    Endpoint("Flutter / Dart", ("www.google-analytics.com",), ("/mp/collect",),
             source="https://github.com/dart-lang/tools/blob/main/pkgs/unified_analytics/lib/src/constants.dart"),
    # -- cloud and infrastructure CLIs
    Endpoint("HashiCorp Checkpoint (Terraform, Packer, Vagrant, Consul, ...)", ("checkpoint-api.hashicorp.com",),
             source="https://github.com/hashicorp/go-checkpoint/blob/main/checkpoint.go; "
                    "https://developer.hashicorp.com/terraform/cli/commands#upgrade-and-security-bulletin-checks"),
    Endpoint("AWS SAM CLI", ("aws-serverless-tools-telemetry.*.amazonaws.com",), ("/metrics",),
             source="https://github.com/aws/aws-sam-cli/blob/develop/samcli/lib/telemetry/telemetry.py"),
    Endpoint("AWS Amplify CLI", ("api.cli.amplify.aws",), ("/*/metrics",),
             source="https://github.com/aws-amplify/amplify-cli/blob/dev/packages/amplify-cli/src/domain/"
                    "amplify-usageData/getUsageDataUrl.ts"),
    Endpoint(".NET CLI", ("dc.services.visualstudio.com", "*.applicationinsights.azure.com"),
             markers=("74cc1c9e-3e6e-4d05-b3fc-dde9101d0254",),
             source="https://github.com/dotnet/sdk/blob/main/src/Cli/dotnet/Telemetry/Telemetry.cs; "
                    "https://learn.microsoft.com/dotnet/core/tools/telemetry"),
    Endpoint("Azure CLI", ("dc.services.visualstudio.com", "*.applicationinsights.azure.com"),
             markers=("c4395b75-49cc-422c-bc95-c7d51aef5d46",),
             source="https://github.com/Azure/azure-cli/blob/dev/src/azure-cli-telemetry/azure/cli/telemetry/"
                    "__init__.py"),
    Endpoint("Homebrew", ("eu-central-1-1.aws.cloud2.influxdata.com",), ("/api/v2/write",),
             source="https://github.com/Homebrew/brew/blob/master/Library/Homebrew/utils/analytics.rb; "
                    "https://docs.brew.sh/Analytics"),
    Endpoint("Serverless Framework", ("tracking.serverlessteam.com", "core.serverless.com",
                                      "sp-notifications-and-metrics-v1.serverless-platform.com"),
             source=_WIRE + "https://www.serverless.com/framework/docs/providers/aws/guide/usage-tracking"),
    Endpoint("LocalStack", ("analytics.localstack.cloud",),
             source=_WIRE + "https://docs.localstack.cloud/references/usage-tracking/"),
    Endpoint("SST", ("telemetry.sst.dev", "telemetry.ion.sst.dev"),
             source=_WIRE + "https://docs.sst.dev/anonymous-telemetry"),
    Endpoint("werf", ("telemetry.werf.io",),
             source=_WIRE + "https://github.com/werf/werf/blob/main/pkg/telemetry/telemetrywerfio.go"),
    # -- data, ML and security tools
    Endpoint("dbt", ("fishtownanalytics.sinter-collect.com",),
             source="https://github.com/dbt-labs/dbt-core/blob/main/core/dbt/tracking.py (Snowplow collector)"),
    Endpoint("Great Expectations", ("stats.greatexpectations.io", "*.stats.greatexpectations.io"),
             ("/**/usage_statistics",),
             source="https://github.com/great-expectations/great_expectations (DEFAULT_USAGE_STATISTICS_URL)"),
    Endpoint("Hugging Face (huggingface_hub, TGI, TEI)", ("huggingface.co",), ("/api/telemetry/**",),
             source="https://github.com/huggingface/huggingface_hub/blob/main/src/huggingface_hub/utils/_telemetry.py"),
    Endpoint("Gradio", ("api.gradio.app",), ("/gradio-*analytics*", "/gradio-*analytics*/", "/gradio-*telemetry*",
                                             "/gradio-*telemetry*/"),
             source="https://github.com/gradio-app/gradio/blob/main/gradio/analytics.py"),
    Endpoint("Semgrep", ("metrics.semgrep.dev",),
             source="https://github.com/semgrep/semgrep/blob/develop/cli/src/semgrep/metrics.py; "
                    "https://semgrep.dev/docs/metrics"),
)
"""Developer CLIs and SDKs, each with the endpoint its own code or documentation names."""

CATALOGUE: tuple[Endpoint, ...] = TOOLS + VENDORS
"""Tools first: on a shared host the more specific attribution wins."""
