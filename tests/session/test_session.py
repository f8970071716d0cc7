"""`ProxySession` start-up: the child is spawned before its configuration is built."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.session import ProxySession, wait_for_exit


def test_a_configuration_that_cannot_be_built_stops_the_spawned_child(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"), workdir=str(tmp_path / "work"))
    (tmp_path / "work").mkdir()

    def broken(**kwargs: object) -> dict[str, object]:
        raise OSError("cannot read the environment")

    monkeypatch.setattr(session, "config", broken)
    with pytest.raises(OSError, match="cannot read the environment"):
        session.launch()
    assert session.process is not None
    assert session.process.poll() is not None  # stopped, not left waiting for a configuration


def test_a_launched_session_listens_and_stops_cleanly(tmp_path: Path) -> None:
    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"))
    with session:
        assert session.port > 0 and session.alive()
    assert not session.alive()
    assert session.process is not None and session.process.returncode == 0


@pytest.mark.parametrize("sources", [(), ("default",)])
def test_the_child_is_handed_the_policy_with_the_options_it_was_loaded_from(tmp_path: Path,
                                                                           sources: tuple[str, ...]) -> None:
    from telemetry_audit.policy import load_policy
    from telemetry_audit.proxy.handover import decode_policy

    session = ProxySession(ProxySettings(policy=sources), confdir=str(tmp_path / "confdir"),
                           workdir=str(tmp_path))
    policy = load_policy(list(sources) or None)
    config = session.config(policy=policy)
    handed = decode_policy(config["policy"])
    assert handed.fits(config["options"]["taudit_policy"], config["options"]["taudit_baseline"])
    assert handed.policy.files == policy.files
    assert "policy" not in session.config()  # without one, the child loads the files itself


def test_a_session_spawned_first_listens_once_handed_its_configuration(tmp_path: Path) -> None:
    from telemetry_audit.policy import load_policy

    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"))
    try:
        session.spawn()
        assert session.alive()
        session.hand_over(policy=load_policy(None)).wait_ready()
        assert session.port > 0
    finally:
        assert session.close() == 0
    assert not Path(session.workdir).exists()


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "popen-wait"])
@pytest.mark.parametrize(("script", "timeout", "status"), [
    ("echo ready; sleep 30", 20.0, -signal.SIGTERM),  # ends on SIGTERM
    ("trap 'exit 7' TERM; echo ready; sleep 30 & wait", 20.0, 7),  # its own status
    ("trap '' TERM; echo ready; sleep 30 & wait", 0.3, -signal.SIGKILL),  # ignores it: killed once `timeout` runs out
])
def test_stop_waits_for_the_child_and_returns_its_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         pidfd: bool, script: str, timeout: float,
                                                         status: int) -> None:
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd here")
    session = ProxySession(ProxySettings(), confdir=str(tmp_path / "confdir"), workdir=str(tmp_path))
    session.process = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert session.process.stdout is not None
        assert session.process.stdout.readline() == b"ready\n"  # its trap is set
        assert session.stop(timeout) == status
        assert session.process.returncode == status
    finally:
        try:
            os.killpg(session.process.pid, signal.SIGKILL)  # the shell's own sleep
        except ProcessLookupError:
            pass


def test_wait_for_exit_says_when_the_time_runs_out() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_for_exit(process, 0.05)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
