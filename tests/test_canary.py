"""`run --canary` end to end: real clients send planted markers in each wrapping; each is caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_audit.canary import CANARY_TOKEN_VARIABLE, plant_canaries

CLIENT = r"""
import base64, gzip, hashlib, json, os, urllib.parse, urllib.request
token, user, home = os.environ["TELEMETRY_AUDIT_CANARY_API_TOKEN"], os.environ["USER"], os.environ["HOME"]
def send(path, body, headers=None, query=""):
    url = "https://api.segment.io/v1/" + path + query
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    urllib.request.urlopen(req, timeout=20).read()
send("plain", json.dumps({"event": "x", "properties": {"t": token}}).encode())
send("base64", json.dumps({"event": "x", "blob": base64.b64encode(("k:" + token).encode()).decode()}).encode())
send("url", json.dumps({"event": "x"}).encode(), query="?u=" + urllib.parse.quote(home, safe=""))
send("gzip", gzip.compress(json.dumps({"event": "x", "who": user}).encode()), {"Content-Encoding": "gzip"})
send("sha256", json.dumps({"event": "x", "anonymousId": hashlib.sha256(user.encode()).hexdigest()}).encode())
send("md5", json.dumps({"event": "x", "machine": hashlib.md5(token.encode()).hexdigest()}).encode())
send("clean", json.dumps({"event": "x", "properties": {"n": 1}}).encode())
"""


def test_plant_canaries_makes_unique_markers(tmp_path: Path) -> None:
    one = plant_canaries({"PATH": "/usr/bin"}, str(tmp_path / "a"))
    two = plant_canaries({"PATH": "/usr/bin"}, str(tmp_path / "b"))
    assert one.token != two.token and one.user != two.user
    assert one.env[CANARY_TOKEN_VARIABLE] == one.token and one.env["HOME"] == one.home
    assert os.path.isdir(one.home) and one.user in one.home
    assert one.env["PATH"] == "/usr/bin"


def test_run_canary_catches_each_wrapping_from_real_clients(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(tmp_path / "confdir")}
    result = subprocess.run([sys.executable, "-m", "telemetry_audit", "run", "--canary", "--log", str(log), "--",
                             sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    records = {r["path"].rsplit("/", 1)[1]: r for r in map(json.loads, log.read_text().splitlines())
               if r.get("record") == "request"}
    for name in ("plain", "base64", "url", "gzip", "sha256", "md5"):
        kinds = {f["kind"] for f in records[name]["findings"]}
        assert "canary" in kinds, (name, records[name]["findings"])
        assert records[name]["decision"] == "block"
    assert not any(f["kind"] == "canary" for f in records["clean"]["findings"])
    assert "tacanary_" not in log.read_text()  # previews are masked: the token itself is never logged


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_run_canary_with_curl(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(tmp_path / "confdir")}
    script = ('curl -sS -H "content-type: application/json" '
              '-d "{\\"event\\":\\"x\\",\\"properties\\":{\\"user\\":\\"$USER\\"}}" https://api.segment.io/v1/track')
    result = subprocess.run([sys.executable, "-m", "telemetry_audit", "run", "--canary", "--log", str(log), "--",
                             "sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    [record] = [json.loads(line) for line in log.read_text().splitlines() if '"record":"request"' in line]
    assert any(f["kind"] == "canary" for f in record["findings"])
