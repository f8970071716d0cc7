"""`/proc/<pid>/stat`, read one way for the sealed supervisor (`inside`) and the unsealed run (`descendants`).

Imports only `os`: the supervisor imports it while the proxy starts.
"""

from __future__ import annotations

from typing import NamedTuple

PF_KTHREAD = 0x00200000
"""The flags bit of a kernel thread (whose environment and command line always read empty)."""


class ProcStat(NamedTuple):
    name: str
    """The executable's name, as the kernel keeps it (at most 15 characters)."""
    state: str
    """`R`, `S`, `Z` (zombie), `X` (dead), ..."""
    session: int
    flags: int


def parse_stat(text: str) -> ProcStat | None:
    """The fields of a stat line; None for one too short. The name may hold spaces and parentheses: it ends at
    the last `)`."""
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 7 or not fields[3].lstrip("-").isdigit() or not fields[6].isdigit():
        return None
    return ProcStat(text[text.find("(") + 1 : text.rfind(")")], fields[0], int(fields[3]), int(fields[6]))


def read_stat(pid: int | str, proc: str = "/proc") -> ProcStat | None:
    """`parse_stat` of a process's stat file; None when it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as stream:
            return parse_stat(stream.read())
    except OSError:
        return None
