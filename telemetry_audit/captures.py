"""Read recorded requests for `check`: JSON captures, HAR files and raw body files.

A JSON capture is the format of ../shared/wire/captures/: `method`, `path`,
`headers` (pairs or a mapping), optional `scheme`/`host`/`port`, and the body
as `body_json`, `body` (text) or `body_base64`; a sibling `<name>.body` file,
when present, holds the exact bytes and wins over `body_json`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from telemetry_audit.model import Request


class CaptureError(ValueError):
    """An input file is not a capture we can read; the message names the file."""


def _headers(raw: Any, source: str) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, dict):
        return tuple((str(k), str(v)) for k, v in raw.items())
    if isinstance(raw, list):
        pairs = []
        for item in raw:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append((str(item[0]), str(item[1])))
            elif isinstance(item, dict) and "name" in item:
                pairs.append((str(item["name"]), str(item.get("value", ""))))
            else:
                raise CaptureError(f"{source}: headers must be [name, value] pairs")
        return tuple(pairs)
    if raw is None:
        return ()
    raise CaptureError(f"{source}: headers must be a list of pairs or a mapping")


def request_from_capture(data: dict[str, Any], source: str, raw_body: bytes | None = None) -> Request:
    """A `Request` from one JSON capture object."""
    headers = _headers(data.get("headers"), source)
    if raw_body is not None:
        body = raw_body
    elif "body_base64" in data:
        body = base64.b64decode(data["body_base64"])
    elif "body_json" in data:
        body = json.dumps(data["body_json"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    elif isinstance(data.get("body"), str):
        body = data["body"].encode("utf-8")
    else:
        body = b""
    path = str(data.get("path") or "/")
    if "url" in data or path.startswith(("http://", "https://")):
        # `url`, or an absolute-form request line as a client sends it to a proxy.
        return Request.from_url(str(data.get("method", "GET")), str(data.get("url") or path), headers, body)
    host_header = next((v for k, v in headers if k.lower() in ("host", ":authority")), "")
    host = str(data.get("host") or host_header.rsplit(":", 1)[0] or "localhost")
    scheme = str(data.get("scheme") or "http")
    port = int(data.get("port") or (host_header.rsplit(":", 1)[1] if ":" in host_header else 0) or
               (443 if scheme == "https" else 80))
    netloc = f"{host}:{port}"
    request = Request.from_url(str(data.get("method", "POST")), f"{scheme}://{netloc}{path}", headers, body)
    return request


def _har_requests(data: dict[str, Any], source: str) -> Iterator[Request]:
    entries = data.get("log", {}).get("entries")
    if not isinstance(entries, list):
        raise CaptureError(f"{source}: not a HAR file (no log.entries)")
    for index, entry in enumerate(entries):
        raw = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(raw, dict) or "url" not in raw:
            raise CaptureError(f"{source}: entry {index} has no request.url")
        post = raw.get("postData") or {}
        text = post.get("text", "")
        if post.get("encoding") == "base64":
            body = base64.b64decode(text)
        else:
            body = str(text).encode("utf-8")
        headers = _headers(raw.get("headers", []), source)
        if post.get("mimeType") and not any(k.lower() == "content-type" for k, _ in headers):
            headers += (("Content-Type", str(post["mimeType"])),)
        yield Request.from_url(str(raw.get("method", "GET")), str(raw["url"]), headers, body)


def load_requests(path: str, *, raw_url: str = "http://capture.invalid/", raw_method: str = "POST") -> list[Request]:
    """Every request in the input file at `path`."""
    file = Path(path)
    try:
        content = file.read_bytes()
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from None
    if file.suffix.lower() in (".json", ".har"):
        try:
            data = json.loads(content)
        except ValueError as e:
            raise CaptureError(f"{path}: invalid JSON: {e}") from None
        if isinstance(data, dict) and "log" in data:
            return list(_har_requests(data, path))
        if isinstance(data, dict) and ("method" in data or "url" in data or "path" in data):
            sibling = file.with_suffix(".body")
            raw_body = sibling.read_bytes() if sibling.is_file() else None
            return [request_from_capture(data, path, raw_body)]
        if isinstance(data, list) and all(isinstance(d, dict) and ("method" in d or "url" in d) for d in data):
            return [request_from_capture(d, f"{path}[{i}]") for i, d in enumerate(data)]
    # Anything else is a raw body; content type from the name when it says.
    content_type = "application/json" if file.suffix.lower() in (".json", ".ndjson") else ""
    headers = (("Content-Type", content_type),) if content_type else ()
    parts = urlsplit(raw_url)
    if not parts.scheme:
        raise CaptureError(f"--url {raw_url!r} is not an absolute URL")
    return [Request.from_url(raw_method, raw_url, headers, content)]
