"""Starting a sealed run in two steps: the sandbox starts, the caller works meanwhile, then waits or aborts."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.sandbox.probe import probe_seal
from telemetry_audit.session import ProxySession
from tests.sandbox.sealing import run_cli


def _marker_command(marker: Path) -> list[str]:
    return [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]


def test_a_started_sealed_run_runs_its_command_once_waited_for(sealable: None, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"), audited_env=dict(os.environ))
    before = signal.getsignal(signal.SIGTERM)
    try:
        started = session.start_sealed(_marker_command(marker), dict(os.environ), probe_seal(), linger=0.0,
                                       online=False, audit_loopback=False)
        assert signal.getsignal(signal.SIGTERM) is not before  # passed on to the sandbox from the start
        outcome = started.wait()
    finally:
        session.close()
    assert (outcome.status, outcome.error) == (0, "")
    assert marker.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_aborted_sealed_run_never_runs_its_command(sealable: None, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"), audited_env=dict(os.environ))
    before = signal.getsignal(signal.SIGTERM)
    try:
        started = session.start_sealed(_marker_command(marker), dict(os.environ), probe_seal(), linger=0.0,
                                       online=False, audit_loopback=False)
        started.abort()
        assert signal.getsignal(signal.SIGTERM) is before
        time.sleep(3)  # longer than a proxy start: a sandbox that outlived the abort would have run it by now
        assert not marker.exists()
        assert not os.path.exists(os.path.join(session.workdir, "sealed-result.json"))
    finally:
        session.close()


def test_a_policy_that_does_not_load_ends_a_sealed_run_before_its_command(sealable: None, tmp_path: Path) -> None:
    """The sandbox starts while the policy loads; the policy's error still ends the run before the command ran."""
    marker = tmp_path / "ran"
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - id: x\n    match: {telemetry: true}\n    action: deny\n")
    result = run_cli(["run", "--seal", "on", "--policy", str(policy), "--", *_marker_command(marker)], tmp_path)
    assert result.returncode == 2
    assert f"{policy}:4:13" in result.stderr and "'deny' is not allowed" in result.stderr
    assert "sealed run" not in result.stderr
    time.sleep(3)
    assert not marker.exists()
