"""The sealed run's supervisor as the launcher starts it (`python -S -P sandbox/__main__.py ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from telemetry_audit.sandbox.spawn import SUPERVISOR_SCRIPT


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


def test_the_supervisor_imports_the_rest_only_once_its_spec_is_here(tmp_path: Path) -> None:
    """Until `run` hands the spec over it is loading its policy, and the proxy is importing: the supervisor only
    waits then, its own imports (ctypes, json, subprocess) come after, so that three processes do not share two
    cores. Seen from outside by the extension modules mapped into it; without a spec it ends its proxy and exits."""
    spec_read, spec_write = os.pipe()
    started_read, started_write = os.pipe()
    supervisor = subprocess.Popen([sys.executable, "-S", "-P", SUPERVISOR_SCRIPT, str(spec_read),
                                   str(tmp_path / "proxy.stderr"), str(started_write)],
                                  pass_fds=(spec_read, started_write), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(spec_read)
    os.close(started_write)
    try:
        assert os.read(started_read, 1) == b"1"
        children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children")
        deadline = time.monotonic() + 30
        while not children.read_text().split() and time.monotonic() < deadline:  # the proxy is spawned
            time.sleep(0.01)
        proxy = int(children.read_text().split()[0])
        time.sleep(0.3)  # time enough to import the rest, if it did
        mapped = Path(f"/proc/{supervisor.pid}/maps").read_text()
        assert "_ctypes" not in mapped and "_posixsubprocess" not in mapped
    finally:
        os.close(spec_write)  # no spec: the supervisor ends its proxy and exits
        os.close(started_read)
        out, err = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 2, err
    assert not Path(f"/proc/{proxy}").exists() or "Z" in Path(f"/proc/{proxy}/stat").read_text().split()[2]
