"""The Node preload against a real mitmdump: Node 20 ignores HTTPS_PROXY, so every request here is routed by it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from telemetry_audit.session.child_env import child_environment, combined_ca_bundle, preload_path

if TYPE_CHECKING:
    from conftest import Catcher, Upstream

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Small client helpers prepended to every program: each prints one JSON line per request.
PRELUDE = r"""
const http = require('http');
const https = require('https');
function call(mod, url, options = {}, body = undefined) {
  return new Promise((resolve) => {
    const req = mod.request(url, { method: body === undefined ? 'GET' : 'POST', ...options }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body: text, reused: req.reusedSocket }));
    });
    req.on('error', (err) => resolve({ error: err.code || err.message }));
    req.end(body);
  });
}
async function get(url, init) {
  try {
    const res = await fetch(url, init);
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { error: (err.cause && (err.cause.code || err.cause.message)) || err.message };
  }
}
const show = (result) => console.log(JSON.stringify(result));
"""


@pytest.fixture(scope="module")
def node_env(catcher: Catcher, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    bundle = combined_ca_bundle(
        str(catcher.proxy.ca_cert_path),
        str(tmp_path_factory.mktemp("bundle")),
        system_bundle=str(upstream.ca_cert_path),
    )
    return environment(catcher, bundle)


def environment(catcher: Catcher, bundle: str, base: dict[str, str] | None = None, **kwargs: object) -> dict[str, str]:
    base = {**os.environ, **(base or {})}
    base.pop("NODE_OPTIONS", None)
    options: dict[str, object] = {"preload_path": preload_path(), **kwargs}
    return child_environment(
        base,
        proxy_url=catcher.proxy.proxy_url,
        ca_cert_path=str(catcher.proxy.ca_cert_path),
        ca_bundle_path=bundle,
        **options,  # type: ignore[arg-type]
    )


def node(program: str, env: dict[str, str], *, quiet: bool = True) -> list[dict[str, object]]:
    """Run `program` (after PRELUDE); return its JSON lines. With `quiet`, stderr must stay empty."""
    assert NODE is not None
    result = subprocess.run(
        [NODE, "-e", PRELUDE + program], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    if quiet:
        assert result.stderr == ""
    return [json.loads(line) for line in result.stdout.splitlines()]


def caught_answer(host: str, path: str) -> str:
    """The body the catcher answers with."""
    return json.dumps({"caught": host, "path": path})


def test_fetch_https_to_an_unresolvable_host(catcher: Catcher, node_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    body = json.dumps({"context": {"anonymousId": token}, "events": [{"name": "CLI_COMMAND_SUCCEEDED"}]})
    program = f"get('https://telemetry.sst.dev/events?t={token}', {{ method: 'POST', body: {body!r} }}).then(show);"
    assert node(program, node_env) == [
        {"status": 200, "body": caught_answer("telemetry.sst.dev", f"/events?t={token}")}
    ]
    [caught] = catcher.requests(token)
    assert (caught.method, caught.scheme, caught.host, caught.port, caught.body) == (
        "POST",
        "https",
        "telemetry.sst.dev",
        443,
        body,
    )


def test_fetch_plain_http(catcher: Catcher, node_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    program = f"get('http://collector.example:8000/{token}', {{ method: 'POST', body: 'fetch-{token}' }}).then(show);"
    assert node(program, node_env) == [{"status": 200, "body": caught_answer("collector.example", f"/{token}")}]
    [caught] = catcher.requests(token)
    assert (caught.scheme, caught.host, caught.port, caught.body) == (
        "http",
        "collector.example",
        8000,
        f"fetch-{token}",
    )


def test_https_request_with_the_default_agent(catcher: Catcher, node_env: dict[str, str]) -> None:
    """What Serverless v3 (node-fetch over https.globalAgent) and SST v2 do."""
    token = uuid.uuid4().hex
    host = "sp-notifications-and-metrics-v1.serverless-platform.com"
    program = f"call(https, 'https://{host}/{token}', {{}}, '[{{\"command\":\"deploy\"}}]').then(show);"
    [result] = node(program, node_env)
    assert (result["status"], result["body"]) == (200, caught_answer(host, f"/{token}"))
    [caught] = catcher.requests(token)
    assert (caught.scheme, caught.host, caught.body) == ("https", host, '[{"command":"deploy"}]')


def test_https_with_a_custom_keep_alive_agent(catcher: Catcher, node_env: dict[str, str]) -> None:
    """Libraries build their own agents (aws-sdk v3, got): the prototype patch covers them, tunnel reuse included."""
    token = uuid.uuid4().hex
    program = f"""
    (async () => {{
      const agent = new https.Agent({{ keepAlive: true }});
      show(await call(https, 'https://api.example.com/one/{token}', {{ agent }}, 'first'));
      show(await call(https, 'https://api.example.com/two/{token}', {{ agent }}, 'second'));
      agent.destroy();
    }})();
    """
    first, second = node(program, node_env)
    assert (first["status"], second["status"]) == (200, 200)
    assert second["reused"] is True
    assert [(c.host, c.path, c.body) for c in catcher.requests(token)] == [
        ("api.example.com", f"/one/{token}", "first"),
        ("api.example.com", f"/two/{token}", "second"),
    ]


def test_plain_http_request(catcher: Catcher, node_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    program = f"""
    (async () => {{
      show(await call(http, 'http://tracking.example/v1/track/{token}', {{}}, 'plain-{token}'));
      // Array headers serialise the request line early: the rewrite must still happen.
      show(await call(http, 'http://tracking.example/array/{token}', {{ headers: ['X-Probe', '1'] }}, 'array'));
    }})();
    """
    plain, array = node(program, node_env)
    assert plain["body"] == caught_answer("tracking.example", f"/v1/track/{token}")
    assert array["status"] == 200
    assert [(c.scheme, c.host, c.body) for c in catcher.requests(token)] == [
        ("http", "tracking.example", f"plain-{token}"),
        ("http", "tracking.example", "array"),
    ]


def test_no_proxy_hosts_go_direct(
    catcher: Catcher, upstream: Upstream, node_env: dict[str, str], tmp_path: Path
) -> None:
    """NO_PROXY=localhost sends `localhost` direct (TLS verified by the combined bundle); 127.0.0.1 is proxied."""
    bundle = node_env["SSL_CERT_FILE"]
    env = environment(catcher, bundle, {"NO_PROXY": "localhost", "no_proxy": ""}, bypass_loopback=False)
    port = catcher.proxy.port
    assert env["NO_PROXY"] == f"localhost,127.0.0.1:{port},[::1]:{port}"
    # Node verifies direct hosts against its bundled roots plus NODE_EXTRA_CA_CERTS; the upstream's private CA
    # plays a corporate root the user would have listed there.
    env["NODE_EXTRA_CA_CERTS"] = bundle
    token = uuid.uuid4().hex
    direct_http = f"http://localhost:{upstream.http_port}/direct/{token}"
    direct_https = f"https://localhost:{upstream.https_port}/direct/{token}"
    proxied = f"http://127.0.0.1:{upstream.http_port}/proxied/{token}"
    program = f"""
    (async () => {{
      show(await get('{direct_http}'));
      show(await get('{direct_https}'));
      show(await call(https, '{direct_https}'));
      show(await call(http, '{proxied}'));
    }})();
    """
    results = node(program, env)
    assert [r.get("body") for r in results[:3]] == [f"upstream /direct/{token}"] * 3
    assert results[3]["body"] == caught_answer("127.0.0.1", f"/proxied/{token}")
    assert [(r.scheme, r.path) for r in upstream.requests(token)] == [
        ("http", f"/direct/{token}"),
        ("https", f"/direct/{token}"),
        ("https", f"/direct/{token}"),
    ]
    assert [c.path for c in catcher.requests(token)] == [f"/proxied/{token}"]


def test_a_dead_proxy_fails_the_request_instead_of_bypassing(upstream: Upstream, tmp_path: Path) -> None:
    """Fail closed: audited traffic never silently leaves without the proxy."""
    assert NODE is not None
    dead = f"http://127.0.0.1:{_unused_port()}"
    env = child_environment(
        {**os.environ, "NODE_OPTIONS": ""},
        proxy_url=dead,
        ca_cert_path=str(upstream.ca_cert_path),
        preload_path=preload_path(),
        bypass_loopback=False,
    )
    token = uuid.uuid4().hex
    program = f"""
    (async () => {{
      show(await get('https://localhost:{upstream.https_port}/{token}'));
      show(await call(https, 'https://localhost:{upstream.https_port}/{token}'));
      show(await call(http, 'http://localhost:{upstream.http_port}/{token}'));
    }})();
    """
    assert node(program, env) == [{"error": "ECONNREFUSED"}] * 3
    assert upstream.requests(token) == []


def test_the_proxy_itself_is_never_proxied(upstream: Upstream) -> None:
    """With the upstream server posing as the proxy, its request log shows the request form Node sent it."""
    env = child_environment(
        {**os.environ, "NODE_OPTIONS": ""},
        proxy_url=f"http://127.0.0.1:{upstream.http_port}",
        ca_cert_path=str(upstream.ca_cert_path),
        preload_path=preload_path(),
        bypass_loopback=False,
    )
    token = uuid.uuid4().hex
    program = f"""
    (async () => {{
      show(await call(http, 'http://127.0.0.1:{upstream.http_port}/self/{token}'));
      show(await call(http, 'http://localhost:{upstream.http_port}/alias/{token}'));
      show(await call(http, 'http://tracking.example/other/{token}'));
    }})();
    """
    assert [result["status"] for result in node(program, env)] == [200, 200, 200]
    assert [request.path for request in upstream.requests(token)] == [
        f"/self/{token}",  # origin-form: straight to it, no request about the proxy sent to the proxy
        f"/alias/{token}",  # a loopback alias of the proxy's address is the proxy too
        f"http://tracking.example/other/{token}",  # absolute-form: through it
    ]


def test_existing_node_options_and_a_path_with_spaces(
    catcher: Catcher, node_env: dict[str, str], tmp_path: Path
) -> None:
    spaced = tmp_path / "Program Files" / "preload.cjs"
    spaced.parent.mkdir()
    shutil.copy(preload_path(), spaced)
    base = {**os.environ, "NODE_OPTIONS": "--title=audited-tool"}
    env = child_environment(
        base,
        proxy_url=catcher.proxy.proxy_url,
        ca_cert_path=node_env["NODE_EXTRA_CA_CERTS"],
        ca_bundle_path=node_env["SSL_CERT_FILE"],
        preload_path=str(spaced),
    )
    assert env["NODE_OPTIONS"] == f'--title=audited-tool --require "{spaced}"'
    token = uuid.uuid4().hex
    program = f"get('https://telemetry.sst.dev/{token}').then((r) => show({{ title: process.title, ...r }}));"
    [result] = node(program, env)
    assert (result["title"], result["status"]) == ("audited-tool", 200)
    assert [c.host for c in catcher.requests(token)] == ["telemetry.sst.dev"]


@pytest.mark.parametrize("proxy", ["::::", "socks5://127.0.0.1:1", "https://127.0.0.1:1"])
def test_an_unusable_proxy_setting_is_ignored_silently(upstream: Upstream, proxy: str) -> None:
    env = {**os.environ, "NODE_OPTIONS": f"--require {preload_path()}", "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
    env.pop("NO_PROXY", None)
    token = uuid.uuid4().hex
    program = f"call(http, 'http://127.0.0.1:{upstream.http_port}/{token}').then(show);"
    [result] = node(program, env)
    assert result["body"] == f"upstream /{token}"


def test_debug_goes_to_stderr_only(catcher: Catcher, node_env: dict[str, str]) -> None:
    assert NODE is not None
    env = {**node_env, "TELEMETRY_AUDIT_DEBUG": "1"}
    token = uuid.uuid4().hex
    # A custom agent: the preload's own path on every Node (the global agents are Node's own on 24 and later).
    program = f"call(https, 'https://telemetry.sst.dev/{token}', {{ agent: new https.Agent() }})"
    program += ".then((r) => console.log(r.status));"
    result = subprocess.run(
        [NODE, "-e", PRELUDE + program], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == "200\n"
    assert "[telemetry-audit preload" in result.stderr
    assert "CONNECT telemetry.sst.dev:443" in result.stderr


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
