"""Provider credential formats beyond the core set in `secrets.py`.

Each entry is written from the provider's own documentation of its token
format; `source` cites that page. Prefixed tokens (`PMAK-`, `hvs.`, `glsa_`)
carry their prefix as the keyword; formats without a distinctive prefix are
anchored on the provider's name within 40 characters before the value
(`CLOUDFLARE_API_TOKEN=…`), so the keyword pre-filter still decides which
patterns run and a clean value costs one `re2.Set` pass whatever the size of
the catalogue. A value with neither (a bare 32-hex key) is left to the
key-name context detector (`secrets.key-context`).
"""

from __future__ import annotations

import base64
import binascii
import json

from telemetry_audit.detectors.secret_pattern import SecretPattern

_END = r"(?:[^A-Za-z0-9_-]|$)"
"""The character after a token: none of the token's own alphabet."""
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _prefixed(name: str, title: str, regexes: tuple[str, ...], keywords: tuple[str, ...], source: str,
              entropy: float | None = 3.0, prefilter: str = "") -> SecretPattern:
    """A token that carries a fixed, documented prefix (the keyword, matched case-sensitively).

    `prefilter` replaces the keyword when the prefix alone is common text (`pat`, `DO`, `sk_`): the prefix
    with the few characters after it that no ordinary word has.
    """
    return SecretPattern(name, title, tuple(r"\b(" + r + ")" + _END for r in regexes), keywords, entropy,
                         source=source, exact_keywords=True, prefilter=prefilter)


def _near(name: str, title: str, keyword: str, value: str, keywords: tuple[str, ...], source: str,
          entropy: float | None = 3.0) -> SecretPattern:
    """A token without a prefix: the provider's name (a variable, key or header) within 40 characters before it."""
    regex = r"(?i:" + keyword + r")[^\n]{0,40}?(?:^|[^A-Za-z0-9_-])(" + value + ")" + _END
    return SecretPattern(name, title, (regex,), keywords, entropy, source=source)


def _uri(name: str, title: str, schemes: str, keywords: tuple[str, ...], source: str) -> SecretPattern:
    """A connection URI with a password in its user-info: group 1 is `user:password`."""
    regex = r"\b(?:" + schemes + r")://([^\s:@/?#\"'<>]{0,128}:[^\s:@/?#\"'<>]{1,128})@[A-Za-z0-9._\[-]"
    return SecretPattern(name, title, (regex,), keywords, None, verify=_real_password, source=source)


_PLACEHOLDER_PASSWORDS = frozenset({"password", "pass", "passwd", "pwd", "secret", "changeme", "xxx", "xxxx",
                                    "****", "***", "<password>", "${password}", "{password}", "%s"})


def _real_password(userinfo: str) -> bool:
    password = userinfo.split(":", 1)[1]
    return password.lower() not in _PLACEHOLDER_PASSWORDS and not password.startswith(("$", "{", "<", "%"))


def _b64_json(segment: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _is_kubernetes_token(text: str) -> bool:
    parts = text.split(".")
    claims = _b64_json(parts[1]) if len(parts) == 3 else None
    if not isinstance(claims, dict):
        return False
    issuer = str(claims.get("iss", ""))
    return issuer == "kubernetes/serviceaccount" or "kubernetes.io" in json.dumps(claims)


def _is_base64_private_key(text: str) -> bool:
    try:
        head = base64.b64decode(text[:200] + "=" * (-len(text[:200]) % 4))
    except (ValueError, binascii.Error):
        return False
    return b"PRIVATE KEY" in head


PROVIDERS: tuple[SecretPattern, ...] = (
    # --- HashiCorp -------------------------------------------------------------------------------------------
    _prefixed("vault-service-token", "HashiCorp Vault service token", (r"hvs\.[A-Za-z0-9_-]{24,}",), ("hvs.",),
              "https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes"),
    _prefixed("vault-batch-token", "HashiCorp Vault batch token", (r"hvb\.[A-Za-z0-9_-]{24,}",), ("hvb.",),
              "https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes"),
    _prefixed("vault-recovery-token", "HashiCorp Vault recovery token", (r"hvr\.[A-Za-z0-9_-]{24,}",), ("hvr.",),
              "https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes"),
    _near("vault-legacy-token", "HashiCorp Vault token (legacy `s.` format)", "vault", r"s\.[A-Za-z0-9]{24}",
          ("vault",), "https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes"),
    _prefixed("terraform-cloud-token", "Terraform Cloud / HCP Terraform API token",
              (r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}",), ("atlasv1",),
              "https://developer.hashicorp.com/terraform/cloud-docs/users-teams-organizations/api-tokens"),
    # --- developer platforms ---------------------------------------------------------------------------------
    _prefixed("postman-api-key", "Postman API key", (r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}",), ("PMAK-",),
              "https://learning.postman.com/docs/developer/postman-api/authentication/"),
    _prefixed("atlassian-api-token", "Atlassian (Jira, Confluence) API token", (r"ATATT3[A-Za-z0-9_=-]{180,200}",),
              ("ATATT3",), "https://support.atlassian.com/atlassian-account/docs/manage-api-tokens-for-your-atlassian-account/"),
    _prefixed("bitbucket-app-password", "Bitbucket app password or access token",
              (r"ATBB[A-Za-z0-9_=.-]{28,}", r"ATCTT3xFfGN0[A-Za-z0-9_=.-]{100,}"), ("ATBB", "ATCTT3xFfGN0"),
              "https://support.atlassian.com/bitbucket-cloud/docs/app-passwords/"),
    _prefixed("linear-api-key", "Linear personal API key", (r"lin_api_[A-Za-z0-9]{40}",), ("lin_api_",),
              "https://linear.app/developers/graphql#personal-api-keys"),
    _prefixed("linear-oauth-token", "Linear OAuth access token", (r"lin_oauth_[a-f0-9]{64}",), ("lin_oauth_",),
              "https://linear.app/developers/oauth-2-0-authentication"),
    _prefixed("notion-token", "Notion integration token", (r"ntn_[0-9]{11}[A-Za-z0-9]{35}", r"secret_[A-Za-z0-9]{43}"),
              ("ntn_", "secret_"), "https://developers.notion.com/docs/authorization",
              prefilter=r"ntn_[0-9]{8}|secret_[A-Za-z0-9]{12}"),
    _prefixed("doppler-token", "Doppler token (personal, service, service account, CLI, SCIM, audit)",
              (r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9._-]{40,}",), ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.",
                                                                          "dp.scim.", "dp.audit."),
              "https://docs.doppler.com/reference/api#authentication"),
    _prefixed("onepassword-service-account-token", "1Password service account token",
              (r"ops_eyJ[A-Za-z0-9+/_-]{200,}={0,3}",), ("ops_eyJ",),
              "https://developer.1password.com/docs/service-accounts/"),
    _prefixed("onepassword-secret-key", "1Password account Secret Key",
              (r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",),
              ("A3-",),
              "https://support.1password.com/secret-key/",
              prefilter=r"A3-[A-Z0-9]{6}-"),
    _prefixed("pulumi-access-token", "Pulumi access token", (r"pul-[a-f0-9]{40}",), ("pul-",),
              "https://www.pulumi.com/docs/pulumi-cloud/access-management/access-tokens/"),
    _prefixed("vercel-token", "Vercel access token", (r"vc[pirak]_[A-Za-z0-9]{40,64}",),
              ("vcp_", "vci_", "vcr_", "vca_", "vck_"), "https://vercel.com/docs/rest-api/reference/welcome#authentication"),
    _prefixed("vercel-blob-token", "Vercel Blob read-write token", (r"vercel_blob_rw_[A-Za-z0-9]{16}_[A-Za-z0-9]{30}",),
              ("vercel_blob_rw_",), "https://vercel.com/docs/vercel-blob/using-blob-sdk"),
    _prefixed("netlify-token", "Netlify personal or OAuth access token", (r"nf[pcou]_[A-Za-z0-9]{36,40}",),
              ("nfp_", "nfc_", "nfo_", "nfu_"), "https://docs.netlify.com/api/get-started/#authentication"),
    _prefixed("fly-io-token", "Fly.io access token", (r"fo1_[A-Za-z0-9_-]{43}", r"fm[12][ar]?_[A-Za-z0-9+/=_-]{100,}"),
              ("fo1_", "fm1_", "fm2_", "fm1a_", "fm2a_", "fm1r_", "fm2r_"), "https://fly.io/docs/security/tokens/"),
    _prefixed("supabase-token", "Supabase personal access token or secret API key",
              (r"sbp_[a-f0-9]{40}", r"sb_secret_[A-Za-z0-9_-]{31,}"), ("sbp_", "sb_secret_"),
              "https://supabase.com/docs/guides/api/api-keys"),
    _prefixed("planetscale-token", "PlanetScale service token", (r"pscale_tkn_[A-Za-z0-9_.=-]{32,64}",),
              ("pscale_tkn_",), "https://planetscale.com/docs/concepts/service-tokens"),
    _prefixed("planetscale-password", "PlanetScale database password", (r"pscale_pw_[A-Za-z0-9_.=-]{32,64}",),
              ("pscale_pw_",), "https://planetscale.com/docs/concepts/connection-strings"),
    _prefixed("planetscale-oauth-token", "PlanetScale OAuth token", (r"pscale_oauth_[A-Za-z0-9_.=-]{32,64}",),
              ("pscale_oauth_",), "https://planetscale.com/docs/concepts/service-tokens"),
    _prefixed("render-api-key", "Render API key", (r"rnd_[A-Za-z0-9]{32}",), ("rnd_",),
              "https://render.com/docs/api#1-create-an-api-key"),
    _prefixed("neon-api-key", "Neon API key", (r"napi_[a-z0-9]{64}",), ("napi_",),
              "https://neon.tech/docs/manage/api-keys"),
    _prefixed("databricks-token", "Databricks personal access token", (r"dapi[a-f0-9]{32}(?:-[0-9]+)?",), ("dapi",),
              "https://docs.databricks.com/aws/en/dev-tools/auth/pat"),
    _prefixed("circleci-token", "CircleCI personal API token", (r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}",),
              ("CCIPAT_",), "https://circleci.com/docs/managing-api-tokens/"),
    _prefixed("buildkite-token", "Buildkite API access token", (r"bkua_[a-f0-9]{40}",), ("bkua_",),
              "https://buildkite.com/docs/apis/managing-api-tokens"),
    _prefixed("tailscale-key", "Tailscale API, auth, OAuth client or webhook key",
              (r"tskey-(?:api|auth|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,}",), ("tskey-",),
              "https://tailscale.com/kb/1277/key-prefixes"),
    _near("ngrok-authtoken", "ngrok authtoken", "ngrok", r"[0-9A-Za-z]{25,27}_[0-9A-Za-z]{20,22}", ("ngrok",),
          "https://ngrok.com/docs/agent/#authtokens"),
    _prefixed("harness-token", "Harness API key or token",
              (r"(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.[A-Za-z0-9]{20}",), ("pat.", "sat."),
              "https://developer.harness.io/docs/platform/automation/api/add-and-manage-api-keys",
              prefilter=r"(?:pat|sat)\.[A-Za-z0-9_-]{8}"),
    _prefixed("sonar-token", "SonarQube / SonarCloud token", (r"sq[pua]_[a-f0-9]{40}",), ("sqp_", "squ_", "sqa_"),
              "https://docs.sonarsource.com/sonarqube-server/latest/user-guide/managing-tokens/"),
    _prefixed("sourcegraph-token", "Sourcegraph access token", (r"sgp_(?:[a-f0-9]{16}_)?[a-f0-9]{40}",), ("sgp_",),
              "https://sourcegraph.com/docs/cli/how-tos/creating_an_access_token"),
    _prefixed("segment-public-api-token", "Segment Public API token", (r"sgp_[A-Za-z0-9]{64}",), ("sgp_",),
              "https://docs.segmentapis.com/tag/Getting-Started#section/Get-an-API-token"),
    _prefixed("figma-token", "Figma personal access token", (r"figd_[A-Za-z0-9_-]{40}",), ("figd_",),
              "https://www.figma.com/developers/api#access-tokens"),
    _prefixed("typeform-token", "Typeform personal access token", (r"tfp_[A-Za-z0-9_.=-]{59}",), ("tfp_",),
              "https://www.typeform.com/developers/get-started/personal-access-token/"),
    _prefixed("readme-api-key", "ReadMe API key", (r"rdme_[a-z0-9]{70}",), ("rdme_",),
              "https://docs.readme.com/main/reference/intro/authentication"),
    _prefixed("prefect-api-key", "Prefect Cloud API key", (r"pnu_[A-Za-z0-9]{36}",), ("pnu_",),
              "https://docs.prefect.io/v3/manage/cloud/manage-users/api-keys"),
    _prefixed("infracost-api-key", "Infracost API key", (r"ico-[A-Za-z0-9]{32}",), ("ico-",),
              "https://www.infracost.io/docs/integrations/environment_variables/"),
    _prefixed("octopus-deploy-api-key", "Octopus Deploy API key", (r"API-[A-Z0-9]{26,32}",), ("API-",),
              "https://octopus.com/docs/octopus-rest-api/how-to-create-an-api-key",
              prefilter=r"API-[A-Z0-9]{12}"),
    _prefixed("openshift-token", "OpenShift OAuth access token", (r"sha256~[A-Za-z0-9_-]{43}",), ("sha256~",),
              "https://docs.redhat.com/en/documentation/openshift_container_platform/4.14/html/authentication_and_authorization/managing-oauth-access-tokens"),
    _prefixed("launchdarkly-key", "LaunchDarkly API access token or SDK key", (r"(?:api|sdk)-" + _UUID,),
              ("api-", "sdk-"), "https://launchdarkly.com/docs/home/account/api",
              prefilter=r"(?:api|sdk)-[0-9a-f]{8}-[0-9a-f]{4}-"),
    _near("codecov-token", "Codecov upload token", "codecov", _UUID, ("codecov",),
          "https://docs.codecov.com/docs/codecov-tokens"),
    _near("snyk-token", "Snyk API token", "snyk", _UUID, ("snyk",),
          "https://docs.snyk.io/snyk-api/authentication-for-api"),
    _prefixed("azure-devops-pat", "Azure DevOps personal access token",
              (r"[A-Za-z0-9]{52}JQQJ9(?:9|D|H)[A-Za-z0-9][A-Za-z0-9]{2}AZDO[A-Za-z0-9]{4}",), ("AZDO",),
              "https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate"),
    # --- package registries ----------------------------------------------------------------------------------
    _prefixed("rubygems-api-key", "RubyGems API key", (r"rubygems_[a-f0-9]{48}",), ("rubygems_",),
              "https://guides.rubygems.org/api-key-scopes/"),
    _prefixed("nuget-api-key", "NuGet.org API key", (r"oy2[a-z0-9]{43}",), ("oy2",),
              "https://learn.microsoft.com/en-us/nuget/nuget-org/scoped-api-keys"),
    _prefixed("clojars-token", "Clojars deploy token", (r"CLOJARS_[a-z0-9]{60}",), ("CLOJARS_",),
              "https://github.com/clojars/clojars-web/wiki/Deploy-Tokens"),
    _prefixed("crates-io-token", "crates.io API token", (r"cio[A-Za-z0-9]{32}",), ("cio",),
              "https://crates.io/settings/tokens", entropy=3.5,
              prefilter=r"\bcio[A-Za-z0-9]{12}"),
    _prefixed("artifactory-token", "JFrog Artifactory API key or reference token",
              (r"AKCp[A-Za-z0-9]{69}", r"cmVmdGtu[A-Za-z0-9]{56}"), ("AKCp", "cmVmdGtu"),
              "https://jfrog.com/help/r/jfrog-platform-administration-documentation/access-tokens"),
    # --- cloud -----------------------------------------------------------------------------------------------
    _prefixed("azure-ad-client-secret", "Microsoft Entra ID (Azure AD) client secret",
              (r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",), ("Q~",),
              "https://learn.microsoft.com/en-us/purview/sit-defn-azure-ad-client-secret"),
    SecretPattern("azure-sas-token", "Azure shared access signature (sig=)",
                  (r"(?i:sv=[0-9-]{10}&)[^\s\"']{0,300}?\bsig=([A-Za-z0-9%+/]{40,}(?:%3D|=){0,2})",), ("sig=",), 3.0,
                  source="https://learn.microsoft.com/en-us/rest/api/storageservices/create-service-sas"),
    SecretPattern("gcp-service-account-key", "Google Cloud service-account key file (private_key_id)",
                  (r"\"private_key_id\"\s*:\s*\"([a-f0-9]{40})\"",), ("private_key_id",), 3.0,
                  source="https://cloud.google.com/iam/docs/keys-create-delete#creating"),
    _prefixed("google-oauth-refresh-token", "Google OAuth refresh token", (r"1//0[A-Za-z0-9_-]{40,}",), ("1//0",),
              "https://developers.google.com/identity/protocols/oauth2"),
    _prefixed("google-oauth-access-token", "Google OAuth access token", (r"ya29\.[A-Za-z0-9_-]{50,}",), ("ya29.",),
              "https://developers.google.com/identity/protocols/oauth2"),
    _prefixed("firebase-cloud-messaging-key", "Firebase Cloud Messaging server key",
              (r"AAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{134}",), (":APA91b",),
              "https://firebase.google.com/docs/cloud-messaging/auth-server"),
    _prefixed("aws-bedrock-api-key", "Amazon Bedrock API key", (r"ABSK[A-Za-z0-9+/]{100,300}={0,2}",), ("ABSK",),
              "https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html"),
    _prefixed("alibaba-access-key-id", "Alibaba Cloud AccessKey ID", (r"LTAI[A-Za-z0-9]{12,20}",), ("LTAI",),
              "https://www.alibabacloud.com/help/en/ram/user-guide/create-an-accesskey-pair"),
    _prefixed("yandex-api-key", "Yandex Cloud API key", (r"AQVN[A-Za-z0-9_-]{35,38}",), ("AQVN",),
              "https://yandex.cloud/en/docs/iam/concepts/authorization/api-key"),
    _prefixed("yandex-iam-token", "Yandex Cloud IAM token", (r"t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}=*",), ("t1.",),
              "https://yandex.cloud/en/docs/iam/concepts/authorization/iam-token",
              prefilter=r"t1\.[A-Za-z0-9_-]{10}"),
    _prefixed("yandex-static-key", "Yandex Cloud static access key secret", (r"YC[A-Za-z0-9_-]{38}",), ("YC",),
              "https://yandex.cloud/en/docs/iam/concepts/authorization/access-key", entropy=3.5,
              prefilter=r"\bYC[A-Za-z0-9_-]{12}"),
    _near("cloudflare-api-token", "Cloudflare API token", "cloudflare|cf_api", r"[A-Za-z0-9_-]{40}",
          ("cloudflare", "cf_api"), "https://developers.cloudflare.com/fundamentals/api/get-started/create-token/"),
    _near("cloudflare-global-api-key", "Cloudflare global API key", "cloudflare|cf_api", r"[a-f0-9]{37}",
          ("cloudflare", "cf_api"), "https://developers.cloudflare.com/fundamentals/api/get-started/keys/"),
    _prefixed("cloudflare-origin-ca-key", "Cloudflare Origin CA key", (r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}",),
              ("v1.0-",), "https://developers.cloudflare.com/fundamentals/api/get-started/ca-keys/"),
    _near("fastly-api-token", "Fastly API token", "fastly", r"[A-Za-z0-9_-]{32}", ("fastly",),
          "https://docs.fastly.com/en/guides/using-api-tokens"),
    _near("okta-api-token", "Okta API token", "okta", r"00[A-Za-z0-9_-]{40}", ("okta",),
          "https://developer.okta.com/docs/guides/create-an-api-token/main/"),
    _near("auth0-client-secret", "Auth0 client secret", "auth0", r"[A-Za-z0-9_-]{64}", ("auth0",),
          "https://auth0.com/docs/get-started/applications/application-settings#basic-information"),
    _uri("snowflake-connection", "Snowflake connection string with a password", "snowflake", ("snowflake://",),
         "https://docs.snowflake.com/en/developer-guide/golang/go-driver"),
    _prefixed("digitalocean-spaces-key", "DigitalOcean Spaces access key id", (r"DO[0-9A-Z]{18}",), ("DO",),
              "https://docs.digitalocean.com/products/spaces/how-to/manage-access/", entropy=3.5,
              prefilter=r"\bDO[0-9A-Z]{12}"),
    _prefixed("cloudinary-url", "Cloudinary URL with API secret", (r"cloudinary://[0-9]{12,15}:[A-Za-z0-9_-]{27}@[a-z0-9_-]+",),
              ("cloudinary://",), "https://cloudinary.com/documentation/how_to_integrate_cloudinary"),
    # --- observability ---------------------------------------------------------------------------------------
    _prefixed("new-relic-user-key", "New Relic user API key", (r"NRAK-[A-Z0-9]{27}",), ("NRAK-",),
              "https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/#user-key"),
    _prefixed("new-relic-license-key", "New Relic ingest license key", (r"[a-f0-9]{36}NRAL",), ("NRAL",),
              "https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/#license-key"),
    _prefixed("new-relic-insert-key", "New Relic Insights insert key", (r"NRII-[A-Za-z0-9_-]{32}",), ("NRII-",),
              "https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/#insights-insert-key"),
    _prefixed("new-relic-query-key", "New Relic Insights query key", (r"NRIQ-[A-Za-z0-9_-]{32}",), ("NRIQ-",),
              "https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/#insights-query-key"),
    _prefixed("new-relic-browser-key", "New Relic browser key", (r"NRJS-[a-f0-9]{19}",), ("NRJS-",),
              "https://docs.newrelic.com/docs/apis/intro-apis/new-relic-api-keys/#browser-key"),
    _prefixed("grafana-api-key", "Grafana API key (legacy)", (r"eyJrIjoi[A-Za-z0-9+/]{60,400}={0,2}",), ("eyJrIjoi",),
              "https://grafana.com/docs/grafana/latest/administration/service-accounts/migrate-api-keys/"),
    _prefixed("grafana-cloud-token", "Grafana Cloud access policy token", (r"glc_[A-Za-z0-9+/]{32,400}={0,2}",),
              ("glc_",), "https://grafana.com/docs/grafana-cloud/account-management/authentication-and-permissions/access-policies/"),
    _prefixed("grafana-service-account-token", "Grafana service account token",
              (r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",),
              ("glsa_",), "https://grafana.com/docs/grafana/latest/administration/service-accounts/"),
    _prefixed("dynatrace-token", "Dynatrace access or platform token",
              (r"dt0[a-z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64}",),
              ("dt0c01.", "dt0s01.", "dt0s02.", "dt0s06.", "dt0s16."),
              "https://docs.dynatrace.com/docs/manage/identity-access-management/access-tokens-and-oauth-clients/access-tokens#token-format"),
    _prefixed("honeycomb-key", "Honeycomb ingest or management key", (r"hc[ax][ik]k_[a-z0-9]{20,80}",),
              ("hcaik_", "hcxik_", "hcamk_", "hcxmk_", "hcakk_"), "https://docs.honeycomb.io/configure/environments/manage-api-keys/"),
    _near("honeycomb-legacy-key", "Honeycomb configuration key (legacy)", "honeycomb|x-honeycomb-team",
          r"[a-f0-9]{32}|[A-Za-z0-9]{22}", ("honeycomb",), "https://docs.honeycomb.io/configure/environments/manage-api-keys/"),
    _near("rollbar-token", "Rollbar access token", "rollbar", r"[a-f0-9]{32}", ("rollbar",),
          "https://docs.rollbar.com/docs/access-tokens"),
    _near("bugsnag-api-key", "Bugsnag / Insight Hub API key", "bugsnag", r"[a-f0-9]{32}", ("bugsnag",),
          "https://docs.bugsnag.com/api/data-access/#authentication"),
    _near("splunk-hec-token", "Splunk HTTP Event Collector token", "splunk", _UUID, ("splunk",),
          "https://docs.splunk.com/Documentation/Splunk/latest/Data/UsetheHTTPEventCollector"),
    SecretPattern("elastic-api-key", "Elasticsearch API key (Authorization: ApiKey)",
                  (r"(?i:apikey)\s+([A-Za-z0-9+/_-]{40,}={0,2})", r"\b(essu_[A-Za-z0-9+/=_-]{40,})"),
                  ("apikey ", "essu_"), 3.0,
                  source="https://www.elastic.co/docs/deploy-manage/api-keys/elasticsearch-api-keys"),
    _near("wandb-api-key", "Weights & Biases API key", "wandb", r"[a-f0-9]{40}", ("wandb",),
          "https://docs.wandb.ai/guides/track/environment-variables/"),
    _prefixed("langsmith-api-key", "LangSmith API key", (r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}",), ("lsv2_",),
              "https://docs.smith.langchain.com/administration/how_to_guides/organization_management/create_account_api_key"),
    _prefixed("statsig-server-secret", "Statsig server secret key", (r"secret-[A-Za-z0-9]{43}",), ("secret-",),
              "https://docs.statsig.com/sdk-keys/api-keys",
              prefilter=r"secret-[A-Za-z0-9]{12}"),
    # --- AI providers ----------------------------------------------------------------------------------------
    _prefixed("replicate-token", "Replicate API token", (r"r8_[A-Za-z0-9]{37}",), ("r8_",),
              "https://replicate.com/docs/topics/security/api-tokens"),
    _prefixed("groq-api-key", "Groq API key", (r"gsk_[A-Za-z0-9]{52}",), ("gsk_",),
              "https://console.groq.com/docs/quickstart"),
    _prefixed("perplexity-api-key", "Perplexity API key", (r"pplx-[A-Za-z0-9]{48}",), ("pplx-",),
              "https://docs.perplexity.ai/guides/getting-started"),
    _prefixed("xai-api-key", "xAI API key", (r"xai-[A-Za-z0-9]{80}",), ("xai-",),
              "https://docs.x.ai/docs/overview"),
    _near("cohere-api-key", "Cohere API key", "cohere|co_api_key", r"[A-Za-z0-9]{40}", ("cohere", "co_api_key"),
          "https://docs.cohere.com/reference/about"),
    _near("mistral-api-key", "Mistral AI API key", "mistral", r"[A-Za-z0-9]{32}", ("mistral",),
          "https://docs.mistral.ai/getting-started/quickstart/"),
    _prefixed("openrouter-api-key", "OpenRouter API key", (r"sk-or-v1-[a-f0-9]{64}",), ("sk-or-v1-",),
              "https://openrouter.ai/docs/api-reference/authentication"),
    _prefixed("pinecone-api-key", "Pinecone API key", (r"pcsk_[A-Za-z0-9]{5,6}_[A-Za-z0-9]{60,}",), ("pcsk_",),
              "https://docs.pinecone.io/guides/projects/manage-api-keys"),
    _prefixed("elevenlabs-api-key", "ElevenLabs API key", (r"sk_[a-f0-9]{48}",), ("sk_",),
              "https://elevenlabs.io/docs/api-reference/authentication",
              prefilter=r"\bsk_[a-f0-9]{12}"),
    # --- messaging and social --------------------------------------------------------------------------------
    _prefixed("telegram-bot-token", "Telegram bot token", (r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}",), (":AA",),
              "https://core.telegram.org/bots/api#authorizing-your-bot",
              prefilter=r"[0-9]{6}:AA"),
    _near("discord-bot-token", "Discord bot token", "discord|bot ",
          r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}", ("discord", "bot "),
          "https://discord.com/developers/docs/reference#authentication"),
    SecretPattern("discord-webhook", "Discord webhook URL",
                  (r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,80})",),
                  ("discord",), source="https://discord.com/developers/docs/resources/webhook"),
    _near("twitch-token", "Twitch client secret or OAuth token", "twitch", r"[a-z0-9]{30}", ("twitch",),
          "https://dev.twitch.tv/docs/authentication/"),
    _prefixed("twitter-bearer-token", "X (Twitter) app bearer token", (r"AAAAAAAAAAAAAAAAAAAAA[A-Za-z0-9%]{60,}",),
              ("AAAAAAAAAAAAAAAAAAAAA",), "https://docs.x.com/resources/fundamentals/authentication/oauth-2-0/bearer-tokens"),
    _prefixed("facebook-access-token", "Meta (Facebook) access token", (r"EAA[A-Za-z0-9]{100,}",), ("EAA",),
              "https://developers.facebook.com/docs/facebook-login/guides/access-tokens",
              prefilter=r"EAA[A-Za-z0-9]{12}"),
    SecretPattern("microsoft-teams-webhook", "Microsoft Teams incoming webhook URL",
                  (r"(https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9@-]{36,}/IncomingWebhook/"
                   r"[a-f0-9]{32}/[A-Za-z0-9-]{36})",), ("webhook.office.com",),
                  source="https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook"),
    _near("trello-token", "Trello API token", "trello", r"(?:ATTA)?[a-f0-9]{64}(?:[A-F0-9]{8})?", ("trello",),
          "https://developer.atlassian.com/cloud/trello/guides/rest-api/authorization/"),
    _prefixed("resend-api-key", "Resend API key", (r"re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24}",), ("re_",),
              "https://resend.com/docs/dashboard/api-keys/introduction",
              prefilter=r"re_[A-Za-z0-9]{8}_"),
    _prefixed("mailersend-token", "MailerSend API token", (r"mlsn\.[a-f0-9]{64}",), ("mlsn.",),
              "https://developers.mailersend.com/general.html#authentication"),
    _prefixed("brevo-api-key", "Brevo (Sendinblue) API key", (r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}",),
              ("xkeysib-",), "https://developers.brevo.com/docs/getting-started"),
    _near("postmark-token", "Postmark server or account token", "postmark", _UUID, ("postmark",),
          "https://postmarkapp.com/developer/api/overview#authentication"),
    _prefixed("mailchimp-api-key", "Mailchimp API key", (r"[a-f0-9]{32}-us[0-9]{1,2}",), ("-us",),
              "https://mailchimp.com/developer/marketing/guides/quick-start/",
              prefilter=r"[a-f0-9]{8}-us[0-9]"),
    _near("zendesk-api-token", "Zendesk API token", "zendesk", r"[A-Za-z0-9]{40}", ("zendesk",),
          "https://developer.zendesk.com/api-reference/introduction/security-and-auth/"),
    _prefixed("hubspot-private-app-token", "HubSpot private app access token", (r"pat-(?:na|eu|ap)[0-9]-" + _UUID,),
              ("pat-na", "pat-eu", "pat-ap"), "https://developers.hubspot.com/docs/api/private-apps",
              prefilter=r"pat-(?:na|eu|ap)[0-9]-"),
    _prefixed("adafruit-io-key", "Adafruit IO key", (r"aio_[A-Za-z0-9]{28}",), ("aio_",),
              "https://io.adafruit.com/api/docs/#authentication"),
    _prefixed("airtable-pat", "Airtable personal access token", (r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}",), ("pat",),
              "https://airtable.com/developers/web/guides/personal-access-tokens",
              prefilter=r"pat[A-Za-z0-9]{14}\."),
    _near("asana-pat", "Asana personal access token", "asana", r"[0-9]/[0-9]{10,20}(?:/[0-9]{10,20})?:[A-Za-z0-9]{32}",
          ("asana",), "https://developers.asana.com/docs/personal-access-token"),
    _prefixed("adobe-client-secret", "Adobe OAuth client secret", (r"p8e-[A-Za-z0-9_-]{32}",), ("p8e-",),
              "https://developer.adobe.com/developer-console/docs/guides/authentication/"),
    _prefixed("frameio-token", "Frame.io developer token", (r"fio-u-[A-Za-z0-9_=-]{64}",), ("fio-u-",),
              "https://developer.frame.io/docs/getting-started/authentication"),
    # --- payments and commerce -------------------------------------------------------------------------------
    _prefixed("stripe-webhook-secret", "Stripe webhook signing secret", (r"whsec_[A-Za-z0-9]{32,}",), ("whsec_",),
              "https://docs.stripe.com/webhooks#verify-events"),
    _prefixed("square-access-token", "Square access token", (r"EAAA[A-Za-z0-9_-]{60}", r"sq0atp-[A-Za-z0-9_-]{22}"),
              ("EAAA", "sq0atp-"), "https://developer.squareup.com/docs/build-basics/access-tokens",
              prefilter=r"EAAA[A-Za-z0-9_-]{12}|sq0atp-"),
    _prefixed("square-oauth-secret", "Square OAuth application secret", (r"sq0csp-[A-Za-z0-9_-]{43}",), ("sq0csp-",),
              "https://developer.squareup.com/docs/oauth-api/overview"),
    _prefixed("braintree-access-token", "PayPal Braintree access token",
              (r"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}",), ("access_token$",),
              "https://developer.paypal.com/braintree/docs/guides/authorization/overview"),
    _prefixed("plaid-access-token", "Plaid access token", (r"access-(?:sandbox|development|production)-" + _UUID,),
              ("access-sandbox-", "access-development-", "access-production-"),
              "https://plaid.com/docs/api/tokens/"),
    _prefixed("shippo-token", "Shippo API token", (r"shippo_(?:live|test)_[a-f0-9]{40}",), ("shippo_",),
              "https://docs.goshippo.com/docs/guides_general/authentication/"),
    _prefixed("easypost-api-key", "EasyPost API key", (r"EZ[AT]K[A-Za-z0-9]{54}",), ("EZAK", "EZTK"),
              "https://docs.easypost.com/docs/authentication"),
    _prefixed("duffel-token", "Duffel access token", (r"duffel_(?:test|live)_[A-Za-z0-9_-]{43}",), ("duffel_",),
              "https://duffel.com/docs/api/overview/making-requests/authentication"),
    _prefixed("flutterwave-secret-key", "Flutterwave secret or encryption key",
              (r"FLWSECK(?:_TEST)?-[a-h0-9]{32}-X", r"FLWSECK(?:_TEST)?[a-h0-9]{12}"), ("FLWSECK",),
              "https://developer.flutterwave.com/docs/authentication"),
    _near("gocardless-token", "GoCardless access token", "gocardless", r"(?:live|sandbox)_[A-Za-z0-9_=-]{40}",
          ("gocardless",), "https://developer.gocardless.com/getting-started/api/making-your-first-request"),
    # --- content and data services ---------------------------------------------------------------------------
    _prefixed("contentful-pat", "Contentful personal access token", (r"CFPAT-[A-Za-z0-9_-]{43}",), ("CFPAT-",),
              "https://www.contentful.com/developers/docs/references/authentication/"),
    _near("algolia-api-key", "Algolia admin or write API key", "algolia", r"[a-f0-9]{32}", ("algolia",),
          "https://www.algolia.com/doc/guides/security/api-keys/"),
    _prefixed("mapbox-secret-token", "Mapbox secret access token", (r"sk\.eyJ[A-Za-z0-9_-]{40,}\.[A-Za-z0-9_-]{20,}",),
              ("sk.eyJ",), "https://docs.mapbox.com/accounts/guides/tokens/"),
    _near("confluent-api-secret", "Confluent Cloud API secret", "confluent", r"[A-Za-z0-9+/]{64}", ("confluent",),
          "https://docs.confluent.io/cloud/current/security/authenticate/workload-identities/service-accounts/api-keys/overview.html"),
    _prefixed("clickhouse-cloud-secret", "ClickHouse Cloud API key secret", (r"4b1d[A-Za-z0-9]{38}",), ("4b1d",),
              "https://clickhouse.com/docs/cloud/manage/openapi"),
    _prefixed("dropbox-token", "Dropbox short-lived access token", (r"sl\.(?:u\.)?[A-Za-z0-9_-]{130,}",),
              ("sl.",), "https://developers.dropbox.com/oauth-guide",
              prefilter=r"\bsl\.(?:u\.)?[A-Za-z0-9_-]{16}"),
    # --- connection strings ----------------------------------------------------------------------------------
    _uri("mongodb-uri", "MongoDB connection string with a password", r"mongodb(?:\+srv)?", ("mongodb://", "mongodb+srv://"),
         "https://www.mongodb.com/docs/manual/reference/connection-string/"),
    _uri("postgres-uri", "PostgreSQL connection URI with a password", r"postgres(?:ql)?", ("postgres://", "postgresql://"),
         "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS"),
    _uri("mysql-uri", "MySQL connection URI with a password", r"mysql(?:x)?", ("mysql://", "mysqlx://"),
         "https://dev.mysql.com/doc/refman/8.4/en/connecting-using-uri-or-key-value-pairs.html"),
    _uri("redis-uri", "Redis connection URI with a password", r"rediss?", ("redis://", "rediss://"),
         "https://www.iana.org/assignments/uri-schemes/prov/redis"),
    _uri("amqp-uri", "AMQP (RabbitMQ) URI with a password", r"amqps?", ("amqp://", "amqps://"),
         "https://www.rabbitmq.com/docs/uri-spec"),
    # --- keys and tokens of infrastructure -------------------------------------------------------------------
    SecretPattern("kubernetes-service-account-token", "Kubernetes service-account token",
                  (r"\b(eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,})",), ("eyJ",),
                  verify=_is_kubernetes_token,
                  source="https://kubernetes.io/docs/concepts/security/service-accounts/#authenticating-credentials"),
    _prefixed("age-secret-key", "age encryption secret key",
              (r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",),
              ("AGE-SECRET-KEY-1",), "https://github.com/C2SP/C2SP/blob/main/age.md#the-x25519-recipient-type"),
    SecretPattern("private-key-base64", "base64-encoded PEM private key (kubeconfig client-key-data)",
                  (r"\b(LS0tLS1CRUdJTi[A-Za-z0-9+/]{60,}={0,2})",), ("LS0tLS1CRUdJTi",),
                  verify=_is_base64_private_key,
                  source="https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/"),
)
