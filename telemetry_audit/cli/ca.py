"""`telemetry-audit ca`: where the proxy CA is and how to trust it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from telemetry_audit.cli.common import EXIT_CLEAN
from telemetry_audit.proxy.ca import CA_KEY_NAME, default_confdir, ensure_ca


def register(commands: Any) -> argparse.ArgumentParser:
    ca = commands.add_parser("ca", help="print the proxy CA's path and how to trust it")
    ca.add_argument("--confdir", default=default_confdir())
    ca.add_argument("--path-only", action="store_true", help="print only the certificate path")
    ca.set_defaults(handler=cmd_ca)
    return ca


def cmd_ca(args: argparse.Namespace) -> int:
    from telemetry_audit.session.child_env import combined_ca_bundle

    cert = ensure_ca(args.confdir)
    if args.path_only:
        print(cert)
        return EXIT_CLEAN
    # Variables that replace a client's trust store need the system CAs too, or direct connections fail.
    bundle = combined_ca_bundle(cert, args.confdir)
    print(f"CA certificate: {cert}")
    print(f"CA bundle:      {bundle} (system CAs + this CA)")
    print(f"Private key:    {os.path.join(args.confdir, CA_KEY_NAME)} (owner-only)")
    print("`telemetry-audit run` trusts it for the command it runs; nothing to install for that.")
    print("To trust it yourself:")
    print(f"  curl / Python / Go: export SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle}")
    print(f"  Node:               export NODE_EXTRA_CA_CERTS={cert}")
    print(f"  git:                export GIT_SSL_CAINFO={bundle}")
    print(f"  Debian/Ubuntu:      sudo cp {cert} /usr/local/share/ca-certificates/telemetry-audit.crt "
          "&& sudo update-ca-certificates")
    print(f"  macOS:              sudo security add-trusted-cert -d -r trustRoot "
          f"-k /Library/Keychains/System.keychain {cert}")
    return EXIT_CLEAN
