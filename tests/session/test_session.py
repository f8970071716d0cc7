"""`ProxySession` start-up: the child is spawned before its configuration is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.session import ProxySession


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
