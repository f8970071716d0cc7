"""`run` starts its proxy before the CLI parses (`cli.early`): read from the command line, adopted when the parsed
options agree, ended whenever the CLI ends without adopting it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from telemetry_audit.cli import main
from telemetry_audit.cli.early import EarlyStart, seal_requested, start_early


@pytest.mark.parametrize(("argv", "seal"), [
    (["run", "--", "true"], "auto"),
    (["run", "--seal", "off", "--", "true"], "off"),
    (["run", "--seal=on", "--", "true"], "on"),
    (["run", "--policy", "p.yaml", "--seal", "off", "--format", "json", "--", "true"], "off"),
    (["run", "--", "tool", "--seal", "off"], "auto"),  # the command's own arguments
    (["run", "--seal", "off", "--seal", "on", "--", "true"], "on"),  # the last one wins, as in argparse
    (["run"], "auto"),
    (["run", "--seal"], "auto"),  # argparse's error, once parsed
    (["run", "--seal", "maybe", "--", "true"], None),  # ditto
    (["run", "--help"], None),
    (["run", "-h", "--", "true"], None),
    (["check", "--seal", "off"], None),
    (["proxy"], None),
    ([], None),
    (["--version"], None),
])
def test_the_seal_is_read_from_a_run_command_line_only(argv: list[str], seal: str | None) -> None:
    assert seal_requested(argv) == seal


@pytest.fixture
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Working directories land here, to see whether any is left behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_nothing_starts_for_other_commands(own_tempdir: Path) -> None:
    assert start_early(["check", "--help"]) is None
    assert list(own_tempdir.iterdir()) == []


def test_an_unadopted_proxy_is_ended_and_its_directory_removed(own_tempdir: Path) -> None:
    early = start_early(["run", "--seal", "off", "--", "true"])
    assert isinstance(early, EarlyStart) and early.support is None
    process = early._process
    assert process is not None and process.poll() is None
    assert Path(early.workdir).parent == own_tempdir
    early.discard()
    assert process.poll() is not None
    assert list(own_tempdir.iterdir()) == []


def test_adopting_the_wrong_kind_ends_it_and_keeps_the_directory(own_tempdir: Path) -> None:
    early = start_early(["run", "--seal", "off", "--", "true"])
    assert early is not None
    process = early._process
    assert early.adopt(sealed=True) is None  # the parsed options asked for a sealed run after all
    assert process is not None and process.poll() is not None
    early.discard()
    assert Path(early.workdir).is_dir()  # the caller's now


def test_adopting_the_right_kind_hands_the_proxy_over(own_tempdir: Path) -> None:
    early = start_early(["run", "--seal", "off", "--", "true"])
    assert early is not None
    process = early.adopt(sealed=False)
    try:
        early.discard()
        assert process is not None and process.poll() is None  # still the caller's to configure or end
    finally:
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()


@pytest.mark.parametrize("argv", [
    ["run", "--seal", "off", "--no-such-option", "--", "true"],
    ["run", "--seal", "off", "--", "no-such-command-here"],
    ["run", "--seal", "off", "--output", "/no/such/folder/report.json", "--", "true"],
    ["run", "--seal", "off", "--policy", "/no/such/policy.yaml", "--", "true"],
    ["run", "--seal", "off", "--help"],
])
def test_a_run_that_ends_before_its_command_leaves_no_proxy_nor_directory(argv: list[str], own_tempdir: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = _proxy_children()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code in (0, 2)
    assert list(own_tempdir.iterdir()) == []
    assert _proxy_children() <= before


def _proxy_children() -> set[int]:
    """This process's children that are proxy children (other tests may keep one running)."""
    found = set()
    for pid in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        try:
            if "telemetry_audit.proxy.server" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                found.add(int(pid))
        except OSError:  # gone meanwhile
            pass
    return found


@pytest.mark.parametrize("seal", [["--seal", "off"], ["--sea", "off"]])  # read right, and read wrong at first
def test_a_run_adopts_the_early_proxy_or_starts_the_right_one(seal: list[str], own_tempdir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *seal, "--", "true"]) == 0
    assert "proxy on http://127.0.0.1:" in capsys.readouterr().err
    assert list(own_tempdir.iterdir()) == []


def test_the_early_start_imports_none_of_the_commands_nor_the_core() -> None:
    """What `main` imports before the proxy is spawned is on every run's way; the rest imports while it starts."""
    heavy = ["telemetry_audit.cli.run", "telemetry_audit.cli.common", "telemetry_audit.model",
             "telemetry_audit.policy", "telemetry_audit.proxy.settings", "rich", "yaml", "mitmproxy", "dataclasses"]
    probe = ("import sys\nfrom telemetry_audit.cli.early import start_early\n"
             "early = start_early(['run', '--seal', 'off', '--', 'true'])\n"
             f"loaded = [n for n in {heavy!r} if n in sys.modules]\nearly.discard()\nprint(' '.join(loaded))")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_the_sandbox_is_spawned_before_the_launcher_and_its_imports() -> None:
    """A sealed start's way to its supervisor: the probe and `sandbox.spawn` (os only); the launcher and what it
    imports (dataclasses, json, subprocess: ~20 ms of CPU) come while the supervisor and its proxy start."""
    from telemetry_audit.sandbox.probe import probe_seal

    support = probe_seal()
    if not support.ok:
        pytest.skip(f"cannot seal here: {support.reason}")
    heavy = ["telemetry_audit.sandbox.launcher", "dataclasses", "json", "subprocess", "telemetry_audit.cli.run",
             "telemetry_audit.session", "telemetry_audit.policy", "mitmproxy"]
    probe = ("import sys\nfrom telemetry_audit.sandbox import spawn\nspawn_supervisor = spawn.spawn_supervisor\n"
             "loaded = []\n"
             "def spy(workdir, unshare):\n"
             f"    loaded.extend(n for n in {heavy!r} if n in sys.modules)\n"
             "    return spawn_supervisor(workdir, unshare)\n"
             "spawn.spawn_supervisor = spy\n"
             "from telemetry_audit.cli.early import start_early\n"
             "early = start_early(['run', '--seal', 'on', '--', 'true'])\n"
             "sandbox = early.adopt(sealed=True)\nprint(type(sandbox).__name__, 'loaded:', *loaded)\n"
             "sandbox.abort()\nearly.discard()")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["StartedSealedRun", "loaded:"]
