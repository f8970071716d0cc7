"""Mixpanel ingestion: `/track`, `/engage`, `/groups`, `/import`.

Clients send the JSON (object or array) in a `data=` field, base64-encoded or
not, as a form body or a GET query; `/import` also takes a raw JSON or NDJSON
body. Mixpanel answers `1`/`0`, or `{"status": 1, "error": null}` with `verbose=1`.
"""

from __future__ import annotations

import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    iso_timestamp,
    json_response,
)
from telemetry_audit.model import Request

_PATH = re.compile(r"^/(track|engage|groups|import)/?$")
_OPERATIONS = ("$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete")


def _documents(request: Request, params: dict[str, str]) -> list[Any]:
    if request.method == "GET":
        if "data" not in params:
            raise ValueError("data, missing or empty")
        found = _decoding.json_or_base64(params["data"])
    else:
        data = _decoding.body(request)
        if request.content_type == "application/x-www-form-urlencoded" or data.startswith(b"data="):
            fields = _decoding.form(data)
            params.update({k: v for k, v in fields.items() if k != "data"})
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

    def matches_path(self, request: Request) -> bool:
        return _PATH.match(request.path) is not None

    def handle(self, request: Request) -> CollectorResponse:
        match = _PATH.match(request.path)
        endpoint = match.group(1) if match else "track"
        params = _decoding.query(request)
        try:
            messages = _documents(request, params)
        except ValueError as e:
            return self._answer(endpoint, params, [], f"Unable to parse data: {e}")

        events: list[Event] = []
        problems: list[str] = []
        for index, message in enumerate(messages):
            problem = self._problem(endpoint, message)
            if problem:
                problems.append(f"[{index}] {problem}")
            else:
                events.append(self._event(endpoint, message))
        if problems:
            # Mixpanel rejects the whole request when any message is invalid.
            return self._answer(endpoint, params, [], "; ".join(problems))
        return self._answer(endpoint, params, events, None)

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
            if endpoint == "import" and ("time" not in props or "distinct_id" not in props):
                return "'properties.time' and 'properties.distinct_id' are required"
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
        self, endpoint: str, params: dict[str, str], events: list[Event], reason: str | None
    ) -> CollectorResponse:
        if endpoint == "import" and params.get("verbose") != "1":
            if reason:
                return json_response(400, {"code": 400, "error": reason, "status": 0}, events, reason)
            return json_response(200, {"code": 200, "num_records_imported": len(events), "status": 1}, events)
        if params.get("verbose") == "1":
            if reason:
                return json_response(400, {"status": 0, "error": reason}, events, reason)
            return json_response(200, {"status": 1, "error": None}, events)
        # Without verbose=1 Mixpanel always answers 200 and says 0 for failure.
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", "text/plain"),),
            body=b"0" if reason else b"1",
            events=tuple(events),
            bad_reason=reason,
        )
