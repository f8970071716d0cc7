"""Mixpanel ingestion (`/track`, `/engage`, `/groups`, `/import`) and feature flags (`/flags`, `/decide`).

Clients send the JSON (object or array) in a `data=` field, base64-encoded or
not, as a form body or a GET query; `/import` also takes a raw JSON or NDJSON
body. Mixpanel answers `1`/`0`, or `{"status": 1, "error": null}` with `verbose=1`.

Sources: developer.mixpanel.com/reference (Ingestion API: "Track Events",
"Import Events", "Set Property"; "Feature Flags") and the official
mixpanel-python (`Consumer._write_request` posts `verbose=1` and raises
`MixpanelException` unless `status == 1`; `flags/remote_feature_flags.py` reads
`{"code", "flags": {...}}` from `GET /flags`, `flags/local_feature_flags.py`
`{"flags": [...]}` from `GET /flags/definitions`). What the emulator does:
- `/track`, `/engage`, `/groups` accept the valid messages of a batch and drop
  the others: `1` when any was accepted, else `0`; with `verbose=1` always
  HTTP 200, `{"status": 0, "error": ...}` when nothing was accepted.
- `/import` needs HTTP Basic auth (project secret or service account), else
  401; success is `{"code": 200, "num_records_imported": N, "status": "OK"}`;
  a batch with invalid records imports the valid ones and answers 400 with
  `failed_records` (index, field, message) and `num_records_imported`. The
  legacy form body mixpanel-python sends with `verbose=1` gets `"status": 1`.
- At most 2,000 events per request, 1 MB (`/track`) or 10 MB (`/import`) of
  uncompressed JSON, else 413.
- `/flags` and `/decide` answer "no flags" in the shape the SDKs parse.
"""

from __future__ import annotations

import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    Rejection,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

_PATH = re.compile(r"^/(track|engage|groups|import)/?$")
_FLAGS = re.compile(r"^/(flags|flags/definitions|decide)/?$")
_OPERATIONS = ("$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete")
MAX_EVENTS = 2000
MAX_TRACK_BYTES = 1024 * 1024
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class _TooLarge(ValueError):
    pass


def _documents(decoded: DecodedRequest, request: Request, params: dict[str, str], limit: int) -> list[Any]:
    if request.method == "GET":
        if "data" not in params:
            raise ValueError("data, missing or empty")
        found = _decoding.json_or_base64(params["data"])
    else:
        try:
            data = _decoding.body(decoded)
        except _decoding.BodyTooLarge as e:
            raise _TooLarge(str(e)) from None
        if len(data) > limit:
            raise _TooLarge(f"request body of {len(data)} bytes exceeds {limit} bytes")
        if request.content_type == "application/x-www-form-urlencoded" or data.startswith(b"data="):
            fields = _decoding.form(data)
            params.update({k: v for k, v in fields.items() if k != "data"})
            params["_form"] = "1"
            if not fields.get("data"):
                raise ValueError("data, missing or empty")
            found = _decoding.json_or_base64(fields["data"])
        elif request.content_type == "application/x-ndjson":
            found = _decoding.ndjson(data)
        else:
            found = _decoding.json_loads(data)
    return found if isinstance(found, list) else [found]


def _operation(message: dict[str, Any]) -> str | None:
    return next((op for op in _OPERATIONS if op in message), None)


class MixpanelCollector(HostAndPathCollector):
    """The Mixpanel ingestion API (`api.mixpanel.com`, `api-js`, EU and India residency hosts)."""

    name = "mixpanel"
    tool = "mixpanel"
    hosts: tuple[str, ...] = ("api.mixpanel.com", "api-js.mixpanel.com", "api-eu.mixpanel.com", "api-in.mixpanel.com")

    def owns_path(self, path: str, method: str) -> bool:
        return _PATH.match(path) is not None or _FLAGS.match(path) is not None

    def matches_path(self, decoded: DecodedRequest) -> bool:
        # By path alone `/flags` and `/decide` are PostHog's (it comes first); only the ingestion paths here.
        return _PATH.match(request_of(decoded).path) is not None

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        flags = _FLAGS.match(request.path)
        if flags:
            return self._flags(flags.group(1), request)
        match = _PATH.match(request.path)
        endpoint = match.group(1) if match else "track"
        params = _decoding.query(request)
        if endpoint == "import" and not request.header("authorization"):
            message = "Unauthorized, invalid project secret or service account: send HTTP Basic auth"
            return json_response(401, {"code": 401, "error": message, "status": "Unauthorized"}, bad_reason=message)
        limit = MAX_IMPORT_BYTES if endpoint == "import" else MAX_TRACK_BYTES
        try:
            messages = _documents(decoded, request, params, limit)
        except _TooLarge as e:
            return self._too_large(endpoint, params, str(e))
        except ValueError as e:
            return self._answer(endpoint, params, [], [Rejection(f"Unable to parse data: {e}")])
        if len(messages) > MAX_EVENTS:
            return self._too_large(endpoint, params, f"{len(messages)} events, at most {MAX_EVENTS} per request")

        events: list[Event] = []
        rejected: list[Rejection] = []
        for index, message in enumerate(messages):
            problem = self._problem(endpoint, message)
            if problem:
                name = as_str(message.get("event")) if isinstance(message, dict) else None
                rejected.append(Rejection(f"[{index}] {problem}", message, name))
            else:
                events.append(self._event(endpoint, message))
        return self._answer(endpoint, params, events, rejected)

    def _problem(self, endpoint: str, message: Any) -> str | None:
        if not isinstance(message, dict):
            return "message is not a JSON object"
        if endpoint in ("track", "import"):
            props = message.get("properties")
            if not message.get("event"):
                return "'event' must be a non-empty string"
            if not isinstance(props, dict):
                return "'properties' must be an object"
            if endpoint == "track" and not props.get("token"):
                return "token, missing or empty"
            if endpoint == "import" and "time" not in props:
                return "properties.time: 'properties.time' is required"
            if endpoint == "import" and "distinct_id" not in props:
                return "properties.distinct_id: 'properties.distinct_id' is required"
            return None
        if not message.get("$token"):
            return "$token, missing or empty"
        if _operation(message) is None:
            return "no profile operation ($set, $set_once, $add, $append, $union, $remove, $unset, $delete)"
        if endpoint == "engage" and "$distinct_id" not in message:
            return "$distinct_id, missing"
        if endpoint == "groups" and ("$group_key" not in message or "$group_id" not in message):
            return "$group_key and $group_id are required"
        return None

    def _event(self, endpoint: str, message: dict[str, Any]) -> Event:
        if endpoint in ("track", "import"):
            props = dict(message["properties"])
            return Event(
                collector=self.name,
                tool=self.tool,
                name=str(message["event"]),
                distinct_id=as_str(props.get("distinct_id") or props.get("$user_id")),
                anonymous_id=as_str(props.get("$device_id")),
                timestamp=iso_timestamp(props.get("time")),
                properties=props,
                context={"endpoint": endpoint, "token": props.get("token")},
                raw=message,
            )
        op = _operation(message) or ""
        value = message[op]
        context = {"endpoint": endpoint, "token": message.get("$token")}
        if endpoint == "groups":
            context.update(group_key=message.get("$group_key"), group_id=message.get("$group_id"))
        return Event(
            collector=self.name,
            tool=self.tool,
            name=op,
            distinct_id=as_str(message.get("$distinct_id")),
            timestamp=iso_timestamp(message.get("$time")),
            properties=dict(value) if isinstance(value, dict) else {"value": value},
            context=context,
            raw=message,
        )

    def _answer(
        self, endpoint: str, params: dict[str, str], events: list[Event], rejected: list[Rejection]
    ) -> CollectorResponse:
        reason = "; ".join(r.reason for r in rejected[:20]) or None
        if endpoint == "import":
            return self._import_answer(params, events, rejected, reason)
        if params.get("verbose") == "1":
            # Verbose errors are HTTP 200 too: the status field says it.
            body = {"status": 1 if events or not rejected else 0, "error": reason}
            answer = json_response(200, body, events, reason)
            return CollectorResponse(answer.status, answer.headers, answer.body, answer.events, reason, tuple(rejected))
        # Without verbose=1 Mixpanel always answers 200 and says 0 when nothing was accepted.
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", "text/plain"),),
            body=b"0" if rejected and not events else b"1",
            events=tuple(events),
            bad_reason=reason,
            rejected=tuple(rejected),
        )

    def _import_answer(
        self, params: dict[str, str], events: list[Event], rejected: list[Rejection], reason: str | None
    ) -> CollectorResponse:
        legacy = params.get("_form") == "1" and params.get("verbose") == "1"
        if not rejected:
            body: dict[str, Any] = {"code": 200, "num_records_imported": len(events), "status": "OK"}
            if legacy:
                body.update(status=1, error=None)
            answer = json_response(200, body, events)
        else:
            failed = []
            for rejection in rejected:
                index_text, _, message = rejection.reason.partition("] ")
                field, _, text = message.partition(": ") if message.startswith("properties.") else ("", "", message)
                failed.append({"index": int(index_text.lstrip("[")) if index_text.lstrip("[").isdigit() else 0,
                               "field": field, "message": text})
            body = {
                "code": 400,
                "error": "some data points in the request failed validation",
                "failed_records": failed,
                "num_records_imported": len(events),
                "status": 0 if legacy else "Bad Request",
            }
            answer = json_response(400, body, events, reason)
        return CollectorResponse(answer.status, answer.headers, answer.body, answer.events, reason, tuple(rejected))

    def _too_large(self, endpoint: str, params: dict[str, str], reason: str) -> CollectorResponse:
        if endpoint == "import":
            body: dict[str, Any] = {"code": 413, "error": reason, "status": "Request Entity Too Large"}
        else:
            body = {"status": 0, "error": reason}
        return json_response(413, body, bad_reason=reason)

    def _flags(self, kind: str, request: Request) -> CollectorResponse:
        """No flags, in the shape each SDK parses; the call itself is recorded as an event."""
        params = _decoding.query(request)
        if kind == "flags/definitions":
            body: dict[str, Any] = {"code": 200, "flags": []}
        elif kind == "flags":
            body = {"code": 200, "flags": {}}
        else:
            body = {"config": {"enable_collect_everything": False}, "notifications": [], "surveys": [],
                    "variants": [], "event_bindings": [], "flags": {}}
        event = Event(
            collector=self.name,
            tool=self.tool,
            name=f"${kind.replace('/', '_')}",
            properties={k: v for k, v in params.items() if k != "token"},
            context={"token": params.get("token"), "endpoint": kind},
        )
        return json_response(200, body, [event])
