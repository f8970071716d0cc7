"""Secrets: provider credentials, private keys and password-like assignments.

Each detector is a `SecretPattern`: an id, a title, RE2 patterns written from
the provider's documented token format, a keyword pre-filter and an optional
entropy floor. `SecretsDetector.find()` makes one pass over a value with an
`re2.Set` of every detector's keywords, then runs only the full patterns whose
keywords occurred. Values shorter than `MIN_LENGTH` characters are skipped
without any regex: no catalogued secret fits in them.

Span: when a pattern has a capturing group, group 1 is the secret (the part a
redaction replaces); otherwise the whole match is.

Entropy rules. The floor is a Shannon entropy in bits per character computed
over the secret span, and applied as `min(floor, log2(len) - 0.5)` so that
short values are not asked for more than their length allows:

* 3.0 for provider tokens with a fixed prefix (rejects placeholders such as
  `ghp_xxxx…` or `sk_live_000…`) and for keyword-backed hex keys (Twilio,
  Datadog; random hex scores about 3.7);
* 4.0 for AWS secret access keys (40 characters of base64: random keys score
  about 4.8, while a 40-character hex digest can never exceed 4.0);
* 3.0 for the generic `password=`/`token:`/`--secret` assignments and
  `Bearer`/`Basic` credentials, which additionally reject numbers, versions,
  timestamps and placeholders (`${VAR}`, `<token>`, `****`, `changeme`…);
* 4.5 for the opt-in keyword-less `secrets.high-entropy` detector, which also
  requires upper case, lower case and digits and skips known-benign shapes:
  UUIDs, hex digests, semantic versions, ISO timestamps, PostHog distinct ids
  (32 lower-case letters), machine ids such as `gen_b2e28554-7d0`, PostHog
  project keys and base64 that decodes to short printable text.

PostHog project keys (`phc_…`) are public client keys that SDKs send by
design (SST does): they are deliberately *not* flagged. Personal API keys
(`phx_…`) are.

Settings (policy YAML, `settings.detectors.secrets` or a rule's `settings`):

* `disable` (list of detector ids, default `[]`): detectors of this family to
  turn off, e.g. `[secrets.jwt]`.
* `generic` (bool, default `true`): the keyword-backed generic detectors
  (`secrets.generic-assignment`, `secrets.authorization-header`,
  `secrets.basic-auth-url`).
* `high_entropy` (bool, default `false`): the keyword-less
  `secrets.high-entropy` detector (noisy on ids; off by default).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import re2

from telemetry_audit.detectors.base import ALWAYS, AuditEnvironment, DetectorInfo, Match, gate_set
from telemetry_audit.detectors.providers import PROVIDERS
from telemetry_audit.detectors.secret_pattern import FAMILY, SecretPattern
from telemetry_audit.detectors.settings import DetectorSettings, SettingSpec, SettingType
from telemetry_audit.detectors.spans import outermost
from telemetry_audit.model import FindingKind

MIN_LENGTH = 10
"""Values shorter than this hold no catalogued secret and are skipped."""

MAX_MATCHES = 1000
"""Matches reported per detector per value: a hostile value cannot make a report unbounded."""


def shannon_entropy(text: str) -> float:
    """Shannon entropy of `text` in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _entropy_ok(secret: str, floor: float) -> bool:
    return shannon_entropy(secret) >= min(floor, math.log2(max(len(secret), 2)) - 0.5)


_BENIGN_SHAPE = re2.compile(
    r"(?:"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r"|[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9A-F]{32}|[0-9A-F]{40}|[0-9A-F]{64}"  # hex digests
    r"|v?[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?"  # semantic version
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
    r"|[0-9]+(?:\.[0-9]+)?"  # numbers
    r"|[a-z]{32}"  # PostHog distinct ids
    r"|gen_[0-9a-f]{8}-[0-9a-f]{3,}"  # LocalStack machine ids
    r"|phc_[A-Za-z0-9]{20,}"  # PostHog public project keys
    r")"
)
_PLACEHOLDER = re2.compile(
    r"(?i)(?:\$.*|%.*|\{.*|<.*>|\*+|x+|\.+|-+|_+|null|none|nil|undefined|true|false|"
    r"changeme|change_me|password|passwd|secret|token|redacted|example|placeholder|your[_-].*)"
)


def _is_benign_shape(text: str) -> bool:
    return _BENIGN_SHAPE.fullmatch(text) is not None


def _is_credential_like(text: str) -> bool:
    """Not a number, version, timestamp or placeholder."""
    if _PLACEHOLDER.fullmatch(text) is not None:
        return False
    return _BENIGN_SHAPE.fullmatch(text) is None or _is_hexish_token(text)


def _is_hexish_token(text: str) -> bool:
    """Hex keys and UUID-shaped tokens behind a keyword are credentials (Heroku, old GitHub tokens)."""
    return len(text) >= 32 and not text.isdigit() and "." not in text


def _is_jwt(text: str) -> bool:
    header = text.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def _not_placeholder_userinfo(userinfo: str) -> bool:
    password = userinfo.split(":", 1)[1]
    return _PLACEHOLDER.fullmatch(password) is None and password not in ("pass", "pwd", "x-oauth-basic")


def _not_lowercase_uuid(text: str) -> bool:
    body = text[3:]
    return not all(c in "0123456789abcdef-" for c in body)


def _is_random_looking(text: str) -> bool:
    if _is_benign_shape(text) or text.startswith(("phc_", "gen_")):
        return False
    if not (any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)):
        return False
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (ValueError, binascii.Error):
        return True
    printable = decoded and all(32 <= b < 127 for b in decoded)
    return not (printable and len(decoded) <= 48)


_W = r"[A-Za-z0-9]"
_ASSIGN = r"""["']?\s*(?:[:=]|=>|:=)\s*["']?"""

PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "aws-access-key-id",
        "AWS access key id",
        (r"\b((?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})\b",),
        ("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    SecretPattern(
        "aws-secret-access-key",
        "AWS secret access key",
        (
            r"(?i:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)"
            + _ASSIGN
            + r"([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b[^\n]{0,120}?(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
            r"(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})[^A-Za-z0-9/+=][^\n]{0,120}?\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
        ),
        ("secret_access_key", "secretaccesskey", "aws_secret", "AKIA", "ASIA"),
        entropy=4.0,
    ),
    SecretPattern(
        "aws-session-token",
        "AWS session token",
        (
            r"\b((?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE|FQoGZXIvYXdzE)[A-Za-z0-9/+]{80,}=*)",
            r"(?i:aws_?session_?token|x-amz-security-token)" + _ASSIGN + r"([A-Za-z0-9/+]{100,}=*)",
        ),
        ("IQoJb3JpZ2luX2Vj", "FwoGZXIvYXdzE", "FQoGZXIvYXdzE", "session_token", "sessiontoken", "security-token"),
        entropy=3.0,
    ),
    SecretPattern("github-pat", "GitHub personal access token (classic)", (r"\b(ghp_" + _W + r"{36,251})\b",),
                  ("ghp_",), entropy=3.0),
    SecretPattern(
        "github-fine-grained-pat",
        "GitHub fine-grained personal access token",
        (r"\b(github_pat_" + _W + r"{22}_" + _W + r"{59})\b",),
        ("github_pat_",),
        entropy=3.0,
    ),
    SecretPattern("github-oauth", "GitHub OAuth access token", (r"\b(gho_" + _W + r"{36,251})\b",), ("gho_",),
                  entropy=3.0),
    SecretPattern(
        "github-app-token",
        "GitHub App user-to-server or installation token",
        (r"\b((?:ghu|ghs)_" + _W + r"{36,251})\b",),
        ("ghu_", "ghs_"),
        entropy=3.0,
    ),
    SecretPattern("github-refresh-token", "GitHub refresh token", (r"\b(ghr_" + _W + r"{36,251})\b",), ("ghr_",),
                  entropy=3.0),
    SecretPattern(
        "gitlab-pat",
        "GitLab personal access token",
        (r"\b(glpat-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*)",),
        ("glpat-",),
        entropy=3.0,
    ),
    SecretPattern(
        "gitlab-token",
        "GitLab deploy, runner, trigger, feed or OAuth token",
        (
            r"\b((?:gldt|glrt|glptt|glft|glimt|glcbt|glsoat|gloas|glagent|glffct|glwt)-[A-Za-z0-9_-]{20,}"
            r"(?:\.[A-Za-z0-9_-]+)*)",
            r"\b(GR1348941[A-Za-z0-9_-]{20,})",
        ),
        ("gldt-", "glrt-", "glptt-", "glft-", "glimt-", "glcbt-", "glsoat-", "gloas-", "glagent-", "glffct-",
         "glwt-", "GR1348941"),
        entropy=3.0,
    ),
    SecretPattern(
        "slack-token",
        "Slack bot, user or workspace token",
        (r"\b(xox(?:[abposr]|e(?:\.xox[bp])?)-[0-9]+-[A-Za-z0-9-]{10,})",),
        ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xoxe.xox"),
        entropy=3.0,
    ),
    SecretPattern(
        "slack-app-token",
        "Slack app-level token",
        (r"\b(xapp-[0-9]-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]{20,})",),
        ("xapp-",),
        entropy=3.0,
    ),
    SecretPattern(
        "slack-webhook",
        "Slack incoming webhook URL",
        (r"(https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,})",),
        ("hooks.slack.com",),
    ),
    SecretPattern(
        "stripe-secret-key",
        "Stripe secret key",
        (r"\b(sk_(?:live|test)_" + _W + r"{16,247})\b",),
        ("sk_live_", "sk_test_"),
        entropy=3.0,
    ),
    SecretPattern(
        "stripe-restricted-key",
        "Stripe restricted key",
        (r"\b(rk_(?:live|test)_" + _W + r"{16,247})\b",),
        ("rk_live_", "rk_test_"),
        entropy=3.0,
    ),
    SecretPattern("google-api-key", "Google API key", (r"\b(AIza[0-9A-Za-z_-]{35})",), ("AIza",), entropy=3.0),
    SecretPattern(
        "google-oauth-client-secret",
        "Google OAuth client secret",
        (r"\b(GOCSPX-[A-Za-z0-9_-]{28})",),
        ("GOCSPX-",),
        entropy=3.0,
    ),
    SecretPattern(
        "azure-storage-account-key",
        "Azure storage account key (connection string AccountKey)",
        (r"(?i:AccountKey)\s*=\s*([A-Za-z0-9+/]{86}==)",),
        ("AccountKey",),
        entropy=4.0,
    ),
    SecretPattern(
        "azure-shared-access-key",
        "Azure Service Bus / Event Hubs shared access key",
        (r"(?i:SharedAccessKey)\s*=\s*([A-Za-z0-9+/]{43}=)",),
        ("SharedAccessKey=", "SharedAccessKey ="),
        entropy=4.0,
    ),
    SecretPattern("npm-token", "npm access token", (r"\b(npm_" + _W + r"{36})\b",), ("npm_",), entropy=3.0),
    SecretPattern(
        "pypi-token",
        "PyPI API token",
        (r"\b(pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})",),
        ("pypi-AgE",),
    ),
    SecretPattern(
        "docker-hub-token",
        "Docker Hub personal or organisation access token",
        (r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,})",),
        ("dckr_pat_", "dckr_oat_"),
        entropy=3.0,
    ),
    SecretPattern(
        "heroku-api-key",
        "Heroku API key",
        (
            r"\b(HRKU-[A-Za-z0-9_-]{30,})",
            r"(?i:heroku[A-Za-z_ .-]{0,20}(?:key|token))" + _ASSIGN
            + r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b",
        ),
        ("HRKU-", "heroku"),
        entropy=3.0,
    ),
    SecretPattern(
        "digitalocean-token",
        "DigitalOcean personal access, OAuth or refresh token",
        (r"\b(do[opr]_v1_[a-f0-9]{64})\b",),
        ("dop_v1_", "doo_v1_", "dor_v1_"),
        entropy=3.0,
    ),
    SecretPattern(
        "twilio-credential",
        "Twilio API key, account SID or auth token",
        (
            r"(?i:twilio)[^\n]{0,60}?\b((?:SK|AC)[0-9a-fA-F]{32})\b",
            r"(?i:twilio[_-]?auth[_-]?token)" + _ASSIGN + r"([0-9a-f]{32})\b",
        ),
        ("twilio",),
        entropy=3.0,
    ),
    SecretPattern(
        "sendgrid-api-key",
        "SendGrid API key",
        (r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})",),
        ("SG.",),
        entropy=3.0,
    ),
    SecretPattern("mailgun-api-key", "Mailgun API key", (r"\b(key-[0-9a-f]{32})\b",), ("key-",), entropy=3.0),
    SecretPattern(
        "openai-api-key",
        "OpenAI API key",
        (
            r"\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})",
            r"\b(sk-" + _W + r"{20}T3BlbkFJ" + _W + r"{20})\b",
        ),
        ("sk-proj-", "sk-svcacct-", "sk-admin-", "T3BlbkFJ"),
        entropy=3.0,
    ),
    SecretPattern(
        "anthropic-api-key",
        "Anthropic API key",
        (r"\b(sk-ant-(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{32,})",),
        ("sk-ant-",),
        entropy=3.0,
    ),
    SecretPattern(
        "huggingface-token",
        "Hugging Face access token",
        (r"\b(hf_[A-Za-z]{34})\b", r"\b(api_org_[A-Za-z]{34})\b"),
        ("hf_", "api_org_"),
        entropy=3.0,
    ),
    SecretPattern(
        "datadog-api-key",
        "Datadog API or application key",
        (
            r"(?i:datadog|dd[_-]?api[_-]?key|dd[_-]?app(?:lication)?[_-]?key)[^\n]{0,40}?\b([0-9a-f]{40})\b",
            r"(?i:datadog|dd[_-]?api[_-]?key|dd[_-]?app(?:lication)?[_-]?key)[^\n]{0,40}?\b([0-9a-f]{32})\b",
        ),
        ("datadog", "dd_api", "dd-api", "ddapi", "dd_app", "dd-app", "ddapp"),
        entropy=3.0,
    ),
    SecretPattern(
        "sentry-dsn-secret",
        "Sentry DSN with secret key",
        (r"https?://[0-9a-f]{32}:([0-9a-f]{32})@[A-Za-z0-9.-]*sentry[A-Za-z0-9.-]*",),
        ("sentry",),
        entropy=3.0,
    ),
    SecretPattern(
        "sentry-auth-token",
        "Sentry auth token",
        (r"\b(sntrys_[A-Za-z0-9+/=_-]{40,})", r"\b(sntryu_[0-9a-f]{64})\b"),
        ("sntrys_", "sntryu_"),
        entropy=3.0,
    ),
    SecretPattern(
        "shopify-token",
        "Shopify access token or shared secret",
        (r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b",),
        ("shpat_", "shpca_", "shppa_", "shpss_"),
        entropy=3.0,
    ),
    SecretPattern(
        "localstack-auth-token",
        "LocalStack auth token",
        (r"\b(ls-" + _W + r"{8}-" + _W + r"{4}-" + _W + r"{4}-" + _W + r"{4}-" + _W + r"{12})\b",),
        ("ls-",),
        entropy=3.0,
        verify=_not_lowercase_uuid,
    ),
    SecretPattern(
        "posthog-personal-key",
        "PostHog personal API key",
        (r"\b(phx_" + _W + r"{43})\b",),
        ("phx_",),
        entropy=3.0,
    ),
    *PROVIDERS,
    SecretPattern(
        "jwt",
        "JSON Web Token",
        (r"\b(eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)",),
        ("eyJ",),
        verify=_is_jwt,
    ),
    SecretPattern(
        "private-key",
        "PEM or OpenSSH private key",
        (
            r"(-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,.]|\\[rn]|-[A-Za-z])*"
            r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)",
        ),
        ("PRIVATE KEY",),
    ),
    SecretPattern(
        "basic-auth-url",
        "credentials in a URL (scheme://user:password@host)",
        (r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://([^\s:@/?#\"'<>\[\]]{1,128}:[^\s:@/?#\"'<>\[\]]{1,128})@[A-Za-z0-9._-]",),
        ("://",),
        generic=True,
        verify=_not_placeholder_userinfo,
        # Every match holds `://user:password@`: most URLs (a User-Agent's home page) do not reach the pattern.
        prefilter=r"://[^\s:@/?#\"'<>\[\]]+:[^\s:@/?#\"'<>\[\]]+@",
    ),
    SecretPattern(
        "authorization-header",
        "HTTP Bearer or Basic credentials",
        (r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/-]{16,}=*)",),
        ("bearer", "basic"),
        entropy=3.0,
        generic=True,
        verify=_is_credential_like,
    ),
    SecretPattern(
        "generic-assignment",
        "password, secret, token or API key assignment",
        (
            r"(?i)(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|"
            r"private[_-]?key|credentials?)"
            + _ASSIGN
            + r"([^\s\"'`,;&<>(){}\[\]]{8,200})",
            r"(?i)(?:^|\s)--?[a-z0-9-]{0,30}?(?:password|passwd|secret|token|api-?key|access-?key|auth-?key)"
            r"(?:\s+|=)([^\s\"'-][^\s\"']{7,200})",
        ),
        ("password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key",
         "access_key", "access-key", "accesskey", "auth_key", "auth-key", "private_key", "private-key", "credential"),
        entropy=3.0,
        generic=True,
        verify=_is_credential_like,
        # Every match holds a keyword followed by `:`/`=` (first pattern) or an option spelling it (second):
        # a key merely named `api_key` or `token_count` in JSON does not reach the patterns.
        prefilter=(r"(?i)(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|"
                   r"private[_-]?key|credentials?)[\"']?\s*[:=]"
                   r"|-[a-z0-9-]*(?:password|passwd|secret|token|api-?key|access-?key|auth-?key)(?:\s|=)"),
    ),
    SecretPattern(
        "high-entropy",
        "high-entropy string (keyword-less, opt-in)",
        (r"([A-Za-z0-9+/_-]{24,}=*)",),
        (),
        entropy=4.5,
        generic=True,
        verify=_is_random_looking,
    ),
)

GENERIC = frozenset({"secrets.basic-auth-url", "secrets.authorization-header", "secrets.generic-assignment",
                     "secrets.key-context"})
OPT_IN = frozenset({"secrets.high-entropy"})

CATALOGUE: tuple[DetectorInfo, ...] = (
    *(DetectorInfo(p.id, FAMILY, p.title) for p in PATTERNS),
    DetectorInfo("secrets.key-context", FAMILY,
                 "credential-looking value under a secret-sounding key, header or parameter name"),
)

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("disable", SettingType.DETECTOR_IDS, [], "detectors of this family to turn off"),
    SettingSpec("generic", SettingType.FLAG, True, "the keyword-backed generic detectors (assignments, "
                "Authorization headers, URL credentials, key-name context)"),
    SettingSpec("high_entropy", SettingType.FLAG, False, "the keyword-less high-entropy detector (noisy)"),
    SettingSpec("key_context", SettingType.FLAG, True, "a credential-looking value under a secret-sounding "
                "key, header or parameter name (`db_password`, `x-api-key`)"),
    SettingSpec("secret_names", SettingType.STRINGS, [], "more field names (globs, case-insensitive) whose "
                "values are secrets, e.g. `[acme_sig]`"),
)


@dataclass(frozen=True)
class _Compiled:
    """A pattern's regexes joined into one alternation: one search per value, group i+1 is regex i's secret."""

    pattern: SecretPattern
    regex: Any
    groups: tuple[int, ...]
    """For each alternative, the group holding its secret (0 for the whole match)."""

    @classmethod
    def of(cls, pattern: SecretPattern) -> _Compiled:
        parts: list[str] = []
        groups: list[int] = []
        for source in pattern.patterns:
            groups_in_source = re2.compile(source).groups
            if groups_in_source > 1:
                raise ValueError(f"{pattern.id}: a pattern may have at most one capturing group: {source}")
            has_group = groups_in_source == 1
            parts.append(f"(?:{source})" if has_group else f"({source})")
            groups.append(len(groups) + 1)
        return cls(pattern, re2.compile("|".join(parts)), tuple(groups))


# --- key-name context -------------------------------------------------------------------------------------------

KEY_CONTEXT_ID = f"{FAMILY}.key-context"
KEY_CONTEXT_TITLE = "credential under a secret-sounding name (key, header or parameter)"

_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "secret", "secrets", "token", "credential", "credentials", "apikey",
    "authorization", "pwd", "pass", "passcode", "pat", "dsn",
})
"""A name holding one of these words names a secret (`db_password`, `x-auth-token`, `DD_API_KEY`)."""
_SECRET_PAIRS = frozenset({
    ("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("auth", "key"), ("app", "key"),
    ("application", "key"), ("client", "secret"), ("signing", "key"), ("master", "key"), ("account", "key"),
    ("encryption", "key"), ("license", "key"), ("service", "key"), ("write", "key"), ("auth", "token"),
})
_NOT_SECRET_LAST = frozenset({
    "count", "counts", "set", "enabled", "disabled", "enable", "disable", "scanning", "length", "len", "size",
    "type", "types", "kind", "name", "names", "url", "uri", "urls", "endpoint", "host", "path", "file", "dir",
    "at", "time", "expires", "expiry", "expiration", "ttl", "id", "ids", "required", "provided", "present",
    "configured", "source", "env", "var", "header", "prefix", "suffix", "format", "version", "method", "scheme",
    "strategy", "policy", "hint", "label", "field", "mode", "status", "state", "error", "errors", "message",
    "reason", "limit", "usage", "used", "location", "store", "storage", "provider", "helper", "manager", "command",
    "cmd", "flag", "flags", "option", "options", "rotation", "valid", "invalid", "missing", "exists", "changed",
    "updated", "created", "last", "min", "max", "hash", "fingerprint", "digest", "checksum", "index",
    "position", "budget", "tokens", "input", "output", "stream",
})
"""A name ending in one of these words is about a secret, not one (`token_count`, `password_set`)."""
_NOT_SECRET_FIRST = frozenset({"is", "has", "num", "max", "min", "use", "uses", "should", "no", "enable", "disable",
                               "total", "input", "output", "prompt", "completion", "cached", "public", "publishable"})
# Names are short (capped below) and this has no nested repetition: Python's `re` for its look-ahead.
_NAME_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[^A-Za-z]|$)|[A-Z]?[a-z]+|[0-9]+")
_MAX_NAME = 200
_NAME_CACHE_SIZE = 4096
_REMEMBERED_VALUE_CHARS = 256
"""Key-context verdicts are remembered for values up to this long (`_NAME_CACHE_SIZE` at a time)."""

_CREDENTIAL_CHARS = re2.compile(r"[A-Za-z0-9!#$%&*+,\-./:;=?@^_|~]{8,1000}")
_NOT_A_CREDENTIAL = re2.compile(
    r"(?i)(?:"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # UUID
    r"|[-+]?[0-9]+(?:[.,][0-9]+)*(?:e[-+]?[0-9]+)?"  # numbers, 4-part versions, thousands
    r"|v?[0-9]+(?:\.[0-9]+)+(?:[-+][0-9a-z.-]+)?"  # versions
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[t ][0-9:.]+)?(?:z|[+-][0-9:]+)?"  # dates and times
    r"|[a-z][a-z0-9+.-]*://.*|[/~.].*|[a-z]:\\.*"  # URLs (credentials in them: basic-auth-url) and paths
    r"|[^@]+@[^@]+\.[a-z]+"  # e-mail addresses (pii)
    r"|.*(?:redacted|changeme|change_me|placeholder|example|dummy|fake|your[_-]|xxxx|\*\*\*|\.\.\.|<|>|\$\{|\{\{|%\().*"
    r"|(?:phc_|pk_live_|pk_test_|pk\.|pub[0-9a-f]{32}|sk-ant-dummy).*"  # public keys sent by design
    r")"
)
"""Values under a secret name that are not credentials: ids, numbers, versions, dates, paths, placeholders
(`changeme`, `<token>`, `${VAR}`, `[REDACTED]`, values that say they are fake, dummy or examples),
and public client keys (PostHog `phc_`, Stripe publishable `pk_`, Mapbox public `pk.`, Datadog client `pub`)."""


def _name_words(name: str) -> tuple[str, ...]:
    """`dbPassword` -> (db, password); `DD_API_KEY` -> (dd, api, key); `x-auth-token` -> (x, auth, token)."""
    return tuple(word.lower() for word in _NAME_WORD.findall(name[-_MAX_NAME:]))


def name_strength(name: str, extra: tuple[str, ...] = ()) -> int:
    """2: the name says secret; 1: it ends in `key` (a secret only with a strongly credential-like value); 0."""
    lowered = name.lower()
    if extra and any(fnmatchcase(lowered, glob) for glob in extra):
        return 2
    words = _name_words(name)
    if not words or words[-1] in _NOT_SECRET_LAST or words[0] in _NOT_SECRET_FIRST:
        return 0
    if words[:2] == ("sec", "websocket"):
        return 0  # `Sec-WebSocket-Key`: a random nonce of every WebSocket handshake (RFC 6455), not a credential
    if words == ("auth",) or any(w in _SECRET_WORDS for w in words):
        return 2
    if any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False)):
        return 2
    if words[-1] in ("key", "privatekey", "secretkey", "accesskey", "authkey", "apitoken", "accesstoken"):
        return 1
    return 0


def looks_like_credential(value: str, strength: int) -> bool:
    """True when `value`, held under a secret name of `strength`, has the length, charset and entropy of one."""
    if strength <= 0 or _CREDENTIAL_CHARS.fullmatch(value) is None:
        return False
    if strength == 1 and len(value) < 20:
        return False
    if _NOT_A_CREDENTIAL.fullmatch(value) is not None:
        return False
    classes = (any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
               + any(not c.isalnum() for c in value))
    if classes < 2:
        return False
    return _entropy_ok(value, 3.0 if strength == 2 else 4.0)


# The text `decoders.scan_text` builds for a plain JSON body: each `"` became `\n\0\n`, so `"name": "value"`
# reads `\n\0\nname\n\0\n: \n\0\nvalue\n\0\n`. Only names holding one of these fragments can say secret
# (see `name_strength`); with `secret_names` any name can.
_NAME_HINT = r"(?i:pass|secret|token|credential|key|auth|pwd|pat|dsn)"


def _scan_text_regex(name: str) -> Any:
    """One pass over a scan text for its OTLP attributes (first: `{"key": name, "value": {"stringValue": v}}`,
    which the full path reads as `attributes.<name>`) and its `name: value` pairs."""
    return re2.compile(
        r"\x00\n(?:key\n\x00\n\s*:\s*\n\x00\n(" + name + r")\n\x00\n"
        r"(?:\s*,\s*\n\x00\nvalue\n\x00\n\s*:\s*\{\s*\n\x00\nstringValue\n\x00\n\s*:\s*\n\x00\n([^\n\x00]*)\n\x00)?"
        r"|(" + name + r")\n\x00\n\s*:\s*\n\x00\n([^\n\x00]*)\n\x00)"
    )


_SCAN_TEXT_HINTED = _scan_text_regex(r"[^\n\x00]*" + _NAME_HINT + r"[^\n\x00]*")
_CREDENTIAL_CHAR = r"[A-Za-z0-9!#$%&*+,\-./:;=?@^_|~]"
_SCAN_TEXT_PAIR_HINT = (
    r"\x00\n[^\n\x00]*" + _NAME_HINT + r"[^\n\x00]*\n\x00\n\s*:\s*\n\x00\n"
    r"(?:[A-Za-oq-z0-9!#$%&*+,\-./:;=?@^_|~]" + _CREDENTIAL_CHAR + r"{7}|p[^h\n\x00]" + _CREDENTIAL_CHAR + r"{6}"
    r"|ph[^c\n\x00]" + _CREDENTIAL_CHAR + r"{5}|phc[^_\n\x00]" + _CREDENTIAL_CHAR + r"{4})"
)
"""A hinted name whose value may be a credential (`looks_like_credential` wants 8+ such characters)."""
_SCAN_TEXT_OTLP_HINT = r"\x00\nkey\n\x00\n\s*:\s*\n\x00\n[^\n\x00]*" + _NAME_HINT
_SCAN_TEXT_ANY = _scan_text_regex(r"[^\n\x00]+")


class SecretsDetector:
    """The secrets family, configured: one keyword pass, then the relevant patterns."""

    family = FAMILY

    def __init__(self, patterns: tuple[SecretPattern, ...], key_context: bool = False,
                 secret_names: tuple[str, ...] = ()) -> None:
        self._key_context = key_context
        self._secret_names = tuple(n.lower() for n in secret_names)
        self._strengths: dict[str, int] = {}
        self._credentials: dict[tuple[str, int], bool] = {}
        self._keyed: list[_Compiled] = []
        self._always: list[_Compiled] = []
        gate: list[str] = []
        for pattern in patterns:
            compiled = _Compiled.of(pattern)
            if pattern.prefilter:
                gate.append(pattern.prefilter)
                self._keyed.append(compiled)
            elif pattern.keywords:
                case = "" if pattern.exact_keywords else "(?i)"
                gate.append(case + "(?:" + "|".join(re2.escape(k) for k in pattern.keywords) + ")")
                self._keyed.append(compiled)
            else:
                self._always.append(compiled)
        # Two more entries tell whether a scan text may hold a credential under a name that says secret (see
        # `find_in_scan_text`): a hinted name with a value of 8+ credential characters (not a PostHog `phc_`
        # key), or an OTLP attribute with a hinted name. Most telemetry has neither and costs no extra pass.
        # With `secret_names` any name may say secret, and with a pattern that has no keyword every text may
        # hold a match: then the last entry matches every text (see `GatedDetector.gate`).
        self._name_hints = {len(gate), len(gate) + 1, len(gate) + 2}
        gate += [_SCAN_TEXT_PAIR_HINT, _SCAN_TEXT_OTLP_HINT]
        if self._secret_names or self._always:
            gate.append(ALWAYS)
        self.gate: tuple[str, ...] = tuple(gate)
        self._keywords = gate_set(gate)
        self._scan_text_pairs = _SCAN_TEXT_ANY if self._secret_names else _SCAN_TEXT_HINTED

    def find(self, value: str) -> Iterator[Match]:
        if len(value) < MIN_LENGTH:
            return
        yield from self._find(value, (self._keywords.Match(value) or ()) if self._keyed else ())

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        if len(value) < MIN_LENGTH:
            return
        yield from self._find(value, hits)

    def _find(self, value: str, hits: Iterable[int]) -> Iterator[Match]:
        candidates = list(self._always)
        candidates.extend(self._keyed[i] for i in sorted(hits) if i not in self._name_hints)
        if not candidates:
            return
        specific: list[Match] = []
        generic: list[Match] = []
        for compiled in candidates:
            out = generic if compiled.pattern.generic else specific
            out.extend(_matches(compiled, value))
        if generic:
            generic = [g for g in generic if not any(s.start < g.end and g.start < s.end for s in specific)]
        yield from outermost(specific + generic)

    def strength(self, name: str) -> int:
        """How strongly field `name` says secret (see `name_strength`); 0 with key context off."""
        found = self._strengths.get(name)
        if found is not None:
            return found
        if not self._key_context:
            return 0
        if len(self._strengths) >= _NAME_CACHE_SIZE:
            self._strengths.clear()
        strength = self._strengths[name] = name_strength(name, self._secret_names)
        return strength

    def find_under(self, name: str, value: str, found: tuple[Match, ...] = ()) -> Iterator[Match]:
        """The key-context match of `value` held under field `name`, unless `found` (its `find` matches) covers it.

        `name` is the last step of the field's path: a JSON key, a header, query or form parameter name.
        """
        if found or not value:
            return
        strength = self.strength(name)
        if strength and self._looks_like_credential(value, strength):
            yield Match(KEY_CONTEXT_ID, FindingKind.SECRET, KEY_CONTEXT_TITLE, 0, len(value))

    def _looks_like_credential(self, value: str, strength: int) -> bool:
        """`looks_like_credential`, remembered for short values: a collector's write key, a client's token or id
        comes under the same name in every request, and each verdict costs charset, shape and entropy passes."""
        if len(value) > _REMEMBERED_VALUE_CHARS:
            return looks_like_credential(value, strength)
        key = (value, strength)
        verdict = self._credentials.get(key)
        if verdict is None:
            if len(self._credentials) >= _NAME_CACHE_SIZE:
                self._credentials.clear()
            verdict = self._credentials[key] = looks_like_credential(value, strength)
        return verdict

    def find_in_scan_text(self, text: str, headers: Iterable[tuple[str, str]] = (),
                          hits: Sequence[int] | None = None) -> Iterator[tuple[Match, bool]]:
        """(match, placed) for `find(text)` plus key-context matches for the `name: value` pairs of a `scan_text`
        (see above) and for `headers` (the request's, whose values the scan text holds without their names).

        Used only to decide a request at a glance, in the same keyword pass as `find`; it may flag more than the
        per-field path (an OTLP attribute whose value is not spelled right after its key), never less. `placed`
        says the match's positions are those of the value it covers inside `text` (a pattern match, or a
        credential spelled right after its name); the others (a header's: positions in its value; an OTLP
        attribute's: its name) tell only that the detector has something to say. `hits`: the `gate` entries that
        match in `text`, when the caller ran the gate.
        """
        if hits is None:
            hits = (self._keywords.Match(text) or []) if len(text) >= MIN_LENGTH else []
        elif len(text) < MIN_LENGTH:
            hits = []
        for match in self._find(text, hits):
            yield match, True
        if self._key_context:
            for name, value in headers:
                strength = self.strength(name.lower().rsplit(".", 1)[-1])
                if strength and self._looks_like_credential(value, strength):
                    yield Match(KEY_CONTEXT_ID, FindingKind.SECRET, KEY_CONTEXT_TITLE, 0, len(value)), False
        if not self._key_context or (self._name_hints.isdisjoint(hits) and not self._secret_names):
            return
        for found in self._scan_text_pairs.finditer(text):
            if found.group(1) is not None:  # an OTLP attribute: its whole key is the name (`attributes["a.b"]`)
                name, value = found.group(1), found.group(2)
                strength = self.strength(name)
                if strength and (value is None or self._looks_like_credential(value, strength)):
                    yield Match(KEY_CONTEXT_ID, FindingKind.SECRET, KEY_CONTEXT_TITLE, *found.span(1)), False
                # Outside an OTLP attribute list the same text is the pair `key: <name>`, which the full path
                # reads under the name `key` (found by review: `{"key": "<a credential with 'auth' in it>"}`
                # matched here and its pair went unread, so the glance passed what the full path blocks).
                start, end = found.span(1)
                for match in self.find_under("key", name):
                    yield Match(match.detector_id, match.kind, match.title, start, end), True
                continue
            start, end = found.span(4)
            for match in self.find_under(found.group(3), found.group(4)):  # a key with a dot is one name
                yield Match(match.detector_id, match.kind, match.title, start, end), True


def _matches(compiled: _Compiled, value: str) -> Iterator[Match]:
    pattern = compiled.pattern
    count = 0
    for found in compiled.regex.finditer(value):
        for group in compiled.groups:
            start, end = found.span(group)
            if start >= 0:
                break
        if end <= start:
            continue
        secret = value[start:end]
        if pattern.entropy is not None and not _entropy_ok(secret, pattern.entropy):
            continue
        if pattern.verify is not None and not pattern.verify(secret):
            continue
        yield Match(pattern.id, FindingKind.SECRET, pattern.title, start, end)
        count += 1
        if count >= MAX_MATCHES:
            return


def build(settings: Mapping[str, Any], environment: AuditEnvironment) -> SecretsDetector:
    """The secrets family as configured by `settings` (the environment is not used)."""
    read = DetectorSettings(FAMILY, settings, SETTINGS)
    disabled = set(read.strings("disable"))
    unknown = disabled - {d.id for d in CATALOGUE}
    if unknown:
        raise ValueError(f"{FAMILY}.disable: unknown detector id(s) {', '.join(sorted(unknown))}")
    if not read.flag("generic"):
        disabled |= GENERIC
    if not read.flag("high_entropy"):
        disabled |= OPT_IN
    key_context = read.flag("key_context") and read.flag("generic") and KEY_CONTEXT_ID not in disabled
    return SecretsDetector(tuple(p for p in PATTERNS if p.id not in disabled), key_context,
                           read.strings("secret_names"))
