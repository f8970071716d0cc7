"""The environment `telemetry-audit run` gives the audited command.

Every runtime finds a proxy and a CA its own way (see `/work/shared/wire/README.md`), so the child gets all of the
variables at once: the proxy in every spelling, the CA under every name a client reads, and for Node 20 (which reads
neither) a `--require` preload that routes `http`, `https` and `fetch` itself.

Variables that *replace* a client's trust store (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, ...) must point at a bundle
holding the system CAs plus the proxy CA, or every connection that bypasses the proxy (NO_PROXY) would fail to
verify: `combined_ca_bundle()` writes that file. `NODE_EXTRA_CA_CERTS` adds to Node's store, so it gets the bare CA.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from telemetry_audit.hosts import canonical_host, host_matches

PROXY_VARIABLES: tuple[str, ...] = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""Both spellings: curl reads only lowercase `http_proxy`, others prefer uppercase."""

NO_PROXY_VARIABLES: tuple[str, ...] = ("NO_PROXY", "no_proxy")

CA_BUNDLE_VARIABLES: Mapping[str, str] = {
    # Each of these replaces the reader's trust store, so it gets the combined bundle. Where each is documented:
    # OpenSSL's default file, read by Python ssl/urllib/httpx, curl (OpenSSL builds), Ruby, uv, Rust native-tls, and
    # by Go on Linux (https://pkg.go.dev/crypto/x509#SystemCertPool) and .NET on Linux (it loads OpenSSL's defaults:
    # https://learn.microsoft.com/dotnet/core/compatibility/cryptography/5.0/default-cipher-suites-for-tls-on-linux).
    "SSL_CERT_FILE": "OpenSSL default (Python ssl/urllib/httpx, Go, curl, Ruby, .NET on Linux, uv)",
    # https://requests.readthedocs.io/en/latest/user/advanced/#ssl-cert-verification
    "REQUESTS_CA_BUNDLE": "Python requests (ignores SSL_CERT_FILE)",
    # https://curl.se/docs/sslcerts.html
    "CURL_CA_BUNDLE": "curl, and requests as a fallback",
    # https://git-scm.com/docs/git-config#Documentation/git-config.txt-httpsslCAInfo
    "GIT_SSL_CAINFO": "git over https",
    # https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-envvars.html
    "AWS_CA_BUNDLE": "botocore / AWS CLI / AWS SDKs",
    # https://pip.pypa.io/en/stable/topics/configuration/#environment-variables (PIP_<OPTION> for --cert)
    "PIP_CERT": "pip",
    # https://github.com/httplib2/httplib2/blob/master/python3/httplib2/certs.py
    "HTTPLIB2_CA_CERTS": "httplib2 (Google API clients)",
    # https://github.com/grpc/grpc/blob/master/doc/environment_variables.md
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": "gRPC core",
    # https://doc.rust-lang.org/cargo/reference/config.html#httpcainfo
    "CARGO_HTTP_CAINFO": "cargo",
    # https://nix.dev/manual/nix/latest/command-ref/env-common.html#env-NIX_SSL_CERT_FILE
    "NIX_SSL_CERT_FILE": "nix",
    # https://docs.deno.com/runtime/reference/env_variables/ (DENO_CERT)
    "DENO_CERT": "Deno",
    # https://cloud.google.com/sdk/gcloud/reference/config/set (core/custom_ca_certs_file)
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": "gcloud",
    # https://docs.npmjs.com/cli/v10/using-npm/config#cafile; environment `npm_config_*` outranks every npmrc
    # (https://docs.npmjs.com/cli/v10/using-npm/config#environment-variables), so a user's `cafile=` is overridden.
    # pnpm and Yarn 1 read the same variable.
    "npm_config_cafile": "npm, pnpm, Yarn 1",
    # https://yarnpkg.com/configuration/yarnrc#httpsCaFilePath (Yarn 4; YARN_<SETTING> from the environment)
    "YARN_HTTPS_CA_FILE_PATH": "Yarn 4",
    # Yarn 2 and 3 called the same setting caFilePath (renamed in Yarn 4's changelog)
    "YARN_CA_FILE_PATH": "Yarn 2/3",
    # https://getcomposer.org/doc/03-cli.md#composer-cafile
    "COMPOSER_CAFILE": "Composer",
    # https://docs.conda.io/projects/conda/en/latest/user-guide/configuration/settings.html#ssl-verify
    # (ssl_verify may be a CA bundle path; CONDA_<KEY> from the environment)
    "CONDA_SSL_VERIFY": "conda",
}
"""CA variables and who reads them. Node adds `NODE_EXTRA_CA_CERTS` to its own store; Java gets a truststore via
`JAVA_TOOL_OPTIONS` (see `java_truststore`)."""

JAVA_TRUSTSTORE_PASSWORD = "changeit"
"""The JDK's own default for `cacerts`; the store holds public certificates only, so this guards nothing secret."""

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


@dataclass(frozen=True)
class NoProxyPlan:
    """What the child's NO_PROXY holds, and which entries were left out and why (for `run` to say)."""

    entries: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    """(entry, reason) for each entry of the user's NO_PROXY or `--no-proxy-for` that was not kept."""


def no_proxy_plan(
    base: Mapping[str, str],
    *,
    audited_hosts: Iterable[str] = (),
    no_proxy_for: Iterable[str] = (),
    bypass_loopback: bool = True,
) -> NoProxyPlan:
    """The hosts the child may reach without the proxy: loopback only, plus what the user names explicitly.

    A user's NO_PROXY exists for their own reasons (an intranet host), but in `run` it would let any entry skip the
    audit (`NO_PROXY=host run -- curl http://host/`), so only its loopback entries stay. Hosts the user really
    needs direct are given with `--no-proxy-for HOST` (`no_proxy_for`); even those are refused when they cover a
    telemetry host: one of `audited_hosts`, a catalogued collector, or a name that says telemetry. `*` never stays.
    """
    from telemetry_audit.endpoints import TELEMETRY_HOSTS, host_says_telemetry  # the catalogue: only when needed

    audited = [canonical_host(host) for host in audited_hosts if host.strip()]
    telemetry_names = audited + _catalogue_names()
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []

    def telemetry_reason(entry: str) -> str | None:
        if entry.strip() == "*":
            return "`*` would send every host around the audit"
        covered = next((host for host in telemetry_names if _no_proxy_covers(entry, host)), None)
        if covered is not None:
            return f"covers the telemetry host {covered}"
        name = _entry_name(entry)
        if name and "/" not in name and (host_matches(name, TELEMETRY_HOSTS) or host_says_telemetry(name)):
            return f"{name} is a telemetry host"
        return None

    for name in NO_PROXY_VARIABLES:
        for entry in re.split(r"[\s,]+", base.get(name, "")):
            if not entry or entry in kept:
                continue
            reason = telemetry_reason(entry)
            if reason is None and not _is_loopback_entry(entry):
                reason = f"not loopback (give `--no-proxy-for {entry}` to send it direct)"
            if reason is None:
                kept.append(entry)
            elif (entry, reason) not in dropped:
                dropped.append((entry, reason))
    if bypass_loopback:
        kept.extend(host for host in LOOPBACK_HOSTS if host not in kept)
    for raw in no_proxy_for:
        entry = raw.strip()
        if not entry or entry in kept:
            continue
        reason = telemetry_reason(entry)
        if reason is None:
            kept.append(entry)
        else:
            dropped.append((entry, reason))
    return NoProxyPlan(tuple(kept), tuple(dropped))


def child_environment(
    base: Mapping[str, str],
    *,
    proxy_url: str,
    ca_cert_path: str,
    ca_bundle_path: str | None = None,
    preload_path: str | None = None,
    no_proxy_for: Iterable[str] = (),
    audited_hosts: Iterable[str] = (),
    bypass_loopback: bool = True,
    java_truststore: str | None = None,
) -> dict[str, str]:
    """Return a copy of `base` that routes the child's HTTP(S) through `proxy_url` and trusts its CA.

    `ca_cert_path` is the proxy's CA certificate (added to Node's store); `ca_bundle_path` is the combined bundle
    from `combined_ca_bundle()` for variables that replace the trust store (defaults to `ca_cert_path`, which
    breaks verified direct connections). `preload_path`, when given, is appended to NODE_OPTIONS as `--require`.
    `java_truststore` (from `java_truststore()`) is handed to every JVM through JAVA_TOOL_OPTIONS together with the
    proxy, which Java does not read from the environment.

    NO_PROXY is `no_proxy_plan()`'s: the user's loopback entries, the loopback hosts (unless `bypass_loopback` is
    false), the `no_proxy_for` hosts that are not telemetry, then the proxy's own address. Pure: reads nothing but
    its arguments (and the package's catalogue).
    """
    scheme = urlsplit(proxy_url).scheme
    if scheme != "http" or not urlsplit(proxy_url).hostname:
        raise ValueError(f"proxy_url must be an http:// URL with a host, got {proxy_url!r}")
    bundle = ca_bundle_path or ca_cert_path
    env = dict(base)

    for name in PROXY_VARIABLES:
        env[name] = proxy_url
    plan = no_proxy_plan(base, audited_hosts=audited_hosts, no_proxy_for=no_proxy_for,
                         bypass_loopback=bypass_loopback)
    bypass = list(plan.entries)
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
    if java_truststore is not None:
        env["JAVA_TOOL_OPTIONS"] = java_tool_options(
            base.get("JAVA_TOOL_OPTIONS", ""), truststore=java_truststore, proxy_url=proxy_url,
            non_proxy_hosts=plan.entries,
        )
    return env


def java_tool_options(existing: str, *, truststore: str, proxy_url: str, non_proxy_hosts: Iterable[str]) -> str:
    """`existing` JAVA_TOOL_OPTIONS plus our truststore and proxy as system properties (ours last, so they win).

    Properties: https://docs.oracle.com/en/java/javase/17/security/java-secure-socket-extension-jsse-reference-guide.html
    (javax.net.ssl.trustStore*) and
    https://docs.oracle.com/en/java/javase/17/docs/api/java.base/java/net/doc-files/net-properties.html (proxies);
    the variable: https://docs.oracle.com/en/java/javase/17/troubleshoot/environment-variables-and-system-properties.html
    """
    parts = urlsplit(proxy_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    hosts = "|".join(dict.fromkeys(_java_non_proxy(entry) for entry in non_proxy_hosts if _java_non_proxy(entry)))
    options = [
        f"-Djavax.net.ssl.trustStore={_java_quote(truststore)}",
        f"-Djavax.net.ssl.trustStorePassword={JAVA_TRUSTSTORE_PASSWORD}",
        f"-Dhttp.proxyHost={host}", f"-Dhttp.proxyPort={port}",
        f"-Dhttps.proxyHost={host}", f"-Dhttps.proxyPort={port}",
        f"-Dhttp.nonProxyHosts={_java_quote(hosts)}" if hosts else "-Dhttp.nonProxyHosts=",
    ]
    kept = " ".join(option for option in existing.split() if not option.startswith(_JAVA_OURS))
    return " ".join([kept, *options]).strip()


_JAVA_OURS = ("-Djavax.net.ssl.trustStore=", "-Djavax.net.ssl.trustStorePassword=", "-Dhttp.proxyHost=",
              "-Dhttp.proxyPort=", "-Dhttps.proxyHost=", "-Dhttps.proxyPort=", "-Dhttp.nonProxyHosts=")


def _java_non_proxy(entry: str) -> str:
    """A NO_PROXY entry in `http.nonProxyHosts` syntax (`*.example.com`, `[::1]`); '' for CIDR ranges."""
    name = _entry_name(entry)
    if not name or "/" in name:
        return ""
    if ":" in name:
        return f"[{name}]"
    return "*." + name if entry.strip().lstrip("*").startswith(".") else name


def _java_quote(value: str) -> str:
    """JAVA_TOOL_OPTIONS splits on white space; the JVM honours double quotes around an option's value."""
    return f'"{value}"' if re.search(r"\s", value) else value


def java_truststore(
    ca_cert_path: str,
    cache_dir: str,
    *,
    keytool: str | None = None,
    cacerts: str | None = None,
    timeout: float = 60.0,
) -> str | None:
    """A truststore with the JDK's own CAs (`cacerts`) plus the proxy CA, built once with `keytool` and cached.

    Returns the path, or None when Java cannot be served (no `keytool` on PATH, no `cacerts` beside it): then Java
    is left alone and a Java client that reaches the proxy shows up as a failed TLS handshake. Raises RuntimeError
    with keytool's complaint when keytool fails. The file name is a hash of both inputs, so a new CA or a JDK update
    builds a new store while every run before reuses the old one (a JVM start costs about half a second).
    """
    keytool = keytool or shutil.which("keytool")
    if keytool is None or not os.access(keytool, os.X_OK):
        return None
    if cacerts is None:
        candidate = Path(os.path.realpath(keytool)).parent.parent / "lib" / "security" / "cacerts"
        cacerts = str(candidate) if candidate.is_file() else None
    if cacerts is None or not os.path.isfile(cacerts):
        return None
    ca_pem = Path(ca_cert_path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ValueError(f"{ca_cert_path} is not a PEM certificate")
    digest = hashlib.sha256(ca_pem + b"\0" + Path(cacerts).read_bytes()).hexdigest()[:16]
    out = Path(cache_dir) / f"java-truststore-{digest}.jks"
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".java-truststore-", dir=out.parent)
    os.close(fd)
    try:
        shutil.copyfile(cacerts, temporary)
        result = subprocess.run(
            [keytool, "-importcert", "-noprompt", "-trustcacerts", "-alias", "telemetry-audit-ca",
             "-file", ca_cert_path, "-keystore", temporary, "-storepass", JAVA_TRUSTSTORE_PASSWORD],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip()
            raise RuntimeError(f"keytool could not build the Java truststore from {cacerts}: {reason}")
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return str(out)


def _catalogue_names() -> list[str]:
    """Catalogue host patterns a NO_PROXY entry could cover, as names (`*.x.com` as `x.com`; inner globs skipped)."""
    from telemetry_audit.endpoints import TELEMETRY_HOSTS

    names = [host[2:] if host.startswith("*.") else host for host in TELEMETRY_HOSTS]
    return [canonical_host(name) for name in names if "*" not in name]


def _entry_name(entry: str) -> str:
    """The host part of a NO_PROXY entry: no port, brackets, leading `*` or `.`."""
    entry = entry.strip().lower()
    if entry.startswith("[") and "]" in entry:
        entry = entry[1 : entry.index("]")]
    elif entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    return entry.lstrip("*").lstrip(".").rstrip(".")


def _is_loopback_entry(entry: str) -> bool:
    """`localhost`, `*.localhost`, 127.0.0.0/8 and ::1, as a name, an address or a range inside them."""
    name = _entry_name(entry)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        if "/" in name:
            network = ipaddress.ip_network(name, strict=False)
            return network.network_address.is_loopback and network.broadcast_address.is_loopback
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
