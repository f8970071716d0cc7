"""LocalStack CLI, the real package from PyPI, offline under telemetry-audit.

Every command posts a `cli_cmd` event to `analytics.localstack.cloud/v1/events` (a child process, at most
2.5 s). The session event (`/v1/session`, which carries `LOCALSTACK_AUTH_TOKEN` as `payload.api_key`) comes from
`GlobalAnalyticsBus`, which the CLI feeds only from `localstack start` (the `non_prefixed_cli_env_vars` event,
when a config variable such as DEBUG is set without the LOCALSTACK_ prefix) after it has validated the license
online and configured a Docker container: no CLI command reaches it offline. The test drives that same bus of
the installed CLI, as `localstack start` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realtools.conftest import LOCALSTACK, RealTool, pip_venv, verdicts

pytestmark = pytest.mark.realtool

FAKE_TOKEN = "ls-FAKE-TOKEN-1234-abcd-5678"
ANALYTICS = "analytics.localstack.cloud"

SESSION_LIKE_START = """
import time
from localstack_cli.utils.analytics import log
# What `localstack start` does in ContainerConfigurators.config_env_vars when DEBUG=1 is set:
log.event(event="non_prefixed_cli_env_vars", payload={"env_vars": ["DEBUG"]})
time.sleep(3)  # the bus registers its session from a worker thread; `start` runs far longer than this
"""


@pytest.fixture(scope="module")
def localstack_bin() -> Path:
    return pip_venv("localstack", LOCALSTACK)


def test_config_show_sends_cli_cmd_and_is_answered(localstack_bin: Path, confdir: Path, home: Path,
                                                   tmp_path: Path) -> None:
    tool = RealTool(confdir, home, (localstack_bin,))
    audit = tool.run("localstack", ["localstack", "config", "show"], tmp_path, tmp_path,
                     {"LOCALSTACK_AUTH_TOKEN": FAKE_TOKEN})
    assert audit.result.returncode == 1, audit.result.stderr  # a finding: the promise below is broken
    assert "GATEWAY_LISTEN" in audit.result.stdout  # the command's own output, as without telemetry problems
    [event] = audit.requests(ANALYTICS, "/v1/events")
    assert (event["method"], event["tool"], event["decision"]) == ("POST", "localstack", "redact")
    # The documentation says CLI events are "not connected to the session"; the real CLI sends its session id in
    # the event's metadata and in a header: the pack's promise check reports (and redacts) both.
    assert {(f["rule_id"], f["field"]) for f in event["findings"]} == {
        ("localstack.promises", "header.localstack-session-id"),
        ("localstack.promises", "events[0].metadata.session_id")}
    assert audit.requests(ANALYTICS, "/v1/session") == []  # measured: the CLI command sends no session
    assert FAKE_TOKEN not in audit.log_text


def test_session_event_api_key_is_blocked(localstack_bin: Path, confdir: Path, home: Path, tmp_path: Path) -> None:
    tool = RealTool(confdir, home, (localstack_bin,))
    env = {"LOCALSTACK_AUTH_TOKEN": FAKE_TOKEN,
           # Without it the CLI reads its edition from /usr/lib/localstack (absent outside the container),
           # the session metadata fails and the bus silently disables tracking.
           "LOCALSTACK_TELEMETRY_EDITION": "community"}
    audit = tool.run("localstack", [str(localstack_bin / "python"), "-c", SESSION_LIKE_START], tmp_path, tmp_path,
                     env)
    assert audit.result.returncode == 1, audit.result.stderr  # a block reaches --fail-on
    assert audit.report["command"]["exit_code"] == 0
    [session] = audit.requests(ANALYTICS, "/v1/session")
    assert session["decision"] == "block"
    api_key = [f for f in session["findings"] if f["field"] == "payload.api_key"]
    assert api_key and {f["action"] for f in api_key} == {"block"}
    assert "localstack.credentials" in {f["rule_id"] for f in api_key}
    # The blocked session is answered with an empty success, so the bus goes on and sends its events.
    [events] = audit.requests(ANALYTICS, "/v1/events")
    assert any(f["field"] == "events[0].payload.env_vars[0]" for f in events["findings"])
    report_text = (tmp_path / "localstack-report.json").read_text()
    assert FAKE_TOKEN not in audit.log_text and FAKE_TOKEN not in report_text


def test_optout_switches(localstack_bin: Path, confdir: Path, home: Path, tmp_path: Path) -> None:
    tool = RealTool(confdir, home, (localstack_bin,))
    result, report = tool.optout_check("localstack", ["localstack", "config", "show"], tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert report["baseline"]["telemetry_requests"] == 1
    assert verdicts(report) == {
        "DISABLE_EVENTS=1": ("honoured", 0),
        "DO_NOT_TRACK=1": ("ignored", 1),  # measured: LocalStack ignores DO_NOT_TRACK
    }
