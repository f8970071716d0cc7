"""The lean proxy process's start-up pieces: its own CA read once, without OpenSSL's RSA key check."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs
from mitmproxy.test import taddons

from telemetry_audit.proxy.ca import ensure_ca
from telemetry_audit.proxy.server import load_own_ca, own_ca_tls_config


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("confdir")
    ensure_ca(str(folder))
    return folder


def test_own_ca_is_the_store_mitmproxy_reads(confdir: Path) -> None:
    ours = load_own_ca(str(confdir), 2048)
    stock = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    assert ours.default_ca == stock.default_ca
    assert ours.default_privatekey.private_numbers() == stock.default_privatekey.private_numbers()
    assert ours.default_chain_file == stock.default_chain_file
    issued = ours.get_cert("api.segment.io", ["api.segment.io"])
    assert issued.cert.issuer == stock.default_ca.subject


def test_own_ca_is_created_when_missing(tmp_path: Path) -> None:
    store = load_own_ca(str(tmp_path / "new"), 2048)
    assert (tmp_path / "new" / "mitmproxy-ca.pem").is_file()
    assert store.default_ca == certs.CertStore.from_store(tmp_path / "new", "mitmproxy", 2048).default_ca


def test_tls_addon_reads_the_ca_once_and_keeps_it_when_running(confdir: Path) -> None:
    tls = own_ca_tls_config()
    with taddons.context(tls) as context:
        context.configure(tls, confdir=str(confdir))
        first = tls.certstore
        assert first.default_ca == load_own_ca(str(confdir), 2048).default_ca
        tls.running()  # the stock addon reads the CA again here
        assert tls.certstore is first
        context.configure(tls, tls_ecdh_curve_client="secp384r1")  # other options: the store stays
        assert tls.certstore is first


def test_an_encrypted_key_goes_the_stock_way(tmp_path: Path, confdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The stock addon's error for a key it cannot read, not one of ours."""
    raw = (confdir / "mitmproxy-ca.pem").read_bytes()
    key = serialization.load_pem_private_key(raw, None)
    cert = raw[raw.index(b"-----BEGIN CERTIFICATE-----"):]
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "mitmproxy-ca.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret")) + cert)
    with pytest.raises(TypeError):
        load_own_ca(str(locked), 2048)
    tls = own_ca_tls_config()
    with taddons.context(tls) as context:
        context.configure(tls, confdir=str(locked))
    assert tls.certstore is None
    assert "Password was not given but private key is encrypted" in caplog.text


def test_the_proxy_process_imports_no_report_writer_nor_validator() -> None:
    """What the proxy child imports before it listens is most of every run's start-up: protobuf comes with the
    first OTLP protobuf message, multiprocessing with the first audit large enough for a worker, the YAML reader
    with the first policy file read (a child handed its policy loaded reads none)."""
    heavy = ["rich", "jsonschema", "http.server", "telemetry_audit.report.html", "telemetry_audit.report.sarif",
             "telemetry_audit.report.table", "telemetry_audit.cli", "telemetry_audit.session",
             "mitmproxy.addons.onboarding", "google.protobuf", "opentelemetry", "multiprocessing",
             "concurrent.futures.process", "yaml", "telemetry_audit.policy.loader"]
    probe = ("import sys\nimport telemetry_audit.proxy.server as server\nserver.skip_default_addons_import()\n"
             f"server.import_proxy_modules()\nprint('\\n'.join(n for n in {heavy!r} if n in sys.modules))")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_a_quiet_proxy_still_writes_the_addons_errors_to_standard_error() -> None:
    """They end in the session's `proxy.stderr`; warnings and other loggers' errors stay out."""
    probe = ("import logging\nfrom telemetry_audit.proxy import server\nserver.report_own_errors()\n"
             "logging.getLogger().addHandler(logging.NullHandler())\n"  # mitmproxy's, which passes records on
             "log = logging.getLogger('telemetry_audit.proxy.addon')\nlog.warning('only a warning')\n"
             "logging.getLogger('mitmproxy.proxy').error('not ours')\n"
             "try:\n    raise OSError('disk gone')\nexcept OSError:\n    log.exception('acting failed')\n")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stderr.startswith("telemetry-audit: acting failed\nTraceback")
    assert "OSError: disk gone" in result.stderr
    assert "warning" not in result.stderr and "not ours" not in result.stderr


@pytest.mark.parametrize(("stdin", "message"), [
    ("", "no configuration on standard input"),
    ("  \n", "no configuration on standard input"),
    ("{not json", "the configuration on standard input is not JSON"),
    ("[1, 2]", "the configuration on standard input must be a JSON object"),
    ('{"policy": "not base64 !"}', "the policy in the configuration cannot be read"),
])
def test_the_proxy_process_refuses_a_missing_or_bad_configuration(stdin: str, message: str) -> None:
    """Spawned before its configuration is written, it must never serve on defaults if none arrives."""
    result = subprocess.run([sys.executable, "-P", "-m", "telemetry_audit.proxy.server"], input=stdin,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_the_proxy_process_builds_messages_without_the_field_check_and_the_same_state() -> None:
    """`skip_message_type_checks`: the check is gone (a wrong type goes through, where the stock class refuses
    it), and a request parsed off the wire and an answer have the same state as with the check."""
    probe = """
import sys
from mitmproxy import http
from mitmproxy.net.http.http1 import read

raw = b"POST http://api.segment.io/v1/track HTTP/1.1\\r\\nHost: api.segment.io\\r\\nContent-Length: 2\\r\\n\\r\\n"
def states():
    request = read.read_request_head(raw.split(b"\\r\\n")[:-2])
    response = http.Response.make(200, b"{}", {"Content-Type": "application/json"})
    return [request.get_state(), {k: v for k, v in response.get_state().items() if not k.startswith("timestamp")}]
checked = states()
try:
    http.Response(b"HTTP/1.1", 200, b"OK", http.Headers(), b"", None, "soon", 0.0)
except TypeError:
    print("checked refuses")
import telemetry_audit.proxy.server as server
server.skip_message_type_checks()
server.skip_message_type_checks()  # idempotent
http.Response(b"HTTP/1.1", 200, b"OK", http.Headers(), b"", None, "soon", 0.0)  # a str time: not checked now
print("unchecked accepts")
unchecked = states()
for a, b in zip(checked, unchecked):
    a.pop("timestamp_start", None); b.pop("timestamp_start", None)
print("same" if checked == unchecked else f"differs {checked} {unchecked}")
"""
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["checked refuses", "unchecked accepts", "same"]


_DEFERRED_STATE = """
import json, sys
import telemetry_audit.proxy.server as server

def state():
    deferred = {name: type(sys.modules.get(name)).__name__ for name in server.DEFERRED_MODULES}
    # What each one would have brought along (pyasn1, attrs, idna: service_identity; the C YAML parser: ruamel).
    along = [name for name in ("pyasn1", "attr", "idna", "_ruamel_yaml") if name in sys.modules]
    return {"deferred": deferred, "along": along, "modules": len(sys.modules)}

announce = server.ReadyAnnouncer.running

def running(self):
    announce(self)
    import telemetry_audit.proxy.sealed, telemetry_audit.proxy.synthetic_dns  # what tun mode adds
    with open(sys.argv[1], "w") as stream:
        json.dump(state(), stream)

server.ReadyAnnouncer.running = running
server.main([])
"""


def test_a_started_proxy_has_not_loaded_the_modules_it_defers(tmp_path: Path, confdir: Path) -> None:
    """The whole start-up of a real proxy child (imports, configuration, listening) leaves each deferred module a
    stand-in: if a mitmproxy or aioquic version used one at import or start-up time, it would be loaded here."""
    from telemetry_audit.proxy.server import DEFERRED_MODULES
    from telemetry_audit.proxy.settings import ProxySettings

    config = {"listen_host": "127.0.0.1", "listen_port": 0, "confdir": str(confdir),
              "options": ProxySettings(log=str(tmp_path / "audit.jsonl")).to_options()}
    state_file, stderr = tmp_path / "state.json", tmp_path / "proxy.stderr"
    with stderr.open("wb") as errors:
        child = subprocess.Popen([sys.executable, "-P", "-c", _DEFERRED_STATE, str(state_file)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=errors)
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps(config).encode())
        child.stdin.close()
        assert json.loads(child.stdout.readline() or "{}").get("port"), stderr.read_text()
        deadline = time.monotonic() + 60
        while not state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
    finally:
        child.terminate()
        child.wait(60)
        child.stdout.close()
    assert state["deferred"] == dict.fromkeys(DEFERRED_MODULES, "_DeferredModule")
    assert state["along"] == []


_DEFERRED_USE = """
import sys
import telemetry_audit.proxy.server as server
print(server.defer_unused_imports())
print(server.defer_unused_imports())  # already stand-ins: nothing more
server.skip_default_addons_import()
server.import_proxy_modules()
import aioquic.tls, mitmproxy.net.tls, mitmproxy.optmanager
print(type(sys.modules["certifi"]).__name__)
# Read through the names the importers hold, as their functions do:
print(mitmproxy.net.tls.certifi.where().endswith(".pem"))
print(type(sys.modules["certifi"]).__name__)
print(mitmproxy.optmanager.ruamel.yaml.YAML(typ="safe", pure=True).load("a: [1, 2]"))
from service_identity.cryptography import verify_certificate_hostname
import service_identity
print(aioquic.tls.service_identity.VerificationError is service_identity.VerificationError)
print(aioquic.tls.service_identity.cryptography.verify_certificate_hostname is verify_certificate_hostname)
"""


def test_a_deferred_module_loads_when_first_read_and_works_as_itself() -> None:
    result = subprocess.run([sys.executable, "-P", "-c", _DEFERRED_USE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['service_identity', 'certifi', 'ruamel.yaml']", "[]", "_DeferredModule",
                                          "True", "module", "{'a': [1, 2]}", "True", "True"]


@pytest.mark.parametrize(("name", "why"), [
    ("json", "already imported"),
    ("telemetry_audit_no_such_module", "not installed"),
    ("re2._re2", "an extension module, not Python source"),
])
def test_only_unimported_python_source_modules_are_deferred(name: str, why: str) -> None:
    probe = ("import json, sys\nimport telemetry_audit.proxy.server as server\n"
             f"print(server.defer_unused_imports([{name!r}]), type(sys.modules.get({name!r})).__name__)")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "[]", why
    assert result.stdout.split()[1] != "_DeferredModule"


def test_a_deferred_module_that_fails_to_import_says_so_and_stays_deferred(tmp_path: Path) -> None:
    (tmp_path / "taudit_broken_module.py").write_text("raise ImportError('broken on purpose')\n")
    probe = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport telemetry_audit.proxy.server as server\n"
             "print(server.defer_unused_imports(['taudit_broken_module']))\nimport taudit_broken_module as m\n"
             "for _ in range(2):\n    try:\n        m.anything\n    except ImportError as e:\n        print(e)\n"
             "print(type(sys.modules['taudit_broken_module']).__name__)")
    result = subprocess.run([sys.executable, "-P", "-c", probe, str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['taudit_broken_module']", "broken on purpose", "broken on purpose",
                                          "_DeferredModule"]


def test_a_deferred_package_whose_submodules_read_it_while_it_imports_loads_once(tmp_path: Path) -> None:
    """`import pkg.other as other` inside the package's own import goes through the parent's attribute, still the
    stand-in: it must get the module being imported (not wait for itself, nor import it a second time)."""
    package = tmp_path / "taudit_deferred_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("LOADS = []\nLOADS.append(1)\nfrom taudit_deferred_pkg import sub\n")
    (package / "sub.py").write_text("import taudit_deferred_pkg.other as other\nVALUE = other.X\n")
    (package / "other.py").write_text("X = 42\n")
    probe = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport telemetry_audit.proxy.server as server\n"
             "print(server.defer_unused_imports(['taudit_deferred_pkg']))\nimport taudit_deferred_pkg as p\n"
             "print(p.sub.VALUE, p.LOADS, sys.modules['taudit_deferred_pkg'].LOADS is p.LOADS)")
    result = subprocess.run([sys.executable, "-P", "-c", probe, str(package.parent)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['taudit_deferred_pkg']", "42 [1] True"]


def test_the_proxy_process_reads_plain_option_values_uncopied_and_still_copies_the_others() -> None:
    """`skip_copying_plain_option_values`: the same values as mitmproxy's own reads; a list is still a copy."""
    probe = """
from mitmproxy import optmanager, options
import telemetry_audit.proxy.server as server
opts = options.Options()
opts.update(listen_host="127.0.0.1", ignore_hosts=["a"])
names = ["listen_host", "listen_port", "ssl_insecure", "ignore_hosts", "mode", "confdir", "http2"]
before = [getattr(opts, n) for n in names]
stock = optmanager._Option.current
server.skip_copying_plain_option_values()
server.skip_copying_plain_option_values()  # idempotent
print(optmanager._Option.current is not stock, [getattr(opts, n) for n in names] == before)
opts.ignore_hosts.append("changed")
print(opts.ignore_hosts == ["a"], opts._options["listen_host"].current() is opts._options["listen_host"].value)
"""
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["True True", "True True"]
