"""PostHog capture and feature-flag endpoints, also SST v3/v4's `telemetry.ion.sst.dev`.

Bodies come as plain JSON (server SDKs, posthog-go), gzip (content-encoding,
or posthog-js' `?compression=gzip-js` with a bare gzip body, undone by the
decoder), a form `data=` field holding base64 JSON (`?compression=base64`,
older posthog-js) or LZ-string (`?compression=lz64`, posthog-js before 1.x).

Sources: posthog-python (`request.py`: `/batch/` and `/i/v0/ai/batch/` capture,
`/flags/?v=4`, errors read from `{"detail"}`; `consumer.py`: a 4xx other than
408/429 is not retried, events are capped at 900 KiB and AI events at 8 MiB
"to keep the sum under the 20MiB server body cap"; `client.py`: local
evaluation polls `GET /flags/definitions?token=...` with a Bearer personal or
secret key and reads `flags`, `group_type_mapping`, `cohorts`); PostHog's
capture service answers 401 without a project key, 400 `invalid_payload` when
an event lacks `event` or `distinct_id`, 413 above 20 MB per request or 2 MB
per event (AI events on `/i/v0/ai/batch/` only the request limit).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_dict,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.collectors.lzstring import decompress_from_base64
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

_CAPTURE = re.compile(r"^/(batch|capture|e|track|engage|i/v0/e|i/v0/ai/batch)/?$")
_FLAGS = re.compile(r"^/(decide|flags|flags/definitions|api/feature_flag/local_evaluation)/?$")
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_EVENT_BYTES = 2 * 1024 * 1024
_KNOWN_PROJECT_KEYS = {
    # Public project keys compiled into tools, so path-only traffic is still attributed.
    "phc_M0b2lW4smpsGIufiTBZ22USKwCy0fyqljMOGufJc79p": "sst",
}


def _error(status: int, code: str, detail: str) -> CollectorResponse:
    kind = "authentication_error" if status == 401 else "server_error" if status >= 500 else "validation_error"
    return json_response(status, {"type": kind, "code": code, "detail": detail, "attr": None}, bad_reason=detail)


def _payload(decoded: DecodedRequest, request: Request) -> tuple[Any, int | None]:
    """The decoded JSON document, whichever of PostHog's encodings carried it, and a length its JSON text is at
    most (None when unknown: LZ-string expands, and a `GET` carries it in the query)."""
    params = _decoding.query(request)
    if request.method == "GET":
        if "data" not in params:
            raise ValueError("no data parameter")
        return _decoding.json_or_base64(params["data"]), None
    data = _decoding.body(decoded)  # content codings and posthog-js' bare gzip already undone
    if len(data) > MAX_REQUEST_BYTES:
        raise _decoding.BodyTooLarge(f"request body of {len(data)} bytes exceeds {MAX_REQUEST_BYTES}")
    compression = params.get("compression", "").lower()
    if not data.strip():
        raise ValueError("empty body")
    # Form and base64 encodings only shrink when undone: the JSON text is at most the body's length.
    if request.content_type == "application/x-www-form-urlencoded" or data.startswith(b"data="):
        fields = _decoding.form(data)
        if "data" not in fields:
            raise ValueError("form body has no data field")
        if compression == "lz64":
            return _decoding.json_loads(decompress_from_base64(fields["data"])), None
        return _decoding.json_or_base64(fields["data"]), len(data)
    if compression == "lz64":
        return _decoding.json_loads(decompress_from_base64(data.decode("ascii", "replace"))), None
    try:
        return _decoding.json_loads(data), len(data)
    except ValueError:
        if compression == "base64":
            return _decoding.json_loads(_decoding.b64decode(data)), len(data)
        raise


def _api_key(document: Any, first: Any) -> str | None:
    for holder in (document, first):
        if isinstance(holder, dict):
            for key in ("api_key", "token", "$token"):
                if holder.get(key):
                    return str(holder[key])
            props = holder.get("properties")
            if isinstance(props, dict) and props.get("token"):
                return str(props["token"])
    return None


class PostHogCollector(HostAndPathCollector):
    """`/batch/`, `/capture/`, `/e/`, `/i/v0/e/` (answer `{"status": 1}`) and `/decide/`, `/flags/`."""

    name = "posthog"
    tool = "posthog"
    hosts: tuple[str, ...] = (
        "app.posthog.com",
        "us.posthog.com",
        "eu.posthog.com",
        "us.i.posthog.com",
        "eu.i.posthog.com",
        "*.i.posthog.com",
    )

    def owns_path(self, path: str, method: str) -> bool:
        return bool(_CAPTURE.match(path) or _FLAGS.match(path))

    def matches_path(self, decoded: DecodedRequest) -> bool:
        path = request_of(decoded).path
        # `/batch` without the slash is Amplitude's or Universal Analytics'; the slash form is PostHog's.
        # PostHog also takes Mixpanel's `/track` and `/engage`, but by path alone those are Mixpanel's.
        if path == "/batch" or path.rstrip("/") in ("/track", "/engage"):
            return False
        return self.owns_path(path, "")

    def server_error(self, decoded: DecodedRequest, message: str) -> CollectorResponse:
        response = _error(500, "server_error", "A server error occurred.")
        return CollectorResponse(response.status, response.headers, response.body, bad_reason=message)

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.method not in ("POST", "GET"):
            return _error(405, "method_not_allowed", f"Method {request.method} not allowed")
        flags = _FLAGS.match(request.path)
        if flags and flags.group(1) in ("flags/definitions", "api/feature_flag/local_evaluation"):
            return self._definitions(request)
        try:
            document, source_bytes = _payload(decoded, request)
        except _decoding.BodyTooLarge as e:
            return _error(413, "payload_too_large", f"Payload too large: {e}")
        except ValueError as e:
            return _error(400, "invalid_payload", f"Malformed request data: {e}")
        if flags:
            return self._flags(flags.group(1), document)

        if isinstance(document, dict) and isinstance(document.get("batch"), list):
            items = document["batch"]
        elif isinstance(document, dict):
            items = [document]
        elif isinstance(document, list):
            items = document
        else:
            return _error(400, "invalid_payload", "Malformed request data: payload is not an object or array")
        if not _api_key(document, items[0] if items else None):
            return _error(
                401,
                "invalid_api_key",
                "API key not provided. You can find your project API key in PostHog project settings.",
            )

        # AI events (LLM inputs and outputs) may be larger: posthog-python allows 8 MiB each there.
        ai_batch = request.path.rstrip("/") == "/i/v0/ai/batch"
        events: list[Event] = []
        problems: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(f"batch[{index}]: event is not an object")
                continue
            properties = as_dict(item.get("properties"))
            if not item.get("event"):
                problems.append(f"batch[{index}]: All events must have the event name field")
                continue
            distinct_id = item.get("distinct_id") or item.get("$distinct_id") or properties.get("distinct_id")
            if not as_str(distinct_id):
                problems.append(f"batch[{index}]: All events must have the distinct_id field")
                continue
            if not ai_batch and _decoding.json_size_over(item, MAX_EVENT_BYTES, source_bytes):
                return _error(413, "payload_too_large", f"Payload too large: event {index} exceeds 2 MB")
            events.append(self._event(document, item, properties, distinct_id))
        if problems:
            # PostHog rejects the whole request when any event is invalid.
            detail = "Invalid payload: " + "; ".join(problems)
            return _error(400, "invalid_payload", detail)
        return json_response(200, {"status": 1}, events)

    def _event(self, document: Any, item: dict[str, Any], properties: dict[str, Any], distinct_id: Any) -> Event:
        context: dict[str, Any] = {}
        for name in ("library", "library_version", "type", "uuid"):
            if name in item:
                context[name] = item[name]
        for name in ("$lib", "$lib_version", "$session_id", "$device_id", "$os", "$browser"):
            if name in properties:
                context[name] = properties[name]
        key = _api_key(document, item)
        if key:
            context["api_key"] = key
        return Event(
            collector=self.name,
            tool=_KNOWN_PROJECT_KEYS.get(key or "", self.tool),
            name=str(item["event"]),
            distinct_id=as_str(distinct_id),
            anonymous_id=as_str(properties.get("$anon_distinct_id") or properties.get("$device_id")),
            timestamp=iso_timestamp(item.get("timestamp") or properties.get("$time")),
            properties=dict(properties),
            context=context,
            raw=item,
        )

    def _definitions(self, request: Request) -> CollectorResponse:
        """Local evaluation's flag definitions: none (needs a personal or secret key as Bearer)."""
        if not request.header("authorization").lower().startswith("bearer "):
            return _error(401, "not_authenticated", "Authentication credentials were not provided.")
        params = _decoding.query(request)
        event = Event(collector=self.name, tool=self.tool, name="$flags_definitions",
                      context={"api_key": params.get("token")}, raw={})
        return json_response(200, {"flags": [], "group_type_mapping": {}, "cohorts": {}}, [event])

    def _flags(self, kind: str, document: Any) -> CollectorResponse:
        if not isinstance(document, dict):
            return _error(400, "invalid_payload", "Malformed request data: flags request is not an object")
        if not _api_key(document, None):
            return _error(
                401,
                "invalid_api_key",
                "API key not provided. You can find your project API key in PostHog project settings.",
            )
        request_id = hashlib.sha256(repr(sorted(document.items())).encode()).hexdigest()[:32]
        answer: dict[str, Any] = {
            "flags": {},
            "featureFlags": {},
            "featureFlagPayloads": {},
            "errorsWhileComputingFlags": False,
            "requestId": request_id,
        }
        if kind == "decide":
            answer.update(
                config={"enable_collect_everything": False},
                supportedCompression=["gzip", "gzip-js"],
                sessionRecording=False,
                isAuthenticated=False,
                toolbarParams={},
            )
        event = Event(
            collector=self.name,
            tool=self.tool,
            name=f"${kind}",
            distinct_id=as_str(document.get("distinct_id")),
            properties={k: v for k, v in document.items() if k not in ("api_key", "token")},
            context={"api_key": _api_key(document, None)},
            raw=document,
        )
        return json_response(200, answer, [event])


class SstIonCollector(PostHogCollector):
    """SST v3/v4 (Go): posthog-go pointed at `telemetry.ion.sst.dev`."""

    name = "sst-ion"
    tool = "sst"
    hosts: tuple[str, ...] = ("telemetry.ion.sst.dev",)
