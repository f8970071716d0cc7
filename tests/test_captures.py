from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow

from telemetry_audit.captures import CaptureError, InputReaders, expand_inputs, load_inputs
from telemetry_audit.cli import main
from telemetry_audit.proxy.flowfile import read_flow_file, wants_own_har_reader

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "tests/data/captures"
READERS = InputReaders(read_flow_file, wants_own_har_reader)


def _har_entry(url: str, text: str, *, full: bool = True) -> dict[str, object]:
    request = {"method": "POST", "url": url, "httpVersion": "HTTP/1.1",
               "headers": [{"name": "Content-Type", "value": "application/json"}],
               "postData": {"mimeType": "application/json", "text": text}}
    if not full:
        return {"request": request}
    return {"startedDateTime": "2026-11-30T10:00:00.000Z", "time": 12, "request": request,
            "response": {"status": 200, "httpVersion": "HTTP/1.1", "headers": [], "content": {"text": "{}"}}}


def _mitm_dump(path: Path, bodies: list[bytes]) -> None:
    with path.open("wb") as f:
        writer = FlowWriter(f)
        for body in bodies:
            flow = tflow.tflow(resp=True)
            flow.request.host = "api.segment.io"
            flow.request.path = "/v1/track?x=1"
            flow.request.method = "POST"
            flow.request.headers["content-type"] = "application/json"
            flow.request.content = body
            writer.add(flow)


def test_mitm_flow_file_is_read_with_mitmproxy(tmp_path: Path) -> None:
    dump = tmp_path / "session.mitm"
    _mitm_dump(dump, [b'{"event":"a"}', b'{"event":"b"}'])
    found = load_inputs([str(dump)], readers=READERS)
    assert [(source, r.host, r.path, r.query, r.body) for source, r in found] == [
        (str(dump), "api.segment.io", "/v1/track", (("x", "1"),), b'{"event":"a"}'),
        (str(dump), "api.segment.io", "/v1/track", (("x", "1"),), b'{"event":"b"}'),
    ]


def test_flow_dump_is_recognised_by_content_without_suffix(tmp_path: Path) -> None:
    dump = tmp_path / "noext"
    _mitm_dump(dump, [b'{"event":"a"}'])
    assert len(load_inputs([str(dump)], readers=READERS)) == 1


def test_complete_har_goes_through_mitmproxy_and_minimal_har_through_ours(tmp_path: Path) -> None:
    full = {"log": {"entries": [_har_entry("https://api.segment.io/v1/track", '{"event":"full"}')]}}
    minimal = {"log": {"entries": [_har_entry("https://api.segment.io/v1/track", '{"event":"min"}', full=False)]}}
    assert not wants_own_har_reader(full) and wants_own_har_reader(minimal)
    (tmp_path / "full.har").write_text(json.dumps(full))
    (tmp_path / "min.har").write_text(json.dumps(minimal))
    bodies = [r.body for _, r in load_inputs([str(tmp_path)], readers=READERS)]
    assert bodies == [b'{"event":"full"}', b'{"event":"min"}']


def test_directory_is_read_recursively_with_body_siblings(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for name in ("sst-v4.17.1-posthog-batch.json", "sst-v4.17.1-posthog-batch.body", "serverless3-01.json"):
        shutil.copy(CAPTURES / name, nested / name)
    (tmp_path / "README.md").write_text("not an input")
    (tmp_path / ".hidden.json").write_text("{}")
    assert expand_inputs([str(tmp_path)]) == [str(nested / "serverless3-01.json"),
                                              str(nested / "sst-v4.17.1-posthog-batch.json")]
    found = load_inputs([str(tmp_path)], readers=READERS)
    batch = (CAPTURES / "sst-v4.17.1-posthog-batch.body").read_bytes()
    assert [r.body for _, r in found][1] == batch


def test_stdin(tmp_path: Path) -> None:
    capture = (CAPTURES / "serverless3-01.json").read_bytes()
    found = load_inputs(["-"], stdin=io.BytesIO(capture), readers=READERS)
    assert [source for source, _ in found] == ["<stdin>"] and found[0][1].method == "POST"
    raw = load_inputs(["-"], stdin=io.BytesIO(b"a=1&b=2"), raw_url="https://t.example/c", readers=READERS)
    assert raw[0][1].host == "t.example" and raw[0][1].body == b"a=1&b=2"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("body.bin", b"\x00\x01binary", "not a JSON capture, HAR or mitmproxy flow file"),
        ("notes.txt", b"hello", "say where it was sent with --url"),
        ("raw.json", b'{"event": "no capture keys"}', "not a JSON capture"),
        ("broken.json", b"{not json", "invalid JSON"),
        ("broken.mitm", b"12:garbage", "not a mitmproxy flow file or HAR"),
        ("bad.har", b'{"log": {"entries": [{"request": {}}]}}', "entry 0 has no request.url"),
    ],
)
def test_unrecognised_input_is_an_error_naming_it(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CaptureError) as error:
        load_inputs([str(path)], readers=READERS)
    assert str(path) in str(error.value) and message in str(error.value)


def test_url_makes_an_unrecognised_input_a_raw_body(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    path.write_bytes(b'{"event": "no capture keys"}')
    [(source, request)] = load_inputs([str(path)], raw_url="https://t.example/v1", readers=READERS)
    assert source == str(path) and request.host == "t.example" and request.content_type == "application/json"


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no capture, HAR or flow file"):
        load_inputs([str(tmp_path)], readers=READERS)


def test_flow_file_without_reader_is_an_error(tmp_path: Path) -> None:
    dump = tmp_path / "x.mitm"
    _mitm_dump(dump, [b"{}"])
    with pytest.raises(CaptureError, match="need mitmproxy"):
        load_inputs([str(dump)])


# --- through the CLI ---------------------------------------------------------------------------------------------


def test_check_reads_a_directory_and_names_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--policy", "all", "-f", "json", str(CAPTURES)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # LocalStack's raw token is blocked by its pack
    expected = sorted(str(p) for p in CAPTURES.glob("*.json"))
    assert sorted({r["source"] for r in report["requests"]}) == expected


def test_check_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((CAPTURES / "serverless3-01.json").read_bytes())))
    main(["check", "--policy", "serverless", "-f", "json", "-"])
    [entry] = json.loads(capsys.readouterr().out)["requests"]
    assert entry["source"] == "<stdin>" and entry["tool"] == "serverless"


def test_check_refuses_an_unrecognised_file_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SystemExit) as exited:
        main(["check", str(path)])
    assert exited.value.code == 2
    assert f"{path}: not a JSON capture, HAR or mitmproxy flow file" in capsys.readouterr().err


def test_a_real_mitmdump_recording_is_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mitmdump -w records a real request (to a local server); `check` audits the recording."""
    class Sink(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dump = tmp_path / "flows.mitm"
    mitmdump = Path(sys.executable).with_name("mitmdump")
    proxy = subprocess.Popen([str(mitmdump), "-q", "--listen-host", "127.0.0.1", "-p", str(port), "-w", str(dump),
                              "--set", f"confdir={tmp_path / 'mitm'}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proxy.poll() is None, proxy.stderr.read() if proxy.stderr else ""
                time.sleep(0.1)
        url = f"http://127.0.0.1:{server.server_port}/v1/track"
        proxies = {"http": f"http://127.0.0.1:{port}"}
        token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
        sent = requests.post(url, json={"event": "e", "properties": {"token": token}}, proxies=proxies, timeout=10)
        assert sent.status_code == 200
    finally:
        os.kill(proxy.pid, signal.SIGINT)
        proxy.wait(timeout=30)
        server.shutdown()
    code = main(["check", "-f", "json", str(dump)])
    [entry] = json.loads(capsys.readouterr().out)["requests"]
    assert code == 1 and entry["decision"] == "block" and entry["source"] == str(dump)
    assert entry["path"] == "/v1/track" and entry["findings"][0]["kind"] == "secret"
