"""Sealed-run fixtures: whether this machine can seal, a host loopback service, and an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from telemetry_audit.sandbox.probe import probe_seal
from tests.sandbox.sealing import LoopbackHandler, User, hidden_prefix


@pytest.fixture(scope="session")
def sealable() -> None:
    support = probe_seal()
    if not support.ok:
        pytest.skip(f"cannot seal here: {support.reason}")


@pytest.fixture(scope="session")
def loopback_service() -> Iterator[int]:
    """A service on the host's 127.0.0.1 (a stand-in for a local database or LocalStack): its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoopbackHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def unprivileged_user() -> Iterator[User]:
    """A throwaway user without privileges (created with useradd, removed afterwards); needs root."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("creating an unprivileged user needs root, useradd and setpriv")
    name = f"taudit-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid, hidden_prefix(os.path.realpath(sys.executable)))
    finally:
        subprocess.run(["userdel", name], check=False)


