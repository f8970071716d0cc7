"""The sealed run's supervisor as the launcher starts it (`python -S -P sandbox/__main__.py ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from telemetry_audit.sandbox.launcher import SUPERVISOR_SCRIPT


def test_a_supervisor_whose_launcher_has_gone_ends_quietly(tmp_path: Path) -> None:
    """`run` ends its early sandbox at once on a usage error, often before the supervisor has said it started:
    the supervisor must then end without a word on the user's terminal (and without starting the proxy)."""
    spec_read, spec_write = os.pipe()
    started_read, started_write = os.pipe()
    os.close(started_read)  # the launcher is gone
    os.close(spec_write)
    try:
        result = subprocess.run([sys.executable, "-S", "-P", SUPERVISOR_SCRIPT, str(spec_read),
                                 str(tmp_path / "proxy.stderr"), str(started_write)],
                                pass_fds=(spec_read, started_write), capture_output=True, text=True, timeout=60)
    finally:
        os.close(spec_read)
        os.close(started_write)
    assert result.returncode == 2
    assert result.stderr == "" and result.stdout == ""
    assert not (tmp_path / "proxy.stderr").exists()  # the proxy was never spawned
