"""Engine benchmark: `Auditor.evaluate` throughput, beside detect-secrets, with a breakdown of where the time goes.

Run from the project root:

    python benchmarks/bench_engine.py [--events N] [--repeat N] [--quick] [--profile]

Measures, on one core, with the bare built-in `default` policy (unless `--policy` says otherwise) and a
fixed `AuditEnvironment` (not this machine's):

1. events/s for ~1 KB JSON telemetry requests modelled on the real captures in
   `tests/data/captures/` (SST v4 PostHog batches, SST v2 events, Serverless v3
   events, LocalStack sessions and event batches), ids and values varied per
   event, a few carrying a planted leak;
2. MB/s for one ~6 MB JSON batch of such events (under the default 8 MiB limit: inspected as shipped);
3. the same bodies through detect-secrets' `scan_line` (each 1 KB body as one
   line; the 6 MB body as one line, pretty-printed), and ours / theirs;
4. a breakdown of one pass over the 1 KB corpus along the path the engine takes: routing, decoding, the
   scan text, the joint gate (one RE2 pass for every family), each family over the texts its gate hits, and
   the rest (requests with something to say);
5. the same 1 KB corpus with what applies when no `--policy` is given (`default` plus every shipped tool
   pack: the SST and LocalStack events are then also checked against their packs' documented fields), and
   a corpus of requests to tool-pack hosts that carry only documented fields (Serverless v3 metrics,
   Serverless v1 via Segment's `/v1/track`, SST v3 PostHog batches), so the bare default and the default
   with every pack can be compared on the clean path.

Every figure is the median of `--repeat` timed runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import pstats
import random
import statistics
import string
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telemetry_audit.decoders import decode_request, header_scan_text, scan_text  # noqa: E402
from telemetry_audit.detectors.base import AuditEnvironment  # noqa: E402
from telemetry_audit.engine import Auditor  # noqa: E402
from telemetry_audit.model import Action, Request  # noqa: E402
from telemetry_audit.policy import Policy, default_references, load_policy  # noqa: E402

SEED = 20261122
TARGET_EVENTS_PER_S = 20_000
EVENT_BYTES = 1024
"""Each generated body is padded to about this many bytes of compact JSON."""
BIG_BYTES = 6_000_000
LEAK_RATE = 0.05

LOCALSTACK_TOKEN = "ls-QmVyTz7d-4821-9023-NwPq-x7KdLr2mZq9A"
GITHUB_TOKEN = "ghp_" + "Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz0Xc2V"

ENVIRONMENT = AuditEnvironment(
    env={
        "PATH": "/usr/local/bin:/usr/bin:/bin:/home/alice/.local/bin",
        "HOME": "/home/alice",
        "USER": "alice",
        "LOGNAME": "alice",
        "SHELL": "/bin/bash",
        "TERM": "xterm-256color",
        "LANG": "en_US.UTF-8",
        "PWD": "/home/alice/work/billing-api",
        "EDITOR": "vim",
        "AWS_REGION": "eu-west-1",
        "AWS_PROFILE": "billing-dev",
        "AWS_ACCESS_KEY_ID": "AKIAQ3EGT5XK7EXAMPL3",
        "AWS_SECRET_ACCESS_KEY": "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",
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "NPM_TOKEN": "npm_" + "Lk3Jh5Gf7Ds9Aq1Wz3Xc5Vb7Nm9Po1Iu3Yt5",
        "LOCALSTACK_AUTH_TOKEN": LOCALSTACK_TOKEN,
        "DATABASE_URL": "postgres://billing:Tr0ub4dor-3-horse@db.internal:5432/billing",
        "NODE_OPTIONS": "--max-old-space-size=4096",
        "NODE_ENV": "development",
        "DEBUG": "1",
        "SERVICES": "s3,sqs,lambda",
        "COMPANY_NAME": "Initech Widgets Ltd",
        "SLS_ORG": "initech-billing",
        "SST_STAGE": "alice-dev",
        "CI": "false",
        "TZ": "Europe/Berlin",
        "XDG_CONFIG_HOME": "/home/alice/.config",
        "SSH_AUTH_SOCK": "/tmp/ssh-XXXXabcd/agent.1234",
    },
    home="/home/alice",
    cwd="/home/alice/work/billing-api",
    user="alice",
    hostname="alice-laptop.corp.initech.example",
)


# --- corpus ----------------------------------------------------------------------------------------------------


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _uuid1(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=1))


def _iso(rng: random.Random) -> str:
    return f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
           f"{rng.randint(0, 59):02d}.{rng.randint(0, 999999999):09d}Z"


_COMMANDS = ("deploy", "print", "remove", "info", "invoke", "logs", "package", "dev", "version", "start", "status")
_ERRORS = ("Could not install pulumi", "AWS_CREDENTIALS_NOT_FOUND", "MISSING_SERVICE_CONTEXT",
           "Stack is in UPDATE_ROLLBACK_FAILED state", "Request timed out after 30000ms", "")
_EXTRA_KEYS = ("feature_flags", "plugins", "regions", "runtimes", "env_vars", "deprecations", "services")
_EXTRA_VALUES = ("nodejs18.x", "python3.12", "eu-west-1", "us-east-1", "httpApi", "s3", "sqs", "lambda", "DEBUG",
                 "SERVICES", "serverless-offline", "serverless-esbuild", "CONFIG_VALIDATION", "dynamodb", "sns",
                 "--stage", "--verbose", "provided.al2023", "arm64", "x86_64", "apiGateway", "cloudfront")


def _leak(rng: random.Random) -> str:
    """A value a real CLI has been seen to send (env value, cwd in an error, a token in argv, an e-mail)."""
    return rng.choice((
        LOCALSTACK_TOKEN,
        f"ENOENT: no such file or directory, open '{ENVIRONMENT.cwd}/serverless.yml'",
        f"--token={GITHUB_TOKEN}",
        "alice.smith@initech.example",
        "Error: connect ECONNREFUSED at alice-laptop",
    ))


def _sst_v4(rng: random.Random, leak: str | None) -> tuple[str, dict[str, str], Any]:
    distinct = _s(rng, string.ascii_lowercase, 32)
    session = _s(rng, string.ascii_lowercase, 32)
    project = _s(rng, "0123456789abcdef", 40)

    def event(name: str) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "$lib": "posthog-go", "$lib_version": "2.0.0", "args": [rng.choice(_COMMANDS)],
            "ci_name": rng.choice(("", "github-actions", "gitlab")), "cpu_count": rng.choice((2, 4, 8, 16)),
            "memory_total": rng.randint(2_000_000, 64_000_000), "project_id": project, "session_id": session,
            "sst_version": f"4.{rng.randint(0, 20)}.{rng.randint(0, 9)}", "system_architecture": "amd64",
            "system_platform": rng.choice(("linux", "darwin")), "user_id": distinct,
        }
        if name == "cli.error":
            properties["error"] = rng.choice(_ERRORS)
        return {"type": "capture", "library": "posthog-go", "library_version": "2.0.0", "timestamp": _iso(rng),
                "distinct_id": distinct, "event": name, "properties": properties, "send_feature_flags": False}

    body: dict[str, Any] = {"api_key": "phc_" + _s(rng, string.ascii_letters + string.digits, 43),
            "batch": [event(rng.choice(("cli.start", "cli.error", "cli.success")))]}
    if leak:
        body["batch"][0]["properties"]["args"].append(leak)
    return "https://telemetry.ion.sst.dev/batch/", {"user-agent": "posthog-go (version: 2.0.0)"}, body


def _sst_v2(rng: random.Random, leak: str | None) -> tuple[str, dict[str, str], Any]:
    body: dict[str, Any] = {
        "context": {"anonymousId": _s(rng, "0123456789abcdef", 64), "projectId": _s(rng, "0123456789abcdef", 64),
                    "sessionId": _s(rng, "0123456789abcdef", 64)},
        "environment": {"systemPlatform": "linux", "systemRelease": f"6.{rng.randint(1, 18)}.{rng.randint(0, 99)}",
                        "systemArchitecture": "x64", "cpuCount": rng.choice((2, 4, 8)), "cpuModel": "AMD EPYC",
                        "cpuSpeed": rng.randint(0, 3600), "memoryInMb": rng.randint(2048, 65536), "isCI": False,
                        "ciName": None, "sstVersion": f"2.{rng.randint(40, 49)}.{rng.randint(0, 9)}"},
        "events": [{"name": rng.choice(("CLI_COMMAND", "CLI_COMMAND_SUCCEEDED", "CLI_COMMAND_FAILED")),
                    "properties": {"command": rng.choice(_COMMANDS),
                                   "duration": rng.randint(10, 90_000)}}],
    }
    if leak:
        body["events"][0]["properties"]["errorMessage"] = leak
    return "https://telemetry.sst.dev/events", {"Transfer-Encoding": "chunked"}, body


def _serverless(rng: random.Random, leak: str | None) -> tuple[str, dict[str, str], Any]:
    event: dict[str, Any] = {
        "ciName": None, "isDockerInstalled": rng.random() < 0.5, "dockerVersion": f"2{rng.randint(0, 8)}.2.2",
        "cliName": "serverless", "command": rng.choice(_COMMANDS), "commandOptionNames": ["stage"],
        "dashboard": {"userId": None}, "firstLocalInstallationTimestamp": rng.randint(1_700_000_000, 1_800_000_000),
        "frameworkLocalUserId": _uuid1(rng), "installationType": "global:other", "isAutoUpdateEnabled": False,
        "isUsingCompose": False, "notificationsMode": "off",
        "timestamp": rng.randint(1_700_000_000_000, 1_800_000_000_000), "timezone": "UTC",
        "triggeredDeprecations": [], "versions": {"serverless": "3.40.0", "@serverless/dashboard-plugin": "7.2.3"},
        "commandDurationMs": rng.randint(100, 60_000), "commandUsage": {},
        "failureReason": {"kind": "user", "code": rng.choice(_ERRORS[1:3])}, "outcome": "failure",
        "id": _uuid1(rng),
    }
    if rng.random() < 0.4:  # a command run inside a service also reports its configuration (serverless3-02)
        event["config"] = {
            "configValidationMode": "warn",
            "provider": {"name": "aws", "runtime": "nodejs18.x", "stage": rng.choice(("qa", "dev", "prod")),
                         "region": rng.choice(("eu-west-1", "us-east-1"))},
            "functions": [{"url": False, "runtime": "nodejs18.x", "events": [{"type": "httpApi"}]}],
            "paramsCount": 0,
        }
    if leak:
        event["failureReason"]["message"] = leak
    headers = {"Accept": "*/*", "User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
               "Accept-Encoding": "gzip,deflate", "Connection": "keep-alive"}
    return "https://tracking.serverlessteam.com/", headers, [event]


def _localstack(rng: random.Random, leak: str | None) -> tuple[str, dict[str, str], Any]:
    session = _uuid(rng)
    headers = {"User-Agent": "localstack/2026.8.2", "Accept-Encoding": "gzip, deflate", "Accept": "*/*",
               "Connection": "keep-alive", "Localstack-Session-ID": session}
    if rng.random() < 0.3:
        payload = {"session_id": session, "machine_id": f"gen_{_s(rng, '0123456789abcdef', 8)}-"
                   f"{_s(rng, '0123456789abcdef', 3)}", "api_key": leak or "", "system": "docker",
                   "version": "2026.8.2", "is_ci": False, "is_docker": True, "is_testing": False,
                   "product": "unknown", "edition": "community"}
        body: Any = {"name": "session", "metadata": {"session_id": session, "client_time": str(rng.randint(
            1_700_000_000, 1_800_000_000))}, "payload": payload}
        return "https://analytics.localstack.cloud/v1/session", headers, body
    events: list[dict[str, Any]] = []
    for _ in range(rng.randint(2, 3)):
        events.append({"name": rng.choice(("non_prefixed_cli_env_vars", "cli_cmd", "config_show")),
                       "metadata": {"session_id": session,
                                    "client_time": f"2026-11-22 07:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
                                                   f".{rng.randint(0, 999999):06d}"},
                       "payload": {"env_vars": rng.sample(["DEBUG", "SERVICES", "PERSISTENCE", "DOCKER_HOST"], 2),
                                   "cmd": f"localstack {rng.choice(('start', 'status', 'config show'))}",
                                   "params": ["--format", "json"]}})
    if leak:
        events[-1]["payload"]["params"].append(leak)
    return "https://analytics.localstack.cloud/v1/events", headers, {"events": events}


_TEMPLATES: tuple[Callable[[random.Random, str | None], tuple[str, dict[str, str], Any]], ...] = (
    _sst_v4, _sst_v2, _serverless, _localstack,
)


def _pad(rng: random.Random, body: Any, size: int) -> Any:
    """Add realistic list-valued properties until the compact JSON is about `size` bytes."""
    target = body[0] if isinstance(body, list) else body
    if "batch" in target:
        target = target["batch"][-1]["properties"]
    elif "events" in target:
        target = target["events"][-1].get("properties") or target["events"][-1]["payload"]
    elif "payload" in target:
        target = target["payload"]
    key = next(k for k in rng.sample(_EXTRA_KEYS, len(_EXTRA_KEYS)) if k not in target)
    extra: list[str] = target.setdefault(key, [])
    while len(_compact(body)) < size - 20:
        extra.append(rng.choice(_EXTRA_VALUES))
    return body


def _compact(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Event:
    """One generated telemetry request and whether a leak was planted in it."""

    request: Request
    document: Any
    leaked: bool


def make_corpus(count: int, seed: int = SEED, leak_rate: float = LEAK_RATE, size: int = EVENT_BYTES) -> list[Event]:
    """`count` ~`size`-byte JSON telemetry requests, templates in rotation, ids and values varying."""
    rng = random.Random(seed)
    events: list[Event] = []
    for index in range(count):
        leak = _leak(rng) if rng.random() < leak_rate else None
        url, headers, body = _TEMPLATES[index % len(_TEMPLATES)](rng, leak)
        body = _pad(rng, body, size)
        request = Request.from_url("POST", url, {"content-type": "application/json", **headers}, _compact(body))
        events.append(Event(request, body, leak is not None))
    return events


def make_big_request(size: int = BIG_BYTES, seed: int = SEED + 1) -> tuple[Request, Any]:
    """One PostHog-style batch of ~1 KB events, `size` bytes of compact JSON, one leak planted in its last event."""
    rng = random.Random(seed)
    batch: list[Any] = []
    total = 64
    index = 0
    while total < size:
        _, _, body = _TEMPLATES[index % len(_TEMPLATES)](rng, None)
        item = _pad(rng, body, EVENT_BYTES)
        batch.append(item)
        total += len(_compact(item)) + 1
        index += 1
    batch.append({"event": "cli.error", "properties": {"error": _leak(random.Random(seed))}})
    document = {"api_key": "phc_" + _s(rng, string.ascii_letters + string.digits, 43), "batch": batch}
    request = Request.from_url("POST", "https://telemetry.ion.sst.dev/batch/",
                               {"content-type": "application/json"}, _compact(document))
    return request, document


# --- requests to tool-pack hosts carrying only documented fields ----------------------------------------------


def _serverless_v3_documented(rng: random.Random) -> tuple[str, dict[str, str], Any]:
    """A Serverless v3 metrics event with only the fields the `serverless.v3-metrics` rule allows."""
    event: dict[str, Any] = {
        "id": _uuid1(rng), "command": rng.choice(_COMMANDS), "ciName": None,
        "timestamp": rng.randint(1_700_000_000_000, 1_800_000_000_000), "timezone": "UTC",
        "versions": {"serverless": "3.40.0", "@serverless/dashboard-plugin": "7.2.3"},
        "dashboard": {"userId": None},
        "config": {
            "provider": {"name": "aws", "runtime": "nodejs18.x", "stage": rng.choice(("qa", "dev", "prod")),
                         "region": rng.choice(("eu-west-1", "us-east-1"))},
            "functions": [{"runtime": "nodejs18.x", "events": [{"type": "httpApi"}], "memorySize": 1024,
                           "timeout": 6}],
            "plugins": [],
        },
    }
    headers = {"Accept": "*/*", "User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
               "Accept-Encoding": "gzip,deflate", "Connection": "keep-alive"}
    return "https://sp-notifications-and-metrics-v1.serverless-platform.com/", headers, [event]


def _segment_v1_documented(rng: random.Random) -> tuple[str, dict[str, str], Any]:
    """A Serverless v1 usage event sent to Segment's `/v1/track` with only the documented fields."""
    user = _uuid(rng)
    body: dict[str, Any] = {
        "event": "framework_stat", "type": "track", "messageId": _uuid(rng), "timestamp": _iso(rng),
        "sentAt": _iso(rng), "userId": user, "context": {"library": {"name": "analytics-node", "version": "2.1.0"}},
        "properties": {
            "version": 1,
            "command": {"name": rng.choice(_COMMANDS), "isRunInService": rng.random() < 0.5},
            "service": {"numberOfCustomPlugins": rng.randint(0, 5), "hasCustomResourcesDefined": False,
                        "hasVariablesInCustomSectionDefined": True, "hasCustomVariableSyntaxDefined": False},
            "provider": {"name": "aws", "runtime": "nodejs18.x", "stage": rng.choice(("qa", "dev", "prod")),
                         "region": rng.choice(("eu-west-1", "us-east-1"))},
            "functions": {"numberOfFunctions": rng.randint(1, 9), "memorySizeAndTimeoutPerFunction": []},
            "events": {"numberOfEvents": 2, "numberOfEventsPerType": [{"name": "http", "count": 2}],
                       "eventNamesPerFunction": [["http"]]},
            "general": {"userId": user, "timestamp": rng.randint(1_500_000_000_000, 1_600_000_000_000),
                        "timezone": "Europe/Berlin", "operatingSystem": "linux", "serverlessVersion": "1.83.3",
                        "nodeJsVersion": "v18.19.0"},
        },
    }
    headers = {"User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "Accept": "*/*"}
    return "https://api.segment.io/v1/track", headers, body


def _sst_v3_documented(rng: random.Random) -> tuple[str, dict[str, str], Any]:
    """An SST v3 PostHog batch whose events carry only the fields the `sst.v3-batch` rule allows."""
    body = {"api_key": "phc_" + _s(rng, string.ascii_letters + string.digits, 43), "batch": []}
    return "https://telemetry.ion.sst.dev/batch/", {"user-agent": "posthog-go (version: 2.0.0)"}, body


def _pad_documented(rng: random.Random, url: str, body: Any, size: int) -> Any:
    """Grow a documented body to about `size` bytes with more documented values."""
    distinct = _s(rng, string.ascii_lowercase, 32)
    while len(_compact(body)) < size - 40:
        if isinstance(body, list):
            body[0]["config"]["plugins"].append(rng.choice(("serverless-offline", "serverless-esbuild",
                                                            "serverless-domain-manager", "serverless-iam-roles")))
        elif "batch" in body:
            body["batch"].append({
                "type": "capture", "library": "posthog-go", "library_version": "2.0.0", "timestamp": _iso(rng),
                "distinct_id": distinct, "event": rng.choice(("cli.start", "cli.success")),
                "properties": {"$lib": "posthog-go", "$lib_version": "2.0.0",
                               "sst_version": f"3.{rng.randint(0, 20)}.{rng.randint(0, 9)}"},
                "send_feature_flags": False})
        else:
            body["properties"]["functions"]["memorySizeAndTimeoutPerFunction"].append(
                {"memorySize": rng.choice((128, 512, 1024)), "timeout": rng.choice((6, 30, 900))})
    return body


_PACK_TEMPLATES: tuple[Callable[[random.Random], tuple[str, dict[str, str], Any]], ...] = (
    _serverless_v3_documented, _segment_v1_documented, _sst_v3_documented,
)


def make_entropy_corpus(count: int, seed: int = SEED + 3, size: int = EVENT_BYTES) -> list[Request]:
    """~1 KB events whose values are high-entropy text (base64 blobs, hex digests with separators, random ids):
    what a session replay or hashed-id payload looks like, and the text on which a regex DFA can thrash."""
    rng = random.Random(seed)
    alphabets = (string.ascii_letters + string.digits + "+/=", "0123456789abcdef:-.", string.ascii_letters + "_-@.")
    requests = []
    for i in range(count):
        alphabet = alphabets[i % len(alphabets)]
        body = {"event": "replay", "properties": {"blob": _s(rng, alphabet, size - 60)}}
        requests.append(Request.from_url("POST", "https://api.segment.io/v1/track",
                                         {"content-type": "application/json"}, _compact(body)))
    return requests


def make_pack_host_corpus(count: int, seed: int = SEED + 2, size: int = EVENT_BYTES) -> list[Request]:
    """`count` ~`size`-byte requests to tool-pack hosts that their packs document field by field (no leak)."""
    rng = random.Random(seed)
    requests: list[Request] = []
    for index in range(count):
        url, headers, body = _PACK_TEMPLATES[index % len(_PACK_TEMPLATES)](rng)
        body = _pad_documented(rng, url, body, size)
        requests.append(Request.from_url("POST", url, {"content-type": "application/json", **headers},
                                         _compact(body)))
    return requests


# --- timing ----------------------------------------------------------------------------------------------------


def timings(work: Callable[[], object], repeat: int, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Times of `repeat` runs of `work()` (wall clock unless `clock` says otherwise), after `warmup` untimed runs."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeat):
        start = clock()
        work()
        times.append(clock() - start)
    return times


def median_seconds(work: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall time of `work()` over `repeat` runs, after `warmup` untimed runs."""
    return statistics.median(timings(work, repeat, warmup))


def evaluate_all(auditor: Auditor, requests: Sequence[Request]) -> Counter[Action]:
    """Evaluate every request; the count of each action (so the work cannot be optimised away)."""
    actions: Counter[Action] = Counter()
    for request in requests:
        actions[auditor.evaluate(request).action] += 1
    return actions


def detect_secrets_scanner() -> tuple[Callable[[Sequence[str]], int], Callable[[], None]]:
    """(scan lines -> secrets found, close) with detect-secrets' default plugins and filters."""
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    context = default_settings()
    context.__enter__()  # detect-secrets configures a process-wide singleton; left in place until close()

    def scan(lines: Sequence[str]) -> int:
        return sum(1 for line in lines for _ in scan_line(line))

    def close() -> None:
        context.__exit__(None, None, None)

    return scan, close


def big_policy(policy: Policy, max_body_bytes: int) -> Policy:
    """`policy` with a body limit large enough to inspect the big payload (rules unchanged)."""
    return dataclasses.replace(policy, settings=dataclasses.replace(policy.settings, max_body_bytes=max_body_bytes))


# --- breakdown -------------------------------------------------------------------------------------------------


def breakdown(auditor: Auditor, requests: Sequence[Request], repeat: int) -> list[tuple[str, float]]:
    """Seconds per pass over `requests` for each stage `Auditor.evaluate` runs on them, and the total.

    The stages of the fast path most telemetry takes: route, decode, the scan text, each detector family over it
    (`_glance`), then what the requests with something to say cost beyond that (reading the fields around the
    matches, findings, redaction) as the rest.
    """
    limits = auditor.limits
    routed = [(r, auditor.route(r)[1]) for r in requests]
    decoded = [decode_request(r, limits) for r in requests]
    for d in decoded:
        d.body_tree  # noqa: B018 - parsed once here, as `decode` leaves it
    headers_texts = [header_scan_text(r.headers) for r in requests]
    texts = [scan_text(d, h) for d, h in zip(decoded, headers_texts, strict=True)]
    groups = [(d, users) for d, users in auditor.detector_groups(routed[0][1])]

    def route() -> None:
        for request in requests:
            auditor.route(request)

    def decode() -> None:
        for request in requests:
            decode_request(request, limits).body_tree  # noqa: B018

    def build_scan_texts() -> None:
        for d, h in zip(decoded, headers_texts, strict=True):
            scan_text(d, h)

    joint = auditor.joint_gate(routed[0][1])
    gate_hits = [joint.hits(text) if joint is not None and text is not None else None for text in texts]

    def run_joint_gate() -> None:
        if joint is not None:
            for text in texts:
                if text is not None:
                    joint.hits(text)

    def family(position: int, detector: Any) -> Callable[[], None]:
        find_in_scan_text = auditor.key_context_of(detector)[0]

        def scan() -> None:
            for (request, _), text, hits in zip(routed, texts, gate_hits, strict=True):
                if text is None:
                    continue
                mine = hits.get(position) if hits is not None else None
                if hits is not None and mine is None:
                    continue  # the gate says nothing here (header names are judged once per header set)
                found = find_in_scan_text(text, request.headers, mine) if find_in_scan_text else \
                    detector.find_gated(text, mine) if mine is not None else detector.find(text)
                for _ in found:
                    break
        return scan

    stages: list[tuple[str, float]] = [
        ("route (telemetry by name or payload, rules)", median_seconds(route, repeat)),
        ("decode (codings, charset, JSON parse)", median_seconds(decode, repeat)),
        ("scan text (one string of every value)", median_seconds(build_scan_texts, repeat)),
        ("joint gate (one RE2 pass for every family)", median_seconds(run_joint_gate, repeat)),
    ]
    for position, (detector, _) in enumerate(groups):
        asked = sum(h is None or position in h for h, t in zip(gate_hits, texts, strict=True) if t is not None)
        stages.append((f"detectors: {detector.family}, asked of {asked} scan texts",
                       median_seconds(family(position, detector), repeat)))
    total = median_seconds(lambda: evaluate_all(auditor, requests), repeat)
    slow = sum(text is None for text in texts)
    stages.append((f"rest (glance, fields near matches, findings, redaction; {slow} full reads)",
                   max(total - sum(seconds for _, seconds in stages), 0.0)))
    stages.append(("total Auditor.evaluate", total))
    return stages


def profile(auditor: Auditor, requests: Sequence[Request], top: int = 25) -> str:
    """cProfile of one pass over `requests`, top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    evaluate_all(auditor, requests)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- report ----------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Headline results of one run (what the smoke test checks)."""

    events: int
    mean_event_bytes: float
    events_per_s: float
    best_events_per_s: float
    cpu_events_per_s: float
    ds_events: int
    ds_events_per_s: float
    actions: dict[str, int]
    big_bytes: int
    big_shipped_action: str
    big_shipped_inspected: bool
    big_mb_per_s: float
    big_action: str
    big_leak_found: bool
    big_ds_mb_per_s: float
    breakdown: list[tuple[str, float]]
    policy_label: str = "default"
    big_cpu_mb_per_s: float = 0.0
    """The big batch in process CPU time (less sensitive than wall time to other processes)."""
    packs_cpu_events_per_s: float = 0.0
    """The same corpus with `default` plus every shipped tool pack (what applies with no `--policy`)."""
    packs_actions: dict[str, int] = dataclasses.field(default_factory=dict)
    pack_host_events: int = 0
    bare_pack_host_cpu_events_per_s: float = 0.0
    """Requests to tool-pack hosts with only documented fields, bare `default`."""
    pack_host_cpu_events_per_s: float = 0.0
    """The same requests with `default` plus every shipped tool pack (checked against documented fields)."""
    pack_host_actions: dict[str, int] = dataclasses.field(default_factory=dict)
    clean_events: int = 0
    clean_cpu_events_per_s: float = 0.0
    """The corpus's clean events alone (no planted leak: what the 20,000 events/s target names), CPU median."""
    leaked_cpu_us: float = 0.0
    entropy_events: int = 0
    entropy_cpu_events_per_s: float = 0.0
    """CPU time per event of the corpus's events with a planted leak (the full path: findings, redaction)."""


def cpu_events_per_s(auditor: Auditor, requests: Sequence[Request], repeat: int) -> tuple[float, Counter[Action]]:
    """(median events/s in process CPU time after a warm-up pass, decisions) of `requests` through `auditor`."""
    actions = evaluate_all(auditor, requests)
    cpu = timings(lambda: evaluate_all(auditor, requests), repeat, warmup=0, clock=time.process_time)
    return len(requests) / statistics.median(cpu), actions


def run(events: int, repeat: int, big_bytes: int = BIG_BYTES, ds_events: int = 1000,
        with_detect_secrets: bool = True, policies: Sequence[str] = ("default",)) -> Figures:
    """Every measurement of the benchmark; prints nothing. `policies`: the bare `default` unless told."""
    policy = load_policy(list(policies))
    auditor = Auditor(policy, ENVIRONMENT)
    corpus = make_corpus(events)
    requests = [e.request for e in corpus]
    mean_bytes = statistics.fmean(len(r.body) for r in requests)
    actions = evaluate_all(auditor, requests)  # also the warm-up: detectors are built on first use
    times = timings(lambda: evaluate_all(auditor, requests), repeat, warmup=0)
    # CPU time of this process: less sensitive than wall time to other processes on a shared machine.
    cpu_times = timings(lambda: evaluate_all(auditor, requests), repeat, warmup=0, clock=time.process_time)

    clean = [e.request for e in corpus if not e.leaked]
    leaked = [e.request for e in corpus if e.leaked]
    clean_rate = cpu_events_per_s(auditor, clean, repeat)[0] if clean else 0.0
    leaked_rate = cpu_events_per_s(auditor, leaked, repeat)[0] if leaked else 0.0
    entropy = make_entropy_corpus(max(events // 10, 3))
    entropy_rate = cpu_events_per_s(auditor, entropy, repeat)[0]

    big, big_document = make_big_request(big_bytes)
    shipped = Auditor(policy, ENVIRONMENT).evaluate(big)
    # A body over the shipped limit (`--big-mb` above 8.4) is measured with the limit raised to fit it.
    big_auditor = Auditor(big_policy(policy, max(len(big.body), policy.settings.max_body_bytes)), ENVIRONMENT)
    big_auditor.evaluate(requests[0])  # builds the detectors
    big_decision = big_auditor.evaluate(big)
    # At least 3 runs: one run of the big batch swung by a third on a shared machine (a run is under a second).
    big_runs = max(3, repeat // 2)
    big_times = timings(lambda: big_auditor.evaluate(big), big_runs, warmup=0)
    big_cpu_times = timings(lambda: big_auditor.evaluate(big), big_runs, warmup=0, clock=time.process_time)

    # What applies with no `--policy` (default + every shipped tool pack), on the same corpus and on requests
    # to the packs' own hosts that carry only documented fields.
    with_packs = Auditor(load_policy(default_references()), ENVIRONMENT)
    packs_rate, packs_actions = cpu_events_per_s(with_packs, requests, repeat)
    pack_requests = make_pack_host_corpus(max(events // 2, 3))
    bare_pack_rate, _ = cpu_events_per_s(Auditor(load_policy(["default"]), ENVIRONMENT), pack_requests, repeat)
    pack_rate, pack_actions = cpu_events_per_s(with_packs, pack_requests, repeat)

    ds_rate = ds_big_rate = 0.0
    ds_count = 0
    if with_detect_secrets:
        scan, close = detect_secrets_scanner()
        try:
            lines = [r.body.decode() for r in requests[:ds_events]]
            ds_count = len(lines)
            ds_rate = len(lines) / statistics.median(timings(lambda: scan(lines), max(1, repeat // 2), warmup=1))
            big_line = big.body.decode()
            ds_big_rate = len(big.body) / 1e6 / statistics.median(timings(lambda: scan([big_line]), 1, warmup=0))
        finally:
            close()

    return Figures(
        events=len(requests),
        mean_event_bytes=mean_bytes,
        events_per_s=len(requests) / statistics.median(times),
        best_events_per_s=len(requests) / min(times),
        cpu_events_per_s=len(requests) / statistics.median(cpu_times),
        ds_events=ds_count,
        ds_events_per_s=ds_rate,
        actions={a.value: n for a, n in sorted(actions.items())},
        big_bytes=len(big.body),
        big_shipped_action=shipped.action.value,
        big_shipped_inspected=not any(f.rule_id == "oversize" for f in shipped.findings),
        big_mb_per_s=len(big.body) / 1e6 / statistics.median(big_times),
        big_action=big_decision.action.value,
        big_leak_found=any(f.field.startswith(f"batch[{len(big_document['batch']) - 1}]")
                           for f in big_decision.findings),
        big_ds_mb_per_s=ds_big_rate,
        breakdown=breakdown(auditor, requests, repeat),
        policy_label=" + ".join(policies),
        big_cpu_mb_per_s=len(big.body) / 1e6 / statistics.median(big_cpu_times),
        packs_cpu_events_per_s=packs_rate,
        packs_actions={a.value: n for a, n in sorted(packs_actions.items())},
        pack_host_events=len(pack_requests),
        bare_pack_host_cpu_events_per_s=bare_pack_rate,
        pack_host_cpu_events_per_s=pack_rate,
        pack_host_actions={a.value: n for a, n in sorted(pack_actions.items())},
        clean_events=len(clean),
        clean_cpu_events_per_s=clean_rate,
        leaked_cpu_us=1e6 / leaked_rate if leaked_rate else 0.0,
        entropy_events=len(entropy),
        entropy_cpu_events_per_s=entropy_rate,
    )


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:,.1f}x" if theirs else "n/a"


def format_report(f: Figures) -> str:
    per_event = 1e6 / f.events_per_s
    verdict = "meets" if f.events_per_s >= TARGET_EVENTS_PER_S else "BELOW"
    clean_verdict = "meets" if f.clean_cpu_events_per_s >= TARGET_EVENTS_PER_S else "BELOW"
    rows = [
        ("1 KB events, Auditor.evaluate", f"{f.events_per_s:,.0f} events/s",
         f"{f.events_per_s * f.mean_event_bytes / 1e6:,.2f} MB/s", f"{per_event:,.1f} us/event"),
        ("  (best run, wall clock)", f"{f.best_events_per_s:,.0f} events/s", "", ""),
        ("  (median, process CPU time)", f"{f.cpu_events_per_s:,.0f} events/s", "",
         f"{1e6 / f.cpu_events_per_s:,.1f} us/event"),
        (f"  its {f.clean_events} clean events alone (CPU)", f"{f.clean_cpu_events_per_s:,.0f} events/s", "",
         f"{1e6 / f.clean_cpu_events_per_s:,.1f} us/event" if f.clean_cpu_events_per_s else ""),
        (f"  its {f.events - f.clean_events} events with a leak alone (CPU)", "", "",
         f"{f.leaked_cpu_us:,.1f} us/event" if f.leaked_cpu_us else ""),
        (f"{f.entropy_events} 1 KB events of high-entropy text (CPU)", f"{f.entropy_cpu_events_per_s:,.0f} events/s",
         "", f"{1e6 / f.entropy_cpu_events_per_s:,.1f} us/event" if f.entropy_cpu_events_per_s else ""),
        (f"1 KB events, detect-secrets scan_line (first {f.ds_events}, 1 line/event)",
         f"{f.ds_events_per_s:,.0f} events/s",
         f"{f.ds_events_per_s * f.mean_event_bytes / 1e6:,.2f} MB/s", ""),
        ("  ours / detect-secrets", _ratio(f.events_per_s, f.ds_events_per_s), "", ""),
        (f"{f.big_bytes / 1e6:.1f} MB batch, Auditor.evaluate", "",
         f"{f.big_mb_per_s:,.2f} MB/s", f"{f.big_bytes / 1e6 / f.big_mb_per_s:,.2f} s/request"),
        ("  (median, process CPU time)", "", f"{f.big_cpu_mb_per_s:,.2f} MB/s" if f.big_cpu_mb_per_s else "", ""),
        (f"{f.big_bytes / 1e6:.1f} MB batch, detect-secrets (compact JSON as one line, 1 run)", "",
         f"{f.big_ds_mb_per_s:,.2f} MB/s", ""),
        ("  ours / detect-secrets", "", _ratio(f.big_mb_per_s, f.big_ds_mb_per_s), ""),
        ("1 KB events, default + every tool pack (CPU time)", f"{f.packs_cpu_events_per_s:,.0f} events/s", "",
         f"{1e6 / f.packs_cpu_events_per_s:,.1f} us/event" if f.packs_cpu_events_per_s else ""),
        (f"{f.pack_host_events} documented pack-host requests, bare default (CPU)",
         f"{f.bare_pack_host_cpu_events_per_s:,.0f} events/s", "",
         f"{1e6 / f.bare_pack_host_cpu_events_per_s:,.1f} us/event" if f.bare_pack_host_cpu_events_per_s else ""),
        ("  the same, default + every tool pack (CPU)", f"{f.pack_host_cpu_events_per_s:,.0f} events/s", "",
         f"{1e6 / f.pack_host_cpu_events_per_s:,.1f} us/event" if f.pack_host_cpu_events_per_s else ""),
    ]
    if not f.ds_events:
        rows = [r for r in rows if "detect-secrets" not in r[0] and "ours /" not in r[0]]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"corpus: {f.events} JSON requests, mean body {f.mean_event_bytes:,.0f} bytes, "
        f"{LEAK_RATE:.0%} with a planted leak; decisions {f.actions}",
        f"one core, policy {f.policy_label} unless a row says otherwise, fixed AuditEnvironment; median of "
        "timed runs after a warm-up",
        f"with default + every tool pack: decisions {f.packs_actions} (the SST and LocalStack events carry "
        "undocumented padding keys); documented pack-host requests: decisions "
        f"{f.pack_host_actions}",
        "",
        f"{'measurement':<{width}}  {'events/s':>16}  {'MB/s':>12}  {'latency':>16}",
        f"{'-' * width}  {'-' * 16}  {'-' * 12}  {'-' * 16}",
        *(f"{a:<{width}}  {b:>16}  {c:>12}  {d:>16}" for a, b, c, d in rows),
        "",
        f"target {TARGET_EVENTS_PER_S:,} events/s: {verdict} ({f.events_per_s / TARGET_EVENTS_PER_S:.0%} of target); "
        f"clean events alone (what it names), CPU: {clean_verdict} "
        f"({f.clean_cpu_events_per_s / TARGET_EVENTS_PER_S:.0%})",
        f"{f.big_bytes / 1e6:.1f} MB batch with the default policy as shipped: {f.big_shipped_action}, "
        f"{'inspected' if f.big_shipped_inspected else 'not inspected (over max_body_bytes)'}; "
        f"measured: {f.big_action}, leak in the last event "
        f"{'found' if f.big_leak_found else 'NOT found'}",
        "",
        "where the time goes (one pass over the 1 KB corpus):",
    ]
    total = f.breakdown[-1][1]
    width = max(len(name) for name, _ in f.breakdown)
    for name, seconds in f.breakdown:
        lines.append(f"  {name:<{width}}  {seconds * 1e6 / f.events:>8,.1f} us/event  {seconds / total:>6.1%}")
    lines.append("  (stages are timed separately; a detector row stops at its first match, as the glance flags it)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="1 KB requests in the corpus (default 5000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the median is reported")
    parser.add_argument("--quick", action="store_true", help="1000 events, 3 runs, a 2 MB big payload")
    parser.add_argument("--big-mb", type=float, default=BIG_BYTES / 1e6, help="size of the big payload in MB")
    parser.add_argument("--ds-events", type=int, default=1000,
                        help="requests of the corpus scanned by detect-secrets (it is slow; default 1000)")
    parser.add_argument("--no-detect-secrets", action="store_true", help="skip the detect-secrets comparison")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one pass (top 25)")
    parser.add_argument("--policy", action="append", metavar="NAME",
                        help="policy pack(s) to measure (repeatable; default: the bare `default`, as before the "
                             "tool packs applied by default)")
    args = parser.parse_args(argv)
    events, repeat, big_bytes = args.events, args.repeat, int(args.big_mb * 1e6)
    if args.quick:
        events, repeat, big_bytes = 1000, 3, 2_000_000
    figures = run(events, repeat, big_bytes, ds_events=300 if args.quick else args.ds_events,
                  with_detect_secrets=not args.no_detect_secrets, policies=args.policy or ("default",))
    print(format_report(figures))
    if args.profile:
        auditor = Auditor(load_policy(args.policy or ["default"]), ENVIRONMENT)
        print("\n" + profile(auditor, [e.request for e in make_corpus(events)]))


if __name__ == "__main__":
    main()
