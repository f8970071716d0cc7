"""The proxy's certificate authority: created once per user, private key readable by the owner only."""

from __future__ import annotations

import os

CA_CERT_NAME = "mitmproxy-ca-cert.pem"
CA_KEY_NAME = "mitmproxy-ca.pem"


def default_confdir() -> str:
    """Where the per-user CA lives: `$TELEMETRY_AUDIT_HOME` or `~/.telemetry-audit`."""
    return os.environ.get("TELEMETRY_AUDIT_HOME") or os.path.join(os.path.expanduser("~"), ".telemetry-audit")


def ensure_ca(confdir: str) -> str:
    """Create the CA if it does not exist yet; return the certificate path.

    Importing mitmproxy's certificate code costs a few hundred milliseconds, so it happens only the first
    time (every later `run` finds both files and returns at once).
    """
    cert = os.path.join(confdir, CA_CERT_NAME)
    if os.path.exists(cert) and os.path.exists(os.path.join(confdir, CA_KEY_NAME)):
        return cert
    from mitmproxy import certs

    os.makedirs(confdir, mode=0o700, exist_ok=True)
    certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    for name in os.listdir(confdir):
        if name.endswith(".pem") and "cert" not in name or name.endswith(".p12"):
            os.chmod(os.path.join(confdir, name), 0o600)
    return cert
