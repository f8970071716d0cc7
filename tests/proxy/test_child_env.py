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
    java_tool_options,
    java_truststore,
    no_proxy_plan,
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


LOOPBACK = ",".join(LOOPBACK_HOSTS)


@pytest.mark.parametrize(
    ("base", "audited", "expected"),
    [
        ({}, (), LOOPBACK),
        # `*` would send everything around the proxy.
        ({"NO_PROXY": "*"}, (), LOOPBACK),
        # A user's own entries are not loopback: in `run` they would bypass the audit, so they go.
        ({"NO_PROXY": "intranet.corp, 10.0.0.0/8"}, (), LOOPBACK),
        ({"NO_PROXY": "host.test", "no_proxy": "host.test"}, (), LOOPBACK),
        ({"NO_PROXY": ".sst.dev,intranet.corp"}, ("telemetry.sst.dev",), LOOPBACK),
        ({"NO_PROXY": "telemetry.nextjs.org"}, (), LOOPBACK),
        # Loopback entries stay, in every spelling, and both variables are merged without duplicates.
        ({"NO_PROXY": "localhost", "no_proxy": "localhost,127.0.0.1"}, (), LOOPBACK),
        ({"NO_PROXY": "127.0.0.2,.localhost,[::1]:8080,127.0.0.0/8"}, (),
         "127.0.0.2,.localhost,[::1]:8080,127.0.0.0/8," + LOOPBACK),
        ({"NO_PROXY": "app.localhost:3000"}, (), "app.localhost:3000," + LOOPBACK),
        # Ranges reaching beyond loopback, and names that only look like it, go.
        ({"NO_PROXY": "127.0.0.0/7,0.0.0.0/0,localhost.evil.test,127.0.0.1.nip.io"}, (), LOOPBACK),
        # A loopback entry that covers an audited host goes too (tests audit collectors on 127.0.0.1).
        ({"NO_PROXY": "127.0.0.5"}, ("127.0.0.5",), LOOPBACK),
    ],
)
def test_no_proxy(base: dict[str, str], audited: tuple[str, ...], expected: str) -> None:
    env = build(base, audited_hosts=audited)
    assert env["NO_PROXY"] == env["no_proxy"] == expected


@pytest.mark.parametrize(
    ("no_proxy_for", "audited", "kept"),
    [
        (["intranet.corp"], (), ["intranet.corp"]),
        (["10.0.0.0/8", " git.corp:8443 "], (), ["10.0.0.0/8", "git.corp:8443"]),
        (["*"], (), []),
        # never a telemetry host: audited, catalogued, a parent domain of one, or a name that says so
        (["telemetry.sst.dev"], ("telemetry.sst.dev",), []),
        ([".sst.dev"], ("telemetry.sst.dev",), []),
        (["telemetry.nextjs.org"], (), []),
        (["vercel.com"], (), []),  # covers telemetry.vercel.com
        ([".segment.io"], (), []),
        (["analytics.mycorp.example"], (), []),
        (["checkpoint-api.hashicorp.com:443"], (), []),
        (["api.github.com", "metrics.internal"], (), ["api.github.com"]),
    ],
)
def test_no_proxy_for(no_proxy_for: list[str], audited: tuple[str, ...], kept: list[str]) -> None:
    env = build({"NO_PROXY": "intranet.corp"}, no_proxy_for=no_proxy_for, audited_hosts=audited)
    assert env["NO_PROXY"].split(",") == [*LOOPBACK_HOSTS, *kept]


def test_no_proxy_plan_says_what_it_dropped_and_why() -> None:
    plan = no_proxy_plan(
        {"NO_PROXY": "intranet.corp,*,localhost", "no_proxy": ".vercel.com"},
        no_proxy_for=["metrics.example.com", "build.corp"],
    )
    assert plan.entries == ("localhost", "127.0.0.1", "::1", "build.corp")
    reasons = dict(plan.dropped)
    assert "--no-proxy-for intranet.corp" in reasons["intranet.corp"]
    assert "every host" in reasons["*"]
    assert reasons[".vercel.com"] == "covers the telemetry host telemetry.vercel.com"
    assert reasons["metrics.example.com"] == "metrics.example.com is a telemetry host"


def test_no_proxy_extra_entries_and_loopback_opt_out() -> None:
    env = build({"NO_PROXY": "*"}, bypass_loopback=False, no_proxy_for=["direct.test", " "])
    # The proxy's own address always stays out of the proxy, under each loopback name.
    assert env["NO_PROXY"] == "direct.test,127.0.0.1:8080,localhost:8080,[::1]:8080"
    env = build({}, bypass_loopback=False, proxy_url="http://10.0.0.5:3128")
    assert env["NO_PROXY"] == env["no_proxy"] == "10.0.0.5:3128"
    env = build({}, proxy_url="http://10.0.0.5:3128")
    assert env["NO_PROXY"] == "localhost,127.0.0.1,::1,10.0.0.5:3128"


@pytest.mark.parametrize(
    ("existing", "non_proxy", "expected_tail"),
    [
        ("", LOOPBACK_HOSTS, '-Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]'),
        ("-Xmx1g", (".corp.example", "10.0.0.0/8"), "-Dhttp.nonProxyHosts=*.corp.example"),
        ("-Xmx1g -Dhttps.proxyHost=corp -Djavax.net.ssl.trustStore=/old", (), "-Dhttp.nonProxyHosts="),
    ],
)
def test_java_tool_options(existing: str, non_proxy: tuple[str, ...], expected_tail: str) -> None:
    options = java_tool_options(existing, truststore="/run/ts.jks", proxy_url=PROXY, non_proxy_hosts=non_proxy)
    assert options.endswith(expected_tail)
    assert "-Djavax.net.ssl.trustStore=/run/ts.jks -Djavax.net.ssl.trustStorePassword=changeit" in options
    assert "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=8080" in options
    assert options.count("trustStore=") == 1 and "corp " not in options  # the user's own values are replaced
    assert options.startswith("-Xmx1g") == existing.startswith("-Xmx1g")


def test_java_tool_options_only_with_a_truststore() -> None:
    assert "JAVA_TOOL_OPTIONS" not in build()
    env = build({"JAVA_TOOL_OPTIONS": "-Xss4m"}, java_truststore="/my dir/ts.jks")
    assert env["JAVA_TOOL_OPTIONS"].startswith('-Xss4m -Djavax.net.ssl.trustStore="/my dir/ts.jks" ')


def test_package_manager_and_runtime_ca_variables() -> None:
    env = build({"npm_config_cafile": "/home/me/corp.pem"})
    for name in ("npm_config_cafile", "YARN_HTTPS_CA_FILE_PATH", "YARN_CA_FILE_PATH", "PIP_CERT", "DENO_CERT",
                 "COMPOSER_CAFILE", "CONDA_SSL_VERIFY", "CARGO_HTTP_CAINFO", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"):
        assert env[name] == BUNDLE, name


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


# ---- NO_PROXY and CA trust, end to end ------------------------------------------------------------------------------


def test_a_users_no_proxy_entry_does_not_bypass_the_audit(catcher: Catcher, upstream: Upstream,
                                                           tmp_path: Path) -> None:
    """`NO_PROXY=host run -- curl http://host/...`: the request still reaches the proxy (issue 10, item 5)."""
    ca = str(catcher.proxy.ca_cert_path)
    bundle = combined_ca_bundle(ca, str(tmp_path), system_bundle=str(upstream.ca_cert_path))
    host = "direct-bypass.test"  # resolves nowhere: a bypassed request would fail, not reach the catcher
    base = {**os.environ, "NO_PROXY": f"{host},.test", "no_proxy": host}
    env = child_environment(base, proxy_url=catcher.proxy.proxy_url, ca_cert_path=str(catcher.proxy.ca_cert_path),
                            ca_bundle_path=bundle)
    for scheme in ("http", "https"):
        token = uuid.uuid4().hex
        run([executable("curl"), "-sS", "--fail", "--data-binary", f"np-{token}", f"{scheme}://{host}/{token}"], env)
        assert_caught(catcher, token, scheme=scheme, host=host, body=f"np-{token}")


def npm_ping(env: dict[str, str], home: Path, registry: str) -> subprocess.CompletedProcess[str]:
    env = {**env, "HOME": str(home), "npm_config_userconfig": str(home / ".npmrc"), "npm_config_cache": str(home / "c"),
           "npm_config_update_notifier": "false", "npm_config_audit": "false", "npm_config_fund": "false",
           "npm_config_fetch_retries": "0"}
    return subprocess.run([executable("npm"), "ping", "--registry", registry], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_npm_trusts_the_proxy_despite_a_cafile_in_the_users_npmrc(catcher: Catcher, upstream: Upstream,
                                                                   client_env: dict[str, str], tmp_path: Path) -> None:
    """npm_config_cafile outranks `cafile=` in ~/.npmrc; without it the same npm fails on our certificate."""
    (tmp_path / ".npmrc").write_text(f"cafile={upstream.ca_cert_path}\n", encoding="utf-8")
    token = uuid.uuid4().hex
    registry = f"https://npm-registry.test/{token}/"
    result = npm_ping(client_env, tmp_path, registry)
    assert result.returncode == 0, result.stdout + result.stderr
    [caught] = catcher.requests(token)
    assert (caught.method, caught.host, caught.path) == ("GET", "npm-registry.test", f"/{token}/-/ping")
    # The control: the user's cafile alone does not trust the proxy CA, so the check above can fail.
    without = {k: v for k, v in client_env.items() if k != "npm_config_cafile"}
    control = npm_ping(without, tmp_path, f"https://npm-registry.test/{uuid.uuid4().hex}/")
    assert control.returncode != 0
    assert "certificate" in (control.stdout + control.stderr).lower()


@pytest.fixture(scope="module")
def java_env(catcher: Catcher, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    executable("java")
    store = java_truststore(str(catcher.proxy.ca_cert_path), str(tmp_path_factory.mktemp("java")))
    if store is None:
        pytest.skip("keytool or the JDK's cacerts is missing")
    bundle = combined_ca_bundle(str(catcher.proxy.ca_cert_path), str(tmp_path_factory.mktemp("bundle")),
                                system_bundle=str(upstream.ca_cert_path))
    return child_environment(os.environ, proxy_url=catcher.proxy.proxy_url,
                             ca_cert_path=str(catcher.proxy.ca_cert_path), ca_bundle_path=bundle,
                             java_truststore=store)


JAVA_CLIENT = """
import java.io.OutputStream;
import java.net.URI;
import java.net.HttpURLConnection;
import java.nio.charset.StandardCharsets;

public class Post {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URI(args[0]).toURL().openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        try (OutputStream out = c.getOutputStream()) { out.write(args[1].getBytes(StandardCharsets.UTF_8)); }
        String body = new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        System.out.println(c.getResponseCode() + " " + body);
    }
}
"""


def java(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "Post.java"
    source.write_text(JAVA_CLIENT, encoding="utf-8")
    return subprocess.run([executable("java"), str(source), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_java_reaches_the_proxy_and_trusts_its_ca(catcher: Catcher, java_env: dict[str, str], tmp_path: Path) -> None:
    """A JVM reads neither HTTPS_PROXY nor SSL_CERT_FILE: JAVA_TOOL_OPTIONS carries both."""
    token = uuid.uuid4().hex
    result = java(java_env, tmp_path, f"https://telemetry.java.test/{token}", f"java-{token}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("200 ") and '"caught": "telemetry.java.test"' in result.stdout
    assert_caught(catcher, token, scheme="https", host="telemetry.java.test", body=f"java-{token}")


def test_java_without_the_truststore_rejects_the_proxy(java_env: dict[str, str], tmp_path: Path) -> None:
    """The control for the test above: the proxy alone, with the JDK's default trust, fails the handshake."""
    options = " ".join(o for o in java_env["JAVA_TOOL_OPTIONS"].split() if "trustStore" not in o)
    result = java({**java_env, "JAVA_TOOL_OPTIONS": options}, tmp_path, "https://telemetry.java.test/x", "x")
    assert result.returncode != 0
    assert "PKIX" in result.stderr or "SSLHandshakeException" in result.stderr


def test_java_truststore_is_built_once_and_holds_the_jdks_cas(mitm_confdir: Path, tmp_path: Path) -> None:
    keytool = executable("keytool")
    ca = str(mitm_confdir / "mitmproxy-ca-cert.pem")
    first = java_truststore(ca, str(tmp_path))
    if first is None:
        pytest.skip("the JDK's cacerts is missing")
    assert java_truststore(ca, str(tmp_path)) == first
    assert [p.name for p in tmp_path.iterdir()] == [Path(first).name]  # no temporary left behind
    listing = subprocess.run([keytool, "-list", "-keystore", first, "-storepass", "changeit"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert "telemetry-audit-ca" in listing
    assert listing.count("trustedCertEntry") > 10


def test_java_truststore_bad_input(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate", encoding="ascii")
    cacerts = tmp_path / "cacerts"
    cacerts.write_bytes(b"x")
    assert java_truststore(str(bogus), str(tmp_path), keytool=str(tmp_path / "no-keytool")) is None
    with pytest.raises(ValueError, match="not a PEM certificate"):
        java_truststore(str(bogus), str(tmp_path), keytool=shutil.which("true") or "/bin/true", cacerts=str(cacerts))


def test_pip_trusts_the_proxy(catcher: Catcher, client_env: dict[str, str], tmp_path: Path) -> None:
    """pip (its own vendored requests and certifi) reads PIP_CERT; the index request arrives with TLS verified."""
    token = uuid.uuid4().hex
    env = {**client_env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PIP_INDEX_URL", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    env.pop("PIP_FIND_LINKS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "0", "--timeout", "20", "-d",
         str(tmp_path), "--index-url", f"https://pypi-index.test/{token}/simple/", "telemetry-audit-probe"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    # The catcher is no package index, so pip finds nothing; what matters is that it asked, over verified TLS.
    assert "SSL" not in result.stderr and "CERTIFICATE" not in result.stderr.upper(), result.stderr
    [caught] = catcher.requests(token)
    assert (caught.method, caught.scheme, caught.host) == ("GET", "https", "pypi-index.test")
    assert caught.path == f"/{token}/simple/telemetry-audit-probe/"
