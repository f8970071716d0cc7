"""Which requests are telemetry, and whose: the catalogue, then what the name, path or payload says.

A request is telemetry when (first reason wins, `telemetry_reason` says which):
1. its host (and path, where the entry names paths) is in the catalogue (`catalogue.py`), or in the policy's
   `telemetry_hosts`;
2. its host name says so: a label with a `telemetry`, `analytics`, `metrics` or `tracking` part
   (`telemetry.nuxt.com`, `collector.telemetry.test`, `www.google-analytics.com`);
3. a POST speaks a known analytics protocol path (`/v1/batch`, `/i/v0/e`, `/v1/traces`, ...), or a POST
   ends in a telemetry word (`/api/v2/events`, `/telemetry`, `/collect`, `/v1/track`) or names `telemetry` or
   `analytics` right after `api` or a version (`/api/telemetry/x`);
4. its decoded JSON payload looks like analytics events (`looks_like_analytics_event`).

The path rules are narrow on purpose: package registries, git hosting and REST APIs use words like `events` and
`batch` in ordinary paths (`GET /repos/o/r/events`, `PUT /<package named batch>`), and those must stay ordinary
traffic. `tests/test_endpoints.py` measures this on a list of ordinary URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2

from telemetry_audit.catalogue import CATALOGUE, Endpoint
from telemetry_audit.hosts import HostPatterns, canonical_host, compile_host_patterns, host_matches
from telemetry_audit.model import Request
from telemetry_audit.policy.model import glob_to_regex

TELEMETRY_HOSTS: tuple[str, ...] = tuple(dict.fromkeys(host for entry in CATALOGUE for host in entry.hosts))
"""Every catalogued host pattern (path-specific ones too): what a user's NO_PROXY must never bypass."""

HOST_GLOBS: tuple[str, ...] = ("telemetry.*", "*.telemetry.*", "analytics.*", "*.analytics.*", "metrics.*",
                               "*.metrics.*")
"""Name shapes that announce telemetry whatever the vendor (the keyword rule below also covers `x-telemetry`)."""

HOST_KEYWORDS: frozenset[str] = frozenset({"telemetry", "analytics", "metrics", "tracking", "telemetria"})
"""A host label made of `-`-separated parts, one of which is one of these, names a collector."""

TELEMETRY_PATHS: tuple[str, ...] = (
    "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch",
    "/batch", "/batch/", "/capture", "/capture/", "/e", "/e/", "/i/v0/e", "/i/v0/e/", "/track", "/track/",
    "/engage", "/engage/", "/2/httpapi", "/com.snowplowanalytics.snowplow/tp2", "/api/*/envelope/",
    "/api/*/store/", "/v1/traces", "/v1/metrics", "/v1/logs", "/mp/collect", "/g/collect", "/collect",
    "/v2/track", "/v2.1/track", "/i/v0/ai/batch", "/i/v0/ai/batch/", "/flags", "/flags/", "/decide", "/decide/",
    "/import", "/groups",
)
"""Analytics protocol paths (Segment, PostHog, Mixpanel, Amplitude, Snowplow, Sentry, OTLP, GA, App Insights)."""

PATH_END_KEYWORDS: frozenset[str] = frozenset({
    "telemetry", "analytics", "metrics", "events", "event", "collect", "track", "batch", "capture", "ingest",
    "beacon", "log_event", "logevent", "event-log", "event_log", "usage_statistics", "usage-statistics",
})
"""A POST whose last path segment is one of these sends events."""

PATH_SECTION_KEYWORDS: frozenset[str] = frozenset({"telemetry", "analytics"})
"""A segment naming a telemetry API section when it follows `api` or a version (`/api/v1/telemetry/...`)."""

_PATH_REGEX = re2.compile("^(?:" + "|".join(glob_to_regex(p) for p in TELEMETRY_PATHS) + ")$")
_VERSION_SEGMENT = re2.compile(r"^v\d+(?:\.\d+)*$")
_CATALOGUE_HOSTS = compile_host_patterns(TELEMETRY_HOSTS)
_HOST_GLOBS = compile_host_patterns(HOST_GLOBS)


def _path_program(globs: Sequence[str]) -> Any:
    return re2.compile("^(?:" + "|".join(glob_to_regex(g) for g in globs) + ")$")


_COMPILED: tuple[tuple[Endpoint, HostPatterns, Any], ...] = tuple(
    (entry, compile_host_patterns(entry.hosts), _path_program(entry.paths) if entry.paths else None)
    for entry in CATALOGUE
)
"""Each entry with its hosts and paths compiled once."""


def _path_only(path: str) -> str:
    """The path without query or fragment."""
    for stop in ("?", "#"):
        path = path.split(stop, 1)[0]
    return path or "/"


def catalogue_entry(request: Request) -> Endpoint | None:
    """The catalogue entry `request` goes to, the most specific first (a tool's marker, then a tool, then a vendor).

    On a host that several tools share (Google Analytics, App Insights) a tool whose `markers` appear in the query
    or body wins; a tool without markers comes next; then the vendor.
    """
    name = canonical_host(request.host)
    if not _CATALOGUE_HOSTS.matches_canonical(name):
        return None
    path = _path_only(request.path)
    matching = [
        entry
        for entry, hosts, paths in _COMPILED
        if hosts.matches_canonical(name) and (paths is None or paths.match(path) is not None)
    ]
    if not matching:
        return None
    with_markers = [entry for entry in matching if entry.markers]
    if with_markers:
        query = "&".join(f"{name}={value}" for name, value in request.query)
        haystack = "\n".join((request.path, query, request.body[:65536].decode("utf-8", "replace")))
        for entry in with_markers:
            if any(marker in haystack for marker in entry.markers):
                return entry
    plain = [entry for entry in matching if not entry.markers and not entry.vendor]
    vendors = [entry for entry in matching if entry.vendor]
    return (plain or vendors or matching)[0]


def host_says_telemetry(host: str) -> bool:
    """True when a label of `host` (not its top-level one) has a telemetry word as one of its `-` parts."""
    name = canonical_host(host)
    if _HOST_GLOBS.matches_canonical(name):
        return True
    labels = name.split(".")[:-1]
    return any(part in HOST_KEYWORDS for label in labels for part in label.split("-"))


def path_says_telemetry(method: str, path: str) -> bool:
    """True when a POST speaks a known analytics path, or its path ends in or names telemetry.

    Only POST: every collector here receives events by POST, while PUT, PATCH and DELETE are how registries and
    REST APIs store resources (`PUT /batch` publishes an npm package named `batch`).
    """
    if method.upper() != "POST":
        return False
    path = _path_only(path)
    if _PATH_REGEX.match(path) is not None:
        return True
    segments = [segment.lower() for segment in path.split("/") if segment]
    if segments and segments[-1] in PATH_END_KEYWORDS:
        return True
    for before, segment in zip(segments, segments[1:], strict=False):
        if segment in PATH_SECTION_KEYWORDS and (before == "api" or _VERSION_SEGMENT.match(before)):
            return True
    return False


_PIXELS: tuple[tuple[str, frozenset[str]], ...] = (
    # (path, query keys that only that protocol sends together)
    ("/i", frozenset({"e", "tv"})),                                    # Snowplow GET pixel: event type, tracker
    ("/com.snowplowanalytics.snowplow/tp2", frozenset({"e", "tv"})),  # Snowplow GET tp2
    ("/ice.png", frozenset({"e", "tv"})),
    ("/g/collect", frozenset({"v", "tid"})),                           # GA4 browser (gtag)
    ("/collect", frozenset({"v", "tid"})),                             # Universal Analytics
)
"""Telemetry sent as GET pixels: recognised by path and the protocol's own query keys, on any host."""


def pixel_says_telemetry(request: Request) -> bool:
    """True for a GET (or HEAD) that speaks a pixel protocol: Snowplow `/i`, GA `/g/collect`, UA `/collect`."""
    if request.method.upper() not in ("GET", "HEAD") or not request.query:
        return False
    path = _path_only(request.path)
    keys = {key for key, _ in request.query}
    return any(path == pixel and needed <= keys for pixel, needed in _PIXELS)


def telemetry_reason(request: Request, extra_hosts: Iterable[str] = (), document: Any = None) -> str | None:
    """Why `request` is telemetry (`catalogue: Next.js`, `host name`, `path`, `payload`), or None when it is not.

    `extra_hosts` are the policy's own telemetry hosts; `document` is the decoded JSON body when the caller has it
    (the payload rule is skipped without it: this function never decodes).
    """
    host = request.host
    entry = catalogue_entry(request)
    if entry is not None:
        return f"catalogue: {entry.tool}"
    extra = tuple(extra_hosts)
    if extra and host_matches(host, extra):
        return "policy telemetry_hosts"
    if host_says_telemetry(host):
        return "host name"
    if path_says_telemetry(request.method, request.path):
        return "path"
    if pixel_says_telemetry(request):
        return "pixel"
    if document is not None and looks_like_analytics_event(document):
        return "payload"
    return None


def is_telemetry(request: Request, extra_hosts: Iterable[str] = (), document: Any = None) -> bool:
    """True when `request` goes to a known collector, or its name, path or payload says it is telemetry."""
    return telemetry_reason(request, extra_hosts, document) is not None


# ---- payload shape ---------------------------------------------------------------------------------------------

_EVENT_NAME_KEYS = frozenset({"event", "eventname", "eventtype", "ev", "en", "ea", "eventaction", "eventkey"})
"""Keys that only analytics payloads use for the event's name."""
_GENERIC_NAME_KEYS = frozenset({"name", "type", "action"})
"""Keys that name an event in analytics payloads and many other things elsewhere: need more evidence."""
_TIME_KEYS = frozenset({
    "timestamp", "time", "ts", "sentat", "createdat", "eventtime", "originaltimestamp", "receivedat",
    "clienttimestamp", "timestampmicros", "datetime", "eventtimestamp", "clienttime",
})
_ID_KEYS = frozenset({
    "distinctid", "anonymousid", "userid", "deviceid", "machineid", "clientid", "sessionid", "installid",
    "installationid", "anonymousmachineid", "visitorid", "cid", "uid", "anonid", "telemetryid", "trackingid",
    "anonymoususerid", "machineidhash", "useridhash", "projectid", "projecthash", "projectsession",
})
_BATCH_KEYS = frozenset({"batch", "events", "data", "records", "items", "messages", "entries", "payload"})
_CONTEXT_KEYS = frozenset({"context", "meta", "properties", "common", "header", "user", "device", "session"})
_MAX_ITEMS = 50
_MAX_DEPTH = 3


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").replace("$", "").lower()


def _evidence(obj: Mapping[str, Any]) -> tuple[bool, bool]:
    """(has a timestamp, has an id) among `obj`'s scalar fields and those of its context-like children."""
    has_time = has_id = False
    sources: list[Mapping[str, Any]] = [obj]
    sources += [value for key, value in obj.items() if _key(str(key)) in _CONTEXT_KEYS and isinstance(value, dict)]
    for source in sources:
        for key, value in source.items():
            if isinstance(value, dict | list) or value is None or value == "":
                continue
            normal = _key(str(key))
            has_time = has_time or normal in _TIME_KEYS
            has_id = has_id or normal in _ID_KEYS
    return has_time, has_id


def _is_event(obj: Mapping[str, Any], inherited: tuple[bool, bool]) -> bool:
    has_time, has_id = _evidence(obj)
    has_time, has_id = has_time or inherited[0], has_id or inherited[1]
    specific = generic = False
    for key, value in obj.items():
        if not isinstance(value, str) or not value:
            continue
        normal = _key(str(key))
        specific = specific or normal in _EVENT_NAME_KEYS
        generic = generic or normal in _GENERIC_NAME_KEYS
    if specific:
        return has_time or has_id
    return generic and has_time and has_id


def looks_like_analytics_event(document: Any, _inherited: tuple[bool, bool] = (False, False), _depth: int = 0) -> bool:
    """True when a decoded JSON document is an analytics event or a batch of them.

    An event has a name (`event`, `eventName`, ... or, with more evidence, `name`/`type`) and a timestamp or a
    user/device/anonymous id; a batch is a list, or an object whose `batch`/`events`/`data`/... list holds events,
    the batch's own ids and timestamps (and those of its `context`) counting for each item. Pure, bounded work:
    at most 50 items per list, 3 levels deep.
    """
    if _depth > _MAX_DEPTH:
        return False
    if isinstance(document, list):
        return any(
            looks_like_analytics_event(item, _inherited, _depth + 1)
            for item in document[:_MAX_ITEMS]
            if isinstance(item, dict | list)
        )
    if not isinstance(document, dict):
        return False
    if _is_event(document, _inherited):
        return True
    own = _evidence(document)
    inherited = (own[0] or _inherited[0], own[1] or _inherited[1])
    for key, value in document.items():
        if _key(str(key)) in _BATCH_KEYS and isinstance(value, list | dict):
            if looks_like_analytics_event(value, inherited, _depth + 1):
                return True
    return False
