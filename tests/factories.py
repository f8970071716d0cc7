"""Factory helpers for tests: plain requests, like mitmproxy's tflow()."""

from __future__ import annotations

import json
from typing import Any

from telemetry_audit.model import Request


def json_request(
    body: Any,
    url: str = "https://api.segment.io/v1/track",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Request:
    """A JSON telemetry POST with `body` serialised compactly."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return Request.from_url(method, url, all_headers, json.dumps(body).encode())


def raw_request(
    body: bytes,
    url: str = "https://api.segment.io/v1/track",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Request:
    return Request.from_url(method, url, headers or {}, body)
