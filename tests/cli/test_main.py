"""The executable (`python -m telemetry_audit`) exits without the interpreter's teardown: its output must still be
complete when it goes to a pipe (block-buffered), and its exit status the command's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from xml.etree import ElementTree

import pytest

GITHUB_TOKEN = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"


@pytest.mark.parametrize(("body", "status"), [
    ({"event": "cli_run", "properties": {"version": "1.2.3"}}, 0),
    ({"event": "cli_run", "properties": {"token": GITHUB_TOKEN}}, 1),
])
def test_piped_output_is_complete_and_the_status_kept(body: dict[str, object], status: int) -> None:
    # JUnit: a report shorter than the output buffer, so it reaches the pipe only if it is flushed before exiting
    # (with standard output buffered, as it is unless PYTHONUNBUFFERED says otherwise).
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-m", "telemetry_audit", "check", "--format", "junit", "--url",
                             "https://api.segment.io/v1/track", "-"], input=json.dumps(body), capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == status, result.stderr
    assert 0 < len(result.stdout) < 8192
    suites = ElementTree.fromstring(result.stdout)
    assert len(suites.findall(".//testcase")) == 1


def test_a_usage_error_still_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "telemetry_audit", "run", "--no-such-option"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr or "no-such-option" in result.stderr
