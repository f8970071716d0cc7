"""Google Analytics: GA4 Measurement Protocol (`/mp/collect`) and Universal Analytics (`/collect`, `/batch`).

Both answer success whatever they receive (GA4 204, UA a 1x1 GIF) and drop
invalid hits silently; only GA4's `/debug/mp/collect` says what is wrong.
The emulator answers the same way and records the dropped hits as bad.
"""

from __future__ import annotations

import re
from typing import Any

from telemetry_audit.collectors import _decoding
from telemetry_audit.collectors.base import (
    TRANSPARENT_GIF,
    CollectorResponse,
    Event,
    HostAndPathCollector,
    as_str,
    host_matches,
    iso_timestamp,
    json_response,
)
from telemetry_audit.model import Request

_GA_HOSTS = ("www.google-analytics.com", "ssl.google-analytics.com", "region1.google-analytics.com")
_GA4_PATHS = ("/mp/collect", "/debug/mp/collect")
_UA_PATHS = ("/collect", "/r/collect", "/j/collect", "/batch")
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
MAX_GA4_EVENTS = 25
MAX_UA_BATCH = 20


class Ga4Collector(HostAndPathCollector):
    """GA4 Measurement Protocol: JSON `{client_id, user_id, events: [{name, params}]}`."""

    name = "ga4"
    tool = "google-analytics"
    hosts: tuple[str, ...] = _GA_HOSTS

    def matches_path(self, request: Request) -> bool:
        return request.path in _GA4_PATHS

    def handle(self, request: Request) -> CollectorResponse:
        params = _decoding.query(request)
        problems: list[tuple[str, str]] = []
        events: list[Event] = []
        document: Any = None
        try:
            document = _decoding.json_loads(_decoding.body(request))
        except ValueError as e:
            problems.append(("", f"Unable to parse Measurement Protocol JSON payload. {e}"))
        if request.method != "POST":
            problems.append(("", f"{request.method} is not supported, use POST"))
        if not (params.get("measurement_id") or params.get("firebase_app_id")):
            problems.append(("measurement_id", "Measurement ID or Firebase app ID is required."))
        if not params.get("api_secret"):
            problems.append(("api_secret", "api_secret is required."))
        if isinstance(document, dict):
            if not (document.get("client_id") or document.get("app_instance_id")):
                problems.append(("client_id", "client_id or app_instance_id is required."))
            items = document.get("events")
            if not isinstance(items, list) or not items:
                problems.append(("events", "events must be a non-empty array."))
                items = []
            elif len(items) > MAX_GA4_EVENTS:
                problems.append(("events", f"A maximum of {MAX_GA4_EVENTS} events can be specified per request."))
            for index, item in enumerate(items):
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str) or not _EVENT_NAME.match(name):
                    problems.append((f"events[{index}].name", f"Event name {name!r} is invalid."))
                elif name.startswith(_RESERVED_PREFIXES):
                    problems.append((f"events[{index}].name", f"Event name {name!r} is reserved."))
                else:
                    events.append(self._event(params, document, item))
        elif document is not None:
            problems.append(("", "payload is not a JSON object"))

        reason = "; ".join(f"{path}: {text}" if path else text for path, text in problems) or None
        if request.path == "/debug/mp/collect":
            messages = [
                {"fieldPath": path, "description": text, "validationCode": "VALUE_INVALID"} for path, text in problems
            ]
            return json_response(200, {"validationMessages": messages}, events if not reason else [], reason)
        # GA4 drops an invalid request without saying so.
        return CollectorResponse(status=204, events=tuple(events) if not reason else (), bad_reason=reason)

    def _event(self, params: dict[str, str], document: dict[str, Any], item: dict[str, Any]) -> Event:
        context = {k: v for k, v in document.items() if k not in ("events", "client_id", "user_id", "app_instance_id")}
        context["measurement_id"] = params.get("measurement_id") or params.get("firebase_app_id")
        event_params = item.get("params")
        return Event(
            collector=self.name,
            tool=self.tool,
            name=str(item["name"]),
            distinct_id=as_str(document.get("user_id")),
            anonymous_id=as_str(document.get("client_id") or document.get("app_instance_id")),
            timestamp=iso_timestamp(item.get("timestamp_micros") or document.get("timestamp_micros")),
            properties=dict(event_params) if isinstance(event_params, dict) else {},
            context=context,
            raw=item,
        )


class UniversalAnalyticsCollector(HostAndPathCollector):
    """Universal Analytics Measurement Protocol v1: form-encoded hits, one per line in `/batch`."""

    name = "universal-analytics"
    tool = "google-analytics"
    hosts: tuple[str, ...] = _GA_HOSTS

    def matches(self, request: Request) -> bool:
        return host_matches(request.host, self.hosts) and request.path in _UA_PATHS

    def matches_path(self, request: Request) -> bool:
        if request.path == "/batch":
            # Shared with Amplitude: UA's batch is form lines (`v=1&tid=...`), never JSON.
            try:
                data = _decoding.body(request)
            except ValueError:
                return False
            return data.lstrip()[:2] == b"v=" or b"&tid=" in data[:2000]
        return request.path in _UA_PATHS

    def handle(self, request: Request) -> CollectorResponse:
        hits: list[dict[str, str]] = []
        problems: list[str] = []
        if request.method == "GET":
            hits.append(_decoding.query(request))
        else:
            try:
                data = _decoding.body(request)
                lines = data.splitlines() if request.path == "/batch" else [data]
                if len(lines) > MAX_UA_BATCH:
                    problems.append(f"batch holds {len(lines)} hits, at most {MAX_UA_BATCH} are allowed")
                hits.extend(_decoding.form(line) for line in lines if line.strip())
            except ValueError as e:
                problems.append(str(e))
        events: list[Event] = []
        for index, hit in enumerate(hits):
            missing = [k for k in ("v", "tid", "t") if not hit.get(k)]
            if not (hit.get("cid") or hit.get("uid")):
                missing.append("cid or uid")
            if missing:
                problems.append(f"hit {index}: missing {', '.join(missing)}")
                continue
            kind = hit["t"]
            events.append(
                Event(
                    collector=self.name,
                    tool=self.tool,
                    name=(hit.get("ea") or kind) if kind == "event" else kind,
                    distinct_id=as_str(hit.get("uid")),
                    anonymous_id=as_str(hit.get("cid")),
                    properties={k: v for k, v in hit.items() if k not in ("v", "tid", "cid", "uid")},
                    context={"tid": hit["tid"], "v": hit["v"], "hit_type": kind},
                    raw=dict(hit),
                )
            )
        # UA always answers with its pixel; invalid hits vanish.
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", "image/gif"), ("Cache-Control", "no-cache, no-store, must-revalidate")),
            body=TRANSPARENT_GIF,
            events=tuple(events),
            bad_reason="; ".join(problems) or None,
        )
