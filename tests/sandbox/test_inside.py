"""The supervisor's pure helpers (its sealed behaviour is tested end to end in test_sealed_run.py)."""

from __future__ import annotations

import pytest

from telemetry_audit.sandbox.inside import _batch_failed_line


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
