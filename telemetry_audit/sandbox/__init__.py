"""Sealed runs: the audited command in its own namespaces, every packet through the auditing proxy.

`probe_seal()` says whether this machine can seal a run (and why not); `run_sealed()` runs one; in fallback
(proxy variables) mode `descendants` finds what the command left running. Nothing here imports mitmproxy: the
proxy's side lives in `telemetry_audit.proxy.dns` and `telemetry_audit.proxy.sealed`.
"""

from __future__ import annotations

from telemetry_audit.sandbox.launcher import (
    CAPTURE_PROXY_VARIABLES,
    CAPTURE_SEALED,
    LingeringProcess,
    SealedOutcome,
    SealedRun,
    run_sealed,
)
from telemetry_audit.sandbox.probe import SealSupport, probe_seal

SEAL_CHOICES = ("auto", "on", "off")

__all__ = ["CAPTURE_PROXY_VARIABLES", "CAPTURE_SEALED", "SEAL_CHOICES", "LingeringProcess", "SealSupport",
           "SealedOutcome", "SealedRun", "probe_seal", "run_sealed"]
