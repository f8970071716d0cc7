"""The pytest plugin, as a tool maintainer uses it: inner test sessions run real clients through the real proxy.

Each `pytester.runpytest_subprocess()` is one session with its own CA and proxies, run the way a maintainer's CI
runs it; the outer test checks outcomes and what the failure messages say (masked, never the plaintext).
"""

from __future__ import annotations

import re
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from telemetry_audit.collectors.store import StoredEvent
from telemetry_audit.pytest_plugin import AuditSettings, masked_value, resolve_field

pytest_plugins = ["pytester"]

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
HOME_PATH = "/home/" + "alice/secret-project"
ENV_SECRET = "s3cr3t-" + "Value-Of-My-Env-Token-42"

CLIENTS = f'''
"""Shared by the inner tests: a PostHog batch as SST v3/v4 sends it, and clients that post it."""
import json
import sys

URL = "https://telemetry.ion.sst.dev/batch/"
GITHUB_TOKEN = {GITHUB_TOKEN[:4]!r} + {GITHUB_TOKEN[4:]!r}
HOME_PATH = {HOME_PATH[:6]!r} + {HOME_PATH[6:]!r}
ENV_SECRET = {ENV_SECRET[:7]!r} + {ENV_SECRET[7:]!r}


def batch(**properties):
    event = {{"type": "capture", "event": "cli.start", "distinct_id": "zvdendhdnrdaonumwdtmrumxwwetewrs",
             "properties": {{"sst_version": "4.17.1", "cpu_count": 2, **properties}}}}
    return json.dumps({{"api_key": "phc_test", "batch": [event]}})


POST = (
    "import os, sys, urllib.request\\n"
    "if os.environ.get('DO_NOT_TRACK') != '1':\\n"
    "    req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),"
    " headers={{'content-type': 'application/json'}})\\n"
    "    print(urllib.request.urlopen(req, timeout=20).read().decode())\\n"
)


def python_post(body, url=URL):
    """A Python (urllib) CLI that sends `body` unless DO_NOT_TRACK=1."""
    return [sys.executable, "-c", POST, url, body]
'''


def _plugin_args() -> list[str]:
    """`-p telemetry_audit.pytest_plugin` until the `pytest11` entry point is installed (then it loads itself)."""
    installed = any(ep.value == "telemetry_audit.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "telemetry_audit.pytest_plugin"]


def run_inner(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(clients=CLIENTS)
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", "-rA", *args, timeout=300)


def literal(*patterns: str) -> list[str]:
    """fnmatch patterns in which `[` is literal (field paths have indices); `*` is still a wildcard."""
    return [pattern.replace("[", "[[]") for pattern in patterns]


def artifacts_text(pytester: pytest.Pytester) -> str:
    """Every audit-log slice and report the inner session kept."""
    files = [*pytester.path.rglob("telemetry-audit*/audit.jsonl"), *pytester.path.rglob("telemetry-audit*/report.json")]
    assert files, "the plugin kept no artifacts"
    return "".join(path.read_text(encoding="utf-8") for path in files)


# --- real clients, clean payloads --------------------------------------------------------------------------------

CLEAN = '''
import json
import shutil
import sys

import pytest

from clients import URL, batch, python_post


def test_python_urllib(telemetry_audit):
    result = telemetry_audit.run(python_post(batch()))
    assert json.loads(result.stdout) == {"status": 1}, result.stderr  # PostHog's answer, emulated offline
    [event] = telemetry_audit.assert_sent(event="cli.start", tool="sst", fields={"properties.sst_version": "4.17.1"})
    assert event.collector == "sst-ion" and event.properties["cpu_count"] == 2
    telemetry_audit.assert_no_violations()
    [record] = telemetry_audit.requests()
    assert (record["host"], record["decision"]) == ("telemetry.ion.sst.dev", "allow")
    assert telemetry_audit.report()["summary"]["telemetry"] == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl(telemetry_audit):
    result = telemetry_audit.run(["curl", "-sS", "--fail", "-H", "content-type: application/json",
                                  "--data-binary", batch(), URL])
    assert json.loads(result.stdout) == {"status": 1}, result.stderr
    telemetry_audit.assert_sent(event="cli.start", fields={"sst_version": "4.17.1",
                                                           "raw.distinct_id": "zvdendhdnrdaonumwdtmrumxwwetewrs"})
    telemetry_audit.assert_no_violations(fail_on="log")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_fetch(telemetry_audit):
    program = ("fetch(process.argv[1], {method: 'POST', body: process.argv[2], "
               "headers: {'content-type': 'application/json'}}).then(r => r.text()).then(t => console.log(t))")
    result = telemetry_audit.run(["node", "-e", program, URL, batch()])
    assert json.loads(result.stdout) == {"status": 1}, result.stderr
    telemetry_audit.assert_sent(event="cli.start", tool="sst")
    assert [r["host"] for r in telemetry_audit.requests()] == ["telemetry.ion.sst.dev"]
    telemetry_audit.assert_no_violations()


def test_a_later_test_sees_only_its_own_traffic(telemetry_audit):
    assert telemetry_audit.requests() == [] and telemetry_audit.events() == []
    telemetry_audit.assert_nothing_sent()
'''


def test_clean_payloads_from_real_clients_pass(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, CLEAN)
    skipped = sum(shutil.which(tool) is None for tool in ("curl", "node"))
    result.assert_outcomes(passed=4 - skipped, skipped=skipped)


# --- findings fail, with masked messages -------------------------------------------------------------------------

FINDINGS = '''
import re

import pytest

from clients import ENV_SECRET, GITHUB_TOKEN, HOME_PATH, batch, python_post


def test_home_path(telemetry_audit):
    telemetry_audit.run(python_post(batch(cwd=HOME_PATH)))
    telemetry_audit.assert_no_violations()


def test_github_token(telemetry_audit):
    telemetry_audit.run(python_post(batch(token=GITHUB_TOKEN)))
    telemetry_audit.assert_no_violations(fail_on="block")


@pytest.mark.telemetry_audit(env={"MY_TOKEN": ENV_SECRET})
def test_environment_value(telemetry_audit):
    telemetry_audit.run(python_post(batch(auth=ENV_SECRET)))
    telemetry_audit.assert_no_violations(fail_on="high")


def test_redacted_field_is_not_what_was_expected(telemetry_audit):
    telemetry_audit.run(python_post(batch(cwd=HOME_PATH)))
    telemetry_audit.assert_sent(event="cli.start", fields={"properties.cwd": re.compile("/home/.*")})


def test_field_mismatch(telemetry_audit):
    telemetry_audit.run(python_post(batch()))
    telemetry_audit.assert_sent(event="cli.start", fields={"properties.sst_version": "4.18.0"})


@pytest.mark.telemetry_audit(policy="sst")
def test_undocumented_field_is_logged_not_redacted(telemetry_audit):
    telemetry_audit.run(python_post(batch(favourite_colour="blue")))
    telemetry_audit.assert_no_violations(fail_on="redact")
    telemetry_audit.assert_no_violations(fail_on="log")
'''


def test_findings_fail_naming_the_finding_masked(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, FINDINGS)
    result.assert_outcomes(passed=0, failed=6)
    result.stdout.fnmatch_lines(literal(
        "*test_home_path*",
        "E       AssertionError: telemetry findings at or above 'redact':",
        "E         REDACT POST https://telemetry.ion.sst.dev/batch/*",
        "E           default.paths: path in batch[0].properties.cwd: /hom…[26 chars] [medium, redact, fingerprint *",
        "E       audit log: */test_home_path0/telemetry-audit/audit.jsonl",
        "E       report: */test_home_path0/telemetry-audit/report.json",
        "*telemetry-audit (enforce)*",
        # two: the home path, and `cwd` is not on SST's documented list (its pack applies by default)
        "1 telemetry request(s) of 1: 0 blocked, 1 redacted, 0 logged; 2 finding(s)",
        "*test_github_token*",
        "E         BLOCK POST https://telemetry.ion.sst.dev/batch/ *",
        "E           default.secrets: secret in batch[0].properties.token: ghp_…[40 chars] [critical, block, *",
        "*test_environment_value*",
        "E           default.env-values: env in batch[0].properties.auth: s3cr…[31 chars] *value of $MY_TOKEN*",
        "*test_redacted_field_is_not_what_was_expected*",
        "E       AssertionError: no event (event='cli.start', properties.cwd=re'/home/.*') was received since *",
        "E           properties.cwd: '[REDACTED:path]' (redacted by the proxy) (expected re'/home/.*')",
        "*test_field_mismatch*",
        "E           properties.sst_version: str …[6 chars] (expected '4.18.0')",
        "*test_undocumented_field_is_logged_not_redacted*",
        "E       AssertionError: telemetry findings at or above 'log':",
        "E           sst.v3-batch: undocumented in batch[0].properties.favourite_colour: …[4 chars] [low, log, *",
    ))
    output = result.stdout.str() + artifacts_text(pytester)
    for plaintext in (GITHUB_TOKEN, HOME_PATH, ENV_SECRET, "4.17.1"):
        assert plaintext not in output


# --- opt-out tests -----------------------------------------------------------------------------------------------

OPT_OUT = '''
from clients import batch, python_post


def test_opted_out_command_sends_nothing(telemetry_audit):
    result = telemetry_audit.run(python_post(batch()), env={"DO_NOT_TRACK": "1"})
    assert result.returncode == 0
    telemetry_audit.assert_nothing_sent()
    telemetry_audit.assert_not_sent(event="cli.start")


def test_command_that_ignores_the_opt_out(telemetry_audit):
    telemetry_audit.run(python_post(batch()))
    telemetry_audit.assert_nothing_sent()


def test_assert_not_sent_fails_when_the_event_went_out(telemetry_audit):
    telemetry_audit.run(python_post(batch()))
    telemetry_audit.assert_not_sent(event="cli.exit")
    telemetry_audit.assert_not_sent(event="cli.start", tool="sst")
'''


def test_opt_out_assertions(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, OPT_OUT)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*test_command_that_ignores_the_opt_out*",
        "E       AssertionError: expected no telemetry, but 1 request(s) reached the proxy",
        "E       seen since the test began: 1 telemetry request(s), 1 event(s)",
        "E         ALLOW POST https://telemetry.ion.sst.dev/batch/*",
        "E         event 'cli.start' tool='sst' collector='sst-ion' properties: cpu_count, sst_version",
        "*test_assert_not_sent_fails_when_the_event_went_out*",
        "E       AssertionError: event (event='cli.start', tool='sst') was received 1 time(s):",
    ])


# --- in-process clients ------------------------------------------------------------------------------------------

IN_PROCESS = '''
import httpx
import pytest
import requests

from clients import GITHUB_TOKEN, URL, batch

HEADERS = {"content-type": "application/json"}


def test_requests_client(telemetry_audit):
    answer = requests.post(URL, data=batch(), headers=HEADERS, proxies=telemetry_audit.proxies,
                           verify=telemetry_audit.ca_bundle, timeout=20)
    assert answer.json() == {"status": 1}
    telemetry_audit.assert_sent(event="cli.start", fields={"distinct_id": "zvdendhdnrdaonumwdtmrumxwwetewrs"})
    telemetry_audit.assert_no_violations()


def test_httpx_client(telemetry_audit):
    with httpx.Client(proxy=telemetry_audit.proxy_url, verify=telemetry_audit.ssl_context()) as client:
        assert client.post(URL, content=batch(), headers=HEADERS, timeout=20).json() == {"status": 1}
    telemetry_audit.assert_sent(event="cli.start")


@pytest.mark.telemetry_audit(policy=["sst"])
def test_blocked_request_reaches_no_collector(telemetry_audit):
    answer = requests.post(URL, data=batch(token=GITHUB_TOKEN), headers=HEADERS, proxies=telemetry_audit.proxies,
                           verify=telemetry_audit.ca_bundle, timeout=20)
    assert answer.status_code == 200  # an empty success, so the tool neither fails nor retries
    telemetry_audit.assert_not_sent(event="cli.start")
    [rejected] = telemetry_audit.events(good=False)
    assert rejected.reason == "blocked by policy"
    [record] = telemetry_audit.requests()
    assert record["decision"] == "block" and record["tool"] == "sst"
'''


def test_in_process_clients(pytester: pytest.Pytester) -> None:
    run_inner(pytester, IN_PROCESS).assert_outcomes(passed=3)


# --- configuration -----------------------------------------------------------------------------------------------

CONFIGURATION = '''
import pytest

URLS = {}


def test_first(telemetry_audit):
    URLS["first"] = telemetry_audit.proxy_url


def test_same_settings_share_the_proxy(telemetry_audit):
    assert telemetry_audit.proxy_url == URLS["first"]


@pytest.mark.telemetry_audit(mode="audit")
def test_other_settings_get_another_proxy(telemetry_audit):
    assert telemetry_audit.proxy_url != URLS["first"] and telemetry_audit.settings.mode == "audit"


@pytest.mark.telemetry_audit(isolated=True)
def test_isolated_gets_its_own_proxy(telemetry_audit):
    assert telemetry_audit.proxy_url != URLS["first"]


def test_factory(telemetry_audit_factory):
    default, sst = telemetry_audit_factory(), telemetry_audit_factory(policy=["sst"], online=False)
    assert default.proxy_url == URLS["first"] and sst.proxy_url != default.proxy_url
    assert sst.env["HTTPS_PROXY"] == sst.proxy_url and "--require" in sst.env["NODE_OPTIONS"]


@pytest.mark.telemetry_audit(mode="spy")
def test_bad_mode(telemetry_audit):
    pass


@pytest.mark.telemetry_audit(polcy=["sst"])
def test_misspelt_option(telemetry_audit):
    pass


@pytest.mark.telemetry_audit(policy=["no-such-pack"])
def test_unknown_policy(telemetry_audit):
    pass
'''


def test_configuration_and_proxy_sharing(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, CONFIGURATION, "--strict-markers")
    result.assert_outcomes(passed=5, errors=3)
    result.stdout.fnmatch_lines([
        "*telemetry_audit: mode='spy' is not one of 'enforce', 'audit'",
        "*telemetry_audit: unknown option(s) polcy; expected: *",
        "*telemetry_audit: invalid policy*",
    ])
    result.stdout.fnmatch_lines(["*no built-in policy pack named 'no-such-pack'*"])


# --- field paths and masking -------------------------------------------------------------------------------------


def _event(**kwargs: object) -> StoredEvent:
    defaults: dict[str, object] = {"id": 1, "received_at": 0.0, "good": True, "reason": None, "collector": "otlp",
                                   "tool": "t", "name": "cli.start", "distinct_id": "abc", "anonymous_id": None,
                                   "timestamp": None}
    return StoredEvent(**{**defaults, **kwargs})  # type: ignore[arg-type]


EVENT = _event(properties={"sst_version": "4.17.1", "args": ["deploy", "--stage", "dev"], "service.name": "cli",
                           "nested": {"a.b": {"c": 1}}},
               raw={"event": "cli.start", "batch_index": 0, "sst_version": "raw-wins-only-as-fallback"})


@pytest.mark.parametrize(("path", "expected"), [
    ("properties.sst_version", "4.17.1"),
    ("sst_version", "4.17.1"),  # properties before raw
    ("raw.event", "cli.start"),
    ("batch_index", 0),
    ("name", "cli.start"),
    ("distinct_id", "abc"),
    ("properties.args[1]", "--stage"),
    ("args[-1]", "dev"),
    ("properties.service.name", "cli"),  # dotted keys, as OTLP attributes have
    ("nested.a.b.c", 1),
    ("properties.args", ["deploy", "--stage", "dev"]),
])
def test_resolve_field(path: str, expected: object) -> None:
    assert resolve_field(EVENT, path) == expected


@pytest.mark.parametrize("path", ["properties.missing", "args[3]", "properties.sst_version.major", "nested.a"])
def test_resolve_field_missing(path: str) -> None:
    with pytest.raises(KeyError):
        resolve_field(EVENT, path)


@pytest.mark.parametrize(("value", "shown"), [
    (None, "None"),
    (True, "True"),
    ("4.17.1", "str …[6 chars]"),
    (GITHUB_TOKEN, "str ghp_…[40 chars]"),
    (123456789012, "int 12…[12 chars]"),
    ("[REDACTED:path]", "'[REDACTED:path]' (redacted by the proxy)"),
    ("in /x/[REDACTED:path] here", "str in /…[26 chars] (partly redacted by the proxy)"),
    ({"b": 1, "a": GITHUB_TOKEN}, "{a, b}"),
    ([1, 2, 3], "list of 3"),
])
def test_masked_value_never_shows_the_text(value: object, shown: str) -> None:
    assert masked_value(value) == shown


def test_the_proxy_takes_the_policy_the_plugin_loaded(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaded once for the test's report and handed to the proxy child, which does not read the files again:
    with the file gone between the two, the proxy still starts."""
    from telemetry_audit.pytest_plugin import _ProxyPool
    from telemetry_audit.session import ProxySession

    pack = tmp_path / "p.yaml"
    pack.write_text("version: 1\nname: mine\nextends: [default]\nrules: []\n", encoding="utf-8")
    real_start = ProxySession.start

    def start_with_the_file_gone(self: ProxySession, **kwargs: object) -> ProxySession:
        pack.unlink()
        return real_start(self, **kwargs)

    monkeypatch.setattr(ProxySession, "start", start_with_the_file_gone)
    pool = _ProxyPool(tmp_path_factory, tmp_path)
    proxy = pool.start(AuditSettings.from_kwargs(policy=str(pack)))
    try:
        assert proxy.alive() and not pack.exists()
    finally:
        proxy.stop()


def test_settings_defaults_follow_run() -> None:
    assert AuditSettings.from_kwargs() == AuditSettings()
    online = AuditSettings.from_kwargs(online=True, policy="sst", env={"A": "1"})
    assert (online.offline_unknown, online.policy, online.env) == ("pass", ("sst",), (("A", "1"),))
    assert AuditSettings.from_kwargs(proxy_loopback=True).proxy_key() == AuditSettings.from_kwargs().proxy_key()
    assert AuditSettings.from_kwargs(policy=Path("p.yaml")).policy == ("p.yaml",)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "spy"}, "mode='spy' is not one of 'enforce', 'audit'"),
    ({"block_style": "drop"}, "block_style='drop' is not one of"),
    ({"env": {"A": 1}}, "env must be a mapping of str to str"),
    ({"polcy": "sst"}, "unknown option(s) polcy; expected: audit_all, block_style, env, isolated, mode, "
                       "offline_unknown, online, policy, proxy_loopback"),
])
def test_settings_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AuditSettings.from_kwargs(**kwargs)


SEALED = '''
import shutil

import pytest

from telemetry_audit.sandbox.probe import probe_seal


@pytest.mark.skipif(not probe_seal().ok, reason="this machine cannot seal a run")
@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_a_client_that_ignores_proxy_variables_is_still_seen(telemetry_audit):
    result = telemetry_audit.run(["curl", "-sS", "--noproxy", "*", "-H", "content-type: application/json",
                                  "-d", '{"type":"track","event":"sealed-demo","userId":"u1"}',
                                  "https://api.segment.io/v1/track"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"success":true}'
    telemetry_audit.assert_sent(event="sealed-demo")

'''


def test_run_is_sealed_so_clients_cannot_go_around_the_proxy(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, SEALED)
    result.assert_outcomes(passed=1)


OTHER_TRAFFIC = '''
import sys


def test_other_traffic_is_not_telemetry(telemetry_audit):
    code = ("import urllib.request as u\\n"
            "try:\\n    u.urlopen('http://registry.example.test/pkg', timeout=20)\\n"
            "except Exception:\\n    pass\\n")
    telemetry_audit.run([sys.executable, "-c", code])
    assert telemetry_audit.requests() == []
    telemetry_audit.assert_nothing_sent()
'''


def test_other_traffic_never_counts_as_telemetry_sent(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, OTHER_TRAFFIC)
    result.assert_outcomes(passed=1)
