"""Shared helpers: a running collector, inspection queries and the real captures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from telemetry_audit.collectors.server import CollectorServer
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import DecodedRequest, decode_request
from telemetry_audit.model import Request

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "captures"


@pytest.fixture
def server() -> Iterator[CollectorServer]:
    with CollectorServer(EventStore()) as srv:
        yield srv


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
