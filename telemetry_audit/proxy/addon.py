"""The mitmproxy addon: a thin adapter from live flows to the core engine and collectors.

Options are declared in `load()` (prefixed `taudit_`), validated in
`configure()` through the core, and each decision is stored on
`flow.metadata["telemetry_audit"]`, marked and commented for mitmweb, and
written to the audit log before the flow moves on. Anything that goes wrong
while auditing a flow fails closed in enforce mode.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from telemetry_audit.collectors import find_collector
from telemetry_audit.collectors.inspection import INSPECTION_HOST, handle_inspection
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Decision, Request
from telemetry_audit.policy import PolicyError, load_policy
from telemetry_audit.proxy.auditlog import AuditLog, AuditLogError, audit_record, stats_record
from telemetry_audit.proxy.client_process import client_process
from telemetry_audit.report.build import AuditedRequest

logger = logging.getLogger(__name__)

METADATA_KEY = "telemetry_audit"
MODES = ("enforce", "audit")
BLOCK_STYLES = ("empty", "kill", "403")
UNKNOWN_HOST_CHOICES = ("fail", "pass")
_MARKS = {Action.BLOCK: ":no_entry:", Action.REDACT: ":pencil2:", Action.LOG: ":mag:"}


def request_from_flow(flow: http.HTTPFlow, host: str | None = None) -> Request:
    """The core's plain record of a flow's request (body still content-encoded).

    `host` defaults to the name the client asked for (Host / :authority); see `audit_hosts`.
    """
    req = flow.request
    host = host or req.pretty_host or req.host
    return Request(
        method=req.method,
        scheme=req.scheme,
        host=host.lower(),
        port=req.port,
        path=req.path.split("?", 1)[0],
        query=tuple(req.query.items(multi=True)),
        headers=tuple((k, v) for k, v in req.headers.items(multi=True)),
        body=req.raw_content or b"",
    )


def _load_environment(path: str) -> AuditEnvironment:
    """The audited process's environment, handed over by `run` in a private file."""
    if not path:
        return AuditEnvironment.current()
    with open(path, encoding="utf-8") as stream:
        data = json.load(stream)
    return AuditEnvironment(
        env=dict(data.get("env", {})),
        home=data.get("home", ""),
        cwd=data.get("cwd", ""),
        user=data.get("user", ""),
        hostname=data.get("hostname", ""),
        canaries=tuple(data.get("canaries", ())),
    )


class TelemetryAudit:
    """Audits telemetry flows: block, redact or log them as the policy says, and answer them offline."""

    def __init__(self) -> None:
        self.auditor: Auditor | None = None
        self.log: AuditLog | None = None
        self.store: EventStore | None = None
        self.seen = 0
        self.started = time.time()

    # --- options ---------------------------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("taudit_policy", Sequence[str], [],
                          "Policy files or built-in pack names, composed in order (default: the built-in policy).")
        loader.add_option("taudit_mode", str, "enforce",
                          "enforce: block and redact as the policy says; audit: record decisions, modify nothing.",
                          choices=MODES)
        loader.add_option("taudit_log", str, "", "Append one JSON line per audited request to this file.")
        loader.add_option("taudit_offline", bool, False,
                          "Answer telemetry with the emulated collectors; nothing is sent upstream.")
        loader.add_option("taudit_offline_unknown", str, "fail",
                          "Offline: what happens to requests for hosts no collector emulates "
                          "(fail as with no network, or pass upstream).", choices=UNKNOWN_HOST_CHOICES)
        loader.add_option("taudit_audit_all", bool, False,
                          "Audit every request, not only those recognised as telemetry.")
        loader.add_option("taudit_block_style", str, "empty",
                          "How a blocked request is answered: an empty success (so the tool neither fails nor "
                          "retries), a killed connection, or 403.", choices=BLOCK_STYLES)
        loader.add_option("taudit_env_file", str, "",
                          "JSON file with the audited process's environment (written by `telemetry-audit run`).")
        loader.add_option("taudit_store", str, "",
                          "SQLite file keeping the events the emulated collectors received (default: in memory).")
        loader.add_option("taudit_baseline", str, "", "Baseline file of accepted finding fingerprints.")
        loader.add_option("taudit_client_process", bool, False,
                          "Name the local process behind each audited connection (Linux; scans /proc once per "
                          "connection, a few ms: on for `telemetry-audit run`).")
        loader.add_option("taudit_ready_file", str, "",
                          "Write the listening address to this file once the proxy is ready.")

    def configure(self, updated: set[str]) -> None:
        policy_options = {"taudit_policy", "taudit_env_file", "taudit_audit_all", "taudit_baseline"}
        if self.auditor is None or updated & policy_options:
            fingerprints: frozenset[str] = frozenset()
            if ctx.options.taudit_baseline:
                from telemetry_audit.report.baseline import BaselineError, load_baseline

                try:
                    fingerprints = load_baseline(ctx.options.taudit_baseline)
                except BaselineError as e:
                    raise exceptions.OptionsError(str(e)) from e
            try:
                policy = load_policy(list(ctx.options.taudit_policy) or None, extra_allowlist=fingerprints)
            except PolicyError as e:
                raise exceptions.OptionsError(f"invalid policy\n{e}") from e
            try:
                environment = _load_environment(ctx.options.taudit_env_file)
            except (OSError, ValueError) as e:
                raise exceptions.OptionsError(f"cannot read {ctx.options.taudit_env_file}: {e}") from e
            self.auditor = Auditor(policy, environment, audit_all=ctx.options.taudit_audit_all)
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
            self.store = EventStore(ctx.options.taudit_store or ":memory:")

    def running(self) -> None:
        ready_file = ctx.options.taudit_ready_file
        if not ready_file:
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = proxyserver.listen_addrs() if proxyserver else []
        if addresses:
            host, port = addresses[0][:2]
            temp = f"{ready_file}.tmp"
            with open(temp, "w", encoding="utf-8") as stream:
                json.dump({"host": host, "port": port, "pid": os.getpid()}, stream)
            os.replace(temp, ready_file)

    def done(self) -> None:
        if self.log is not None:
            try:
                self.log.write(stats_record(self.seen, self.started))
            except AuditLogError as e:
                logger.error(str(e))
            self.log.close()
        if self.store is not None:
            self.store.close()

    # --- flows -----------------------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Never stream a body we must inspect: streaming sends it before `request` runs.
        if flow.request.stream:
            flow.request.stream = False

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        self.seen += 1
        if (flow.request.pretty_host or "").lower() == INSPECTION_HOST:
            self._answer_inspection(flow)
            return
        enforce = ctx.options.taudit_mode == "enforce"
        if self.auditor is None or self.log is None:
            self.configure(set())  # hosts that add the addon without a configure round (test harnesses)
        assert self.auditor is not None and self.log is not None
        try:
            request, decision = self._evaluate(flow)
        except Exception as e:  # the engine already fails closed; this guards the adapter itself
            logger.exception("telemetry-audit: auditing failed")
            request = Request(flow.request.method, flow.request.scheme, flow.request.pretty_host, flow.request.port,
                              flow.request.path)
            decision = _error_decision(e, self.auditor.policy.settings.error_action)
        if not decision.telemetry:
            self._pass_other(flow)
            return

        collector = find_collector(request)
        answered_by = collector.name if collector is not None and ctx.options.taudit_offline else ""
        client = client_process(flow) if ctx.options.taudit_client_process else ""
        item = AuditedRequest(request, decision, time=time.time(), client=client)
        record = audit_record(item, mode=ctx.options.taudit_mode, enforced=enforce, answered_by=answered_by)
        try:
            self.log.write(record)
        except AuditLogError as e:
            # Like mitmproxy's save addon: never let traffic through unrecorded.
            logger.error(f"telemetry-audit: {e}; shutting down")
            flow.kill()
            ctx.master.shutdown()
            return
        self._annotate(flow, decision, record)

        if enforce and decision.action is Action.BLOCK:
            self._block(flow, request, collector)
            return
        if enforce and decision.action is Action.REDACT:
            request = _apply_redaction(flow, request, decision)
        if ctx.options.taudit_offline:
            self._answer_offline(flow, request, decision, collector)

    def _evaluate(self, flow: http.HTTPFlow) -> tuple[Request, Decision]:
        """Audit under every name the request goes by, keeping the strictest decision.

        mitmproxy connects to `request.host` (the CONNECT target or absolute URL) while the Host header may
        name another host: a client must not dodge the audit by naming a harmless host in its Host header.
        """
        assert self.auditor is not None
        names = dict.fromkeys(h.lower() for h in (flow.request.pretty_host, flow.request.host) if h)
        audited = [(r, self.auditor.evaluate(r)) for r in (request_from_flow(flow, name) for name in names)]
        return max(audited, key=lambda pair: (pair[1].telemetry, pair[1].action.rank))

    # --- actions ---------------------------------------------------------------------------------------------

    def _annotate(self, flow: http.HTTPFlow, decision: Decision, record: dict[str, Any]) -> None:
        flow.metadata[METADATA_KEY] = {
            "decision": decision.action.value,
            "tool": decision.tool,
            "rule_ids": list(decision.rule_ids),
            "findings": record["findings"],
        }
        mark = _MARKS.get(decision.action)
        if mark and decision.findings:
            flow.marked = mark
        if decision.findings:
            lines = [f"telemetry-audit: {decision.action.value} ({decision.tool or 'telemetry'})"]
            lines += [f"- {f.rule_id} {f.kind.value} {f.field}: {f.preview} {f.message}".rstrip()
                      for f in decision.findings[:20]]
            flow.comment = "\n".join(lines)

    def _block(self, flow: http.HTTPFlow, request: Request, collector: Any) -> None:
        style = ctx.options.taudit_block_style
        if style == "kill":
            flow.kill()
            return
        if style == "403":
            flow.response = http.Response.make(
                403, b'{"error":"blocked by telemetry-audit policy"}', {"Content-Type": "application/json"}
            )
            return
        # A well-formed success, so the tool neither crashes nor retries; the emulator knows the shape.
        status, headers, body = 200, {"Content-Type": "application/json"}, b"{}"
        if collector is not None:
            try:
                answer = collector.handle(request)
                if 200 <= answer.status < 300:
                    status, headers, body = answer.status, dict(answer.headers), answer.body
            except Exception:
                logger.exception("telemetry-audit: collector emulator failed")
        flow.response = http.Response.make(status, body, headers)
        if self.store is not None:
            self.store.add((), good=False, reason="blocked by policy",
                           decision=flow.metadata.get(METADATA_KEY), request_meta=_meta(request))

    def _answer_offline(self, flow: http.HTTPFlow, request: Request, decision: Decision, collector: Any) -> None:
        if collector is None:
            # Telemetry to an endpoint nobody emulates: a generic success keeps the tool quiet.
            flow.response = http.Response.make(200, b"{}", {"Content-Type": "application/json"})
            if self.store is not None:
                self.store.add((), good=False, reason="no emulator for this endpoint",
                               decision=flow.metadata.get(METADATA_KEY), request_meta=_meta(request))
            return
        try:
            answer = collector.handle(request)
        except Exception as e:
            logger.exception("telemetry-audit: collector emulator failed")
            flow.response = http.Response.make(200, b"{}", {"Content-Type": "application/json"})
            if self.store is not None:
                self.store.add((), good=False, reason=f"emulator error: {e}", request_meta=_meta(request))
            return
        flow.response = http.Response.make(answer.status, answer.body, dict(answer.headers))
        if self.store is not None:
            self.store.add(answer.events, good=answer.good, reason=answer.bad_reason,
                           decision=flow.metadata.get(METADATA_KEY), request_meta=_meta(request))

    def _pass_other(self, flow: http.HTTPFlow) -> None:
        """A request that is not telemetry: untouched online; offline, it fails as with no network."""
        if ctx.options.taudit_offline and ctx.options.taudit_offline_unknown == "fail":
            flow.response = http.Response.make(
                502, b"telemetry-audit offline mode: no network for hosts without an emulated collector\n",
                {"Content-Type": "text/plain"},
            )

    def _answer_inspection(self, flow: http.HTTPFlow) -> None:
        if self.store is None:
            self.configure(set())
        assert self.store is not None
        answer = handle_inspection(request_from_flow(flow), self.store)
        if answer is None:
            flow.response = http.Response.make(404, b'{"error":"not found"}', {"Content-Type": "application/json"})
        else:
            flow.response = http.Response.make(answer.status, answer.body, dict(answer.headers))


def _meta(request: Request) -> dict[str, Any]:
    return {"method": request.method, "host": request.host, "path": request.path}


def _error_decision(error: Exception, action: Action) -> Decision:
    from telemetry_audit.model import ENGINE_RULES, Finding, fingerprint

    rule = ENGINE_RULES["audit-error"]
    finding = Finding(rule.id, rule.kind, "body", rule.severity, action, "",
                      fingerprint(rule.id, type(error).__name__),
                      f"auditing failed: {type(error).__name__}: {error}"[:500])
    return Decision(action, (finding,), True)


def _apply_redaction(flow: http.HTTPFlow, request: Request, decision: Decision) -> Request:
    """Rewrite the live request as the decision says; return the request as now sent."""
    body = decision.redacted_body if decision.redacted_body is not None else request.body
    headers = decision.redacted_headers if decision.redacted_headers is not None else request.headers
    query = decision.redacted_query if decision.redacted_query is not None else request.query
    if decision.redacted_headers is not None:
        flow.request.headers = http.Headers([(k.encode(), v.encode()) for k, v in headers])
    if decision.redacted_query is not None:
        flow.request.query = list(query)
    if decision.redacted_body is not None:
        flow.request.raw_content = body
        if "transfer-encoding" in flow.request.headers:
            del flow.request.headers["transfer-encoding"]
        if flow.request.http_version != "HTTP/2.0" or "content-length" in flow.request.headers:
            flow.request.headers["content-length"] = str(len(body))
    return Request(request.method, request.scheme, request.host, request.port, request.path, tuple(query),
                   tuple(headers), body)

