"""The supervisor's pure helpers (its sealed behaviour is tested end to end in test_sealed_run.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from telemetry_audit.sandbox.inside import InsideSpec, Supervisor, _batch_failed_line
from telemetry_audit.sandbox.proxy_start import ProxyTimeout, StartedProxy


@pytest.mark.parametrize(("stderr", "line"), [
    (b'Cannot find device "nosuch"\nCommand failed -:2\n', 2),
    (b"RTNETLINK answers: File exists\nCommand failed -:12", 12),
    (b"RTNETLINK answers: Operation not permitted\n", 0),  # an `ip` that does not say
    (b"", 0),
    (b"Command failed -:\n", 0),
    (b"Command failed -:x1\n", 0),
    (b"Command failed -:1\nCommand failed -:3\n", 3),  # the last one is where it stopped
])
def test_the_failed_batch_line_is_read_from_ip_s_error_output(stderr: bytes, line: int) -> None:
    assert _batch_failed_line(stderr) == line


def _started(script: str, tmp_path: Path) -> StartedProxy:
    """A stand-in proxy (a shell, spawned as `spawn_proxy` spawns the real one): its standard output a pipe."""
    ready_read, ready_write = os.pipe()
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", script], {"READY": str(tmp_path / "tun-ready")},
                         file_actions=[(os.POSIX_SPAWN_DUP2, ready_write, 1)])
    os.close(ready_write)
    return StartedProxy(pid, -1, ready_read)


@pytest.mark.parametrize(("script", "error"), [
    ('echo "{}" > "$READY"; echo \'{"port": 8080}\'; sleep 30', ""),  # the tun file, then the ready line
    ('echo \'{"port": 8080}\'; sleep 30', "the proxy did not bring its tun interface up"),  # listening, no tun
    ("exit 3", "the proxy exited with status 3"),  # gone without a ready line
    ('echo "{}" > "$READY"; exit 0', ""),  # gone after its tun came up: noticed when the command runs
])
def test_the_supervisor_waits_for_the_proxy_s_ready_line_or_its_end(tmp_path: Path, script: str, error: str) -> None:
    spec = InsideSpec(proxy_config={}, proxy_ready_file=str(tmp_path / "tun-ready"), tun_name="taudit0",
                      command=["true"], env={}, cwd=str(tmp_path), result_file=str(tmp_path / "result.json"))
    proxy = _started(script, tmp_path)
    supervisor = Supervisor(spec, proxy)
    try:
        if error:
            with pytest.raises(RuntimeError, match=error):
                supervisor._wait_for_proxy()
        else:
            supervisor._wait_for_proxy()
        assert proxy.ready_fd == -1  # closed: nothing else comes on it
    finally:
        proxy.kill()
        proxy.wait()


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "poll"])
def test_a_started_proxy_is_waited_for_until_it_exits_or_the_time_runs_out(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          pidfd: bool) -> None:
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    proxy = _started("echo ready; exec sleep 30", tmp_path)
    try:
        assert os.read(proxy.ready_fd, 6) == b"ready\n"
        with pytest.raises(ProxyTimeout):
            proxy.wait(0.05)
        assert proxy.returncode is None
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(20) == -signal.SIGTERM
        assert proxy.poll() == -signal.SIGTERM
    finally:
        proxy.kill()
        os.close(proxy.ready_fd)
