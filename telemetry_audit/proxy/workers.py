"""Audits of large bodies run in worker processes, so no flow waits on another's audit.

The proxy's event loop serves every connection; a 4 MB body of 95k fields costs seconds of CPU, and a thread
would still hold the GIL. Bodies of `OFF_LOOP_BYTES` or more go to a small process pool instead, while the
loop keeps answering everything else. Each worker builds its own `Auditor` once, from the same policy
references, baseline and audited environment as the proxy's (plain data: nothing of mitmproxy crosses over).
The pool starts on the first large body, so short runs never pay for it.

Acting on a large request is long work too (the emulator reads a batch of tens of thousands of events, and the
store gets a row for each), so the worker does it as well, with the same `dispatch()` the proxy calls inline: its
rows go to a store file of their own, which the proxy moves into its store once the audit record is written
(`EventStore.absorbing`: inside SQLite, a short transaction at a time). Only the decision and the response come
back: unpickling the request's events held the proxy's GIL, and so its loop, for seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from telemetry_audit.collectors import find_collector
from telemetry_audit.collectors.dispatch import dispatch
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import decode_request
from telemetry_audit.decoders.formats import collector_paused
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.model import LISTED_FINDINGS, Action, Decision, Request
from telemetry_audit.report.payload import payload_tree

if TYPE_CHECKING:
    from concurrent.futures import Executor, ProcessPoolExecutor

OFF_LOOP_BYTES = 256 * 1024
"""Bodies at least this large are audited in a worker process."""


@dataclass(frozen=True)
class AuditorRecipe:
    """What a worker needs to build the same `Auditor` as the proxy's."""

    policy: tuple[str, ...]
    fingerprints: frozenset[str]
    environment: AuditEnvironment
    audit_all: bool


_worker_auditor = None


def _init_worker(recipe: AuditorRecipe) -> None:
    global _worker_auditor  # one Auditor per worker process, built once (the process is its scope)
    from telemetry_audit.engine import Auditor
    from telemetry_audit.policy import load_policy

    policy = load_policy(list(recipe.policy) or None, extra_allowlist=recipe.fingerprints)
    _worker_auditor = Auditor(policy, recipe.environment, audit_all=recipe.audit_all)


@dataclass(frozen=True)
class Acting:
    """How the proxy acts on a decision (its options, as plain data), and where a worker leaves its rows."""

    enforce: bool
    offline: bool
    block_style: str
    spool: str
    """A private directory (the rows hold payloads as sent) for the worker's store files."""
    collector: bool = False
    """The standalone collector: every request is answered by the dispatcher (404 to what no emulator speaks)."""
    refuse_unrecognised: bool = False
    """Offline with `audit_all`: a request audited only because everything is gets no answer (`_act`)."""


@dataclass(frozen=True)
class PreparedAnswer:
    """The dispatcher's answer, given in a worker, and the store file holding the rows it recorded.

    The response alone, not the `OfflineAnswer`'s events: unpickling tens of thousands of them held the proxy's GIL
    (and so its event loop) for seconds; they are in the rows.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    blocked: bool
    """Answered as blocked by policy (the dispatcher's `blocked`): the proxy checks it made the same choice."""
    rows: str
    """A store file of this request's rows alone, moved into the proxy's store once the audit record is written."""

    def discard(self) -> None:
        """Remove the store file (absorbed, or the flow ended another way)."""
        _remove_store_file(self.rows)


def _remove_store_file(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


@dataclass(frozen=True)
class WorkerResult:
    """What comes back from a worker: the strictest decision, under which name, and the answer if one is due.

    Small on purpose: unpickling it holds the proxy's GIL, so neither the read body nor its events come back
    (the decision keeps at most `LISTED_FINDINGS` findings, and the redacted body when there is one).
    """

    index: int
    """Which of the requests (names) the decision is for."""
    decision: Decision
    prepared: PreparedAnswer | None
    """The dispatcher's answer when the request is answered locally (offline, or blocked with an emulated
    success); None when the proxy has nothing to dispatch (not telemetry, online, killed, 403)."""
    payload: dict[str, Any] | None = None
    """The decoded, masked payload (`report.payload`, bounded) of telemetry no emulator understands: built here,
    where the body is decoded, not again in the proxy."""


def decision_metadata(decision: Decision, findings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The decision as the flow's metadata holds it and every stored row keeps it.

    `findings` when the caller has them as dicts already (the audit record's), else from the decision.
    """
    return {
        "decision": decision.action.value,
        "tool": decision.tool,
        "rule_ids": list(decision.rule_ids),
        "findings": findings if findings is not None else [f.to_dict() for f in decision.findings[:LISTED_FINDINGS]],
    }


def dispatched(decision: Decision, acting: Acting) -> bool | None:
    """Whether the proxy answers this request through the dispatcher: True blocked, False answered, None not.

    The rules of `TelemetryAudit._act`, for the worker to answer what the proxy would answer.
    """
    if not decision.telemetry and not acting.collector:
        return None
    if acting.enforce and decision.action is Action.BLOCK:
        return True if acting.block_style not in ("kill", "403") else None
    return False if acting.offline else None


def redacted_request(request: Request, decision: Decision) -> Request:
    """`request` as sent after the decision's redaction (body, headers with trailers, query)."""
    body = decision.redacted_body if decision.redacted_body is not None else request.body
    headers = decision.redacted_headers if decision.redacted_headers is not None else request.headers
    query = decision.redacted_query if decision.redacted_query is not None else request.query
    return Request(request.method, request.scheme, request.host, request.port, request.path, tuple(query),
                   tuple(headers), body)


def audit_in_worker(requests: Sequence[Request], acting: Acting) -> WorkerResult:
    """Decide each request (the same request under each name it goes by), reading the body once; then give the
    dispatcher's answer, its rows in a store file of their own, the way the proxy would have inline.

    The garbage collector is paused throughout (a large body's tree is freed before it resumes)."""
    with collector_paused():  # only large bodies come here
        return _audit_in_worker(requests, acting)


def _audit_in_worker(requests: Sequence[Request], acting: Acting) -> WorkerResult:
    assert _worker_auditor is not None
    decoded = _worker_auditor.decode(requests[0])
    decodes = [decoded if i == 0 else replace(decoded, request=r, _fields=None) for i, r in enumerate(requests)]
    decisions = [_worker_auditor.audit(d) for d in decodes]
    index = max(range(len(requests)), key=lambda k: (decisions[k].telemetry, decisions[k].action.rank))
    decision = decisions[index]
    if len(decision.findings) > LISTED_FINDINGS:
        decision = replace(decision, findings=decision.findings[:LISTED_FINDINGS],
                           omitted_findings=len(decision.findings) - LISTED_FINDINGS)
    payload = None
    if decision.telemetry and find_collector(requests[index], by_path=True) is None:
        payload = payload_tree(requests[index], decision, decodes[index])
    blocked = dispatched(decision, acting)
    if blocked is None or (acting.refuse_unrecognised and not _worker_auditor.recognised(requests[index])):
        return WorkerResult(index, decision, None, payload)
    chosen = decodes[index]
    if not blocked and acting.enforce and decision.action is Action.REDACT:
        chosen = decode_request(redacted_request(requests[index], decision))  # the emulator answers what is sent
    descriptor, rows = tempfile.mkstemp(prefix="rows-", suffix=".sqlite", dir=acting.spool)
    os.close(descriptor)
    try:
        with EventStore(rows) as store:
            metadata = decision_metadata(decision)
            if payload is not None:  # stored instead of the raw body, as inline (`collectors.dispatch.record`)
                metadata["payload"] = payload
            answer = dispatch(chosen, store, decision=metadata, blocked=blocked, not_found=acting.collector)
    except BaseException:
        _remove_store_file(rows)
        raise
    return WorkerResult(index, decision, PreparedAnswer(answer.status, answer.headers, answer.body, blocked, rows),
                        payload)


class AuditPool:
    """A lazily started process pool for large audits, and the private directory its workers leave rows in."""

    def __init__(self, recipe: AuditorRecipe, workers: int | None = None) -> None:
        self.recipe = recipe
        self.workers = workers or max(1, min(2, (os.cpu_count() or 1)))
        self._executor: ProcessPoolExecutor | None = None
        self._spool: str | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            # Imported with the first large audit, not at start-up (most runs never start the pool).
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the proxy process runs an event loop and threads, which a fork would copy half-way.
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                                 initargs=(self.recipe,))
        return self._executor

    def spool(self) -> str:
        """The directory for workers' store files (mode 0700: rows hold payloads as sent, tokens included)."""
        if self._spool is None:
            self._spool = tempfile.mkdtemp(prefix="taudit-rows-")
        return self._spool

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
