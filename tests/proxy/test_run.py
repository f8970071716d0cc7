"""`telemetry-audit run` end to end: a real proxy on 127.0.0.1, real clients, real exit codes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.collectors.store import EventStore

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
PLANTED_SECRETS = (GITHUB_TOKEN,)
ENV_SECRET = "s3cr3t-Value-Of-My-Env-Token-42"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("confdir")


def run_cli(args: list[str], confdir: Path, cwd: Path, extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(confdir), **(extra_env or {})}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "telemetry_audit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def python_client(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def read_log(path: Path) -> list[dict[str, Any]]:
    return [r for r in (json.loads(line) for line in path.read_text().splitlines()) if r.get("record") == "request"]


@needs_curl
def test_curl_https_path_is_redacted_and_logged_without_plaintext(confdir: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    report = tmp_path / "report.json"
    body = json.dumps({"context": {"anonymousId": "a" * 64}, "environment": {"cwd": "/home/alice/proj/app"},
                       "events": [{"name": "CLI_COMMAND", "properties": {}}]})
    result = run_cli(["run", "--log", str(log), "--report", str(report), "--", "curl", "-sS", "--fail",
                      "-H", "content-type: application/json", "-d", body, "https://telemetry.sst.dev/events"],
                     confdir, tmp_path)
    assert result.returncode == 1, result.stderr  # a redaction reaches the default --fail-on
    assert result.stdout.strip() == "{}"  # what the emulated SST v2 collector answers
    [record] = read_log(log)
    assert (record["host"], record["path"], record["decision"]) == ("telemetry.sst.dev", "/events", "redact")
    assert record["client"].startswith("curl[")
    assert record["body"]["size"] == len(body) and len(record["body"]["sha256"]) == 64
    assert "/home/alice" not in log.read_text() and "/home/alice" not in report.read_text()
    data = json.loads(report.read_text())
    # the SST pack applies by default too: `environment.cwd` is also an undocumented field
    assert data["summary"]["redacted"] == 1 and "path" in {f["kind"] for f in data["requests"][0]["findings"]}


def test_python_requests_secret_is_blocked_with_an_empty_success(confdir: Path, tmp_path: Path) -> None:
    code = ("import requests, json; r = requests.post('https://api.segment.io/v1/track', "
            f"json={{'event': 'x', 'userId': 'u', 'properties': {{'t': '{GITHUB_TOKEN}'}}}}, timeout=20); "
            "print(r.status_code, r.text)")
    log = tmp_path / "audit.jsonl"
    result = run_cli(["run", "--log", str(log), "--", *python_client(code)], confdir, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.split() == ["200", '{"success":true}']  # the client neither fails nor retries
    [record] = read_log(log)
    assert record["decision"] == "block" and record["findings"][0]["kind"] == "secret"
    assert GITHUB_TOKEN not in log.read_text()


@pytest.mark.parametrize(("style", "expected"), [("403", "403"), ("kill", "ConnectionError")])
def test_block_styles(confdir: Path, tmp_path: Path, style: str, expected: str) -> None:
    code = ("import requests\ntry:\n"
            f"    r = requests.post('https://api.segment.io/v1/track', json={{'t': '{GITHUB_TOKEN}'}}, timeout=20)\n"
            "    print(r.status_code)\nexcept requests.exceptions.ConnectionError:\n    print('ConnectionError')\n")
    result = run_cli(["run", "--block-style", style, "--", *python_client(code)], confdir, tmp_path)
    assert result.stdout.strip() == expected, result.stderr


def test_urllib_gzip_env_value_is_redacted_before_the_collector_stores_it(confdir: Path, tmp_path: Path) -> None:
    store = tmp_path / "events.sqlite"
    code = (
        "import gzip, json, os, urllib.request\n"
        "event = {'type': 'track', 'event': 'deploy', 'userId': 'u1',\n"
        "         'properties': {'token': os.environ['MY_TOKEN']}}\n"
        "body = gzip.compress(json.dumps(event).encode())\n"
        "req = urllib.request.Request('https://api.segment.io/v1/track', data=body,"
        " headers={'Content-Type': 'application/json', 'Content-Encoding': 'gzip'})\n"
        "print(urllib.request.urlopen(req, timeout=20).read().decode())\n"
    )
    result = run_cli(["run", "--store", str(store), "--", *python_client(code)], confdir, tmp_path,
                     {"MY_TOKEN": ENV_SECRET})
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"success": True}
    with EventStore(str(store)) as events:
        [event] = events.good()
    stored = json.dumps(event.to_dict())
    assert event.name == "deploy" and ENV_SECRET not in stored and "[REDACTED:env]" in stored


class _Upstream(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length", 0))
        _Upstream.received.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    _Upstream.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_online_redaction_forwards_gzip_with_fixed_length(confdir: Path, tmp_path: Path, upstream: int) -> None:
    code = (
        "import gzip, json, urllib.request\n"
        "body = gzip.compress(json.dumps({'event': 'x', 'cwd': '/home/alice/secret-project', 'n': 1}).encode())\n"
        f"req = urllib.request.Request('http://127.0.0.1:{upstream}/v1/track', data=body, "
        "headers={'Content-Type': 'application/json', 'Content-Encoding': 'gzip'})\n"
        "print(urllib.request.urlopen(req, timeout=20).status)\n"
    )
    result = run_cli(["run", "--online", "--proxy-loopback", "--", *python_client(code)], confdir, tmp_path)
    assert result.stdout.strip() == "200", result.stderr
    [(headers, raw)] = _Upstream.received
    assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(raw)
    forwarded = json.loads(gzip.decompress(raw))
    assert forwarded["n"] == 1 and "/home/alice" not in forwarded["cwd"]


def test_audit_mode_records_but_modifies_nothing(confdir: Path, tmp_path: Path, upstream: int) -> None:
    code = (
        "import json, urllib.request\n"
        f"req = urllib.request.Request('http://127.0.0.1:{upstream}/v1/track', "
        f"data=json.dumps({{'t': '{GITHUB_TOKEN}'}}).encode(), headers={{'Content-Type': 'application/json'}})\n"
        "print(urllib.request.urlopen(req, timeout=20).status)\n"
    )
    log = tmp_path / "audit.jsonl"
    result = run_cli(["run", "--mode", "audit", "--online", "--proxy-loopback", "--log", str(log), "--",
                      *python_client(code)], confdir, tmp_path)
    assert result.returncode == 1 and result.stdout.strip() == "200", result.stderr
    [(_, raw)] = _Upstream.received
    assert GITHUB_TOKEN in raw.decode()  # audit mode lets it through unchanged...
    [record] = read_log(log)
    assert record["decision"] == "block" and record["enforced"] is False  # ...but records the decision


@needs_node
@pytest.mark.parametrize("client", ["fetch", "https.request"])
def test_node_clients_are_captured_and_clean_runs_keep_the_command_status(confdir: Path, tmp_path: Path,
                                                                          client: str) -> None:
    # An opaque 32-letter id, as SST sends (the SST pack redacts an id that could name someone).
    body = json.dumps({"api_key": "phc_x", "batch": [{"type": "capture", "event": "cli.start",
                                                      "distinct_id": "zvdendhdnrdaonumwdtmrumxwwetewrs",
                                                      "properties": {"cpu_count": 2}}]})
    if client == "fetch":
        program = (f"fetch('https://telemetry.ion.sst.dev/batch/', {{method: 'POST', body: {body!r}, "
                   "headers: {'content-type': 'application/json'}}).then(r => r.text())"
                   ".then(t => { console.log(t); process.exit(3); })")
    else:
        program = ("const r = require('https').request('https://telemetry.ion.sst.dev/batch/', {method: 'POST', "
                   "headers: {'content-type': 'application/json'}}, res => { let d = ''; "
                   "res.on('data', c => d += c); res.on('end', () => { console.log(d); process.exit(3); }); });"
                   f" r.end({body!r});")
    log = tmp_path / "audit.jsonl"
    result = run_cli(["run", "--log", str(log), "--", "node", "-e", program], confdir, tmp_path)
    assert result.returncode == 3, result.stderr  # no findings: the command's own status
    assert json.loads(result.stdout) == {"status": 1}  # PostHog's answer, from the emulated collector
    [record] = read_log(log)
    # With no --policy the SST pack applies too: it names the tool, and these fields are all documented.
    assert (record["host"], record["decision"], record["tool"]) == ("telemetry.ion.sst.dev", "allow", "sst")


def test_exit_code_options(confdir: Path, tmp_path: Path) -> None:
    code = ("import requests; requests.post('https://api.segment.io/v1/track', "
            "json={'e': 'bob@example.com'}, timeout=20)")
    assert run_cli(["run", "--exit-code", "9", "--", *python_client(code)], confdir, tmp_path).returncode == 9
    assert run_cli(["run", "--fail-on", "block", "--", *python_client(code)], confdir, tmp_path).returncode == 0
    clean = run_cli(["run", "--", sys.executable, "-c", "raise SystemExit(4)"], confdir, tmp_path)
    assert clean.returncode == 4


def test_broken_policy_exits_2_naming_file_and_line(confdir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - id: x\n    match: {telemetry: true}\n    action: deny\n")
    result = run_cli(["run", "--policy", str(policy), "--", sys.executable, "-c", "print('never runs')"],
                     confdir, tmp_path)
    assert result.returncode == 2
    assert f"{policy}:4:13" in result.stderr and "'deny' is not allowed" in result.stderr
    assert "never runs" not in result.stdout


def test_non_telemetry_requests_fail_offline_as_without_network(confdir: Path, tmp_path: Path) -> None:
    code = "import requests; print(requests.get('https://registry.example.org/pkg', timeout=20).status_code)"
    result = run_cli(["run", "--", *python_client(code)], confdir, tmp_path)
    assert result.stdout.strip() == "502" and result.returncode == 0, result.stderr


def test_ca_command_creates_a_private_key_once(confdir: Path, tmp_path: Path) -> None:
    result = run_cli(["ca", "--path-only"], confdir, tmp_path)
    cert = Path(result.stdout.strip())
    assert cert.is_file() and cert.parent == confdir
    key = confdir / "mitmproxy-ca.pem"
    assert key.stat().st_mode & 0o077 == 0
    before = cert.read_bytes()
    assert Path(run_cli(["ca", "--path-only"], confdir, tmp_path).stdout.strip()).read_bytes() == before


def test_run_ignores_a_telemetry_audit_folder_in_the_current_directory(confdir: Path, tmp_path: Path) -> None:
    # A source checkout (or anything) named telemetry_audit/ in the working directory must not be imported
    # by the proxy child instead of the installed package.
    shadow = tmp_path / "telemetry_audit"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise SystemExit('the shadow package was imported')\n")
    code = "import requests; print(requests.post('https://api.segment.io/v1/track', json={'e': 1}, timeout=20).text)"
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(confdir)}
    env.pop("PYTHONSAFEPATH", None)
    result = subprocess.run([str(Path(sys.executable).with_name("telemetry-audit")), "run", "--",
                             *python_client(code)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"success": True}


@needs_curl
def test_run_whose_audit_log_fails_exits_3_and_lets_nothing_through(confdir: Path, tmp_path: Path) -> None:
    # /dev/full accepts the open and fails every write (ENOSPC): the proxy must stop, not pass traffic unrecorded.
    result = run_cli(["run", "--log", "/dev/full", "--", "curl", "-s", "-m", "90", "-o", "/dev/null", "-w",
                      "%{http_code}", "-d", "{}", "http://api.segment.io/v1/track"], confdir, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout != "200"
    assert "the audit log could not be written" in result.stderr and "No space left" in result.stderr


def test_report_counts_only_this_runs_requests_in_a_shared_log(confdir: Path, tmp_path: Path) -> None:
    log = tmp_path / "shared.jsonl"
    report = tmp_path / "report.json"
    code = ("import urllib.request as u; u.urlopen(u.Request('http://api.segment.io/v1/track', data=b'{}',"
            " headers={'content-type': 'application/json'}), timeout=20).read()")
    for _ in range(2):
        result = run_cli(["run", "--log", str(log), "--report", str(report), "--", *python_client(code)],
                         confdir, tmp_path)
        assert result.returncode == 0, result.stderr
    assert len(read_log(log)) == 2  # both runs appended to the shared log
    assert json.loads(report.read_text())["summary"]["telemetry"] == 1  # the second report counts its own only


def test_run_with_a_corrupt_store_is_a_one_line_usage_error(confdir: Path, tmp_path: Path) -> None:
    store = tmp_path / "events.sqlite"
    store.write_bytes(b"not a database at all" * 100)
    result = run_cli(["run", "--store", str(store), "--", "true"], confdir, tmp_path)
    assert result.returncode == 2
    assert "cannot use --store" in result.stderr and "Traceback" not in result.stderr
