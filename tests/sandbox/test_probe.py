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


def _sealable_or_skip() -> None:
    if not probe_seal(trial=False).ok:
        pytest.skip("this machine cannot seal")


def test_a_successful_trial_is_remembered_and_skipped_next_time(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    _sealable_or_skip()
    monkeypatch.setenv(probe.CACHE_VARIABLE, str(tmp_path / "cache"))
    first = probe_seal()
    if not first.ok:
        pytest.skip(first.reason)
    assert not first.remembered
    assert (tmp_path / "cache" / "seal-probe").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr(probe, "_trial_namespace", lambda unshare: pytest.fail("the trial ran again"))
    second = probe_seal()
    assert second.ok and second.remembered
    probe.forget_verdict(second)
    assert not (tmp_path / "cache" / "seal-probe").exists()


@pytest.mark.parametrize("tamper", ["other key", "group writable", "symlink", "other unshare"])
def test_a_verdict_that_does_not_apply_is_not_trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      tamper: str) -> None:
    _sealable_or_skip()
    cache = tmp_path / "cache"
    monkeypatch.setenv(probe.CACHE_VARIABLE, str(cache))
    if not probe_seal().ok:
        pytest.skip("this machine cannot seal")
    verdict = cache / "seal-probe"
    if tamper == "other key":
        verdict.write_text("another-boot|0|0\n")
    elif tamper == "group writable":
        verdict.chmod(0o620)
    elif tamper == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text(verdict.read_text())
        target.chmod(0o600)
        verdict.unlink()
        verdict.symlink_to(target)
    else:
        copy = tmp_path / "unshare"
        copy.write_bytes(Path(probe.unshare_binary() or "").read_bytes())
        copy.chmod(0o755)
        monkeypatch.setenv(probe.UNSHARE_VARIABLE, str(copy))
    trials: list[str] = []
    monkeypatch.setattr(probe, "_trial_namespace", lambda unshare: trials.append(unshare) or "")
    support = probe_seal()
    assert support.ok and not support.remembered and len(trials) == 1


def test_a_failed_trial_is_never_remembered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _sealable_or_skip()
    monkeypatch.setenv(probe.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "_trial_namespace", lambda unshare: "cannot create a user + network namespace: no")
    assert not probe_seal().ok
    assert not (tmp_path / "cache" / "seal-probe").exists()


def test_remembering_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _sealable_or_skip()
    monkeypatch.setenv(probe.CACHE_VARIABLE, "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(probe, "_trial_namespace", lambda unshare: "")
    assert probe_seal().ok and not probe_seal().remembered
    assert not list(tmp_path.rglob("seal-probe"))
