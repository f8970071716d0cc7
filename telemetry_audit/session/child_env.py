"""The environment `telemetry-audit run` gives the audited command.

Every runtime finds a proxy and a CA its own way (see `/work/shared/wire/README.md`), so the child gets all of the
variables at once: the proxy in every spelling, the CA under every name a client reads, and for Node 20 (which reads
neither) a `--require` preload that routes `http`, `https` and `fetch` itself.

Variables that *replace* a client's trust store (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, ...) must point at a bundle
holding the system CAs plus the proxy CA, or every connection that bypasses the proxy (NO_PROXY) would fail to
verify: `combined_ca_bundle()` writes that file. `NODE_EXTRA_CA_CERTS` adds to Node's store, so it gets the bare CA.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

PROXY_VARIABLES: tuple[str, ...] = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""Both spellings: curl reads only lowercase `http_proxy`, others prefer uppercase."""

NO_PROXY_VARIABLES: tuple[str, ...] = ("NO_PROXY", "no_proxy")

CA_BUNDLE_VARIABLES: Mapping[str, str] = {
    # Each of these replaces the reader's trust store, so it gets the combined bundle.
    "SSL_CERT_FILE": "OpenSSL default (Python ssl/urllib/httpx, Go, curl, Ruby, Rust native-tls)",
    "REQUESTS_CA_BUNDLE": "Python requests (ignores SSL_CERT_FILE)",
    "CURL_CA_BUNDLE": "curl, and requests as a fallback",
    "GIT_SSL_CAINFO": "git over https",
    "AWS_CA_BUNDLE": "botocore / AWS CLI / AWS SDKs",
    "PIP_CERT": "pip",
    "HTTPLIB2_CA_CERTS": "httplib2 (Google API clients)",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": "gRPC core",
    "CARGO_HTTP_CAINFO": "cargo",
    "NIX_SSL_CERT_FILE": "nix",
    "DENO_CERT": "Deno",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": "gcloud",
}
"""CA variables and who reads them."""

LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Go's net/http never proxies these whatever NO_PROXY says; `run` bypasses them for every client alike."""

_NODE_OPTIONS_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def preload_path() -> str:
    """Filesystem path of the Node preload shipped in the package (`telemetry_audit/node/preload.cjs`)."""
    resource = resources.files("telemetry_audit") / "node" / "preload.cjs"
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"telemetry-audit's Node preload is missing from the installed package: {path}")
    return str(path)


def system_ca_bundle() -> str | None:
    """The PEM file the platform's OpenSSL trusts by default, else certifi's, else None."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def combined_ca_bundle(
    ca_cert_path: str,
    out_dir: str,
    *,
    system_bundle: str | None = None,
    extra_bundles: Iterable[str] = (),
) -> str:
    """Write system CAs + `extra_bundles` + the proxy CA to `out_dir/ca-bundle.pem` and return its path.

    Give this file to variables that replace the trust store, so that hosts reached directly still verify.
    `system_bundle` defaults to `system_ca_bundle()`; `extra_bundles` can carry the user's own CA files (a
    corporate root from their former `SSL_CERT_FILE`, say).
    """
    proxy_ca = Path(ca_cert_path).read_text(encoding="ascii")
    if "-----BEGIN CERTIFICATE-----" not in proxy_ca:
        raise ValueError(f"{ca_cert_path} is not a PEM certificate")
    system = system_bundle if system_bundle is not None else system_ca_bundle()
    parts = [Path(p).read_text(encoding="utf-8", errors="replace") for p in (system, *extra_bundles) if p]
    parts.append(proxy_ca)
    out = Path(out_dir) / "ca-bundle.pem"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(part if part.endswith("\n") else part + "\n" for part in parts), encoding="utf-8")
    return str(out)


def child_environment(
    base: Mapping[str, str],
    *,
    proxy_url: str,
    ca_cert_path: str,
    ca_bundle_path: str | None = None,
    preload_path: str | None = None,
    no_proxy: Iterable[str] = (),
    audited_hosts: Iterable[str] = (),
    bypass_loopback: bool = True,
) -> dict[str, str]:
    """Return a copy of `base` that routes the child's HTTP(S) through `proxy_url` and trusts its CA.

    `ca_cert_path` is the proxy's CA certificate (added to Node's store); `ca_bundle_path` is the combined bundle
    from `combined_ca_bundle()` for variables that replace the trust store (defaults to `ca_cert_path`, which
    breaks verified direct connections). `preload_path`, when given, is appended to NODE_OPTIONS as `--require`.

    NO_PROXY keeps the user's entries (internal hosts with private CAs or client certificates cannot go through the
    proxy) except `*` and entries that would cover one of `audited_hosts`; then come the loopback hosts (unless
    `bypass_loopback` is false) and `no_proxy`. Pure: reads nothing but its arguments.
    """
    scheme = urlsplit(proxy_url).scheme
    if scheme != "http" or not urlsplit(proxy_url).hostname:
        raise ValueError(f"proxy_url must be an http:// URL with a host, got {proxy_url!r}")
    bundle = ca_bundle_path or ca_cert_path
    env = dict(base)

    for name in PROXY_VARIABLES:
        env[name] = proxy_url
    bypass = _no_proxy_entries(base, audited_hosts=audited_hosts, extra=no_proxy, bypass_loopback=bypass_loopback)
    for host, entry in _proxy_itself(proxy_url):
        if not any(_no_proxy_covers(existing, host) for existing in bypass):
            bypass.append(entry)
    for name in NO_PROXY_VARIABLES:
        if bypass:
            env[name] = ",".join(bypass)
        else:
            env.pop(name, None)

    for name in CA_BUNDLE_VARIABLES:
        env[name] = bundle
    env["NODE_EXTRA_CA_CERTS"] = ca_cert_path
    # Node >= 22.21 / 24.5 then proxies its global agents and fetch itself; older Node ignores it.
    env["NODE_USE_ENV_PROXY"] = "1"
    if preload_path is not None:
        env["NODE_OPTIONS"] = _with_require(base.get("NODE_OPTIONS", ""), preload_path)
    return env


def _no_proxy_entries(
    base: Mapping[str, str], *, audited_hosts: Iterable[str], extra: Iterable[str], bypass_loopback: bool
) -> list[str]:
    audited = [host.strip().lower().rstrip(".") for host in audited_hosts if host.strip()]
    entries: list[str] = []
    for name in NO_PROXY_VARIABLES:
        for entry in re.split(r"[\s,]+", base.get(name, "")):
            if not entry or entry == "*" or any(_no_proxy_covers(entry, host) for host in audited):
                continue
            entries.append(entry)
    if bypass_loopback:
        entries.extend(LOOPBACK_HOSTS)
    entries.extend(entry.strip() for entry in extra if entry.strip())
    return list(dict.fromkeys(entries))


def _proxy_itself(proxy_url: str) -> list[tuple[str, str]]:
    """(host, NO_PROXY entry) for each name of the proxy's own address.

    So that no client sends the proxy requests about itself: Node's native proxy support (NODE_USE_ENV_PROXY) would
    when loopback is not bypassed.
    """
    parts = urlsplit(proxy_url)
    host = (parts.hostname or "").lower()
    port = parts.port or 80
    names = (host, *LOOPBACK_HOSTS) if host in LOOPBACK_HOSTS or host.startswith("127.") else (host,)
    return [(name, f"[{name}]:{port}" if ":" in name else f"{name}:{port}") for name in dict.fromkeys(names)]


def _no_proxy_covers(entry: str, host: str) -> bool:
    """Whether NO_PROXY `entry` sends `host` direct, read the widest way any client reads it (curl's).

    Ports are ignored on purpose: an entry that bypasses the host on some port is dropped.
    """
    entry = entry.strip().lower()
    if entry.startswith("[") and "]" in entry:
        entry = entry[1 : entry.index("]")]
    elif entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    if "/" in entry:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry = entry.lstrip("*").lstrip(".").rstrip(".")
    return bool(entry) and (host == entry or host.endswith("." + entry))


def _with_require(node_options: str, path: str) -> str:
    """Append `--require path` to NODE_OPTIONS once, quoted the way Node's own parser unquotes."""
    if _NODE_OPTIONS_NEEDS_QUOTES.search(path):
        quoted = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        quoted = path
    option = f"--require {quoted}"
    if option in node_options:
        return node_options
    return f"{node_options} {option}".strip()
