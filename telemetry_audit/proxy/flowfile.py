"""Read mitmproxy's own files for `check`: `.mitm` flow dumps and HAR, through `mitmproxy.io.FlowReader`.

The only module outside the live proxy that imports mitmproxy to read files; `captures.py` stays pure
and receives `read_flow_file` from the CLI. mitmproxy 11 and 12 read HAR with the same `FlowReader`
(`mitmproxy.io.har`), but it needs each entry's `startedDateTime`, `time` and `response`, and it does not
undo `postData.encoding: base64`; `wants_own_har_reader` says when `captures.py`'s reader is used instead.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from mitmproxy import exceptions, http
from mitmproxy.io import FlowReader

from telemetry_audit.model import Request
from telemetry_audit.proxy.addon import request_from_flow


class FlowFileError(ValueError):
    """A file mitmproxy cannot read as flows; the message names the file."""


def read_flow_file(content: bytes, source: str) -> list[Request]:
    """The requests of every HTTP flow in a `.mitm` dump or HAR file (other flow types are skipped)."""
    try:
        flows = list(FlowReader(io.BytesIO(content)).stream())
    except exceptions.FlowReadException as e:
        raise FlowFileError(f"{source}: not a mitmproxy flow file or HAR: {e}") from None
    return [request_from_flow(f) for f in flows if isinstance(f, http.HTTPFlow)]


_HAR_ENTRY_KEYS = ("startedDateTime", "time", "request", "response")


def wants_own_har_reader(har: Mapping[str, Any]) -> bool:
    """True when mitmproxy's HAR reader would reject or misread this HAR (see the module docstring)."""
    entries = har.get("log", {}).get("entries") if isinstance(har.get("log"), Mapping) else None
    if not isinstance(entries, list):
        return True
    for entry in entries:
        if not isinstance(entry, Mapping) or any(key not in entry for key in _HAR_ENTRY_KEYS):
            return True
        request = entry.get("request")
        if not isinstance(request, Mapping) or "httpVersion" not in request:
            return True
        post = request.get("postData")
        if isinstance(post, Mapping) and post.get("encoding") == "base64":
            return True
        response = entry.get("response")
        if not isinstance(response, Mapping) or not {"status", "httpVersion", "content", "headers"} <= set(response):
            return True
    return False
