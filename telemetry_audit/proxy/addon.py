"""The mitmproxy addon: a thin adapter from live flows to the core engine and collectors.

Options are declared in `load()` (prefixed `taudit_`, from `ProxySettings`), validated in `configure()`
through the core, and each decision is stored on `flow.metadata["telemetry_audit"]`, marked and commented for
mitmweb, and written to the audit log before the flow moves on. Anything that goes wrong while auditing a flow
fails closed in enforce mode.

Every channel a client can use is accounted for: HTTP requests (headers, trailers, body; under every name the
request goes by: URL host, Host header, TLS SNI), WebSocket messages, raw TCP streams inside a tunnel, and TLS
handshakes that fail. Every request is recorded, telemetry or not. Offline, nothing connects upstream at all:
`server_connect` refuses every upstream connection a local answer did not already make unnecessary.

Load it in plain mitmproxy with `mitmdump -s <this file>` (it defines `addons`), or through the thin script
`addons/telemetry_audit_addon.py` of a source checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import sys
import time
from typing import Any

from mitmproxy import ctx, exceptions, http, tcp, tls
from mitmproxy.net.http import status_codes, url

from telemetry_audit.collectors import Collector, find_collector
from telemetry_audit.collectors.dispatch import dispatch
from telemetry_audit.collectors.inspection import INSPECTION_HOST, handle_inspection
from telemetry_audit.collectors.inspection import PREFIX as INSPECTION_PREFIX
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import DecodedRequest, decode_request
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.detectors.secrets import KEY_CONTEXT_ID
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Decision, FindingKind, Request, mask
from telemetry_audit.policy import PolicyError, load_policy
from telemetry_audit.proxy import h1_trailers
from telemetry_audit.proxy.auditlog import AuditLog, AuditLogError, audit_record, stats_record
from telemetry_audit.proxy.client_process import client_process, peer_uid
from telemetry_audit.proxy.handover import HandedPolicy
from telemetry_audit.proxy.settings import ProxySettings, option_specs
from telemetry_audit.proxy.workers import (
    OFF_LOOP_BYTES,
    Acting,
    AuditorRecipe,
    AuditPool,
    PreparedAnswer,
    audit_in_worker,
    decision_metadata,
    redacted_request,
)
from telemetry_audit.report.build import AuditedRequest, safe_path

logger = logging.getLogger(__name__)

METADATA_KEY = "telemetry_audit"
_MARKS = {Action.BLOCK: ":no_entry:", Action.REDACT: ":pencil2:", Action.LOG: ":mag:"}


TRAILER_PREFIX = "trailer:"
"""Request trailers reach the core as headers named `trailer:<name>` (no real header name holds a colon)."""


def request_from_flow(flow: http.HTTPFlow, host: str | None = None) -> Request:
    """The core's plain record of a flow's request (body still content-encoded), trailers included.

    `host` defaults to the name the client asked for (Host / :authority); see `audited_names`.
    """
    req = flow.request
    host = host or req.pretty_host or req.host
    # The header fields decoded as `Headers.items(multi=True)` does, without a view object per call.
    headers = [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
               for k, v in req.headers.fields]
    if req.trailers:
        headers += [(TRAILER_PREFIX + k, v) for k, v in req.trailers.items(multi=True)]
    path = req.path
    return Request(
        method=req.method,
        scheme=req.scheme,
        host=host.lower(),
        port=req.port,
        path=path.split("?", 1)[0],
        # `req.query` rebuilds and parses the whole URL: only worth it when the path has a query.
        query=tuple(req.query.items(multi=True)) if "?" in path else (),
        headers=tuple(headers),
        body=req.raw_content or b"",
    )


def audited_names(flow: http.HTTPFlow | tcp.TCPFlow, pretty_host: str | None = None) -> list[str]:
    """Every name a flow goes by: the Host header, the URL or CONNECT host, and the TLS SNI.

    mitmproxy connects to the CONNECT target while the Host header or SNI may name another host: a client
    must not dodge the audit by naming a harmless host in one of them (or a token in a host label).
    `pretty_host`: the HTTP request's `pretty_host` when the caller has it already (it parses the Host header).
    """
    names = []
    if isinstance(flow, http.HTTPFlow):
        names += [flow.request.pretty_host if pretty_host is None else pretty_host, flow.request.host]
    elif flow.server_conn.address:
        # Inside a sealed run, raw TCP goes to a synthetic address: the sealed addon knows the name behind it.
        sealed = ctx.master.addons.get("sealednetwork") if ctx.master else None
        names.append(sealed.name_of(flow.server_conn) if sealed else str(flow.server_conn.address[0]))
    sni = getattr(flow.client_conn, "sni", None)
    if sni:
        names.append(sni)
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names if n))


def stream_request(flow: http.HTTPFlow | tcp.TCPFlow, host: str, method: str, body: bytes) -> Request:
    """A WebSocket message or a raw TCP chunk as the core sees a request: its bytes as the body."""
    if isinstance(flow, http.HTTPFlow):
        scheme = "wss" if flow.request.scheme == "https" else "ws"
        port, path = flow.request.port, flow.request.path.split("?", 1)[0]
    else:
        scheme, port, path = "tcp", int(flow.server_conn.address[1]) if flow.server_conn.address else 0, "/"
    kind = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/octet-stream"
    return Request(method=method, scheme=scheme, host=host, port=port, path=path,
                   headers=(("content-type", kind),), body=body)


def environment_from(data: dict[str, Any]) -> AuditEnvironment:
    """The audited process's environment from its JSON form (`session.audit_environment_data`)."""
    return AuditEnvironment(
        env=dict(data.get("env", {})),
        home=data.get("home", ""),
        cwd=data.get("cwd", ""),
        user=data.get("user", ""),
        hostname=data.get("hostname", ""),
        canaries=tuple(data.get("canaries", ())),
    )


def _load_environment(path: str) -> AuditEnvironment:
    """The audited process's environment from a file (`taudit_env_file`, for mitmdump users)."""
    if not path:
        return AuditEnvironment.current()
    with open(path, encoding="utf-8") as stream:
        return environment_from(json.load(stream))


class TelemetryAudit:
    """Audits telemetry flows: block, redact or log them as the policy says, and answer them offline."""

    def __init__(self, environment: AuditEnvironment | None = None, policy: HandedPolicy | None = None) -> None:
        self.environment = environment
        """The audited process's environment, handed over by the session (else `taudit_env_file`)."""
        self.handed_policy = policy
        """The policy the session already loaded (`proxy.handover`): the first configure takes it instead of loading
        the files again, if the options still name the files it was loaded from."""
        self.fatal_error = ""
        """Why auditing had to stop (the audit log could not be written); the proxy exits non-zero."""
        self.auditor: Auditor | None = None
        self.url_auditor: Auditor | None = None
        """Audits only the names and path of traffic that is not telemetry, to mask them in its record."""
        self.pool: AuditPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._absorbing: asyncio.Lock | None = None
        self.log: AuditLog | None = None
        self.store: EventStore | None = None
        self._store_flush: asyncio.TimerHandle | None = None
        """The pending write of the rows a store in memory holds back (`_rows_recorded`)."""
        self.seen = 0
        self.started = time.time()
        self.settings = ProxySettings()
        """The `taudit_*` option values, read once per `configure` (not on every flow: each read is a lookup)."""
        self._hosts_by_authority: dict[str, str] = {}
        """Host header (or HTTP/2 authority) -> the host it names, parsed once per value (`pretty_host`)."""
        self._collectors_by_route: dict[tuple[str, str, str], Collector] = {}
        """(host, path, method) -> the emulator of that vendor endpoint, looked up once per route (`_collector`)."""

    # --- options ---------------------------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        h1_trailers.install()
        for spec in option_specs():
            loader.add_option(spec.name, spec.typespec, spec.default, spec.help, choices=spec.choices)

    def configure(self, updated: set[str]) -> None:
        self.settings = ProxySettings.from_options(ctx.options)
        policy_options = {"taudit_policy", "taudit_env_file", "taudit_audit_all", "taudit_baseline"}
        if self.auditor is None or updated & policy_options:
            fingerprints: frozenset[str] = frozenset()
            if ctx.options.taudit_baseline:
                from telemetry_audit.report.baseline import BaselineError, load_baseline

                try:
                    fingerprints = load_baseline(ctx.options.taudit_baseline)
                except BaselineError as e:
                    raise exceptions.OptionsError(str(e)) from e
            handed, self.handed_policy = self.handed_policy, None
            if handed is not None and handed.fits(ctx.options.taudit_policy, ctx.options.taudit_baseline):
                policy = handed.policy
            else:
                try:
                    policy = load_policy(list(ctx.options.taudit_policy) or None, extra_allowlist=fingerprints)
                except PolicyError as e:
                    raise exceptions.OptionsError(f"invalid policy\n{e}") from e
            try:
                environment = self.environment or _load_environment(ctx.options.taudit_env_file)
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"cannot read {ctx.options.taudit_env_file}: {e}") from e
            self.auditor = Auditor(policy, environment, audit_all=ctx.options.taudit_audit_all)
            self.url_auditor = Auditor(policy, environment, audit_all=True)
            if self.pool is not None:
                self.pool.close()
            self.pool = AuditPool(AuditorRecipe(tuple(ctx.options.taudit_policy), fingerprints, environment,
                                                ctx.options.taudit_audit_all))
        if "taudit_log" in updated or self.log is None:
            if self.log is not None:
                self.log.close()
            try:
                self.log = AuditLog(ctx.options.taudit_log or None)
            except AuditLogError as e:
                raise exceptions.OptionsError(str(e)) from e
        if "taudit_store" in updated or self.store is None:
            if self.store is not None:
                self.store.close()
            try:
                # In memory, rows are written behind, a few dozen at a time (`_rows_recorded`); a file commits each
                # request's rows before it is answered, for the other processes reading it.
                path = ctx.options.taudit_store or ":memory:"
                self.store = EventStore(path, write_behind=path == ":memory:")
            except Exception as e:  # sqlite3.Error, OSError: a corrupt, read-only or foreign file
                raise exceptions.OptionsError(f"cannot use --store {ctx.options.taudit_store}: {e}") from e

    def done(self) -> None:
        if self.log is not None:
            try:
                self.log.write(stats_record(self.seen, self.started, ctx.options.taudit_session))
            except AuditLogError as e:
                logger.error(str(e))
            self.log.close()
        if self._store_flush is not None:
            self._store_flush.cancel()
            self._store_flush = None
        if self.store is not None:
            self.store.close()  # writes what it still holds
        if self.pool is not None:
            self.pool.close()

    # --- flows -----------------------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Never stream a body we must inspect: streaming sends it before `request` runs.
        if flow.request.stream:
            flow.request.stream = False

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        self.seen += 1
        pretty_host = self._pretty_host(flow.request)
        if (pretty_host or "").lower() == INSPECTION_HOST or (
                self.settings.collector and flow.request.path.startswith(INSPECTION_PREFIX)):
            self._answer_inspection(flow)
            return
        self._ensure_configured()
        assert self.auditor is not None
        try:
            requests = [request_from_flow(flow, name) for name in audited_names(flow, pretty_host)]
        except Exception as e:  # guards the adapter itself: fail closed
            logger.exception("telemetry-audit: reading the flow failed")
            bare = Request(flow.request.method, flow.request.scheme, flow.request.pretty_host.lower(),
                           flow.request.port, flow.request.path.split("?", 1)[0])
            self._act(flow, bare, _error_decision(e, self.auditor.policy.settings.error_action), None)
            return
        if _audit_cost(flow.request) >= OFF_LOOP_BYTES and _loop_running():
            # Audited in a worker process while the loop serves every other flow; the flow waits, intercepted.
            flow.intercept()
            asyncio.get_running_loop().create_task(self._audit_off_loop(flow, requests))
            return
        self._act(flow, *self._decide(requests))

    def _pretty_host(self, request: http.Request) -> str:
        """`request.pretty_host`, with each Host header value parsed once (it names the same few hosts again and
        again; parsing one is about a hundredth of a small request's audit)."""
        authority = request.host_header
        if not authority:
            return request.host
        host = self._hosts_by_authority.get(authority)
        if host is None:
            if len(self._hosts_by_authority) >= ROUTE_CACHE_SIZE:
                self._hosts_by_authority.clear()
            host = self._hosts_by_authority[authority] = url.parse_authority(authority, check=False)[0]
        return host

    def _collector(self, request: Request, decoded: DecodedRequest | None) -> Collector | None:
        """`find_collector(decoded or request, by_path=True)`, a vendor's own endpoint looked up once per route.

        Only the first step of the lookup is remembered: a vendor host and endpoint (`Collector.matches` reads the
        host, path and method alone). An emulator picked by path and payload shape is picked again each time.
        """
        route = (request.host, request.path, request.method)
        collector = self._collectors_by_route.get(route)
        if collector is not None:
            return collector
        collector = find_collector(request)
        if collector is None:
            return find_collector(decoded if decoded is not None else request, by_path=True)
        if len(self._collectors_by_route) >= ROUTE_CACHE_SIZE:
            self._collectors_by_route.clear()
        self._collectors_by_route[route] = collector
        return collector

    def _ensure_configured(self) -> None:
        if self.auditor is None or self.log is None:
            self.configure(set())  # hosts that add the addon without a configure round (test harnesses)

    def _decide(self, requests: list[Request]) -> tuple[Request, Decision, DecodedRequest | None]:
        """Audit under every name, keeping the strictest decision; an adapter failure fails closed.

        The body is read once: each name shares the first decode (only the request it belongs to differs), and
        the emulator answers from the same `DecodedRequest`.
        """
        assert self.auditor is not None
        audited: list[tuple[Request, Decision, DecodedRequest | None]] = []
        first: DecodedRequest | None = None
        try:
            for request in requests:
                if not self.auditor.route(request)[1]:
                    audited.append((request, Decision(Action.ALLOW, telemetry=False), None))
                    continue
                decoded = self.auditor.decode(request) if first is None else _renamed(first, request)
                first = first or decoded
                audited.append((request, self.auditor.audit(decoded), decoded))
        except Exception as e:  # the engine already fails closed; this guards the adapter itself
            logger.exception("telemetry-audit: auditing failed")
            return requests[0], _error_decision(e, self.auditor.policy.settings.error_action), None
        return max(audited, key=lambda item: (item[1].telemetry, item[1].action.rank))

    async def _audit_off_loop(self, flow: http.HTTPFlow, requests: list[Request]) -> None:
        """Audit a large request in a worker process, which also gives the dispatcher's answer and rows; then act.

        The flow stays intercepted meanwhile, and the loop keeps serving every other flow.
        """
        assert self.pool is not None and self.auditor is not None
        loop = self._loop = asyncio.get_running_loop()
        collector = ctx.options.taudit_collector
        acting = Acting(enforce=ctx.options.taudit_mode == "enforce", offline=ctx.options.taudit_offline,
                        block_style=ctx.options.taudit_block_style, spool=self.pool.spool(), collector=collector,
                        refuse_unrecognised=ctx.options.taudit_offline and ctx.options.taudit_audit_all
                        and not collector)
        prepared: PreparedAnswer | None = None
        payload: dict[str, Any] | None = None
        try:
            result = await loop.run_in_executor(self.pool.executor(), audit_in_worker, requests, acting)
            request, decision, prepared = requests[result.index], result.decision, result.prepared
            payload = result.payload
        except Exception as e:  # a worker died or raised: fail closed, like the engine
            logger.exception("telemetry-audit: auditing in a worker failed")
            request, decision = requests[0], _error_decision(e, self.auditor.policy.settings.error_action)
        # What is left (the audit record of up to a thousand findings, its body digest, redaction) runs in a
        # thread; a kill decided there waits for the flow to be resumed (see `_kill`). The worker's rows then move
        # into the store on the loop, a short chunk at a time between other flows' work.
        try:
            if flow.live and not flow.response and not flow.error:
                await loop.run_in_executor(None, self._act, flow, request, decision, None, prepared, payload)
                rows = flow.metadata.pop(_ROWS_TO_ABSORB, None)
                if rows is not None:
                    await self._absorb(rows)
        except Exception:  # acting failed half-way: the flow must not go on (unaudited, or answered but not stored)
            logger.exception("telemetry-audit: acting on a large request failed")
            flow.metadata.pop(_ROWS_TO_ABSORB, None)
            flow.metadata[_PENDING_KILL] = True
        finally:
            if prepared is not None:  # unlinking tens of megabytes takes a while: not on the loop
                with contextlib.suppress(OSError):
                    await loop.run_in_executor(None, prepared.discard)
            pending_kill = flow.metadata.pop(_PENDING_KILL, False)
            flow.resume()
            if pending_kill and flow.killable:
                flow.kill()

    def _act(self, flow: http.HTTPFlow, request: Request, decision: Decision,
             decoded: DecodedRequest | None = None, prepared: PreparedAnswer | None = None,
             payload: dict[str, Any] | None = None) -> None:
        """Record the decision, then block, redact, answer offline or let the request go upstream.

        `prepared` and `payload`: the dispatcher's answer and the masked payload a worker gave (a large request),
        used instead of dispatching and decoding here.
        """
        settings = self.settings
        enforce = settings.mode == "enforce"
        offline = settings.offline
        if not decision.telemetry and not settings.collector:  # the collector answers every request
            refused = offline and settings.offline_unknown == "fail"
            if not self._write(flow, self._other_record(flow, request, "refused offline" if refused else "upstream",
                                                         502 if refused else None)):
                return
            if refused:
                flow.response = http.Response.make(
                    502, b"telemetry-audit offline mode: no network for requests that are not telemetry\n",
                    {"Content-Type": "text/plain"},
                )
            return

        # The dispatcher's choice, for the record (and handed to it: the same request picks the same emulator).
        collector = self._collector(request, decoded)
        # Audited only because everything is (`audit_all`): auditing never changes answers, so offline it fails
        # as with no network, like any request that is not telemetry (a `200 {}` from a cloud metadata endpoint
        # makes SDKs misbehave). The standalone collector answers every request itself (404 to what no emulator
        # speaks).
        audited_only = settings.audit_all and not settings.collector and not self.auditor_recognises(request)
        refused = offline and audited_only
        if refused:
            answered_by = "refused offline"
        elif enforce and decision.action is Action.BLOCK:
            answered_by = "blocked"
        elif offline:
            answered_by = f"emulator:{collector.name}" if collector is not None else "no emulator"
        else:
            answered_by = "upstream"
        client = client_process(flow) if settings.client_process else ""
        # Telemetry no emulator understands keeps its decoded, masked payload: what would have been sent.
        item = AuditedRequest(request, decision, time=time.time(), client=client,
                              decoded=decoded if decoded is not None and decoded.body_tree is not None else None)
        record = audit_record(item, mode=settings.mode, enforced=enforce, answered_by=answered_by,
                              with_payload=collector is None and payload is None)
        if collector is None and payload is not None:
            record["payload"] = payload
        record["telemetry"] = True
        if audited_only:  # audited because everything is: reports count it apart from telemetry
            record["audited_only"] = True
        if refused:
            record["status"] = 502
        if not self._write(flow, record):
            return
        self._annotate(flow, decision, record)

        if refused:
            flow.response = http.Response.make(
                502, b"telemetry-audit offline mode: no network for requests that are not telemetry\n",
                {"Content-Type": "text/plain"},
            )
            return
        if enforce and decision.action is Action.BLOCK:
            self._block(flow, request, decoded, prepared, collector)
            return
        if enforce and decision.action is Action.REDACT:
            request = _apply_redaction(flow, request, decision)
            decoded = None  # the emulator answers what is sent now: the redacted request
            collector = None  # ... and picks its emulator for it
        if offline:
            self._answer_offline(flow, request, decoded, prepared, collector)
        elif flow.request.trailers and flow.request.http_version.startswith("HTTP/1"):
            # Audited already; mitmproxy cannot send HTTP/1 trailers upstream, so they stay here.
            flow.request.trailers = None

    def auditor_recognises(self, request: Request) -> bool:
        """`Auditor.recognised`; an auditor that fails to tell counts the request as telemetry (it is audited)."""
        assert self.auditor is not None
        try:
            return self.auditor.recognised(request)
        except Exception:
            logger.exception("telemetry-audit: recognising telemetry failed")
            return True

    def _write(self, flow: http.HTTPFlow | tcp.TCPFlow | None, record: dict[str, Any]) -> bool:
        """Write one audit-log record; on failure stop the flow and the proxy (never pass traffic unrecorded)."""
        assert self.log is not None
        if self.settings.session:
            record["session"] = self.settings.session
        if flow is not None:
            record.setdefault("id", flow.id)
        try:
            self.log.write(record)
        except AuditLogError as e:
            # Like mitmproxy's save addon: never let traffic through unrecorded.
            logger.error(f"telemetry-audit: {e}; shutting down")
            print(f"telemetry-audit: {e}; the proxy stopped (nothing passes unrecorded)", file=sys.stderr,
                  flush=True)
            self.fatal_error = str(e)
            if flow is not None:
                _kill(flow)
            if self._loop is not None and not _loop_running():  # acting in a thread (a large body)
                self._loop.call_soon_threadsafe(ctx.master.shutdown)
            else:
                ctx.master.shutdown()
            return False
        return True

    def _other_record(self, flow: http.HTTPFlow | tcp.TCPFlow, request: Request, answered_by: str,
                      status: int | None, channel: str = "http") -> dict[str, Any]:
        """The record of a request that is not telemetry: no payload, its names and path masked if they hold
        anything a detector flags (a token in a path or a host label)."""
        assert self.url_auditor is not None
        bare = Request(request.method, request.scheme, request.host, request.port, request.path)
        try:
            decision = self.url_auditor.evaluate(bare)
            audited = True
        except Exception:  # unknown what the names hold: mask both
            decision, audited = Decision(Action.ALLOW), False
        flagged_host = not audited or any(f.field.startswith("url.host") for f in decision.findings)
        record: dict[str, Any] = {
            "record": "request",
            "telemetry": False,
            "channel": channel,
            "method": request.method,
            "host": mask(request.host) if flagged_host else request.host,
            "port": request.port,
            "path": safe_path(request, decision) if audited else mask(request.path),
            "query_keys": len(request.query),
            "time": time.time(),
            "answered_by": answered_by,
            "decision": "allow",
            "findings": [],
        }
        if status is not None:
            record["status"] = status
        if self.settings.client_process and isinstance(flow, http.HTTPFlow):
            record["client"] = client_process(flow)
        return record

    # --- what happened after the request ---------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow) -> None:
        """The status an upstream answered with (local answers carry theirs in the request record)."""
        if self.log is not None and flow.response is not None and flow.server_conn.timestamp_start is not None:
            self._write(None, {"record": "status", "id": flow.id, "status": flow.response.status_code})

    def error(self, flow: http.HTTPFlow) -> None:
        if self.log is not None and flow.error is not None and not flow.error.msg == flow.error.KILLED_MESSAGE:
            self._write(None, {"record": "status", "id": flow.id, "error": flow.error.msg[:300]})

    def server_connect(self, data: Any) -> None:
        """Offline, nothing connects upstream: whatever a local answer did not settle is refused here."""
        if not ctx.options.taudit_offline:
            return
        if ctx.options.taudit_offline_unknown == "pass":
            host = data.server.sni or (data.server.address[0] if data.server.address else "")
            self._ensure_configured()
            assert self.auditor is not None
            probe = Request("CONNECT", "https", str(host).lower(), int(data.server.address[1]) if
                            data.server.address else 0, "/")
            if not self.auditor.is_telemetry(probe):
                return
        data.server.error = "telemetry-audit offline mode: no upstream connections"

    def tls_failed_client(self, data: tls.TlsData) -> None:
        """A client that rejected our certificate (not trusting the CA, or pinning): recorded with the reason."""
        self._ensure_configured()
        host = data.context.client.sni or (data.context.server.address[0] if data.context.server.address else "")
        port = data.context.server.address[1] if data.context.server.address else 0
        assert self.auditor is not None
        probe = Request("CONNECT", "https", str(host).lower(), int(port), "/")
        record = {
            "record": "request", "telemetry": False, "channel": "tls", "method": "CONNECT",
            "host": str(host).lower(), "port": port, "path": "", "time": time.time(), "decision": "allow",
            "findings": [], "answered_by": "TLS handshake failed",
            "error": str(data.conn.error or "the client rejected the proxy's certificate")[:300],
            "telemetry_host": self.auditor.is_telemetry(probe),
        }
        self._write(None, record)

    # --- other channels ------------------------------------------------------------------------------------

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """Raw TCP inside a tunnel (not HTTP): recorded; offline it never reaches anything (`server_connect`)."""
        self.seen += 1
        self._ensure_configured()
        host = (audited_names(flow) or [""])[0]
        request = stream_request(flow, host, "TCP", b"")
        refused = ctx.options.taudit_offline
        self._write(flow, self._other_record(flow, request, "refused offline" if refused else "upstream", None,
                                             channel="tcp"))

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """What a client sends over raw TCP is scanned like a body; a blocked chunk is emptied and the connection
        closed (a raw stream has no message boundaries to drop one at).

        TCP has no messages: a secret may arrive split over two reads. Each chunk is scanned together with the
        tail of what the client sent before (`STREAM_OVERLAP` bytes), so the split secret is caught in the chunk
        that completes it, and that chunk never goes on.
        """
        message = flow.messages[-1]
        if not message.from_client or not flow.live:
            return
        self._ensure_configured()
        tail = flow.metadata.get(_STREAM_TAIL, b"")
        scanned = tail + message.content
        flow.metadata[_STREAM_TAIL] = scanned[-STREAM_OVERLAP:]
        requests = [stream_request(flow, name, "TCP", scanned) for name in audited_names(flow)]
        request, decision, _ = self._decide(requests)
        if self._stream_decision(flow, request, decision, "tcp", closes=True):
            message.content = b""  # `flow.kill()` does not stop a message already in transit: empty it first
            _close_connection(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        """Each WebSocket message a client sends is scanned like a body: a blocked one is dropped (with
        `block_style` kill, the connection is closed there), a redacted one rewritten.

        A secret split over two messages is caught at their seam: the end of the last message that went on and
        the start of this one are scanned together for secrets (`STREAM_OVERLAP` bytes each)."""
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or not flow.live:
            return
        self._ensure_configured()
        names = audited_names(flow)
        request, decision, _ = self._decide([stream_request(flow, name, "WEBSOCKET", message.content)
                                             for name in names])
        tail = flow.metadata.get(_STREAM_TAIL, b"")
        if decision.telemetry and decision.action is not Action.BLOCK and tail:
            seam = tail + message.content[:STREAM_OVERLAP]
            seam_request, seam_decision, _ = self._decide([stream_request(flow, name, "WEBSOCKET", seam)
                                                           for name in names])
            # Only a secret's own pattern: a name ending one message and a value starting the next is no pair.
            if any(f.kind is FindingKind.SECRET and f.action is Action.BLOCK and not f.suppressed
                   and f.detector != KEY_CONTEXT_ID for f in seam_decision.findings):
                request, decision = seam_request, seam_decision
        closes = ctx.options.taudit_block_style == "kill"
        if self._stream_decision(flow, request, decision, "websocket", closes=closes):
            message.drop()
            if closes:
                _close_connection(flow)
            return
        if (ctx.options.taudit_mode == "enforce" and decision.action is Action.REDACT
                and decision.redacted_body is not None):
            message.content = decision.redacted_body
        flow.metadata[_STREAM_TAIL] = message.content[-STREAM_OVERLAP:]

    def _stream_decision(self, flow: http.HTTPFlow | tcp.TCPFlow, request: Request, decision: Decision,
                         channel: str, *, closes: bool) -> bool:
        """Record one message of a stream; True when it must not go on (blocked, or unrecordable).

        `closes`: a blocked message closes the connection (recorded as such)."""
        if not decision.telemetry:
            return False
        enforce = ctx.options.taudit_mode == "enforce"
        item = AuditedRequest(request, decision, time=time.time())
        blocked = enforce and decision.action is Action.BLOCK
        answered_by = ("connection closed" if closes else "blocked") if blocked else "upstream"
        record = audit_record(item, mode=ctx.options.taudit_mode, enforced=enforce, answered_by=answered_by)
        record["telemetry"] = True
        record["channel"] = channel
        messages = flow.messages if isinstance(flow, tcp.TCPFlow) else (
            flow.websocket.messages if flow.websocket else [])
        record["id"] = f"{flow.id}:{len(messages)}"
        if not self._write(None, record):
            return True
        return blocked

    # --- actions ---------------------------------------------------------------------------------------------

    def _annotate(self, flow: http.HTTPFlow, decision: Decision, record: dict[str, Any]) -> None:
        flow.metadata[METADATA_KEY] = decision_metadata(decision, record["findings"])
        if "payload" in record:  # kept in the store instead of the raw body (`collectors.dispatch.record`)
            flow.metadata[METADATA_KEY]["payload"] = record["payload"]
        mark = _MARKS.get(decision.action)
        if mark and decision.findings:
            flow.marked = mark
        if decision.findings:
            lines = [f"telemetry-audit: {decision.action.value} ({decision.tool or 'telemetry'})"]
            lines += [f"- {f.rule_id} {f.kind.value} {f.field}: {f.preview} {f.message}".rstrip()
                      for f in decision.findings[:20]]
            flow.comment = "\n".join(lines)

    def _block(self, flow: http.HTTPFlow, request: Request, decoded: DecodedRequest | None,
               prepared: PreparedAnswer | None = None, collector: Collector | None = None) -> None:
        style = self.settings.block_style
        if style == "kill":
            _kill(flow)
            return
        if style == "403":
            flow.response = http.Response.make(
                403, b'{"error":"blocked by telemetry-audit policy"}', {"Content-Type": "application/json"}
            )
            return
        # A well-formed success, so the tool neither crashes nor retries; the dispatcher knows the shape.
        self._dispatch(flow, request, decoded, prepared, collector, blocked=True)

    def _answer_offline(self, flow: http.HTTPFlow, request: Request, decoded: DecodedRequest | None,
                        prepared: PreparedAnswer | None = None, collector: Collector | None = None) -> None:
        # The one offline dispatcher (shared with the standalone collector) picks the emulator by protocol.
        self._dispatch(flow, request, decoded, prepared, collector, blocked=False)

    def _dispatch(self, flow: http.HTTPFlow, request: Request, decoded: DecodedRequest | None,
                  prepared: PreparedAnswer | None, collector: Collector | None, *, blocked: bool) -> None:
        """Answer through the dispatcher, or take the answer a worker gave with it and move its rows in."""
        if prepared is not None and prepared.blocked == blocked:
            flow.metadata[_ROWS_TO_ABSORB] = prepared.rows  # the loop moves them in before the flow resumes
            status, headers, body = prepared.status, prepared.headers, prepared.body
        else:
            if prepared is not None:  # the options changed while the worker ran: answer as they say now
                logger.warning("telemetry-audit: a worker's answer does not fit the options now; answering here")
            # The standalone collector answers 404 to what no emulator speaks: the tool was pointed at a wrong URL.
            answer = dispatch(decoded or decode_request(request), self.store,
                              decision=flow.metadata.get(METADATA_KEY), blocked=blocked,
                              not_found=self.settings.collector, collector=collector)
            status, headers, body = answer.status, answer.headers, answer.body
            self._rows_recorded()
        flow.response = _response(status, body, headers)

    def _rows_recorded(self) -> None:
        """A store that writes behind (in memory) writes its rows `STORE_FLUSH_SECONDS` after the first waits, on the
        loop, all in one transaction; outside a running loop (acting in a thread, a test harness) at once.

        Nothing is lost by waiting: every read of the store (the inspection API), a worker's rows moved in, and
        `done` write them first, and a store in memory does not outlive the process anyway.
        """
        store = self.store
        if store is None or not store.pending or self._store_flush is not None:
            return
        if not _loop_running():
            self._flush_store()
            return
        self._store_flush = asyncio.get_running_loop().call_later(STORE_FLUSH_SECONDS, self._flush_store)

    def _flush_store(self) -> None:
        self._store_flush = None
        if self.store is None:
            return
        try:
            self.store.flush()
        except Exception:  # sqlite3.Error: out of memory; the answers were given, the rows are gone
            logger.exception("telemetry-audit: writing events to the store failed")

    async def _absorb(self, rows: str) -> None:
        """Move a worker's rows into the store, a chunk at a time in a thread.

        The loop waits for no chunk, and a request recorded meanwhile waits for one chunk at most: the next one
        starts only when the loop comes back to this task (a thread copying in a loop of its own would take the
        store's lock back before a waiting thread woke up).
        """
        assert self.store is not None
        loop = asyncio.get_running_loop()
        if self._absorbing is None:
            self._absorbing = asyncio.Lock()
        async with self._absorbing:  # one batch after another: each stays in one piece, in the order they finished
            chunks = self.store.absorbing(rows)
            try:
                while await loop.run_in_executor(None, next, chunks, None) is not None:
                    pass
            finally:
                chunks.close()

    def _answer_inspection(self, flow: http.HTTPFlow) -> None:
        if self.store is None:
            self.configure(set())
        assert self.store is not None
        if not inspection_allowed(flow, ctx.options.taudit_inspection_token):
            flow.response = http.Response.make(
                403, b'{"error":"the inspection API needs this session\'s token (X-Telemetry-Audit-Token) or the '
                     b'same local user"}', {"Content-Type": "application/json"})
            return
        answer = handle_inspection(request_from_flow(flow), self.store)
        if answer is None:
            flow.response = http.Response.make(404, b'{"error":"not found"}', {"Content-Type": "application/json"})
        else:
            flow.response = http.Response.make(answer.status, answer.body, dict(answer.headers))


def inspection_allowed(flow: http.HTTPFlow, token: str) -> bool:
    """The event store holds what tools sent: only this session's token, or a client of the same local user."""
    offered = flow.request.headers.get("x-telemetry-audit-token", "")
    bearer = flow.request.headers.get("authorization", "")
    if token and (hmac.compare_digest(offered, token) or hmac.compare_digest(bearer, f"Bearer {token}")):
        return True
    return peer_uid(flow) == os.getuid()


STORE_FLUSH_SECONDS = 0.05
"""How long a store in memory holds new rows back before writing them together (`_rows_recorded`)."""
ROUTE_CACHE_SIZE = 1024
"""Entries each per-route cache of the addon keeps; it starts afresh when full (a tool putting ids in its paths)."""

_PENDING_KILL = "telemetry_audit_kill"
_STREAM_TAIL = "telemetry_audit_tail"
STREAM_OVERLAP = 4096
"""Bytes of a raw TCP stream's earlier client data scanned again with each new chunk (a secret split over reads)."""


def _close_connection(flow: http.HTTPFlow | tcp.TCPFlow) -> None:
    """Close the client's connection of a WebSocket or raw TCP flow now; the proxy then closes the server side.

    mitmproxy 11 and 12 cannot kill these flows in transit (`flow.kill()` only marks them, and their layers go on
    relaying), so the connection is closed through its handler in the `proxyserver` addon, as mitmproxy's own
    `close_connection` does for a `CloseConnection` command. Without a live handler (a test harness) the flow is
    only marked killed.
    """
    server = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = getattr(server, "connections", {}).get(flow.client_conn.id) if server is not None else None
    if handler is not None and flow.client_conn in getattr(handler, "transports", {}):
        handler.close_connection(flow.client_conn)
    if flow.killable:
        flow.kill()


_ROWS_TO_ABSORB = "telemetry_audit_rows"
"""A worker's store file of the rows for the answer just given, moved into the store by `_audit_off_loop`."""


def _kill(flow: http.HTTPFlow | tcp.TCPFlow) -> None:
    """Kill `flow`; an intercepted one (acted on in a thread) is killed once resumed, or it would wait forever."""
    if flow.intercepted:
        flow.metadata[_PENDING_KILL] = True
    elif flow.killable:
        flow.kill()


def _renamed(decoded: DecodedRequest, request: Request) -> DecodedRequest:
    """The same read body for the same request under another name (fields are rebuilt, nothing is decoded)."""
    return dataclasses.replace(decoded, request=request, _fields=None)


def _audit_cost(request: http.Request) -> int:
    """Bytes the audit will read: compressed bodies count as their usual expansion (about 10x for JSON)."""
    size = len(request.raw_content or b"")
    # The header fields themselves: `"content-encoding" in headers` raises and catches a KeyError when absent.
    encoded = any(name.lower() == b"content-encoding" for name, _ in request.headers.fields)
    return size * 10 if encoded else size


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _headers(pairs: tuple[tuple[str, str], ...]) -> http.Headers:
    return http.Headers([(k.encode(), v.encode()) for k, v in pairs])


def _response(status: int, body: bytes, pairs: tuple[tuple[str, str], ...]) -> http.Response:
    """`http.Response.make(status, body, _headers(pairs))`, built directly; the result is the same: the fields as
    given, then `content-length`.

    Two costs of `make` go: it converts its headers again and sets the body through the content setter; and its
    `trailers=None` fails the first type of `Headers | None` in mitmproxy's field check, which raises and keeps a
    `TypeError` whose traceback holds every frame of this hook (the flow's decoded fields, its decision, ...) in a
    reference cycle: all of it then waits for the garbage collector instead of being freed on return. Here the
    check does not run at all. Headers the content setter acts on (a content coding it applies, a transfer
    coding, a length of the emulator's own) still go through `make`.
    """
    for name, _ in pairs:
        if name.lower() in _SETTER_HEADERS:
            return http.Response.make(status, body, _headers(pairs))
    fields = [(k.encode(), v.encode()) for k, v in pairs]
    fields.append((b"content-length", str(len(body)).encode()))
    now = time.time()
    # `Response.__init__` with its data filled in directly: the data's `__post_init__` (run unless `python -O`)
    # type-checks each of its eight fields through mitmproxy's option checker, most of this function's time,
    # and every value here has its type by construction (the test compares the state with `make`'s).
    data = object.__new__(http.ResponseData)
    vars(data).update(http_version=b"HTTP/1.1", status_code=status,
                      reason=status_codes.RESPONSES.get(status, "").encode(), headers=http.Headers(fields),
                      content=body, trailers=None, timestamp_start=now, timestamp_end=now)
    response = object.__new__(http.Response)
    response.data = data
    return response


_SETTER_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


def _error_decision(error: Exception, action: Action) -> Decision:
    from telemetry_audit.model import ENGINE_RULES, Finding, fingerprint

    rule = ENGINE_RULES["audit-error"]
    finding = Finding(rule.id, rule.kind, "body", rule.severity, action, "",
                      fingerprint(rule.id, type(error).__name__),
                      f"auditing failed: {type(error).__name__}: {error}"[:500])
    return Decision(action, (finding,), True)


def _apply_redaction(flow: http.HTTPFlow, request: Request, decision: Decision) -> Request:
    """Rewrite the live request as the decision says; return the request as now sent."""
    sent = redacted_request(request, decision)
    body, headers, query = sent.body, sent.headers, sent.query
    if decision.redacted_headers is not None:
        plain = [(k, v) for k, v in headers if not k.startswith(TRAILER_PREFIX)]
        trailers = [(k[len(TRAILER_PREFIX):], v) for k, v in headers if k.startswith(TRAILER_PREFIX)]
        flow.request.headers = http.Headers([(k.encode(), v.encode()) for k, v in plain])
        if flow.request.trailers is not None or trailers:
            flow.request.trailers = http.Headers([(k.encode(), v.encode()) for k, v in trailers]) if trailers else None
    if decision.redacted_query is not None:
        flow.request.query = list(query)
    if decision.redacted_body is not None:
        flow.request.raw_content = body
        if "transfer-encoding" in flow.request.headers:
            del flow.request.headers["transfer-encoding"]
        if flow.request.http_version != "HTTP/2.0" or "content-length" in flow.request.headers:
            flow.request.headers["content-length"] = str(len(body))
    return sent



addons = [TelemetryAudit()]
"""So that `mitmdump -s <path of this module>` loads it as a script (see the README)."""

