"""Span bookkeeping shared by the detector families.

A family may report the same bytes twice (a generic `password=` rule over a
GitHub token, an e-mail address inside a git remote). Keeping only the
outermost match gives one finding per leak and one span per redaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from telemetry_audit.detectors.base import Match


def outermost(matches: Iterable[Match]) -> list[Match]:
    """`matches` without those lying inside another one, ordered by position.

    For identical spans the earlier match wins, so families list their most
    specific detectors first.
    """
    ordered = sorted(enumerate(matches), key=lambda im: (im[1].start, -im[1].end, im[0]))
    kept: list[Match] = []
    reach = -1
    for _, match in ordered:
        if match.end <= reach and kept:
            continue
        kept.append(match)
        reach = max(reach, match.end)
    return kept
