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
