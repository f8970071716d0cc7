"""Google Analytics: GA4 Measurement Protocol (`/mp/collect`), gtag's `/g/collect`, Universal Analytics.

All answer success whatever they receive (GA4 204, UA a 1x1 GIF) and drop
invalid hits silently; only GA4's `/debug/mp/collect` says what is wrong, with
`validationMessages` whose `validationCode` is one of Google's documented
codes. The emulator answers the same way and records the dropped hits as bad.

Sources: developers.google.com/analytics/devguides/collection/protocol/ga4
("Send events": at most 25 events per request, 25 parameters per event, event
names of 40 characters, parameter values of 100; post body under 130 kB;
"Validate events": VALUE_INVALID, VALUE_REQUIRED, NAME_INVALID, NAME_RESERVED,
VALUE_OUT_OF_BOUNDS, EXCEEDED_MAX_ENTITIES, NAME_DUPLICATED). `/g/collect` is
what gtag.js sends from browsers (and Electron apps): shared parameters in the
query (`v=2`, `tid`, `cid`, `uid`), one event per body line (or in the query)
with `en`, `ep.*`/`epn.*` parameters and `up.*` user properties.
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
    Rejection,
    as_str,
    iso_timestamp,
    json_response,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

_GA_HOSTS = (
    "www.google-analytics.com",
    "ssl.google-analytics.com",
    "region1.google-analytics.com",
    "*.google-analytics.com",
    "analytics.google.com",
)
_GA4_PATHS = ("/mp/collect", "/debug/mp/collect")
_GTAG_PATH = "/g/collect"
_UA_PATHS = ("/collect", "/r/collect", "/j/collect", "/batch")
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
MAX_GA4_EVENTS = 25
MAX_GA4_PARAMS = 25
MAX_GA4_PARAM_VALUE = 100
MAX_GA4_BODY_BYTES = 130 * 1024
MAX_UA_BATCH = 20


def _ga4_problems(item: Any, index: int) -> list[tuple[str, str, str]]:
    """(field path, description, validation code) for one GA4 event."""
    where = f"events[{index}]"
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str) or not name:
        return [(f"{where}.name", "Event name is required.", "VALUE_REQUIRED")]
    if name.startswith(_RESERVED_PREFIXES):
        return [(f"{where}.name", f"Event name {name!r} is reserved.", "NAME_RESERVED")]
    if not _EVENT_NAME.match(name):
        return [(f"{where}.name", f"Event name {name!r} is invalid.", "NAME_INVALID")]
    params = item.get("params", {})
    if not isinstance(params, dict):
        return [(f"{where}.params", "params must be an object.", "VALUE_INVALID")]
    problems: list[tuple[str, str, str]] = []
    if len(params) > MAX_GA4_PARAMS:
        problems.append((f"{where}.params", f"At most {MAX_GA4_PARAMS} parameters per event.",
                         "EXCEEDED_MAX_ENTITIES"))
    for key, value in params.items():
        if not _EVENT_NAME.match(str(key)):
            problems.append((f"{where}.params.{key}", f"Parameter name {key!r} is invalid.", "NAME_INVALID"))
        elif isinstance(value, str) and len(value) > MAX_GA4_PARAM_VALUE:
            problems.append((f"{where}.params.{key}", f"Value is longer than {MAX_GA4_PARAM_VALUE} characters.",
                             "VALUE_OUT_OF_BOUNDS"))
    return problems


class Ga4Collector(HostAndPathCollector):
    """GA4 Measurement Protocol: JSON `{client_id, user_id, events: [{name, params}]}`."""

    name = "ga4"
    tool = "google-analytics"
    hosts: tuple[str, ...] = _GA_HOSTS

    def owns_path(self, path: str, method: str) -> bool:
        return path in _GA4_PATHS or path == _GTAG_PATH

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        if request.path == _GTAG_PATH:
            return self._gtag(decoded, request)
        params = _decoding.query(request)
        problems: list[tuple[str, str, str]] = []
        events: list[Event] = []
        document: Any = None
        try:
            data = _decoding.body(decoded)
            if len(data) > MAX_GA4_BODY_BYTES:
                problems.append(("", f"Post body exceeds {MAX_GA4_BODY_BYTES // 1024} kB.", "VALUE_OUT_OF_BOUNDS"))
            else:
                document = _decoding.json_loads(data)
        except ValueError as e:
            problems.append(("", f"Unable to parse Measurement Protocol JSON payload. {e}", "VALUE_INVALID"))
        if request.method != "POST":
            problems.append(("", f"{request.method} is not supported, use POST", "VALUE_INVALID"))
        if not (params.get("measurement_id") or params.get("firebase_app_id")):
            problems.append(("measurement_id", "Measurement ID or Firebase app ID is required.", "VALUE_REQUIRED"))
        if not params.get("api_secret"):
            problems.append(("api_secret", "api_secret is required.", "VALUE_REQUIRED"))
        if isinstance(document, dict):
            if not (document.get("client_id") or document.get("app_instance_id")):
                problems.append(("client_id", "client_id or app_instance_id is required.", "VALUE_REQUIRED"))
            items = document.get("events")
            if not isinstance(items, list) or not items:
                problems.append(("events", "events must be a non-empty array.", "VALUE_REQUIRED"))
                items = []
            elif len(items) > MAX_GA4_EVENTS:
                problems.append(("events", f"A maximum of {MAX_GA4_EVENTS} events can be specified per request.",
                                 "EXCEEDED_MAX_ENTITIES"))
            for index, item in enumerate(items):
                found = _ga4_problems(item, index)
                problems.extend(found)
                if not found:
                    events.append(self._event(params, document, item))
        elif document is not None:
            problems.append(("", "payload is not a JSON object", "VALUE_INVALID"))

        reason = "; ".join(f"{path}: {text}" if path else text for path, text, _ in problems) or None
        if request.path == "/debug/mp/collect":
            messages = [
                {"fieldPath": path, "description": text, "validationCode": code} for path, text, code in problems
            ]
            return json_response(200, {"validationMessages": messages}, events if not reason else [], reason)
        # GA4 drops an invalid request without saying so.
        return CollectorResponse(status=204, events=tuple(events) if not reason else (), bad_reason=reason)

    def _gtag(self, decoded: DecodedRequest, request: Request) -> CollectorResponse:
        """gtag.js: shared parameters in the query, one event per body line (or the query alone)."""
        shared = _decoding.query(request)
        lines: list[dict[str, str]] = []
        rejected: list[Rejection] = []
        try:
            data = _decoding.body(decoded)
            lines = [_decoding.form(line) for line in data.splitlines() if line.strip()]
        except ValueError as e:
            rejected.append(Rejection(f"unreadable body: {e}"))
        if not lines:
            lines = [{}]
        events: list[Event] = []
        for index, line in enumerate(lines):
            hit = {**shared, **line}
            missing = [k for k in ("v", "tid", "cid", "en") if not hit.get(k)]
            if missing:
                rejected.append(Rejection(f"hit {index}: missing {', '.join(missing)}", hit, hit.get("en")))
                continue
            properties: dict[str, Any] = {}
            for key, value in hit.items():
                if key.startswith("ep."):
                    properties[key[3:]] = value
                elif key.startswith("epn."):
                    try:
                        properties[key[4:]] = float(value)
                    except ValueError:
                        properties[key[4:]] = value
            user = {k[3:]: v for k, v in hit.items() if k.startswith(("up.", "upn."))}
            events.append(Event(
                collector=self.name,
                tool=self.tool,
                name=hit["en"],
                distinct_id=as_str(hit.get("uid")),
                anonymous_id=as_str(hit.get("cid")),
                timestamp=None,
                properties=properties,
                context={"tid": hit["tid"], "v": hit["v"], "user_properties": user,
                         **{k: hit[k] for k in ("dl", "dt", "dr", "ul", "sr", "sid") if k in hit}},
                raw=hit,
            ))
        reason = "; ".join(r.reason for r in rejected) or None
        return CollectorResponse(status=204, events=tuple(events), bad_reason=reason, rejected=tuple(rejected))

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

    def owns_path(self, path: str, method: str) -> bool:
        return path in _UA_PATHS

    def matches_path(self, decoded: DecodedRequest) -> bool:
        request = request_of(decoded)
        if request.path == "/batch":
            # Shared with Amplitude: UA's batch is form lines (`v=1&tid=...`), never JSON.
            try:
                data = _decoding.body(decoded)
            except ValueError:
                return False
            return data.lstrip()[:2] == b"v=" or b"&tid=" in data[:2000]
        return request.path in _UA_PATHS

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        hits: list[dict[str, str]] = []
        problems: list[str] = []
        if request.method == "GET":
            hits.append(_decoding.query(request))
        else:
            try:
                data = _decoding.body(decoded)
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
