"""Serverless Framework v3, the real CLI from npm, offline under telemetry-audit.

`serverless print` in an empty directory fails ("can only be run in a Serverless service directory") and
reports that failure to `sp-notifications-and-metrics-v1.serverless-platform.com` with node-fetch over Node's
default https agent, which Node 20 never proxies by itself: the preload of `run` must route it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realtools.conftest import SERVERLESS, RealTool, needs_npm, npm_tool, verdicts

pytestmark = [pytest.mark.realtool, needs_npm]

METRICS_HOST = "sp-notifications-and-metrics-v1.serverless-platform.com"
NOT_A_SERVICE = "This command can only be run in a Serverless service directory"


@pytest.fixture(scope="module")
def serverless_bin() -> Path:
    return npm_tool("serverless", SERVERLESS) / ".bin"


def test_print_failure_event_is_captured_answered_and_audited(serverless_bin: Path, confdir: Path, home: Path,
                                                              tmp_path: Path) -> None:
    tool = RealTool(confdir, home, (serverless_bin,))
    empty = tmp_path / "empty"
    empty.mkdir()
    audit = tool.run("serverless", ["serverless", "print"], empty, tmp_path)

    # The tool behaves as it does with a working network: its own error, its own exit status.
    assert audit.result.returncode == 1, audit.result.stderr
    assert NOT_A_SERVICE in audit.result.stdout + audit.result.stderr
    assert audit.report["command"]["exit_code"] == 1
    [event] = audit.requests(METRICS_HOST, "/")
    assert (event["method"], event["tool"], event["decision"]) == ("POST", "serverless", "log")
    [record] = audit.records
    assert record["client"].startswith("node[")  # node-fetch over the default agent went through the preload
    assert record["answered_by"]  # the emulated collector answered...
    assert list((home / ".serverless").glob("telemetry-cache/*")) == []  # ...with a 2xx: the cache was emptied

    # The pack: undocumented fields are drift (logged), the persistent local user id is flagged.
    findings = {(f["rule_id"], f["field"], f["kind"]) for f in event["findings"]}
    assert ("serverless.v3-metrics", "[0].failureReason.kind", "undocumented") in findings
    assert ("serverless.v3-metrics", "[0].commandDurationMs", "undocumented") in findings
    assert any(f["field"] == "[0].frameworkLocalUserId" and f["rule_id"] == "serverless.promises"
               for f in event["findings"])
    assert all(f["action"] == "log" for f in event["findings"])  # nothing secret or personal in an empty dir
    assert str(tmp_path) not in audit.log_text


def test_optout_switches(serverless_bin: Path, confdir: Path, home: Path, tmp_path: Path) -> None:
    tool = RealTool(confdir, home, (serverless_bin,))
    empty = tmp_path / "empty"
    empty.mkdir()
    result, report = tool.optout_check("serverless", ["serverless", "print"], empty, tmp_path)

    assert report["baseline"]["telemetry_requests"] == 1
    assert verdicts(report) == {
        "SLS_TELEMETRY_DISABLED=1": ("honoured", 0),
        "SLS_TRACKING_DISABLED=1": ("honoured", 0),
        "file ~/.serverlessrc": ("honoured", 0),
        "run: serverless slstats --disable": ("honoured", 0),
        # v1's command: v3 answers `Serverless command "tracking" not found` and keeps sending.
        "run: serverless tracking --disable": ("setup-failed", 1),
        "DO_NOT_TRACK=1": ("ignored", 1),  # measured: Serverless v3 ignores DO_NOT_TRACK
    }
    # The v1-only switch carries `versions: ["1.x"]`: without --tool-version it is tried but expects nothing,
    # so v3 does not fail the check on it.
    assert result.returncode == 0, result.stderr
    assert [e["label"] for e in report["switches"] if e["failed"]] == []
