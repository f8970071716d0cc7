"""The standalone collector as a proxy session: the proxy child and its addon in collector mode, over real HTTP.

Every request reaches the child on 127.0.0.1, as a tool pointed at the collector sends it: origin-form with a Host
header, absolute-form (the collector as HTTP proxy), through CONNECT (HTTPS), chunked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from telemetry_audit.collectors.inspection import INSPECTION_HOST
from telemetry_audit.proxy.ca import CA_CERT_NAME
from tests.collectors.conftest import CollectorServer, inspect

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
SEGMENT_TRACK = {"type": "track", "userId": "u1", "event": "deploy"}


def test_a_plain_request_naming_the_collector_is_answered_by_its_emulator(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/v1/track", json=SEGMENT_TRACK, timeout=5)
    assert (response.status_code, response.json()) == (200, {"success": True})
    (event,) = inspect(server, "good")
    assert (event["event"]["collector"], event["event"]["name"]) == ("segment", "deploy")
    assert event["request"]["host"] == "127.0.0.1" and event["request"]["path"] == "/v1/track"


def test_a_host_header_naming_a_vendor_routes_by_host(server: CollectorServer) -> None:
    """`/batch/` is PostHog's path; the Host header says which vendor speaks it."""
    body = {"api_key": "phc_k", "batch": [{"event": "x", "distinct_id": "d", "properties": {}}]}
    response = requests.post(f"{server.url}/batch/", json=body, headers={"Host": "us.i.posthog.com"}, timeout=5)
    assert response.status_code == 200
    (event,) = inspect(server, "good")
    assert event["event"]["collector"] == "posthog" and event["request"]["host"] == "us.i.posthog.com"


def test_absolute_form_requests_use_the_collector_as_http_proxy(server: CollectorServer) -> None:
    response = requests.post("http://api.segment.io/v1/track", json=SEGMENT_TRACK,
                             proxies={"http": server.url}, timeout=5)
    assert (response.status_code, response.json()) == (200, {"success": True})
    (event,) = inspect(server, "good")
    assert event["request"]["host"] == "api.segment.io"


def test_https_through_connect_is_answered_with_the_collectors_ca(server: CollectorServer,
                                                                  collector_confdir: Path) -> None:
    response = requests.post("https://api.segment.io/v1/track", json=SEGMENT_TRACK, timeout=5,
                             proxies={"https": server.url}, verify=str(collector_confdir / CA_CERT_NAME))
    assert (response.status_code, response.json()) == (200, {"success": True})
    (event,) = inspect(server, "good")
    assert event["request"]["url"].startswith("https://api.segment.io")


def test_a_chunked_body_with_trailers_is_read_whole(server: CollectorServer) -> None:
    body = json.dumps(SEGMENT_TRACK).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: api.segment.io\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" + chunks + b"0\r\nX-Sum: 1\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"success":true}')
    assert [e["event"]["name"] for e in inspect(server, "good")] == ["deploy"]


def _read_answer(sock: socket.socket) -> bytes:
    """One whole HTTP/1 answer with a Content-Length (headers and body may come in separate packets)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
    while len(answer.split(b"\r\n\r\n", 1)[1]) < length:
        answer += sock.recv(4096)
    return answer


def test_unknown_path_is_404_and_recorded_bad(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/where/is/this", data=b"secret-ish", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "no collector emulates POST /where/is/this"}
    (bad,) = inspect(server, "bad")
    assert bad["request"]["payload"]["body"] == "secret-ish"  # the decoded, masked payload (no emulator)


def test_query_values_are_not_stored(server: CollectorServer) -> None:
    requests.post(f"{server.url}/mp/collect", params={"measurement_id": "G-1", "api_secret": "TOPSECRET"},
                  json={"client_id": "c", "events": [{"name": "e"}]}, timeout=5)
    text = requests.get(f"{server.url}/micro/good", timeout=5).text  # /micro/all holds only counts, as in Micro
    assert "TOPSECRET" not in text
    assert "api_secret" in text  # the key is kept, the value is not


def test_each_event_carries_the_policy_decision_but_nothing_is_blocked(server: CollectorServer) -> None:
    """The collector audits (the decision is stored, its findings masked) and answers as the vendor would."""
    response = requests.post(f"{server.url}/v1/track", json={**SEGMENT_TRACK, "properties": {"t": GITHUB_TOKEN}},
                             timeout=5)
    assert (response.status_code, response.json()) == (200, {"success": True})
    (event,) = inspect(server, "good")
    assert event["decision"]["decision"] == "block"
    assert any(f["kind"] == "secret" for f in event["decision"]["findings"])
    assert GITHUB_TOKEN not in json.dumps(event["decision"])


def test_inspection_requests_are_neither_audited_nor_stored(server: CollectorServer) -> None:
    for path in ("/micro/all", "/micro/good", "/micro/bad"):
        assert requests.get(f"{server.url}{path}", timeout=5).status_code == 200
    assert requests.get(f"http://{INSPECTION_HOST}/micro/all", proxies={"http": server.url},
                        timeout=5).json() == {"total": 0, "good": 0, "bad": 0}


def test_inspection_listings_stay_bounded(server: CollectorServer) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": f"e{i}"} for i in range(5)]}
    requests.post(f"{server.url}/v1/batch", json=batch, timeout=5)
    page = requests.get(f"{server.url}/micro/good", params={"limit": 2}, timeout=5)
    assert len(page.json()) == 2 and page.headers["X-Next-Offset"] == "2"


def test_an_oversized_body_is_refused_before_it_is_read(server: CollectorServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_a_persistent_store_survives_a_restart(collector_confdir: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "events.sqlite")
    with CollectorServer(collector_confdir, store=path) as srv:
        requests.post(f"{srv.url}/v1/track", json=SEGMENT_TRACK, timeout=5)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with CollectorServer(collector_confdir, store=path) as srv:
        assert inspect(srv)["good"] == 1


def test_collector_mode_writes_no_audit_log(server: CollectorServer) -> None:
    """A long-running collector keeps its store; nothing grows in its working directory per request."""
    requests.post(f"{server.url}/v1/track", json=SEGMENT_TRACK, timeout=5)
    assert server.session.log_path == ""
    assert sorted(os.listdir(server.session.workdir)) == ["proxy.stderr"]


# --- who may read the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OtherUser:
    uid: int
    gid: int

    def curl(self, url: str, *headers: str, data: str | None = None) -> int:
        """The status a client of this user gets (curl needs no file of ours, so any user can run it)."""
        command = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "curl", "-s",
                   "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*", url]
        for header in headers:
            command += ["-H", header]
        if data is not None:
            command += ["--data-binary", data]
        return int(subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout)


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    """A throwaway local user (created with useradd, removed afterwards); needs root."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "userdel", "setpriv", "curl")):
        pytest.skip("another local user needs root, useradd, setpriv and curl")
    import pwd

    name = f"taudit-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        entry = pwd.getpwnam(name)
        yield OtherUser(entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.mark.parametrize("path", ["/micro/all", "/micro/good", "/micro/bad", "/micro/reset"])
def test_another_local_user_needs_the_token(server: CollectorServer, other_user: OtherUser, path: str) -> None:
    token = server.session.settings.inspection_token
    assert other_user.curl(f"{server.url}{path}") == 403
    assert other_user.curl(f"{server.url}{path}", "X-Telemetry-Audit-Token: not-it") == 403
    assert other_user.curl(f"{server.url}{path}", f"X-Telemetry-Audit-Token: {token}") == 200
    assert other_user.curl(f"{server.url}{path}", f"Authorization: Bearer {token}") == 200
    assert requests.get(f"{server.url}{path}", timeout=5).status_code == 200  # this user needs none


def test_another_user_still_reaches_the_emulators(server: CollectorServer, other_user: OtherUser) -> None:
    """Only the store is private: a tool of any user may send its telemetry."""
    status = other_user.curl(f"{server.url}/v1/track", "Content-Type: application/json",
                             data=json.dumps(SEGMENT_TRACK))
    assert status == 200
    assert [e["event"]["name"] for e in inspect(server, "good")] == ["deploy"]


def test_the_session_says_the_address_it_really_bound(collector_confdir: Path) -> None:
    with CollectorServer(collector_confdir, listen=("0.0.0.0", 0)) as srv:
        assert (srv.session.bound_host, srv.session.host) == ("0.0.0.0", "127.0.0.1")
        assert requests.get(f"{srv.url}/micro/all", timeout=5).status_code == 200
