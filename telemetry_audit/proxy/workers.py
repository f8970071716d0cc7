"""Audits of large bodies run in worker processes, so no flow waits on another's audit.

The proxy's event loop serves every connection; a 4 MB body of 95k fields costs seconds of CPU, and a thread
would still hold the GIL. Bodies of `OFF_LOOP_BYTES` or more go to a small process pool instead, while the
loop keeps answering everything else. Each worker builds its own `Auditor` once, from the same policy
references, baseline and audited environment as the proxy's (plain data: nothing of mitmproxy crosses over).
The pool starts on the first large body, so short runs never pay for it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace

from telemetry_audit.decoders import DecodedRequest
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.model import LISTED_FINDINGS, Decision, Request

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
class WorkerResult:
    """What comes back from a worker: a decision per name, and the body as read (so nothing reads it again)."""

    decisions: list[Decision]
    plain_body: bytes | None
    text: str | None
    body_format: str
    charset: str

    def decoded_for(self, request: Request) -> DecodedRequest:
        """A `DecodedRequest` for the emulator: the plain body without the fields (the audit is done)."""
        return DecodedRequest(request=request, body_format=self.body_format, plain_body=self.plain_body,
                              text=self.text, charset=self.charset)


def audit_in_worker(requests: Sequence[Request]) -> WorkerResult:
    """Decide each request (the same request under each name it goes by), reading the body once."""
    assert _worker_auditor is not None
    decoded = _worker_auditor.decode(requests[0])
    decisions = [_worker_auditor.audit(decoded if i == 0 else replace(decoded, request=r, _fields=None))
                 for i, r in enumerate(requests)]
    listed = [replace(d, findings=d.findings[:LISTED_FINDINGS], omitted_findings=len(d.findings) - LISTED_FINDINGS)
              if len(d.findings) > LISTED_FINDINGS else d for d in decisions]
    return WorkerResult(listed, decoded.plain_body, decoded.text, decoded.body_format, decoded.charset)


class AuditPool:
    """A lazily started process pool for large audits."""

    def __init__(self, recipe: AuditorRecipe, workers: int | None = None) -> None:
        self.recipe = recipe
        self.workers = workers or max(1, min(2, (os.cpu_count() or 1)))
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            # spawn: the proxy process runs an event loop and threads, which a fork would copy half-way.
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                                 initargs=(self.recipe,))
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
