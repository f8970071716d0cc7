"""One reader of /proc/<pid>/stat for the sealed supervisor and the unsealed run."""

from __future__ import annotations

import os

import pytest

from telemetry_audit.sandbox.procfs import PF_KTHREAD, ProcStat, parse_stat, read_stat


def test_a_name_with_spaces_and_parentheses_ends_at_the_last_one() -> None:
    assert parse_stat("77 (my (odd) name) S 1 77 70 0 -1 4194560 0 0") == ProcStat("my (odd) name", "S", 70, 4194560)


def test_a_kernel_thread_says_so_in_its_flags() -> None:
    stat = parse_stat("10 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0")
    assert stat is not None and stat.flags & PF_KTHREAD


@pytest.mark.parametrize("text", ["", "12 (x) S 1", "12 (x) S 1 2 three 0 -1 4 0"])
def test_a_short_or_garbled_line_is_none(text: str) -> None:
    assert parse_stat(text) is None


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_this_process_reads_as_running_in_its_own_session() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None and stat.state == "R" and stat.session == os.getsid(0)
    assert not stat.flags & PF_KTHREAD
    assert read_stat(2**22 + 1) is None
