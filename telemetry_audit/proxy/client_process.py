"""Which local process opened a proxy connection (Linux /proc), named without its arguments.

Only the executable name and pid are reported: command lines carry tokens.
"""

from __future__ import annotations

import os
from typing import Any


def _socket_entry(port: int) -> list[str] | None:
    """The /proc/net/tcp row of the local TCP socket bound to `port` (the client's side of the connection)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as stream:
                next(stream, None)
                for line in stream:
                    parts = line.split()
                    if len(parts) > 9 and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return parts
        except OSError:
            continue
    return None


def _socket_inode(port: int) -> str | None:
    entry = _socket_entry(port)
    return entry[9] if entry else None


def peer_uid(flow: Any) -> int | None:
    """The user id owning a loopback client's socket (Linux), None when unknown or not loopback."""
    try:
        host, port = flow.client_conn.peername[:2]
    except (AttributeError, TypeError, ValueError):
        return None
    if host not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        return None
    entry = _socket_entry(int(port))
    try:
        return int(entry[7]) if entry else None
    except ValueError:
        return None


COMM_LENGTH = 15
"""The kernel cuts `/proc/PID/comm` to this many characters."""


def process_name(pid: str) -> str:
    """The process's full name: `comm`, or when the kernel cut it, the program name it was cut from
    (argv[0] or the executable, without any argument)."""
    with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as stream:
        comm = stream.read().strip()
    if len(comm) < COMM_LENGTH:
        return comm
    candidates = []
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            candidates.append(raw.read().split(b"\0", 1)[0].decode("utf-8", "replace"))
    except OSError:
        pass
    try:
        candidates.append(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        pass
    for candidate in candidates:
        name = os.path.basename(candidate)
        if name.startswith(comm):
            return name
    return comm


def process_for_port(port: int) -> str:
    """`name[pid]` of the process owning the local socket on `port`, or "" when unknown."""
    inode = _socket_inode(port)
    if not inode or inode == "0":
        return ""
    target = f"socket:[{inode}]"
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return ""
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return f"{process_name(pid)}[{pid}]"
        except OSError:
            continue
    return ""


def client_process(flow: Any) -> str:
    """The client process of a mitmproxy flow, when it connected over loopback."""
    # Cache per connection: every flow on a keep-alive connection has the same client. (A sealed run names its
    # clients itself, arriving through the tun interface rather than loopback, and fills this in.)
    key = "telemetry_audit_client"
    cached = getattr(flow.client_conn, key, None)
    if cached is not None:
        return str(cached)
    try:
        host, port = flow.client_conn.peername[:2]
    except (AttributeError, TypeError, ValueError):
        return ""
    if host not in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or not os.path.isdir("/proc/net"):
        return ""
    cached = process_for_port(int(port))
    try:
        setattr(flow.client_conn, key, cached)
    except AttributeError:
        pass
    return str(cached)
