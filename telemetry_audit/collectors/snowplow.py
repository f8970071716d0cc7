"""Snowplow's collector: `POST`/`GET /com.snowplowanalytics.snowplow/tp2`, the `GET /i` pixel, `/vendor/version`.

The real collector accepts every request (200) and leaves validation to
enrichment, which turns invalid events into "bad rows"; like Snowplow Micro,
the emulator answers success and records those as bad events.

Sources: snowplow/stream-collector `Routes.scala` (`POST /com.snowplowanalytics.snowplow/tp2`,
`GET /i` and `/ice.png` pixels, `/{vendor}/{version}` for GET pixels and webhook
adapters, GET answered with the 1x1 GIF); the Iglu webhook adapter
(`GET /com.snowplowanalytics.iglu/v1?schema=iglu:...` makes one self-describing
event of the other parameters); snowplow-python-tracker `emitters.py` (GET
sends one event per request to `/i`, POST batches to tp2); the collector's
default sink `maxBytes` of 1,000,000 (larger payloads become size-violation
bad rows, still answered 200). Collectors are self-hosted, so the paths are
recognised on any host.
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
    host_matches,
    iso_timestamp,
    request_of,
)
from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.model import Request

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATH = "/i"
PIXEL_PATHS = ("/i", "/ice.png")
IGLU_ADAPTER = "com.snowplowanalytics.iglu"
MAX_PAYLOAD_BYTES = 1_000_000
_VENDOR_VERSION = re.compile(r"^/([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+)/([A-Za-z0-9_-]+)/?$")
PAYLOAD_SCHEMA_PREFIX = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-"
_EVENT_NAMES = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ue": "unstruct",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}
_ID_KEYS = ("uid", "duid", "nuid", "tnuid", "dtm", "ttm", "stm", "ue_pr", "ue_px", "co", "cx", "e")


def _self_describing(params: dict[str, Any], plain: str, encoded: str) -> Any:
    """A JSON field sent either plain (`ue_pr`, `co`) or base64url (`ue_px`, `cx`)."""
    if params.get(plain):
        return _decoding.json_loads(str(params[plain]))
    if params.get(encoded):
        return _decoding.json_loads(_decoding.b64decode(str(params[encoded])))
    return None


def _schema_name(schema: str) -> str:
    """`iglu:com.acme/signed_up/jsonschema/1-0-0` -> `signed_up`."""
    parts = schema.removeprefix("iglu:").split("/")
    return parts[1] if len(parts) >= 2 else schema


class SnowplowCollector(HostAndPathCollector):
    """Snowplow collectors are self-hosted: tp2 is recognised on any host, `/i` only on known ones."""

    name = "snowplow"
    tool = "snowplow"
    hosts: tuple[str, ...] = ("*.snowplowanalytics.com", "*.snplow.net", "*.snplow.com")

    def owns_path(self, path: str, method: str) -> bool:
        return path.rstrip("/") == TP2_PATH or path in PIXEL_PATHS or _VENDOR_VERSION.match(path) is not None

    def matches(self, request: Request) -> bool:
        if request.path.rstrip("/") == TP2_PATH:
            return True
        return host_matches(request.host, self.hosts) and self.owns_path(request.path, request.method)

    def matches_path(self, decoded: DecodedRequest) -> bool:
        request = request_of(decoded)
        if request.path.rstrip("/") == TP2_PATH:
            return True
        # Pixels and adapters by path alone only for GET: a POST to `/a.b/v1` is too likely something else.
        return request.method == "GET" and (
            request.path in PIXEL_PATHS or _VENDOR_VERSION.match(request.path) is not None
        )

    def handle(self, decoded: DecodedRequest) -> CollectorResponse:
        request = request_of(decoded)
        adapter = _VENDOR_VERSION.match(request.path)
        if request.method == "GET" or request.path in PIXEL_PATHS:
            params = _decoding.query(request)
            if adapter is not None and adapter.group(1) == IGLU_ADAPTER:
                return self._iglu(params)
            if adapter is not None and request.path.rstrip("/") != TP2_PATH:
                vendor = f"{adapter.group(1)}/{adapter.group(2)}"
                return self._answer(TRANSPARENT_GIF, "image/gif", [], f"no adapter for {vendor} in this emulator")
            reason = None if params else "pixel request without parameters"
            return self._answer(TRANSPARENT_GIF, "image/gif", [params] if not reason else [], reason)
        if request.path.rstrip("/") != TP2_PATH:
            return self._answer(b"ok", "text/plain", [], f"no adapter for POST {request.path} in this emulator")
        try:
            data = _decoding.body(decoded)
            if len(data) > MAX_PAYLOAD_BYTES:
                return self._answer(b"ok", "text/plain", [], f"size violation: payload of {len(data)} bytes "
                                    f"exceeds the collector's {MAX_PAYLOAD_BYTES}-byte limit")
            document = _decoding.json_loads(data)
        except ValueError as e:
            return self._answer(b"ok", "text/plain", [], str(e))
        schema = document.get("schema") if isinstance(document, dict) else None
        if not isinstance(schema, str) or not schema.startswith(PAYLOAD_SCHEMA_PREFIX):
            return self._answer(b"ok", "text/plain", [], f"payload is not {PAYLOAD_SCHEMA_PREFIX}*: {schema!r}")
        data = document.get("data")
        if not isinstance(data, list):
            return self._answer(b"ok", "text/plain", [], "payload_data.data is not an array")
        return self._answer(b"ok", "text/plain", data, None)

    def _iglu(self, params: dict[str, str]) -> CollectorResponse:
        """The Iglu webhook adapter: `schema=iglu:...` plus the event's fields as parameters."""
        schema = params.get("schema", "")
        if not schema.startswith("iglu:"):
            return self._answer(TRANSPARENT_GIF, "image/gif", [], "Iglu adapter request without a schema parameter")
        data = {k: v for k, v in params.items() if k != "schema"}
        event = Event(collector=self.name, tool=self.tool, name=_schema_name(schema), properties=data,
                      context={"event_schema": schema, "adapter": IGLU_ADAPTER}, raw=dict(params))
        response = self._answer(TRANSPARENT_GIF, "image/gif", [], None)
        return CollectorResponse(response.status, response.headers, response.body, (event,))

    def _answer(self, body: bytes, content_type: str, payloads: list[Any], reason: str | None) -> CollectorResponse:
        events: list[Event] = []
        rejected = [Rejection(reason)] if reason else []
        for index, params in enumerate(payloads):
            try:
                events.append(self._event(params))
            except ValueError as e:
                rejected.append(Rejection(f"data[{index}]: {e}", params))
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", content_type), ("Cache-Control", "no-cache, no-store, must-revalidate")),
            body=body,
            events=tuple(events),
            bad_reason="; ".join(r.reason for r in rejected) or None,
            rejected=tuple(rejected),
        )

    def _event(self, params: Any) -> Event:
        if not isinstance(params, dict):
            raise ValueError("event is not a JSON object")
        kind = params.get("e")
        if not isinstance(kind, str) or kind not in _EVENT_NAMES:
            raise ValueError(f"unknown or missing event type e={kind!r}")
        if not params.get("tv"):
            raise ValueError("missing tracker version tv")
        name = _EVENT_NAMES[kind]
        properties: dict[str, Any] = {}
        context: dict[str, Any] = {k: v for k, v in params.items() if k not in _ID_KEYS}
        if kind == "ue":
            outer = _self_describing(params, "ue_pr", "ue_px")
            inner = outer.get("data") if isinstance(outer, dict) else None
            if not isinstance(inner, dict) or not isinstance(inner.get("schema"), str):
                raise ValueError("self-describing event without an inner schema")
            name = _schema_name(inner["schema"])
            context["event_schema"] = inner["schema"]
            properties = dict(inner["data"]) if isinstance(inner.get("data"), dict) else {}
        elif kind == "se":
            name = str(params.get("se_ac") or name)
            labels = {"se_ca": "category", "se_ac": "action", "se_la": "label", "se_pr": "property", "se_va": "value"}
            properties = {label: params[key] for key, label in labels.items() if key in params}
        elif kind in ("pv", "pp"):
            properties = {k: params[k] for k in ("url", "page", "refr") if k in params}
        contexts = _self_describing(params, "co", "cx")
        if contexts is not None:
            context["contexts"] = contexts.get("data") if isinstance(contexts, dict) else contexts
        return Event(
            collector=self.name,
            tool=self.tool,
            name=name,
            distinct_id=as_str(params.get("uid")),
            anonymous_id=as_str(params.get("duid") or params.get("tnuid") or params.get("nuid")),
            timestamp=iso_timestamp(params.get("dtm") or params.get("ttm") or params.get("stm")),
            properties=properties,
            context=context,
            raw=params,
        )
