"""Shared helpers: a running collector, inspection queries and the real captures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from telemetry_audit.decoders import DecodedRequest, decode_request
from telemetry_audit.model import Request
from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.session import ProxySession

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "captures"


class CollectorServer:
    """The standalone collector as `telemetry-audit collector` runs it: the proxy child in collector mode, by
    default recording each decision without acting on it (`--mode audit`), so emulators get what was sent."""

    def __init__(self, confdir: Path, store: str = "", listen: tuple[str, int] = ("127.0.0.1", 0),
                 mode: str = "audit", **settings: Any) -> None:
        chosen = ProxySettings(store=store, mode=mode, **settings)
        self.session = ProxySession.collector(chosen, listen=listen, confdir=str(confdir))

    @property
    def url(self) -> str:
        return self.session.url

    @property
    def port(self) -> int:
        return self.session.port

    def __enter__(self) -> CollectorServer:
        self.session.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


@pytest.fixture(scope="session")
def collector_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA the collectors of this test session share (made once: HTTPS through them uses it)."""
    from telemetry_audit.proxy.ca import ensure_ca

    confdir = tmp_path_factory.mktemp("collector-conf")
    ensure_ca(str(confdir))
    return confdir


@pytest.fixture(scope="session")
def shared_collector(collector_confdir: Path) -> Iterator[CollectorServer]:
    """One collector child for the whole test session (starting one costs about a second)."""
    with CollectorServer(collector_confdir) as srv:
        yield srv


@pytest.fixture
def server(shared_collector: CollectorServer) -> CollectorServer:
    """The shared collector with an empty store (through its own inspection API, as a CI step would)."""
    requests.get(f"{shared_collector.url}/micro/reset", timeout=10).raise_for_status()
    return shared_collector


def inspect(server: CollectorServer, kind: str = "all", **filters: str) -> Any:
    """What the inspection API says (through HTTP, like a user's CI step would ask): counts for `all`, for
    `good` and `bad` the events oldest first (the API answers newest first, as Snowplow Micro does)."""
    response = requests.get(f"{server.url}/micro/{kind}", params=filters, timeout=5)
    response.raise_for_status()
    result = response.json()
    return list(reversed(result)) if isinstance(result, list) else result


def good_events(server: CollectorServer, **filters: str) -> list[dict[str, Any]]:
    return [e["event"] for e in inspect(server, "good", **filters)]


def bad_reasons(server: CollectorServer, **filters: str) -> list[str]:
    return [e["reason"] for e in inspect(server, "bad", **filters)]


def load_capture(name: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, path, headers, body) of a real capture; `.body` files hold the exact bytes."""
    document = json.loads((CAPTURES / f"{name}.json").read_text())
    raw = CAPTURES / f"{name}.body"
    if raw.exists():
        body = raw.read_bytes()
    else:
        body = json.dumps(document["body_json"]).encode()
    headers = [(k, v) for k, v in document["headers"] if k.lower() not in ("content-length", "transfer-encoding")]
    return document["method"], document["path"], headers, body


def capture_request(name: str, url: str | None = None) -> Request:
    """A capture as a `Request`, sent to its recorded host (or to `url` when given)."""
    method, path, headers, body = load_capture(name)
    document = json.loads((CAPTURES / f"{name}.json").read_text())
    if url is None:
        if path.startswith("http"):
            url = path
        else:
            host = document.get("host") or dict((k.lower(), v) for k, v in headers).get("host", "127.0.0.1")
            url = f"{document.get('scheme', 'http')}://{host}{path}"
    return Request.from_url(method, url, headers, body)


def decoded(method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> DecodedRequest:
    """A request decoded once, as both adapters hand it to the dispatcher and the emulators."""
    return decode_request(Request.from_url(method, url, headers or {}, body))
