from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telemetry_audit.proxy.client_process import COMM_LENGTH, process_name

pytestmark = pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs Linux /proc")


def _comm_after_exec(pid: int, expected: str) -> str:
    """The child's comm once it has exec'd (right after fork it is still the parent's)."""
    deadline = time.monotonic() + 10
    comm = ""
    while time.monotonic() < deadline:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if comm == expected:
            break
        time.sleep(0.02)
    return comm


@pytest.mark.parametrize("name", ["short-name", "a-program-with-a-long-name"])
def test_full_process_name_even_when_the_kernel_cuts_it(tmp_path: Path, name: str) -> None:
    program = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    child = subprocess.Popen([str(program), "30"])
    try:
        comm = _comm_after_exec(child.pid, name[:COMM_LENGTH])
        assert len(comm) == min(len(name), COMM_LENGTH)
        assert process_name(str(child.pid)) == name
    finally:
        child.kill()
        child.wait()


def test_arguments_never_appear() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--token=SECRET"])
    try:
        assert "SECRET" not in process_name(str(child.pid))
    finally:
        child.kill()
        child.wait()
