"""Read recorded requests for `check`: JSON captures, HAR files, mitmproxy flow files and raw bodies.

Inputs are files, directories (read recursively) or `-` (standard input), recognised by their
content: an input that is none of these is an error naming it, unless `--url` says it is a raw body.
Flow files (and HAR files mitmproxy reads correctly) go through mitmproxy's own `FlowReader`, which
the CLI hands in as `InputReaders` (this module stays free of mitmproxy).

A JSON capture is the format of ../shared/wire/captures/: `method`, `path`,
`headers` (pairs or a mapping), optional `scheme`/`host`/`port`, and the body
as `body_json`, `body` (text) or `body_base64`; a sibling `<name>.body` file,
when present, holds the exact bytes and wins over `body_json`.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
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


FlowFileReader = Callable[[bytes, str], list[Request]]
"""Reads a `.mitm` flow dump or a HAR file with mitmproxy (`telemetry_audit.proxy.flowfile.read_flow_file`)."""
HarPicker = Callable[[dict[str, Any]], bool]
"""True when a HAR must be read by our own reader (`telemetry_audit.proxy.flowfile.wants_own_har_reader`)."""

STDIN = "-"
FLOW_SUFFIXES = (".mitm", ".flow", ".flows", ".dump")
"""mitmproxy flow dumps (`mitmdump -w`, mitmweb's export)."""
INPUT_SUFFIXES = (".json", ".har", *FLOW_SUFFIXES)
"""What `check` picks up inside a directory (a capture's sibling `.body` file is read with its `.json`)."""


@dataclass(frozen=True)
class InputReaders:
    """How inputs that need mitmproxy are read; the CLI passes the adapter's functions, tests may too."""

    flow_file: FlowFileReader | None = None
    own_har: HarPicker | None = None


def expand_inputs(paths: Sequence[str]) -> list[str]:
    """Files named on the command line, directories expanded recursively (sorted, hidden entries skipped)."""
    out: list[str] = []
    for path in paths:
        if path != STDIN and Path(path).is_dir():
            found = sorted(
                str(p) for p in Path(path).rglob("*")
                if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise CaptureError(f"{path}: no capture, HAR or flow file in this directory "
                                   f"({', '.join(INPUT_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(path)
    return out


def load_inputs(
    paths: Sequence[str],
    *,
    raw_url: str | None = None,
    raw_method: str = "POST",
    readers: InputReaders = InputReaders(),
    stdin: BinaryIO | None = None,
) -> list[tuple[str, Request]]:
    """(source, request) for every request in `paths`: files, directories (recursively) and `-` (stdin)."""
    out: list[tuple[str, Request]] = []
    for path in expand_inputs(paths):
        if path == STDIN:
            content = (stdin or sys.stdin.buffer).read()
            out.extend(("<stdin>", r) for r in parse_input(content, "<stdin>", "", raw_url=raw_url,
                                                            raw_method=raw_method, readers=readers))
        else:
            out.extend((path, r) for r in load_requests(path, raw_url=raw_url, raw_method=raw_method,
                                                        readers=readers))
    return out


def load_requests(
    path: str, *, raw_url: str | None = None, raw_method: str = "POST", readers: InputReaders = InputReaders()
) -> list[Request]:
    """Every request in the input file at `path`."""
    file = Path(path)
    try:
        content = file.read_bytes()
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from None
    sibling = file.with_suffix(".body") if file.suffix.lower() == ".json" else None
    raw_body = sibling.read_bytes() if sibling is not None and sibling.is_file() else None
    return parse_input(content, path, file.suffix.lower(), raw_url=raw_url, raw_method=raw_method,
                       readers=readers, raw_body=raw_body)


def _looks_like_flow_dump(content: bytes) -> bool:
    """A tnetstring (`123:...`) is how mitmproxy dumps flows."""
    head = content[:12]
    colon = head.find(b":")
    return colon > 0 and head[:colon].isdigit()


def parse_input(
    content: bytes,
    source: str,
    suffix: str,
    *,
    raw_url: str | None = None,
    raw_method: str = "POST",
    readers: InputReaders = InputReaders(),
    raw_body: bytes | None = None,
) -> list[Request]:
    """The requests in one input's bytes, recognised by content (and by `suffix` for flow dumps).

    With `raw_url`, anything that is not a capture, HAR or flow dump is one raw body POSTed there;
    without it, such an input is an error that names it.
    """
    if raw_url is not None and not urlsplit(raw_url).scheme:
        raise CaptureError(f"--url {raw_url!r} is not an absolute URL")
    if suffix in FLOW_SUFFIXES or _looks_like_flow_dump(content):
        if readers.flow_file is None:
            raise CaptureError(f"{source}: mitmproxy flow files need mitmproxy (no flow reader given)")
        try:
            return readers.flow_file(content, source)
        except ValueError as e:
            if suffix in FLOW_SUFFIXES or raw_url is None:
                raise CaptureError(str(e)) from None
    stripped = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if stripped in (b"{", b"[") or suffix in (".json", ".har"):
        try:
            data = json.loads(content.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as e:
            if raw_url is None or suffix == ".har":
                raise CaptureError(f"{source}: invalid JSON: {e}") from None
            data = None
        if isinstance(data, dict) and "log" in data:
            if readers.flow_file is not None and readers.own_har is not None and not readers.own_har(data):
                try:
                    return readers.flow_file(content, source)
                except ValueError as e:
                    raise CaptureError(str(e)) from None
            return list(_har_requests(data, source))
        if isinstance(data, dict) and ("method" in data or "url" in data or "path" in data):
            return [request_from_capture(data, source, raw_body)]
        if isinstance(data, list) and data and all(isinstance(d, dict) and ("method" in d or "url" in d)
                                                   for d in data):
            return [request_from_capture(d, f"{source}[{i}]") for i, d in enumerate(data)]
    if raw_url is None:
        raise CaptureError(
            f"{source}: not a JSON capture, HAR or mitmproxy flow file; to audit it as a raw request body, "
            "say where it was sent with --url URL (and --method)"
        )
    content_type = "application/json" if suffix in (".json", ".ndjson") else ""
    headers = (("Content-Type", content_type),) if content_type else ()
    return [Request.from_url(raw_method, raw_url, headers, content)]
