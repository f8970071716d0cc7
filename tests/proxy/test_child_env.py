"""`child_environment` as a table, then real clients through a real mitmdump with the environment it builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from telemetry_audit.session.child_env import (
    CA_BUNDLE_VARIABLES,
    LOOPBACK_HOSTS,
    PROXY_VARIABLES,
    child_environment,
    combined_ca_bundle,
    preload_path,
)

if TYPE_CHECKING:
    from conftest import Catcher, Upstream

PROXY = "http://127.0.0.1:8080"
CA = "/conf/mitmproxy-ca-cert.pem"
BUNDLE = "/run/ca-bundle.pem"


def build(base: dict[str, str] | None = None, **kwargs: object) -> dict[str, str]:
    """child_environment with test defaults."""
    options: dict[str, object] = {"proxy_url": PROXY, "ca_cert_path": CA, "ca_bundle_path": BUNDLE, **kwargs}
    return child_environment(base or {}, **options)  # type: ignore[arg-type]


# ---- the pure function ----------------------------------------------------------------------------------------------


def test_sets_the_proxy_in_every_spelling() -> None:
    env = build({"HTTPS_PROXY": "http://corp:3128", "http_proxy": "http://corp:3128"})
    assert {name: env[name] for name in PROXY_VARIABLES} == dict.fromkeys(PROXY_VARIABLES, PROXY)


def test_keeps_unrelated_variables_and_leaves_base_alone() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/me", "NO_PROXY": "intranet.corp"}
    env = build(base)
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/me"
    assert base == {"PATH": "/usr/bin", "HOME": "/home/me", "NO_PROXY": "intranet.corp"}


def test_store_replacing_variables_get_the_combined_bundle_and_node_the_bare_ca() -> None:
    env = build()
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE"):
        assert env[name] == BUNDLE, name
    assert all(env[name] == BUNDLE for name in CA_BUNDLE_VARIABLES)
    assert env["NODE_EXTRA_CA_CERTS"] == CA
    assert env["NODE_USE_ENV_PROXY"] == "1"


def test_without_a_combined_bundle_everything_points_at_the_ca() -> None:
    env = child_environment({}, proxy_url=PROXY, ca_cert_path=CA)
    assert all(env[name] == CA for name in CA_BUNDLE_VARIABLES)


@pytest.mark.parametrize(
    ("base", "audited", "expected"),
    [
        ({}, (), ",".join(LOOPBACK_HOSTS)),
        # `*` would send everything around the proxy.
        ({"NO_PROXY": "*"}, (), "localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "intranet.corp, 10.0.0.0/8"}, (), "intranet.corp,10.0.0.0/8,localhost,127.0.0.1,::1"),
        # Both spellings are read and merged without duplicates.
        ({"NO_PROXY": "a.corp", "no_proxy": "a.corp,b.corp"}, (), "a.corp,b.corp,localhost,127.0.0.1,::1"),
        # Entries that cover an audited host go, whatever their form.
        ({"NO_PROXY": ".sst.dev,intranet.corp"}, ("telemetry.sst.dev",), "intranet.corp,localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "*.sst.dev"}, ("telemetry.sst.dev",), "localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "sst.dev:443"}, ("telemetry.sst.dev",), "localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "telemetry.sst.dev"}, ("TELEMETRY.sst.dev.",), "localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "ion.sst.dev"}, ("telemetry.sst.dev",), "ion.sst.dev,localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "10.0.0.0/8"}, ("10.1.2.3",), "localhost,127.0.0.1,::1"),
        ({"NO_PROXY": "notsst.dev"}, ("telemetry.sst.dev",), "notsst.dev,localhost,127.0.0.1,::1"),
    ],
)
def test_no_proxy(base: dict[str, str], audited: tuple[str, ...], expected: str) -> None:
    env = build(base, audited_hosts=audited)
    assert env["NO_PROXY"] == env["no_proxy"] == expected


def test_no_proxy_extra_entries_and_loopback_opt_out() -> None:
    env = build({"NO_PROXY": "*"}, bypass_loopback=False, no_proxy=["direct.test", " "])
    # The proxy's own address always stays out of the proxy, under each loopback name.
    assert env["NO_PROXY"] == "direct.test,127.0.0.1:8080,localhost:8080,[::1]:8080"
    env = build({}, bypass_loopback=False, proxy_url="http://10.0.0.5:3128")
    assert env["NO_PROXY"] == env["no_proxy"] == "10.0.0.5:3128"
    env = build({}, proxy_url="http://10.0.0.5:3128")
    assert env["NO_PROXY"] == "localhost,127.0.0.1,::1,10.0.0.5:3128"


@pytest.mark.parametrize(
    ("existing", "preload", "expected"),
    [
        (None, "/opt/ta/preload.cjs", "--require /opt/ta/preload.cjs"),
        ("--max-old-space-size=4096", "/opt/ta/preload.cjs", "--max-old-space-size=4096 --require /opt/ta/preload.cjs"),
        ("", "/Users/me/My Tools/preload.cjs", '--require "/Users/me/My Tools/preload.cjs"'),
        ("", '/odd "dir"/preload.cjs', r'--require "/odd \"dir\"/preload.cjs"'),
        # Running `telemetry-audit run` inside itself must not stack preloads.
        ("--require /opt/ta/preload.cjs", "/opt/ta/preload.cjs", "--require /opt/ta/preload.cjs"),
    ],
)
def test_node_options(existing: str | None, preload: str, expected: str) -> None:
    base = {} if existing is None else {"NODE_OPTIONS": existing}
    assert build(base, preload_path=preload)["NODE_OPTIONS"] == expected


def test_node_options_untouched_without_a_preload() -> None:
    assert build({"NODE_OPTIONS": "--inspect"})["NODE_OPTIONS"] == "--inspect"
    assert "NODE_OPTIONS" not in build()


@pytest.mark.parametrize("proxy_url", ["https://127.0.0.1:8080", "socks5://127.0.0.1:1080", "127.0.0.1:8080", ""])
def test_rejects_proxies_it_cannot_describe(proxy_url: str) -> None:
    with pytest.raises(ValueError, match="http://"):
        child_environment({}, proxy_url=proxy_url, ca_cert_path=CA)


def test_preload_path_is_the_shipped_script() -> None:
    path = Path(preload_path())
    assert path.is_absolute() and path.name == "preload.cjs"
    assert "NODE_USE_ENV_PROXY" in path.read_text(encoding="utf-8")


def test_combined_bundle_is_system_then_extras_then_proxy_ca(tmp_path: Path, mitm_confdir: Path) -> None:
    ca = mitm_confdir / "mitmproxy-ca-cert.pem"
    system = tmp_path / "system.pem"
    system.write_text("-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----", encoding="ascii")
    corp = tmp_path / "corp.pem"
    corp.write_text("-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n", encoding="ascii")
    out = combined_ca_bundle(str(ca), str(tmp_path / "out"), system_bundle=str(system), extra_bundles=[str(corp)])
    text = Path(out).read_text(encoding="ascii")
    assert text.index("SYSTEM") < text.index("CORP") < text.index(ca.read_text(encoding="ascii"))
    assert text.count("-----BEGIN CERTIFICATE-----") == 3


def test_combined_bundle_defaults_to_the_platform_store(tmp_path: Path, mitm_confdir: Path) -> None:
    out = combined_ca_bundle(str(mitm_confdir / "mitmproxy-ca-cert.pem"), str(tmp_path))
    # Debian's bundle or certifi's: either way far more than the one proxy CA.
    assert Path(out).read_text(encoding="utf-8").count("-----BEGIN CERTIFICATE-----") > 10


def test_combined_bundle_rejects_a_non_pem_ca(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate", encoding="ascii")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        combined_ca_bundle(str(bogus), str(tmp_path))


# ---- real clients through a real mitmdump ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_env(catcher: Catcher, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment `run` would build; the upstream's CA stands in for the system store."""
    bundle = combined_ca_bundle(
        str(catcher.proxy.ca_cert_path),
        str(tmp_path_factory.mktemp("bundle")),
        system_bundle=str(upstream.ca_cert_path),
    )
    return child_environment(
        os.environ,
        proxy_url=catcher.proxy.proxy_url,
        ca_cert_path=str(catcher.proxy.ca_cert_path),
        ca_bundle_path=bundle,
        preload_path=preload_path(),
    )


def run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def python(code: str, env: dict[str, str]) -> str:
    return run([sys.executable, "-c", textwrap.dedent(code)], env).stdout


def assert_caught(catcher: Catcher, token: str, *, scheme: str, host: str, body: str, method: str = "POST") -> None:
    [caught] = catcher.requests(token)
    assert (caught.method, caught.scheme, caught.host, caught.body) == (method, scheme, host, body)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_curl(scheme: str, catcher: Catcher, client_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    url = f"{scheme}://telemetry.sst.dev/events/{token}"
    out = run([executable("curl"), "-sS", "--fail", "--data-binary", f"curl-{token}", url], client_env).stdout
    assert '"caught": "telemetry.sst.dev"' in out
    assert_caught(catcher, token, scheme=scheme, host="telemetry.sst.dev", body=f"curl-{token}")


def test_python_requests(catcher: Catcher, client_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    out = python(
        f"""
        import requests
        r = requests.post("https://analytics.localstack.cloud/v1/events/{token}", data=b"requests-{token}")
        print(r.status_code, r.json()["caught"])
        """,
        client_env,
    )
    assert out.split() == ["200", "analytics.localstack.cloud"]
    assert_caught(catcher, token, scheme="https", host="analytics.localstack.cloud", body=f"requests-{token}")


def test_python_urllib(catcher: Catcher, client_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    out = python(
        f"""
        import json, urllib.request
        with urllib.request.urlopen("https://telemetry.werf.io/v1/traces/{token}", data=b"urllib-{token}") as r:
            print(r.status, json.load(r)["caught"])
        """,
        client_env,
    )
    assert out.split() == ["200", "telemetry.werf.io"]
    assert_caught(catcher, token, scheme="https", host="telemetry.werf.io", body=f"urllib-{token}")


def test_httpx(catcher: Catcher, client_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    out = python(
        f"""
        import httpx
        r = httpx.post("https://telemetry.ion.sst.dev/batch/{token}", content=b"httpx-{token}")
        print(r.status_code, r.json()["caught"])
        """,
        client_env,
    )
    assert out.split() == ["200", "telemetry.ion.sst.dev"]
    assert_caught(catcher, token, scheme="https", host="telemetry.ion.sst.dev", body=f"httpx-{token}")


def test_git_reaches_the_proxy(catcher: Catcher, client_env: dict[str, str], tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    env = {**client_env, "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    url = f"https://example-repo.test/{token}/x.git"
    result = subprocess.run(
        [executable("git"), "ls-remote", url], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    # The catcher is no git server, so git fails after the exchange (and tries the dumb protocol next); what
    # matters is that TLS verified and the request arrived with the original host name.
    assert "SSL" not in result.stderr and "certificate" not in result.stderr, result.stderr
    first = catcher.requests(token)[0]
    assert (first.scheme, first.host, first.method) == ("https", "example-repo.test", "GET")
    assert first.path == f"/{token}/x.git/info/refs?service=git-upload-pack"


def test_direct_https_still_verifies_against_the_system_store(upstream: Upstream, client_env: dict[str, str]) -> None:
    """Loopback bypasses the proxy; the combined bundle must still hold the CAs the upstream relies on."""
    token = uuid.uuid4().hex
    url = f"https://localhost:{upstream.https_port}/{token}"
    out = python(f"import requests; print(requests.get({url!r}).text)", client_env)
    assert out.strip() == f"upstream /{token}"
    curl = run([executable("curl"), "-sS", "--fail", url], client_env).stdout
    assert curl == f"upstream /{token}"
    assert len(upstream.requests(token)) == 2
