"""Shared fixtures: paths to test data and the shared/ material beside the project; the planted-secret sweep."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"

PLANTED_SECRETS_NAME = "PLANTED_SECRETS"
"""A test module that sends secrets through the proxy lists them in this module attribute (a tuple of strings).
At the end of the session no file written under the tests' temporary directories (audit logs, reports, stores,
flow files, proxy output) may hold one of them in clear: see `no_planted_secret_in_clear`."""
_SWEEP_CHUNK = 1 << 20


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def captures_dir() -> Path:
    return DATA / "captures"


def planted_secrets(session: pytest.Session) -> set[str]:
    """The secrets the modules of this session's tests declared (`PLANTED_SECRETS`)."""
    modules = {item.module for item in session.items if isinstance(item, pytest.Function) and item.module}
    return {secret for module in modules for secret in getattr(module, PLANTED_SECRETS_NAME, ()) if secret}


def files_holding(root: Path, secrets: set[str]) -> list[tuple[Path, str]]:
    """(file, secret) for every regular file under `root` holding a secret in clear (as sent, or lower/upper case:
    host names are case-insensitive). Read in chunks with an overlap, so large logs and stores are covered."""
    needles = {variant.encode(): secret for secret in secrets
               for variant in (secret, secret.lower(), secret.upper())}
    overlap = max((len(needle) for needle in needles), default=0)
    found: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with path.open("rb") as stream:
                tail = b""
                while chunk := stream.read(_SWEEP_CHUNK):
                    window = tail + chunk
                    hits = {secret for needle, secret in needles.items() if needle in window}
                    if hits:
                        found += [(path, secret) for secret in sorted(hits)]
                        break
                    tail = window[-overlap:] if overlap else b""
        except OSError:
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def private_seal_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sealed runs remember the seal probe's verdict (`sandbox.probe`): in the session's own directory, not in the
    home of whoever runs the tests (a test that studies the cache sets its own)."""
    from telemetry_audit.sandbox.probe import CACHE_VARIABLE

    if CACHE_VARIABLE in os.environ:
        yield
        return
    os.environ[CACHE_VARIABLE] = str(tmp_path_factory.mktemp("seal-probe-cache"))
    try:
        yield
    finally:
        os.environ.pop(CACHE_VARIABLE, None)


@pytest.fixture(scope="session", autouse=True)
def no_planted_secret_in_clear(request: pytest.FixtureRequest,
                               tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole session: grep every file the tests wrote under their temporary directories for the planted
    secrets, and fail if one is there in clear (the audit log, reports, stores and flows must hold masks only)."""
    yield
    secrets = planted_secrets(request.session)
    if not secrets:
        return
    leaks = files_holding(tmp_path_factory.getbasetemp(), secrets)
    if leaks:
        lines = [f"  {path}: {secret[:4]}…" for path, secret in leaks[:50]]
        pytest.fail("planted secrets found in clear in files the tests wrote:\n" + "\n".join(lines), pytrace=False)
