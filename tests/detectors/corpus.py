"""The labelled detector corpus: how it is generated, loaded and scored.

Positives are fake values generated from each provider's documented token
format (seeded, so reproducible), planted into telemetry events modelled on
the real captures, plus planted paths, environment values and personal data.
Negatives are realistic benign values (ids, digests, versions, timestamps)
and, separately, the real captures in `tests/data/captures/`.

Regenerate the committed corpus with `python -m tests.detectors.corpus`.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from telemetry_audit.detectors import FAMILIES
from telemetry_audit.detectors.base import AuditEnvironment, Detector, Match

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA / "corpus" / "corpus.jsonl"
CAPTURES = DATA / "captures"
SEED = 20261122

LOCALSTACK_TOKEN = "ls-QmVyTz7d-4821-9023-NwPq-x7KdLr2mZq9A"
APP_SECRET = "Zq8#vL2!pR5tW9yB"
DB_PASSWORD = "Tr0ub4dor&3-horse"
SHORT_SECRET = "k9Zq"

TEST_ENVIRONMENT = AuditEnvironment(
    env={
        "PATH": "/usr/local/bin:/usr/bin:/bin:/home/alice/.local/bin",
        "HOME": "/home/alice",
        "USER": "alice",
        "SHELL": "/bin/bash",
        "TERM": "xterm-256color",
        "LANG": "en_US.UTF-8",
        "CI": "true",
        "AWS_REGION": "eu-west-1",
        "AWS_PROFILE": "default",
        "EDITOR": "vim",
        "NODE_OPTIONS": "--max-old-space-size=4096",
        "LOCALSTACK_AUTH_TOKEN": LOCALSTACK_TOKEN,
        "MY_APP_SECRET": APP_SECRET,
        "DATABASE_PASSWORD": DB_PASSWORD,
        "PIN_TOKEN": SHORT_SECRET,
        "COMPANY_NAME": "Initech Widgets Ltd",
        "DEBUG": "1",
        "SERVICES": "s3,sqs",
        "NODE_VERSION": "20.11.1",
        "PYTHON_VERSION": "3.12.1",
    },
    home="/home/alice",
    cwd="/home/alice/work/billing-api",
    user="alice",
    hostname="alice-thinkpad.corp.example",
)
"""Fixed test values, never the machine's."""


@dataclass(frozen=True)
class Record:
    """One corpus event with the values planted in it."""

    id: str
    event: Any
    labels: tuple[tuple[str, str], ...] = ()
    """(family, planted text) pairs; empty for a negative."""
    detector: str = ""
    """The detector id expected for a secret (informative)."""

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "event": self.event, "labels": [list(x) for x in self.labels],
                           "detector": self.detector}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Record:
        raw = json.loads(line)
        return cls(raw["id"], raw["event"], tuple((f, t) for f, t in raw["labels"]), raw.get("detector", ""))


# --- fake values in the providers' documented formats -------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _jwt(rng: random.Random) -> str:
    def seg(obj: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": str(rng.randint(1000, 99999)), "iat": rng.randint(1_700_000_000, 1_800_000_000),
              "scope": rng.choice(["read", "deploy", "admin"])}
    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg(claims)}.{_s(rng, B64URL, 43)}"


def _pem(rng: random.Random) -> str:
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = "\n".join(_s(rng, B64, 64) for _ in range(rng.randint(3, 6)))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def _localstack(rng: random.Random) -> str:
    return "ls-" + "-".join(_s(rng, ALNUM, n) for n in (8, 4, 4, 4, 12))


SECRET_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "secrets.aws-access-key-id": lambda r: "AKIA" + _s(r, string.ascii_uppercase + "234567", 16),
    "secrets.aws-secret-access-key": lambda r: r.choice(
        ["aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY=", "\"SecretAccessKey\": \""]) + _s(r, B64, 40),
    "secrets.aws-session-token": lambda r: "IQoJb3JpZ2luX2Vj" + _s(r, B64, 300),
    "secrets.github-pat": lambda r: "ghp_" + _s(r, ALNUM, 36),
    "secrets.github-fine-grained-pat": lambda r: "github_pat_" + _s(r, ALNUM, 22) + "_" + _s(r, ALNUM, 59),
    "secrets.github-oauth": lambda r: "gho_" + _s(r, ALNUM, 36),
    "secrets.github-app-token": lambda r: r.choice(["ghu_", "ghs_"]) + _s(r, ALNUM, 36),
    "secrets.github-refresh-token": lambda r: "ghr_" + _s(r, ALNUM, 76),
    "secrets.gitlab-pat": lambda r: "glpat-" + _s(r, B64URL, 20),
    "secrets.gitlab-token": lambda r: r.choice(["glrt-", "gldt-", "glptt-"]) + _s(r, B64URL, 20),
    "secrets.slack-token": lambda r: r.choice([
        f"xoxb-{r.randint(10**10, 10**12)}-{r.randint(10**12, 10**13)}-{_s(r, ALNUM, 24)}",
        f"xoxp-{r.randint(10**10, 10**12)}-{r.randint(10**10, 10**12)}-{r.randint(10**12, 10**13)}-{_s(r, HEX, 32)}",
    ]),
    "secrets.slack-app-token": lambda r: f"xapp-1-A{_s(r, string.ascii_uppercase + string.digits, 10)}-"
                                         f"{r.randint(10**12, 10**13)}-{_s(r, HEX, 64)}",
    "secrets.slack-webhook": lambda r: f"https://hooks.slack.com/services/T{_s(r, string.ascii_uppercase, 8)}/"
                                       f"B{_s(r, string.ascii_uppercase, 8)}/{_s(r, ALNUM, 24)}",
    "secrets.stripe-secret-key": lambda r: r.choice(["sk_live_", "sk_test_"]) + _s(r, ALNUM, 24),
    "secrets.stripe-restricted-key": lambda r: "rk_live_" + _s(r, ALNUM, 24),
    "secrets.google-api-key": lambda r: "AIza" + _s(r, B64URL, 35),
    "secrets.google-oauth-client-secret": lambda r: "GOCSPX-" + _s(r, B64URL, 28),
    "secrets.azure-storage-account-key": lambda r: "DefaultEndpointsProtocol=https;AccountName=acme"
                                                   f"{r.randint(1, 99)};AccountKey={_s(r, B64, 86)}==;"
                                                   "EndpointSuffix=core.windows.net",
    "secrets.azure-shared-access-key": lambda r: "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName="
                                                 f"RootManageSharedAccessKey;SharedAccessKey={_s(r, B64, 43)}=",
    "secrets.npm-token": lambda r: "npm_" + _s(r, ALNUM, 36),
    "secrets.pypi-token": lambda r: "pypi-AgEIcHlwaS5vcmc" + _s(r, B64URL, 70),
    "secrets.docker-hub-token": lambda r: "dckr_pat_" + _s(r, B64URL, 27),
    "secrets.heroku-api-key": lambda r: r.choice(
        ["HRKU-" + _s(r, B64URL, 60), f"HEROKU_API_KEY={uuid.UUID(int=r.getrandbits(128))}"]),
    "secrets.digitalocean-token": lambda r: r.choice(["dop_v1_", "doo_v1_"]) + _s(r, HEX, 64),
    "secrets.twilio-credential": lambda r: r.choice(["TWILIO_API_KEY=SK", "twilio account AC"]) + _s(r, HEX, 32),
    "secrets.sendgrid-api-key": lambda r: f"SG.{_s(r, B64URL, 22)}.{_s(r, B64URL, 43)}",
    "secrets.mailgun-api-key": lambda r: "key-" + _s(r, HEX, 32),
    "secrets.openai-api-key": lambda r: r.choice([
        "sk-proj-" + _s(r, B64URL, 100), "sk-" + _s(r, ALNUM, 20) + "T3BlbkFJ" + _s(r, ALNUM, 20)]),
    "secrets.anthropic-api-key": lambda r: "sk-ant-api03-" + _s(r, B64URL, 93) + "AA",
    "secrets.huggingface-token": lambda r: "hf_" + _s(r, string.ascii_letters, 34),
    "secrets.datadog-api-key": lambda r: r.choice(["DD_API_KEY=", "datadog key "]) + _s(r, HEX, r.choice([32, 40])),
    "secrets.sentry-dsn-secret": lambda r: f"https://{_s(r, HEX, 32)}:{_s(r, HEX, 32)}@o{r.randint(1, 99999)}"
                                           f".ingest.sentry.io/{r.randint(1, 999999)}",
    "secrets.sentry-auth-token": lambda r: "sntryu_" + _s(r, HEX, 64),
    "secrets.shopify-token": lambda r: r.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + _s(r, HEX, 32),
    "secrets.localstack-auth-token": _localstack,
    "secrets.posthog-personal-key": lambda r: "phx_" + _s(r, ALNUM, 43),
    "secrets.jwt": _jwt,
    "secrets.private-key": _pem,
    "secrets.basic-auth-url": lambda r: f"https://deploy:{_s(r, ALNUM, 14)}@registry.example.com/v2/",
    "secrets.authorization-header": lambda r: "Bearer " + _s(r, B64URL, 40),
    "secrets.generic-assignment": lambda r: r.choice(["password=", "--token ", "api_key: ", "client_secret="])
                                            + _s(r, ALNUM + "!#%", 16),
}

# The provider catalogue (`telemetry_audit/detectors/providers.py`): each format as a template written from the
# provider's documentation (the `source` of its pattern). `{x:N}` is N random characters of alphabet x.
PROVIDER_SAMPLES: dict[str, str] = {
    "secrets.vault-service-token": "hvs.{b:90}",
    "secrets.vault-batch-token": "hvb.{b:120}",
    "secrets.vault-recovery-token": "hvr.{b:30}",
    "secrets.vault-legacy-token": "VAULT_TOKEN=s.{a:24}",
    "secrets.terraform-cloud-token": "{a:14}.atlasv1.{b:67}",
    "secrets.postman-api-key": "PMAK-{h:24}-{h:34}",
    "secrets.atlassian-api-token": "ATATT3{b:186}",
    "secrets.bitbucket-app-password": "ATBB{a:32}",
    "secrets.linear-api-key": "lin_api_{a:40}",
    "secrets.linear-oauth-token": "lin_oauth_{h:64}",
    "secrets.notion-token": "ntn_{d:11}{a:35}",
    "secrets.doppler-token": "dp.st.prd.{a:43}",
    "secrets.onepassword-service-account-token": "ops_eyJ{B:300}",
    "secrets.onepassword-secret-key": "A3-{u:6}-{u:6}-{u:5}-{u:5}-{u:5}-{u:5}",
    "secrets.pulumi-access-token": "pul-{h:40}",
    "secrets.vercel-token": "vcp_{a:56}",
    "secrets.vercel-blob-token": "vercel_blob_rw_{a:16}_{a:30}",
    "secrets.netlify-token": "nfp_{a:36}",
    "secrets.fly-io-token": "fo1_{b:43}",
    "secrets.supabase-token": "sbp_{h:40}",
    "secrets.planetscale-token": "pscale_tkn_{b:43}",
    "secrets.planetscale-password": "pscale_pw_{b:43}",
    "secrets.planetscale-oauth-token": "pscale_oauth_{b:43}",
    "secrets.render-api-key": "rnd_{a:32}",
    "secrets.neon-api-key": "napi_{l:64}",
    "secrets.databricks-token": "dapi{h:32}",
    "secrets.circleci-token": "CCIPAT_{a:22}_{h:40}",
    "secrets.buildkite-token": "bkua_{h:40}",
    "secrets.tailscale-key": "tskey-auth-{a:12}-{a:32}",
    "secrets.ngrok-authtoken": "NGROK_AUTHTOKEN={a:27}_{a:21}",
    "secrets.harness-token": "pat.{b:22}.{h:24}.{a:20}",
    "secrets.sonar-token": "squ_{h:40}",
    "secrets.sourcegraph-token": "sgp_{h:16}_{h:40}",
    "secrets.segment-public-api-token": "sgp_{a:64}",
    "secrets.figma-token": "figd_{b:40}",
    "secrets.typeform-token": "tfp_{a:59}",
    "secrets.readme-api-key": "rdme_{l:70}",
    "secrets.prefect-api-key": "pnu_{a:36}",
    "secrets.infracost-api-key": "ico-{a:32}",
    "secrets.octopus-deploy-api-key": "API-{u:27}",
    "secrets.openshift-token": "sha256~{b:43}",
    "secrets.launchdarkly-key": "api-{uuid}",
    "secrets.codecov-token": "CODECOV_TOKEN={uuid}",
    "secrets.snyk-token": "SNYK_TOKEN={uuid}",
    "secrets.azure-devops-pat": "{a:52}JQQJ99{a:3}AZDO{a:4}",
    "secrets.rubygems-api-key": "rubygems_{h:48}",
    "secrets.nuget-api-key": "oy2{l:43}",
    "secrets.clojars-token": "CLOJARS_{l:60}",
    "secrets.crates-io-token": "cio{a:32}",
    "secrets.artifactory-token": "AKCp{a:69}",
    "secrets.azure-ad-client-secret": "{a:3}8Q~{a:34}",
    "secrets.azure-sas-token": "https://acme.blob.core.windows.net/c/x?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-12-01&sig={a:43}%3D",
    "secrets.gcp-service-account-key": "{{\"type\": \"service_account\", \"private_key_id\": \"{h:40}\"}}",
    "secrets.google-oauth-refresh-token": "1//0{b:100}",
    "secrets.google-oauth-access-token": "ya29.{b:150}",
    "secrets.firebase-cloud-messaging-key": "AAAA{b:7}:APA91b{b:134}",
    "secrets.aws-bedrock-api-key": "ABSK{B:130}",
    "secrets.alibaba-access-key-id": "LTAI{a:20}",
    "secrets.yandex-api-key": "AQVN{b:36}",
    "secrets.yandex-iam-token": "t1.{b:80}.{b:86}",
    "secrets.yandex-static-key": "YC{b:38}",
    "secrets.cloudflare-api-token": "CLOUDFLARE_API_TOKEN={b:40}",
    "secrets.cloudflare-global-api-key": "CLOUDFLARE_API_KEY={h:37}",
    "secrets.cloudflare-origin-ca-key": "v1.0-{h:24}-{h:146}",
    "secrets.fastly-api-token": "FASTLY_API_TOKEN={b:32}",
    "secrets.okta-api-token": "OKTA_API_TOKEN=00{b:40}",
    "secrets.auth0-client-secret": "AUTH0_CLIENT_SECRET={b:64}",
    "secrets.snowflake-connection": "snowflake://svc_loader:{a:16}@acme-xy12345/analytics",
    "secrets.digitalocean-spaces-key": "DO{u:18}",
    "secrets.cloudinary-url": "cloudinary://{d:15}:{b:27}@acme",
    "secrets.new-relic-user-key": "NRAK-{u:27}",
    "secrets.new-relic-license-key": "{h:36}NRAL",
    "secrets.new-relic-insert-key": "NRII-{b:32}",
    "secrets.new-relic-query-key": "NRIQ-{b:32}",
    "secrets.new-relic-browser-key": "NRJS-{h:19}",
    "secrets.grafana-api-key": "eyJrIjoi{a:100}",
    "secrets.grafana-cloud-token": "glc_{B:120}",
    "secrets.grafana-service-account-token": "glsa_{a:32}_{h:8}",
    "secrets.dynatrace-token": "dt0c01.{u:24}.{u:64}",
    "secrets.honeycomb-key": "hcaik_{l:58}",
    "secrets.honeycomb-legacy-key": "HONEYCOMB_API_KEY={h:32}",
    "secrets.rollbar-token": "ROLLBAR_ACCESS_TOKEN={h:32}",
    "secrets.bugsnag-api-key": "BUGSNAG_API_KEY={h:32}",
    "secrets.splunk-hec-token": "Splunk {uuid}",
    "secrets.elastic-api-key": "ApiKey {B:60}",
    "secrets.wandb-api-key": "WANDB_API_KEY={h:40}",
    "secrets.langsmith-api-key": "lsv2_pt_{h:32}_{h:10}",
    "secrets.statsig-server-secret": "secret-{a:43}",
    "secrets.replicate-token": "r8_{a:37}",
    "secrets.groq-api-key": "gsk_{a:52}",
    "secrets.perplexity-api-key": "pplx-{a:48}",
    "secrets.xai-api-key": "xai-{a:80}",
    "secrets.cohere-api-key": "CO_API_KEY={a:40}",
    "secrets.mistral-api-key": "MISTRAL_API_KEY={a:32}",
    "secrets.openrouter-api-key": "sk-or-v1-{h:64}",
    "secrets.pinecone-api-key": "pcsk_{a:5}_{a:70}",
    "secrets.elevenlabs-api-key": "sk_{h:48}",
    "secrets.telegram-bot-token": "{d:10}:AA{b:33}",
    "secrets.discord-bot-token": "DISCORD_TOKEN=M{b:25}.{b:6}.{b:38}",
    "secrets.discord-webhook": "https://discord.com/api/webhooks/{d:18}/{b:68}",
    "secrets.twitch-token": "TWITCH_CLIENT_SECRET={l:30}",
    "secrets.twitter-bearer-token": "AAAAAAAAAAAAAAAAAAAAA{a:90}",
    "secrets.facebook-access-token": "EAAB{a:150}",
    "secrets.microsoft-teams-webhook": "https://acme.webhook.office.com/webhookb2/{uuid}@{uuid}/IncomingWebhook/{h:32}/{uuid}",
    "secrets.trello-token": "TRELLO_TOKEN=ATTA{h:64}{H:8}",
    "secrets.resend-api-key": "re_{a:8}_{a:24}",
    "secrets.mailersend-token": "mlsn.{h:64}",
    "secrets.brevo-api-key": "xkeysib-{h:64}-{a:16}",
    "secrets.postmark-token": "POSTMARK_SERVER_TOKEN={uuid}",
    "secrets.mailchimp-api-key": "{h:32}-us21",
    "secrets.zendesk-api-token": "ZENDESK_API_TOKEN={a:40}",
    "secrets.hubspot-private-app-token": "pat-na1-{uuid}",
    "secrets.adafruit-io-key": "aio_{a:28}",
    "secrets.airtable-pat": "pat{a:14}.{h:64}",
    "secrets.asana-pat": "ASANA_PAT=2/{d:16}/{d:16}:{a:32}",
    "secrets.adobe-client-secret": "p8e-{a:32}",
    "secrets.frameio-token": "fio-u-{b:64}",
    "secrets.stripe-webhook-secret": "whsec_{a:32}",
    "secrets.square-access-token": "EAAA{b:60}",
    "secrets.square-oauth-secret": "sq0csp-{b:43}",
    "secrets.braintree-access-token": "access_token$production${l:16}${h:32}",
    "secrets.plaid-access-token": "access-production-{uuid}",
    "secrets.shippo-token": "shippo_live_{h:40}",
    "secrets.easypost-api-key": "EZAK{a:54}",
    "secrets.duffel-token": "duffel_live_{b:43}",
    "secrets.flutterwave-secret-key": "FLWSECK_TEST-{h:32}-X",
    "secrets.gocardless-token": "GOCARDLESS_ACCESS_TOKEN=live_{b:40}",
    "secrets.contentful-pat": "CFPAT-{b:43}",
    "secrets.algolia-api-key": "ALGOLIA_ADMIN_API_KEY={h:32}",
    "secrets.mapbox-secret-token": "sk.eyJ{b:60}.{b:22}",
    "secrets.confluent-api-secret": "CONFLUENT_CLOUD_API_SECRET={B:64}",
    "secrets.clickhouse-cloud-secret": "4b1d{a:38}",
    "secrets.dropbox-token": "sl.{b:140}",
    "secrets.mongodb-uri": "mongodb+srv://app:{a:16}@cluster0.ab1cd.mongodb.net/prod",
    "secrets.postgres-uri": "postgresql://billing:{a:18}@db.internal:5432/billing",
    "secrets.mysql-uri": "mysql://root:{a:14}@10.0.3.7:3306/shop",
    "secrets.redis-uri": "rediss://default:{a:24}@cache.internal:6380/0",
    "secrets.amqp-uri": "amqps://worker:{a:20}@mq.internal/vhost",
    "secrets.age-secret-key": "AGE-SECRET-KEY-1{z:58}",
}

_ALPHABETS = {
    "a": ALNUM, "b": B64URL, "B": B64, "h": HEX, "H": HEX.upper(), "d": string.digits,
    "u": string.ascii_uppercase + string.digits, "l": string.ascii_lowercase + string.digits,
    "z": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",  # bech32, as age keys use
}
_FIELD = re.compile(r"\{(?:([a-zA-Z]):([0-9]+)|uuid)\}")


def from_template(rng: random.Random, template: str) -> str:
    """A fake value of `template`'s shape (see `PROVIDER_SAMPLES`); `{{` and `}}` are literal braces."""
    def fill(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return _s(rng, _ALPHABETS[m.group(1)], int(m.group(2)))

    return _FIELD.sub(fill, template.replace("{{", "\x01").replace("}}", "\x02")).replace(
        "\x01", "{").replace("\x02", "}")


def _kubernetes_token(rng: random.Random) -> str:
    def seg(obj: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "ci",
              "sub": f"system:serviceaccount:ci:deployer-{rng.randint(1, 99)}"}
    return f"{seg({'alg': 'RS256', 'kid': _s(rng, B64URL, 20)})}.{seg(claims)}.{_s(rng, B64URL, 342)}"


def _base64_pem(rng: random.Random) -> str:
    return base64.b64encode(_pem(rng).encode()).decode()


for _id, _template in PROVIDER_SAMPLES.items():
    SECRET_FORMATS[_id] = lambda r, _t=_template: from_template(r, _t)
SECRET_FORMATS["secrets.kubernetes-service-account-token"] = _kubernetes_token
SECRET_FORMATS["secrets.private-key-base64"] = _base64_pem

KEY_CONTEXT: tuple[tuple[str, str], ...] = (
    ("aws_secret_access_key", "{B:40}"),
    ("dd_api_key", "{h:32}"),
    ("DD_APP_KEY", "{h:40}"),
    ("db_password", "{a:12}#{d:2}"),
    ("dbPassword", "{a:16}"),
    ("client_secret", "{b:32}"),
    ("x-api-key", "{a:24}"),
    ("authToken", "{b:40}"),
    ("HEROKU_API_TOKEN", "{uuid}-x{a:8}"),
    ("npm_auth_token", "{b:36}"),
    ("passphrase", "{a:10}-{a:10}"),
    ("encryption_key", "{B:44}"),
)
"""Secrets whose only clue is the name they are sent under: (name, value template)."""

BENIGN_LOOK_ALIKES: tuple[Mapping[str, Any], ...] = (
    {"token_count": 42, "password_set": True, "secret_scanning_enabled": False, "keyboard_layout": "us"},
    {"api_key": "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p", "token_type": "Bearer", "max_tokens": 4096},
    {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/111.0.0.0 "
                   "Safari/537.36", "dotnet": "8.0.0.0", "assembly_version": "4.2.0.0"},
    {"node": "20.11.1", "runtime": "node 20.11.1 (NODE_VERSION)", "python": "3.12.1"},
    {"password": "<redacted>", "secret": "********", "api_key": "${DD_API_KEY}", "token": "changeme"},
    {"auth": "none", "authorization_required": False, "author": "Jane Q. Developer", "keys": ["a", "b"]},
    {"cache_key": "v1-linux-node18-abc", "sort_key": "createdAtDescending", "token_url": "https://auth.test/t"},
    {"session_token_expires_at": "2026-11-22T07:58:27Z", "id_token_hint": "present", "input_tokens": 1234567},
)
"""Values that look like leaks to a careless detector (from the issue and from real traffic)."""


# --- events modelled on the real captures ------------------------------------------------------------------


def _sst_v4(rng: random.Random, planted: str, where: str) -> Any:
    props: dict[str, Any] = {
        "$lib": "posthog-go", "$lib_version": "2.0.0", "args": ["deploy", "--stage", "dev"], "ci_name": "",
        "cpu_count": 2, "memory_total": 11962752, "project_id": _s(rng, HEX, 40),
        "session_id": _s(rng, string.ascii_lowercase, 32), "sst_version": "4.17.1",
        "system_architecture": "amd64", "system_platform": "linux", "user_id": _s(rng, string.ascii_lowercase, 32),
    }
    if where == "arg":
        props["args"] = ["deploy", planted]
    else:
        props["error"] = f"Error: request failed with {planted} while deploying"
    return {"api_key": "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p", "batch": [{
        "type": "capture", "library": "posthog-go", "library_version": "2.0.0",
        "timestamp": "2026-11-22T07:58:27.763893865Z", "distinct_id": props["user_id"], "event": "cli.error",
        "properties": props, "send_feature_flags": False}]}


def _serverless(rng: random.Random, planted: str, where: str) -> Any:
    event: dict[str, Any] = {
        "ciName": None, "cliName": "serverless", "command": "deploy", "commandOptionNames": ["stage"],
        "dashboard": {"userId": None}, "frameworkLocalUserId": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
        "installationType": "global:other", "timestamp": 1795334133409, "timezone": "UTC",
        "versions": {"serverless": "3.40.0", "@serverless/dashboard-plugin": "7.2.3"},
        "config": {"provider": {"name": "aws", "runtime": "nodejs18.x", "stage": "qa", "region": "eu-west-1"}},
        "outcome": "failure", "id": str(uuid.UUID(int=rng.getrandbits(128), version=1)),
    }
    if where == "arg":
        event["failureReason"] = {"kind": "user", "code": "AWS_CREDENTIALS_NOT_FOUND", "message": planted}
    else:
        event["error"] = {"stacktrace": f"Error: failed\n    at deploy (index.js:1:1)\n    context: {planted}"}
    return [event]


def _localstack_event(rng: random.Random, planted: str, where: str) -> Any:
    session = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    payload: dict[str, Any] = {"cmd": "localstack start", "params": ["host"]}
    if where == "arg":
        payload["api_key"] = planted
    else:
        payload["error"] = f"startup failed: {planted}"
    return {"events": [{"name": "cli_cmd", "metadata": {"session_id": session,
                                                        "client_time": "2026-11-22 07:57:10.032389"},
                        "payload": payload}]}


TEMPLATES = (_sst_v4, _serverless, _localstack_event)


def _plant(rng: random.Random, planted: str) -> Any:
    return rng.choice(TEMPLATES)(rng, planted, rng.choice(["arg", "message"]))


def _environment_positives(rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """(family, planted text, text to plant) for paths, env values and personal data."""
    env = TEST_ENVIRONMENT
    for p in ["/home/alice/work/billing-api/serverless.yml", "/Users/alice/Library/Caches/sst/bin/pulumi",
              "/root/.aws/credentials", "C:\\Users\\alice\\AppData\\Roaming\\npm\\node_modules\\serverless",
              "\\\\fileserver01\\builds\\billing-api", "file:///home/alice/work/billing-api/.env",
              "~/.serverlessrc", "/home/bob/projects/x/node_modules/aws-sdk/lib/request.js",
              "/opt/app/node_modules/serverless/lib/cli/handle-error.js:112:17"]:
        yield "paths", p.rsplit(":", 2)[0] if p.endswith(":17") else p, p
    yield "paths", env.cwd, f"at Object.<anonymous> ({env.cwd}/handler.js:10:5)"
    yield "paths", quote(env.cwd, safe=""), f"cwd={quote(env.cwd, safe='')}"
    yield "paths", env.cwd.replace("/", "\\/"), f"{{\"cwd\":\"{env.cwd.replace('/', chr(92) + '/')}\"}}"
    yield "env_values", LOCALSTACK_TOKEN, LOCALSTACK_TOKEN
    yield "env_values", APP_SECRET, f"config error: secret {APP_SECRET} rejected"
    yield "env_values", quote(DB_PASSWORD, safe=""), f"postgres://db/x?password={quote(DB_PASSWORD, safe='')}"
    b64 = base64.b64encode(f"svc:{DB_PASSWORD}".encode()).decode()
    yield "env_values", b64[4:-4], f"Basic {b64}"
    b64 = base64.b64encode(f"token={APP_SECRET}&x=1".encode()).decode()
    yield "env_values", b64[8:-8], b64
    yield "env_values", SHORT_SECRET, f"pin {SHORT_SECRET} used"
    yield "env_values", "Initech Widgets Ltd", "org: Initech Widgets Ltd"
    for e in ["alice.smith@example.com", "dev+ci@initech.io", "j.doe@mail.co.uk"]:
        yield "pii", e, f"logged in as {e}"
    yield "pii", "alice", "alice"
    yield "pii", "alice-thinkpad", "alice-thinkpad"
    yield "pii", "alice-thinkpad.corp.example", "host alice-thinkpad.corp.example unreachable"
    yield "pii", "3c:22:fb:9a:10:7e", "3c:22:fb:9a:10:7e"
    yield "pii", "a4-83-e7-01-02-03", "mac=a4-83-e7-01-02-03"
    yield "pii", "81.2.69.142", "connect ECONNREFUSED 81.2.69.142:443"
    yield "pii", "2a00:1450:4001:82b::200e", "addr 2a00:1450:4001:82b::200e"
    yield "pii", "git@github.com:alice/billing-api.git", "git@github.com:alice/billing-api.git"
    yield "pii", "bob", "https://bob@gitlab.example.com/team/repo.git"
    del rng


BENIGN: tuple[Callable[[random.Random], str], ...] = (
    lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    lambda r: str(uuid.UUID(int=r.getrandbits(128), version=1)),
    lambda r: _s(r, HEX, 40),
    lambda r: _s(r, HEX, 64),
    lambda r: _s(r, HEX, 32),
    lambda r: _s(r, string.ascii_lowercase, 32),
    lambda r: f"gen_{_s(r, HEX, 8)}-{_s(r, HEX, 3)}",
    lambda r: f"{r.randint(0, 30)}.{r.randint(0, 40)}.{r.randint(0, 300)}",
    lambda r: f"v{r.randint(14, 24)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
    lambda r: f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
              f"{r.randint(0, 59):02d}.{r.randint(0, 999999999):09d}Z",
    lambda r: base64.b64encode(f"user-{r.randint(1, 99999)}".encode()).decode(),
    lambda r: base64.b64encode(f"org_{r.randint(1, 999)}:proj_{r.randint(1, 999)}".encode()).decode(),
    lambda r: "phc_" + _s(r, ALNUM, 43),
    lambda r: r.choice(["Asia/Tokyo", "Europe/Berlin", "America/Sao_Paulo", "eu-west-1", "us-east-1"]),
    lambda r: r.choice(["node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "posthog-go (version: 2.0.0)",
                        "localstack/2026.8.2", "python-requests/2.32.3", "aws-sdk-js/3.609.0 os/linux"]),
    lambda r: r.choice(["application/json", "gzip, deflate", "keep-alive", "text/plain; charset=utf-8"]),
    lambda r: r.choice(["https://github.com/serverless/serverless", "https://docs.sst.dev/telemetry",
                        "https://telemetry.ion.sst.dev/batch/", "/v1/events", "/batch/"]),
    lambda r: r.choice(["MISSING_SERVICE_CONTEXT", "AWS_CREDENTIALS_NOT_FOUND", "Could not install pulumi",
                        "telemetry enable --stage dev", "localstack config show", "nodejs18.x", "httpApi"]),
    lambda r: r.choice(["6.18.44-fc-v769", "28.2.2", "AMD EPYC", "x64", "amd64", "arm64", "linux", "darwin"]),
    lambda r: f"{r.randint(1_700_000_000_000, 1_800_000_000_000)}",
    lambda r: f"sha256:{_s(r, HEX, 64)}",
    lambda r: f"{_s(r, HEX, 7)}",
    lambda r: r.choice(["@serverless/dashboard-plugin", "left-pad", "@aws-sdk/client-s3", "esbuild"]),
    lambda r: f"token_count={r.randint(1, 9999)}",
    lambda r: "10.0.0." + str(r.randint(1, 254)),
    lambda r: "192.168." + str(r.randint(0, 255)) + "." + str(r.randint(1, 254)),
    lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
)


def generate(seed: int = SEED, per_format: int = 3, negatives: int = 120) -> list[Record]:
    """The corpus: `per_format` positives per secret format, the environment positives and benign events."""
    rng = random.Random(seed)
    records: list[Record] = []
    for detector_id, make in SECRET_FORMATS.items():
        for i in range(per_format):
            text = make(rng)
            planted = text
            for prefix in ("Bearer ",):
                planted = planted.removeprefix(prefix)
            records.append(Record(f"{detector_id}#{i}", _plant(rng, text), (("secrets", planted),), detector_id))
    for i, (family, planted, text) in enumerate(_environment_positives(rng)):
        records.append(Record(f"{family}#{i}", _plant(rng, text), ((family, planted),)))
    for name, template in KEY_CONTEXT:
        for i in range(per_format):
            value = from_template(rng, template)
            event = {"event": "cli.start", "properties": {"command": "deploy", name: value}}
            records.append(Record(f"key-context:{name}#{i}", event, (("secrets", value),), "secrets.key-context"))
    for i, look_alike in enumerate(BENIGN_LOOK_ALIKES):
        records.append(Record(f"look-alike#{i}", {"event": "cli.start", "properties": dict(look_alike)}))
    for i in range(negatives):
        values = [rng.choice(BENIGN)(rng) for _ in range(4)]
        records.append(Record(f"benign#{i}", {"event": "cli.start", "values": values,
                                              "context": _plant(rng, " ".join(values[:2]))}))
    return records


def write(records: list[Record], path: Path = CORPUS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")


def load(path: Path = CORPUS) -> list[Record]:
    return [Record.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- flattening and scoring --------------------------------------------------------------------------------


def flatten(document: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every leaf of a JSON document, as the engine hands them to detectors."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield from flatten(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from flatten(value, f"{path}[{index}]")
    elif isinstance(document, str):
        yield path, document
    elif document is not None and not isinstance(document, bool):
        yield path, str(document)


def capture_values(path: Path) -> list[tuple[str, str]]:
    """Every string value of one capture: header values, query values and the decoded body."""
    if path.suffix == ".body":
        return list(flatten(json.loads(path.read_bytes()), "body"))
    raw = json.loads(path.read_text(encoding="utf-8"))
    values = [(f"header.{k.lower()}", v) for k, v in raw.get("headers", [])]
    values += [(f"query.{k}", v) for k, v in parse_qsl(urlsplit(raw.get("path", "")).query)]
    values += list(flatten(raw.get("body_json"), "body"))
    return values


def captures() -> list[Path]:
    return sorted(p for p in CAPTURES.iterdir() if p.suffix in (".json", ".body"))


CONTENT_FAMILIES = ("secrets", "paths", "env_values", "pii")
"""The families the corpus scores; canary markers are unique per run and tested on their own."""


def build_all(environment: AuditEnvironment = TEST_ENVIRONMENT,
              settings: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Detector]:
    settings = settings or {}
    return {name: FAMILIES[name](settings.get(name, {}), environment) for name in CONTENT_FAMILIES}


def scan(detectors: Mapping[str, Detector], value: str, path: str = "") -> list[tuple[str, Match]]:
    """Every family's matches in `value`, with key-name context from the last step of `path` (as the engine)."""
    name = "" if path.endswith("]") else path.rsplit(".", 1)[-1]
    found: list[tuple[str, Match]] = []
    for family, detector in detectors.items():
        matches = tuple(detector.find(value))
        find_under = getattr(detector, "find_under", None)
        if find_under is not None and name:
            matches += tuple(find_under(name, value, matches))
        found.extend((family, m) for m in matches)
    return found


@dataclass
class Score:
    """Recall and precision counters for one family (or overall)."""

    labels: int = 0
    found: int = 0
    true_positives: int = 0
    false_positives: int = 0
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.labels if self.labels else 1.0

    @property
    def precision(self) -> float:
        total = self.true_positives + self.false_positives
        return self.true_positives / total if total else 1.0


def evaluate(records: list[Record], detectors: Mapping[str, Detector]) -> dict[str, Score]:
    """Score `detectors` on `records`, per family and `overall`.

    A label is found when a match of its family overlaps an occurrence of the
    planted text. A match overlapping any planted text counts as a true
    positive (a planted path also holds the user name); any other match is a
    false positive.
    """
    scores: dict[str, Score] = {name: Score() for name in [*detectors, "overall"]}
    for record in records:
        found_labels: set[int] = set()
        for path, value in flatten(record.event):
            spans = [(i, fam, start, start + len(text)) for i, (fam, text) in enumerate(record.labels)
                     for start in _occurrences(value, text)]
            for family, match in scan(detectors, value, path):
                hits = [s for s in spans if s[2] < match.end and match.start < s[3]]
                if hits:
                    scores[family].true_positives += 1
                    found_labels.update(i for i, fam, _, _ in hits if fam == family)
                else:
                    scores[family].false_positives += 1
                    scores[family].false.append(f"{record.id}: {match.detector_id} {value[match.start:match.end]!r}")
        for i, (family, text) in enumerate(record.labels):
            scores[family].labels += 1
            if i in found_labels:
                scores[family].found += 1
            else:
                scores[family].missed.append(f"{record.id}: {text[:60]!r}")
    overall = scores["overall"]
    for name, score in scores.items():
        if name != "overall":
            overall.labels += score.labels
            overall.found += score.found
            overall.true_positives += score.true_positives
            overall.false_positives += score.false_positives
            overall.missed += score.missed
            overall.false += score.false
    return scores


def _occurrences(value: str, text: str) -> Iterator[int]:
    start = value.find(text)
    while start >= 0:
        yield start
        start = value.find(text, start + 1)


if __name__ == "__main__":
    write(generate())
    print(f"wrote {CORPUS}")
