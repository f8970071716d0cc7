"""Sealed runs: the audited command in its own namespaces, every packet through the auditing proxy.

`probe_seal()` says whether this machine can seal a run (and why not); `run_sealed()` runs one; in fallback
(proxy variables) mode `descendants` finds what the command left running. Nothing here imports mitmproxy: the
proxy's side lives in `telemetry_audit.proxy.synthetic_dns` and `telemetry_audit.proxy.sealed`.
"""

from __future__ import annotations

SEAL_CHOICES = ("auto", "on", "off")

# Nothing is imported here: the proxy child imports `sandbox.names` and `sandbox.relay` (the pure helpers its
# addons need) without pulling in the launcher, which sits a layer above it. Import from the submodules:
# `sandbox.probe` (probe_seal, SealSupport), `sandbox.launcher` (run_sealed, or start_sealed / spawn_sealed then
# wait or abort; SealedRun, SealedOutcome).
__all__ = ["SEAL_CHOICES"]
