"""`probe_seal`: each missing requirement gives a reason a user can act on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from telemetry_audit.sandbox import probe
from telemetry_audit.sandbox.probe import probe_seal


def test_a_failing_namespace_call_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(probe.UNSHARE_VARIABLE, "/bin/false")
    support = probe_seal()
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert not support.ok
    assert support.reason.startswith("cannot create a user + network namespace")


def test_a_missing_unshare_binary_is_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(probe.UNSHARE_VARIABLE, str(tmp_path / "no-such-unshare"))
    support = probe_seal()
    assert not support.ok and "no-such-unshare" in support.reason


def test_a_missing_tun_device_is_the_reason(tmp_path: Path) -> None:
    support = probe_seal(tun_device=str(tmp_path / "tun"), trial=False)
    assert not support.ok
    if sys.platform.startswith("linux") and support.reason.endswith("(no tun device)"):
        assert support.reason == f"{tmp_path / 'tun'} does not exist (no tun device)"


def test_an_inaccessible_tun_device_is_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    device = tmp_path / "tun"
    device.write_bytes(b"")
    device.chmod(0o600)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    support = probe_seal(tun_device=str(device), trial=False)
    assert not support.ok
    if "tun" in support.reason:
        assert support.reason.startswith(f"{device} is not readable and writable by this user (mode 600")


def test_not_linux_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert probe_seal() == probe.SealSupport(False, "sealing needs Linux network namespaces (this is darwin)")


def test_this_machine_can_seal_or_says_why() -> None:
    support = probe_seal()
    assert support.ok == (support.reason == "")
    if support.ok:
        assert support.unshare and support.ip
