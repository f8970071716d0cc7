"""`telemetry-audit run` sealed, end to end: clients that ignore proxy settings are still captured.

One sealed run drives every client in turn (a proxy start costs about a second; the detached sender adds its
3 s), once as this user and once as an unprivileged user created for the session; each test then checks its
client's part. The clients talk to collector host names that only resolve inside the sandbox, and to a service
on the host's 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.certs import CertStore

from tests.sandbox.sealing import TUN, LoopbackHandler, User, cli_env, home_for, run_cli, tun_mode

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
SELF = User("self", os.getuid(), os.getgid())

PYTHON_CLIENT = f"""
import http.client, json, ssl
conn = http.client.HTTPSConnection("api.segment.io", context=ssl.create_default_context(), timeout=20)
conn.request("POST", "/v1/track", json.dumps({{"event": "py", "userId": "u", "properties": {{"t": "{GITHUB_TOKEN}"}}}}),
             {{"Content-Type": "application/json"}})
answer = conn.getresponse()
print(answer.status, answer.read().decode())
"""

NODE_HTTP2_CLIENT = f"""
const http2 = require("http2");
const session = http2.connect("https://us.i.posthog.com");
session.on("error", (e) => {{ console.log("error", e.message); process.exit(3); }});
const req = session.request({{":method": "POST", ":path": "/batch/", "content-type": "application/json"}});
req.on("response", (headers) => {{
  let body = "";
  req.on("data", (chunk) => body += chunk);
  req.on("end", () => {{ console.log(headers[":status"], body); session.close(); }});
}});
const event = {{event: "e", distinct_id: "d", properties: {{t: "{GITHUB_TOKEN}"}}}};
req.end(JSON.stringify({{api_key: "phc_test", batch: [event]}}));
"""

JAVA_CLIENT = """
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Telemetry {
    public static void main(String[] args) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(args[1])).build();
        HttpResponse<String> response = HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.body());
    }
}
"""

RAW_TCP_CLIENT = f"""
import socket
sock = socket.create_connection(("api.segment.io", 5555), timeout=10)
sock.sendall(b'{{"token":"{GITHUB_TOKEN}"}}\\n')
try:
    print("received", repr(sock.recv(100)))
except OSError as e:
    print("error", e)
"""

UDP_CLIENT = """
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1)
sock.sendto(b"\\xc0\\x00\\x00\\x00\\x01 a QUIC-like initial", ("api.segment.io", 443))
try:
    print("received", sock.recvfrom(100))
except OSError as e:
    print("error", e)
"""

DETACHED_SENDER = f"""
import subprocess, sys
late = '''
import http.client, json, ssl, sys, time
time.sleep(3)
conn = http.client.HTTPSConnection("api.segment.io", context=ssl.create_default_context(), timeout=20)
conn.request("POST", "/v1/page", json.dumps({{"name": "late", "properties": {{"t": "{GITHUB_TOKEN}"}}}}),
             {{"Content-Type": "application/json"}})
answer = conn.getresponse()
open(sys.argv[1], "w").write(f"{{answer.status}} {{answer.read().decode()}}")
'''
subprocess.Popen([sys.executable, "-c", late, sys.argv[1]], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("parent exits")
"""


@dataclass(frozen=True)
class SealedOutcome:
    """One sealed run of the driver: what each client printed, the audit log and the report."""

    result: subprocess.CompletedProcess[str]
    outputs: dict[str, str]
    records: list[dict[str, Any]]
    log_text: str
    report: dict[str, Any]
    report_text: str

    def request(self, host: str, path: str) -> dict[str, Any]:
        matches = [r for r in self.records if r.get("record") == "request" and r["host"] == host
                   and r["path"] == path]
        assert len(matches) == 1, (host, path, self.records, self.result.stderr)
        return matches[0]


def _write_driver(home: Path, loopback_port: int, java: bool) -> Path:
    out = home / "out"
    out.mkdir()
    scripts = {"python.py": PYTHON_CLIENT, "node.js": NODE_HTTP2_CLIENT, "raw.py": RAW_TCP_CLIENT,
               "udp.py": UDP_CLIENT, "detach.py": DETACHED_SENDER}
    for name, text in scripts.items():
        (home / name).write_text(text, encoding="utf-8")
    curl_body = json.dumps({"userId": "u", "traits": {"t": GITHUB_TOKEN}})
    java_body = json.dumps({"api_key": "phc_test", "event": "j", "distinct_id": "d", "properties": {"t": GITHUB_TOKEN}})
    lines = [
        "#!/bin/sh",
        f'cd "{home}"',
        f'"{sys.executable}" python.py > out/python.txt 2>&1',
        "node node.js > out/node.txt 2>&1" if shutil.which("node") else ": no node",
        # --noproxy '*': curl told to ignore every proxy setting (there is none inside anyway)
        f"curl -sS --noproxy '*' -H 'Content-Type: application/json' -d '{curl_body}' "
        "https://api.segment.io/v1/identify > out/curl.txt 2>&1" if shutil.which("curl") else ": no curl",
        f"java -Djavax.net.ssl.trustStore=truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit -cp . Telemetry "
        f"https://eu.i.posthog.com/capture/ '{java_body}' > out/java.txt 2>&1" if java else ": no java",
        f'"{sys.executable}" raw.py > out/raw.txt 2>&1',
        f'"{sys.executable}" udp.py > out/udp.txt 2>&1',
        f"curl -sS http://127.0.0.1:{loopback_port}/from-the-sandbox > out/loopback.txt 2>&1"
        if shutil.which("curl") else ": no curl",
        f'"{sys.executable}" detach.py "{home}/out/detached.txt" > out/detach.txt 2>&1',
    ]
    driver = home / "driver.sh"
    driver.write_text("\n".join(lines) + "\n", encoding="utf-8")
    driver.chmod(0o755)
    return driver


def _prepare_java(home: Path, ca_cert: Path) -> bool:
    """Compile the Java client and a truststore holding the proxy CA; False when no JDK is installed."""
    if not (shutil.which("javac") and shutil.which("java") and shutil.which("keytool")):
        return False
    (home / "Telemetry.java").write_text(JAVA_CLIENT, encoding="utf-8")
    subprocess.run(["javac", "Telemetry.java"], cwd=home, check=True, timeout=120)
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "telemetry-audit", "-file", str(ca_cert),
                    "-keystore", "truststore.p12", "-storetype", "PKCS12", "-storepass", "changeit"],
                   cwd=home, check=True, capture_output=True, timeout=60)
    return True


def _chown_tree(path: Path, user: User) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), user.uid, user.gid)


@pytest.fixture(scope="module", params=["self", "unprivileged"])
def sealed(request: pytest.FixtureRequest, sealable: None, loopback_service: int) -> Iterator[SealedOutcome]:
    if request.param == "self":
        user = SELF
    else:
        user = request.getfixturevalue("unprivileged_user")
    with home_for(user) as home:
        confdir = home / "confdir"
        CertStore.from_store(confdir, "mitmproxy", 2048)
        java = _prepare_java(home, confdir / "mitmproxy-ca-cert.pem")
        driver = _write_driver(home, loopback_service, java)
        _chown_tree(home, user)
        log, report = home / "audit.jsonl", home / "report.json"
        args = ["run", "--seal", "on", "--log", str(log), "--report", str(report), "--", str(driver)]
        if user is SELF:
            result = run_cli(args, home)
        else:
            with tun_mode(0o666):  # the distributions' default; this machine ships 0600
                result = run_cli(args, home, user=user)
        outputs = {p.stem: p.read_text(errors="replace").strip() for p in (home / "out").iterdir()}
        log_text = log.read_text() if log.exists() else ""
        records = [json.loads(line) for line in log_text.splitlines()]
        report_text = report.read_text() if report.exists() else "{}"
        yield SealedOutcome(result, outputs, records, log_text, json.loads(report_text), report_text)


def _blocked(record: dict[str, Any]) -> bool:
    return record["decision"] == "block" and any(f["kind"] == "secret" for f in record["findings"])


def test_the_run_says_it_was_sealed(sealed: SealedOutcome) -> None:
    assert sealed.result.returncode == 1, sealed.result.stderr  # blocked secrets reach the default --fail-on
    assert "sealed run (offline, enforce mode)" in sealed.result.stderr
    assert sealed.report["capture"]["mode"] == "sealed"
    assert "not_sealed_because" not in sealed.report["capture"]


def test_python_http_client_is_captured_answered_and_blocked(sealed: SealedOutcome) -> None:
    assert sealed.outputs["python"] == '200 {"success":true}'
    assert _blocked(sealed.request("api.segment.io", "/v1/track"))


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_http2_connect_is_captured_answered_and_blocked(sealed: SealedOutcome) -> None:
    status, _, body = sealed.outputs["node"].partition(" ")
    assert status == "200", sealed.outputs["node"]
    assert json.loads(body)
    assert _blocked(sealed.request("us.i.posthog.com", "/batch/"))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_told_to_ignore_proxies_is_still_captured(sealed: SealedOutcome) -> None:
    assert sealed.outputs["curl"] == '{"success":true}'
    assert _blocked(sealed.request("api.segment.io", "/v1/identify"))


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK")
def test_java_http_client_is_captured_answered_and_blocked(sealed: SealedOutcome) -> None:
    status, _, body = sealed.outputs["java"].partition(" ")
    assert status == "200", sealed.outputs["java"]
    assert json.loads(body)
    assert _blocked(sealed.request("eu.i.posthog.com", "/capture/"))


def test_detached_child_sending_after_its_parent_exited_is_captured(sealed: SealedOutcome) -> None:
    assert sealed.outputs["detach"] == "parent exits"
    assert sealed.outputs["detached"] == '200 {"success":true}'
    assert _blocked(sealed.request("api.segment.io", "/v1/page"))
    [lingerer] = sealed.report["capture"]["lingering"]
    assert lingerer["outcome"] == "finished" and lingerer["seconds"] >= 2.5 and lingerer["name"].startswith("python")
    assert "outlived the command: finished after" in sealed.result.stderr


def test_raw_tcp_is_recorded_with_its_host_name_and_reaches_nothing(sealed: SealedOutcome) -> None:
    [record] = [r for r in sealed.records if r.get("record") == "connection" and r["protocol"] == "tcp"]
    assert (record["host"], record["port"], record["outcome"]) == ("api.segment.io", 5555, "reached nothing")
    assert record["bytes_sent"] == len(GITHUB_TOKEN) + 13 and record["bytes_received"] == 0
    assert record["decision"] == "block" and record["findings"][0]["kind"] == "secret"
    assert sealed.outputs["raw"] == "received b''" or sealed.outputs["raw"].startswith("error")
    [in_report] = [c for c in sealed.report["capture"]["connections"] if c["protocol"] == "tcp"]
    assert in_report["host"] == "api.segment.io" and in_report["findings"][0]["preview"] == "ghp_…[40 chars]"
    assert "tcp api.segment.io:5555 reached nothing" in sealed.result.stderr


def test_udp_other_than_dns_is_refused_and_recorded(sealed: SealedOutcome) -> None:
    [record] = [r for r in sealed.records if r.get("record") == "connection" and r["protocol"] == "udp"]
    assert (record["host"], record["port"], record["outcome"]) == ("api.segment.io", 443, "refused")
    assert sealed.outputs["udp"] == "error timed out"
    assert [c["protocol"] for c in sealed.report["capture"]["connections"]].count("udp") == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_host_loopback_services_stay_reachable_unaudited(sealed: SealedOutcome) -> None:
    assert sealed.outputs["loopback"] == "host loopback service /from-the-sandbox"
    assert not [r for r in sealed.records if r.get("path") == "/from-the-sandbox"]


def test_log_and_report_name_hosts_never_synthetic_addresses_nor_secrets(sealed: SealedOutcome) -> None:
    assert len([r for r in sealed.records if r.get("record") == "request"]) >= 2
    for text in (sealed.log_text, sealed.report_text):
        assert "198.18." not in text and "198.19." not in text
        assert GITHUB_TOKEN not in text


def test_a_host_service_started_during_the_run_is_reachable(sealable: None, tmp_path: Path) -> None:
    """Like a container whose port is published after the command started it: bridged within half a second."""
    port_file = tmp_path / "port"
    code = (
        "import os, sys, time, urllib.request\n"
        f"while not os.path.exists({str(port_file)!r}):\n"
        "    time.sleep(0.05)\n"
        f"url = 'http://127.0.0.1:' + open({str(port_file)!r}).read() + '/late-service'\n"
        "for attempt in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen(url, timeout=5).read().decode())\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "telemetry_audit", "run", "--seal", "on", "--", sys.executable,
                                "-c", code], cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the run has started (the command waits for the port file)
        with ThreadingHTTPServer(("127.0.0.1", 0), LoopbackHandler) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            port_file.write_text(str(server.server_address[1]))
            stdout, stderr = process.communicate(timeout=60)
            server.shutdown()
    finally:
        if process.poll() is None:
            process.kill()
    assert stdout.strip() == "host loopback service /late-service", stderr


# --- when sealing is impossible ------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["--seal", "sometimes"], "argument --seal: invalid choice: 'sometimes'"),
    (["--linger", "-1"], "argument --linger: expected zero or more seconds, got '-1'"),
    (["--linger", "soon"], "argument --linger: expected a number of seconds, got 'soon'"),
    (["--linger", "nan"], "argument --linger: expected zero or more seconds, got 'nan'"),
])
def test_bad_seal_options_are_named(home: Path, args: list[str], message: str) -> None:
    result = run_cli(["run", *args, "--", "true"], home)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_seal_on_fails_with_exit_2_and_the_reason(home: Path) -> None:
    result = run_cli(["run", "--seal", "on", "--", "true"], home, extra_env={"TELEMETRY_AUDIT_UNSHARE": "/bin/false"})
    assert result.returncode == 2, result.stderr
    assert "cannot seal the run (--seal on): cannot create a user + network namespace" in result.stderr
    assert "sealed run" not in result.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_seal_auto_falls_back_to_proxy_variables_with_a_notice(home: Path) -> None:
    report = home / "report.json"
    result = run_cli(["run", "--report", str(report), "--", "curl", "-sS", "-d", f'{{"t":"{GITHUB_TOKEN}"}}',
                      "https://api.segment.io/v1/track"], home, extra_env={"TELEMETRY_AUDIT_UNSHARE": "/bin/false"})
    assert result.returncode == 1, result.stderr
    assert result.stdout == '{"success":true}'
    notice = [line for line in result.stderr.splitlines() if "not sealed" in line]
    assert notice == ["telemetry-audit: not sealed (cannot create a user + network namespace: `unshare` exited with "
                      "1); capturing through proxy variables"]
    capture = json.loads(report.read_text())["capture"]
    assert capture["mode"] == "proxy variables" and capture["not_sealed_because"].startswith("cannot create")


def test_unprivileged_user_without_tun_access_falls_back_naming_the_device(unprivileged_user: User) -> None:
    if stat_mode(TUN) & 0o006 == 0o006:
        pytest.skip(f"{TUN} is usable by every user here: nothing to fall back from")
    with home_for(unprivileged_user) as home:
        report = home / "report.json"
        code = ("import urllib.request; "
                "print(urllib.request.urlopen('https://api.segment.io/v1/track', data=b'{}').status)")
        result = run_cli(["run", "--report", str(report), "--", sys.executable, "-c", code], home,
                         user=unprivileged_user)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "200"
        assert f"not sealed ({TUN} is not readable and writable by this user" in result.stderr
        capture = json.loads(report.read_text())["capture"]
        assert capture["mode"] == "proxy variables" and TUN in capture["not_sealed_because"]


@pytest.mark.parametrize(("seal", "status"), [("auto", 0), ("on", 2)])
def test_a_sandbox_that_cannot_be_set_up(sealable: None, home: Path, seal: str, status: int) -> None:
    """The checks pass but the network cannot be configured (here: an `ip` that fails): the command never ran
    sealed, so auto runs it once unsealed and on stops with the reason."""
    tools = home / "bin"
    tools.mkdir()
    failing_ip = tools / "ip"
    failing_ip.write_text("#!/bin/sh\necho 'RTNETLINK answers: Operation not permitted' >&2\nexit 2\n")
    failing_ip.chmod(0o755)
    ran = home / "ran.txt"
    result = run_cli(["run", "--seal", seal, "--", "sh", "-c", f"echo once >> {ran}"], home,
                     extra_env={"PATH": f"{tools}:{os.environ['PATH']}"})
    assert result.returncode == status, result.stderr
    reason = (f"cannot set up the sealed network: `{failing_ip} -batch -` failed: RTNETLINK answers: "
              "Operation not permitted")
    if seal == "auto":
        assert f"not sealed ({reason}); capturing through proxy variables" in result.stderr
        assert ran.read_text() == "once\n"
    else:
        assert f"cannot seal the run (--seal on): {reason}" in result.stderr
        assert not ran.exists()


@pytest.mark.parametrize(("seal", "status"), [("auto", 0), ("on", 2)])
def test_a_remembered_verdict_that_became_wrong_falls_back_as_a_fresh_probe(sealable: None, home: Path, seal: str,
                                                                             status: int) -> None:
    """The first run's trial succeeds and is remembered; then namespaces are forbidden (here: an `unshare` that
    starts failing, the same binary, so the verdict still applies). The sealed start fails before its supervisor
    runs: the verdict is forgotten and the run goes on as a fresh probe would have made it go."""
    real_unshare = shutil.which("unshare")
    assert real_unshare
    forbidden = home / "forbidden"
    unshare = home / "unshare"
    unshare.write_text(f"#!/bin/sh\nif [ -e {forbidden} ]; then echo 'unshare: unshare failed: Operation not "
                       f"permitted' >&2; exit 1; fi\nexec {real_unshare} \"$@\"\n")
    unshare.chmod(0o755)
    cache = home / "cache"
    extra = {"TELEMETRY_AUDIT_UNSHARE": str(unshare), "TELEMETRY_AUDIT_SEAL_CACHE": str(cache)}
    first = run_cli(["run", "--seal", seal, "--", "true"], home, extra_env=extra)
    assert first.returncode == 0, first.stderr
    assert "sealed run" in first.stderr
    assert (cache / "seal-probe").stat().st_mode & 0o777 == 0o600
    forbidden.write_text("")
    ran = home / "ran.txt"
    result = run_cli(["run", "--seal", seal, "--", "sh", "-c", f"echo once >> {ran}"], home, extra_env=extra)
    assert result.returncode == status, result.stderr
    reason = "cannot create a user + network namespace: unshare: unshare failed: Operation not permitted"
    if seal == "auto":
        assert f"not sealed ({reason}); capturing through proxy variables" in result.stderr
        assert ran.read_text() == "once\n"
    else:
        assert f"cannot seal the run (--seal on): {reason}" in result.stderr
        assert not ran.exists()
    assert not (cache / "seal-probe").exists()


def test_a_kernel_without_ipv6_routes_still_seals(sealable: None, home: Path) -> None:
    """Only the IPv6 default route fails (the batch's last line, as `ip` says on a kernel without IPv6): the
    run is sealed all the same and its IPv4 traffic is audited."""
    real_ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    assert real_ip
    tools = home / "bin"
    tools.mkdir()
    no_ipv6_ip = tools / "ip"
    no_ipv6_ip.write_text(f"#!/bin/sh\ngrep -v '::/0' | {real_ip} \"$@\" || exit\n"
                          "echo 'RTNETLINK answers: Address family not supported by protocol' >&2\n"
                          "echo 'Command failed -:5' >&2\nexit 1\n")
    no_ipv6_ip.chmod(0o755)
    report = home / "report.json"
    code = ("import urllib.request; "
            "print(urllib.request.urlopen('http://api.segment.io/v1/track', data=b'{}').status)")
    result = run_cli(["run", "--seal", "on", "--report", str(report), "--", sys.executable, "-c", code], home,
                     extra_env={"PATH": f"{tools}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
    data = json.loads(report.read_text())
    assert data["capture"]["mode"] == "sealed"
    assert data["summary"]["requests"] == 1


def test_a_detached_child_outliving_linger_is_ended_and_named(sealable: None, home: Path) -> None:
    code = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
            "start_new_session=True); print('parent exits')")
    report = home / "report.json"
    result = run_cli(["run", "--seal", "on", "--linger", "0.5", "--report", str(report), "--", sys.executable, "-c",
                      code], home)
    assert result.returncode == 0, result.stderr
    [lingerer] = json.loads(report.read_text())["capture"]["lingering"]
    assert lingerer["outcome"] == "ended" and 0.5 <= lingerer["seconds"] < 10
    assert f"{lingerer['name']}[{lingerer['pid']}] outlived the command: ended after" in result.stderr


def test_unsealed_detached_child_is_waited_for_and_reported(home: Path) -> None:
    code = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1.5)'], "
            "start_new_session=True); print('parent exits')")
    report = home / "report.json"
    result = run_cli(["run", "--seal", "off", "--report", str(report), "--", sys.executable, "-c", code], home)
    assert result.returncode == 0, result.stderr
    [lingerer] = json.loads(report.read_text())["capture"]["lingering"]
    assert lingerer["outcome"] == "finished" and lingerer["seconds"] >= 1.0
    assert "outlived the command" in result.stderr


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


# --- online, behind the user's own (corporate) proxy ---------------------------------------------------------


@dataclass
class CorporateProxy:
    """A stand-in for a corporate HTTP proxy on 127.0.0.1: it records what it was asked for and answers every
    request itself (so nothing is resolved or sent anywhere)."""

    port: int
    asked: list[str]


def _serve_corporate(server: socket.socket, asked: list[str]) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            try:
                head = _read_head(conn)
                first = head.split(b"\r\n", 1)[0].decode()
                asked.append(first)
                if first.startswith("CONNECT "):
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    first = _read_head(conn).split(b"\r\n", 1)[0].decode()
                body = f"corporate proxy answered {first.split(' ')[1]}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            except (OSError, IndexError, UnicodeDecodeError):
                continue


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@pytest.fixture
def corporate_proxy() -> Iterator[CorporateProxy]:
    server = socket.create_server(("127.0.0.1", 0))
    proxy = CorporateProxy(int(server.getsockname()[1]), [])
    threading.Thread(target=_serve_corporate, args=(server, proxy.asked), daemon=True).start()
    yield proxy
    server.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("seal", ["on", "off"])
def test_online_forwards_through_the_users_own_proxy(seal: str, home: Path, corporate_proxy: CorporateProxy,
                                                     request: pytest.FixtureRequest) -> None:
    if seal == "on":
        request.getfixturevalue("sealable")
    url = "http://downloads.example.test/file"
    result = run_cli(["run", "--online", "--seal", seal, "--", "curl", "-sS", url], home,
                     extra_env={"HTTPS_PROXY": f"http://127.0.0.1:{corporate_proxy.port}",
                                "HTTP_PROXY": f"http://127.0.0.1:{corporate_proxy.port}"})
    assert result.returncode == 0, result.stderr
    if seal == "on":  # the proxy inside tunnels through the relay, which asks the corporate proxy for a tunnel
        assert result.stdout == "corporate proxy answered /file"
        assert corporate_proxy.asked == ["CONNECT downloads.example.test:80 HTTP/1.1"]
    else:  # mitmproxy's upstream mode: plain HTTP goes to the corporate proxy in absolute form
        assert result.stdout == f"corporate proxy answered {url}"
        assert corporate_proxy.asked == [f"GET {url} HTTP/1.1"]


def test_ctrl_c_reaches_the_command_and_its_last_request_is_still_captured(sealable: None, home: Path) -> None:
    """The terminal sends SIGINT to the whole foreground group: the sealed command gets it, sends a last event,
    and exits; the sandbox and proxy outlive it long enough to audit that event."""
    code = (
        "import http.client, json, ssl, sys, time\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    conn = http.client.HTTPSConnection('api.segment.io', context=ssl.create_default_context(), timeout=20)\n"
        f"    conn.request('POST', '/v1/track', json.dumps({{'event': 'interrupted', 't': '{GITHUB_TOKEN}'}}))\n"
        "    print(conn.getresponse().status, flush=True)\n"
        "    sys.exit(130)\n"
    )
    log = home / "audit.jsonl"
    argv = [sys.executable, "-m", "telemetry_audit", "run", "--seal", "on", "--log", str(log), "--", sys.executable,
            "-c", code]
    process = subprocess.Popen(argv, cwd=home, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert stdout == "200\n", stderr
    assert process.returncode == 1  # the blocked token reaches --fail-on; without it the command's 130
    [record] = [json.loads(line) for line in log.read_text().splitlines() if '"record":"request"' in line]
    assert record["decision"] == "block" and record["host"] == "api.segment.io"
