"""A sealed run's first step, with nothing but `os`: `unshare`, and in it the supervisor (which starts the proxy).

`run` spawns it before it parses its command line (`cli.early`), so everything on the way there is on the way of
every sealed start; the launcher's other needs (`dataclasses`, `json`, `subprocess`: ~20 ms of CPU) are imported
after it, while the supervisor and its proxy start. `launcher.spawn_sealed` wraps it.
"""

from __future__ import annotations

import os
import signal
import sys

from telemetry_audit.sandbox.probe import UNSHARE_FLAGS
from telemetry_audit.sandbox.proxy_start import StartedProxy

SUPERVISOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
"""Run as a file under `python -S`: the supervisor starts (and spawns the proxy) sooner without `site`."""


def ready_file(workdir: str) -> str:
    """The proxy writes it once its tun interface is up."""
    return os.path.join(workdir, "tun-ready")


def result_file(workdir: str) -> str:
    """The supervisor writes how the run ended here."""
    return os.path.join(workdir, "sealed-result.json")


class SpawnedSupervisor:
    """What `spawn_supervisor` started: the `unshare` process (None when it could not start, then `error` says
    why), the pipe the spec is written to, and the one the supervisor writes its first byte to."""

    def __init__(self, process: StartedProxy | None, error: str, spec_write: int, started_read: int) -> None:
        self.process = process
        """`unshare`'s pid and the few `Popen` methods the launcher uses (`poll`, `wait`, `kill`)."""
        self.error = error
        self.spec_write = spec_write
        self.started_read = started_read


def spawn_supervisor(workdir: str, unshare: str) -> SpawnedSupervisor:
    """Start `unshare` and in it the supervisor, which spawns the proxy first and then waits for its spec."""
    for stale in (ready_file(workdir), result_file(workdir)):  # a previous sealed run in the same directory
        if os.path.exists(stale):
            os.unlink(stale)
    spec_read, spec_write = os.pipe()
    started_read, started_write = os.pipe()  # the supervisor's first act is to write a byte to it
    argv = [unshare or "unshare", *UNSHARE_FLAGS, "--", sys.executable, "-S", "-P", SUPERVISOR_SCRIPT,
            str(spec_read), os.path.join(workdir, "proxy.stderr"), str(started_write)]
    try:
        # Only these two pipe ends (and the standard streams) are passed on: every other descriptor of this process
        # is non-inheritable, as Python opens them.
        os.set_inheritable(spec_read, True)
        os.set_inheritable(started_write, True)
        pid = os.posix_spawnp(argv[0], argv, os.environ,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))  # as Popen's restore_signals
    except OSError as e:
        os.close(spec_write)
        return SpawnedSupervisor(None, f"cannot start {argv[0]}: {e.strerror or e}", -1, started_read)
    finally:
        os.close(spec_read)
        os.close(started_write)
    return SpawnedSupervisor(StartedProxy(pid, -1), "", spec_write, started_read)
