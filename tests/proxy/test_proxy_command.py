"""`telemetry-audit proxy` (long-running, live view) and the addon script under plain `mitmdump -s`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import telemetry_audit.proxy.addon as addon_module
from tests.proxy.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
GITHUB_TOKEN = "ghp_" + "M1n2B3v4C5x6Z7l8K9j0H1g2F3d4S5a6P7o8"
PLANTED_SECRETS = (GITHUB_TOKEN,)


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _wait_for(pattern: str, stream_path: Path, timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, stream_path.read_text(errors="replace"))
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not seen in:\n{stream_path.read_text(errors='replace')}")


def test_proxy_command_audits_live_traffic_and_flushes_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(tmp_path / "confdir")}
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "telemetry_audit", "proxy", "--listen", "127.0.0.1:0", "--offline", "--log",
             str(log)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        url = _wait_for(r"listening on (http://127\.0\.0\.1:\d+)", stderr).group(1)
        bundle = _wait_for(r"system CAs \+ this one: (\S+)\)", stderr).group(1)
        assert f"HTTPS_PROXY={url}" in stderr.read_text()
        answer = requests.post("https://api.segment.io/v1/track", json={"event": "x", "t": GITHUB_TOKEN},
                               proxies={"https": url, "http": url}, verify=bundle, timeout=20)
        assert answer.status_code == 200 and answer.json() == {"success": True}
        _wait_for(r"block.*api\.segment\.io/v1/track", stderr)  # the live view
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 1  # a blocked secret reaches the default --fail-on
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["decision"] for r in records if r["record"] == "request"] == ["block"]
    assert records[-1]["record"] == "stats"  # the proxy shut down cleanly and flushed its log
    assert GITHUB_TOKEN not in log.read_text() and GITHUB_TOKEN not in stderr.read_text()


ADDON_SCRIPTS = {
    "the addons/ script": ROOT / "addons" / "telemetry_audit_addon.py",
    "the module inside the package": Path(addon_module.__file__),
}


@pytest.mark.parametrize("script", list(ADDON_SCRIPTS.values()), ids=list(ADDON_SCRIPTS))
def test_addon_script_loads_in_plain_mitmdump(tmp_path: Path, script: Path) -> None:
    mitmdump = Path(sys.executable).with_name("mitmdump")
    log = tmp_path / "audit.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port), "--set",
         f"confdir={tmp_path / 'confdir'}", "--set", "connection_strategy=lazy", "-s",
         str(script), "--set", f"taudit_log={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not log.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)  # the addon opens its log once configured, before the proxy listens
        wait_listening(port)
        proxy = f"http://127.0.0.1:{port}"
        answer = requests.post("http://api.segment.io/v1/track", json={"event": "x", "cwd": "/home/alice/p"},
                               proxies={"http": proxy}, timeout=20)
        assert answer.json() == {"success": True}
    finally:
        process.terminate()
        process.wait(timeout=30)
    [record] = [json.loads(line) for line in log.read_text().splitlines() if '"record":"request"' in line]
    assert record["decision"] == "redact" and "path" in {f["kind"] for f in record["findings"]}


def test_addon_script_refuses_a_broken_policy(tmp_path: Path) -> None:
    mitmdump = Path(sys.executable).with_name("mitmdump")
    policy = tmp_path / "broken.yaml"
    policy.write_text("rules:\n  - id: x\n    match: {telemetry: true}\n    action: deny\n")
    result = subprocess.run(
        [str(mitmdump), "-q", "--listen-host", "127.0.0.1", "--listen-port", "0", "--set",
         f"confdir={tmp_path / 'confdir'}", "-s", str(ROOT / "addons" / "telemetry_audit_addon.py"), "--set",
         f"taudit_policy={policy}"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{policy}:4:13" in result.stderr + result.stdout


def test_proxy_child_stops_and_flushes_when_its_cli_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(tmp_path / "confdir")}
    with open(stderr, "w") as err:
        cli = subprocess.Popen([sys.executable, "-m", "telemetry_audit", "proxy", "--listen", "127.0.0.1:0", "--log",
                                str(log)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    _wait_for(r"listening on http://127\.0\.0\.1:\d+", stderr)
    cli.kill()  # SIGKILL: the CLI cannot stop its proxy child itself
    cli.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if log.exists() and '"record":"stats"' in log.read_text():
            break
        time.sleep(0.2)
    assert '"record":"stats"' in log.read_text()  # the orphaned proxy noticed, shut down and flushed its log
