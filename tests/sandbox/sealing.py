"""Helpers for sealed-run tests: the CLI as a child process, as this user or an unprivileged one.

Everything stays on this machine: sealed commands reach only the namespaces our own code creates (their
"internet" is the proxy's synthetic addresses) and the test's own server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

TUN = "/dev/net/tun"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                   "no_proxy")


@dataclass(frozen=True)
class User:
    """Who runs the CLI: this process's user, or an unprivileged one created for the test session."""

    name: str
    uid: int
    gid: int
    hidden_prefix: str = ""
    """A directory the interpreter lives under that this user cannot enter (e.g. /root): shown to it in a
    private mount namespace, the system itself is left untouched."""

    def wrap(self, argv: Sequence[str], env: dict[str, str]) -> list[str]:
        if self.uid == os.getuid():
            return list(argv)
        assignments = [f"{k}={v}" for k, v in env.items()]
        as_user = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "env", "-i",
                   *assignments, *argv]
        if not self.hidden_prefix:
            return as_user
        base = sys.base_prefix
        script = ('set -e; stash=$(mktemp -d); mount --bind "$1" "$stash"; '
                  'mount -t tmpfs -o mode=755 tmpfs "$2"; mkdir -p "$1"; mount --move "$stash" "$1"; '
                  'shift 2; exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", base,
                self.hidden_prefix, *as_user]


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update({"TELEMETRY_AUDIT_HOME": str(home / "confdir"), "HOME": str(home), **(extra or {})})
    return env


def run_cli(args: Sequence[str], home: Path, *, user: User | None = None, extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m telemetry_audit ARGS` in `home` (its confdir there), as `user` when given."""
    env = cli_env(home, extra_env)
    argv = [sys.executable, "-m", "telemetry_audit", *args]
    if user is not None:
        argv = user.wrap(argv, env)
    return subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=timeout)


def hidden_prefix(path: str) -> str:
    """The outermost directory on `path` that other users cannot enter, or ''."""
    current = "/"
    for part in Path(path).parts[1:]:
        current = os.path.join(current, part)
        mode = os.stat(current).st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return ""


@contextmanager
def home_for(user: User) -> Iterator[Path]:
    """A fresh directory in /tmp that `user` owns (pytest's own base directory is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="taudit-sealed-", dir="/tmp"))
    os.chmod(path, 0o755)
    os.chown(path, user.uid, user.gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def tun_mode(mode: int) -> Iterator[None]:
    """Give /dev/net/tun `mode` for the duration (0666 is what most distributions ship), then restore it."""
    before = stat.S_IMODE(os.stat(TUN).st_mode)
    os.chmod(TUN, mode)
    try:
        yield
    finally:
        os.chmod(TUN, before)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Answers GET with `host loopback service <path>`: a stand-in for a local database or LocalStack."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = f"host loopback service {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
