"""Snowplow's collector: `POST /com.snowplowanalytics.snowplow/tp2` and the `GET /i` pixel.

The real collector accepts every request (200) and leaves validation to
enrichment, which turns invalid events into "bad rows"; like Snowplow Micro,
the emulator answers success and records those as bad events.
"""

from __future__ import annotations

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
)
from telemetry_audit.model import Request

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATH = "/i"
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

    def matches(self, request: Request) -> bool:
        if request.path.rstrip("/") == TP2_PATH:
            return True
        return host_matches(request.host, self.hosts) and request.path == PIXEL_PATH

    def matches_path(self, request: Request) -> bool:
        return request.path.rstrip("/") == TP2_PATH or (request.path == PIXEL_PATH and request.method == "GET")

    def handle(self, request: Request) -> CollectorResponse:
        if request.path == PIXEL_PATH:
            payloads: list[Any] = [_decoding.query(request)]
            reason = None if payloads[0] else "pixel request without parameters"
            return self._answer(TRANSPARENT_GIF, "image/gif", payloads if not reason else [], reason)
        if request.method != "POST":
            return self._answer(b"ok", "text/plain", [], f"{request.method} {TP2_PATH} is not supported")
        try:
            document = _decoding.json_loads(_decoding.body(request))
        except ValueError as e:
            return self._answer(b"ok", "text/plain", [], str(e))
        schema = document.get("schema") if isinstance(document, dict) else None
        if not isinstance(schema, str) or not schema.startswith(PAYLOAD_SCHEMA_PREFIX):
            return self._answer(b"ok", "text/plain", [], f"payload is not {PAYLOAD_SCHEMA_PREFIX}*: {schema!r}")
        data = document.get("data")
        if not isinstance(data, list):
            return self._answer(b"ok", "text/plain", [], "payload_data.data is not an array")
        return self._answer(b"ok", "text/plain", data, None)

    def _answer(self, body: bytes, content_type: str, payloads: list[Any], reason: str | None) -> CollectorResponse:
        events: list[Event] = []
        problems = [reason] if reason else []
        for index, params in enumerate(payloads):
            try:
                events.append(self._event(params))
            except ValueError as e:
                problems.append(f"data[{index}]: {e}")
        return CollectorResponse(
            status=200,
            headers=(("Content-Type", content_type), ("Cache-Control", "no-cache, no-store, must-revalidate")),
            body=body,
            events=tuple(events),
            bad_reason="; ".join(problems) or None,
        )

    def _event(self, params: Any) -> Event:
        if not isinstance(params, dict):
            raise ValueError("event is not a JSON object")
        kind = params.get("e")
        if kind not in _EVENT_NAMES:
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
