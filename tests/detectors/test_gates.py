"""The set entries that stand in for a pattern (`pii._SET_GATES`, a secret pattern's `prefilter`) are conservative:
wherever the pattern finds something, its gate matches. Checked on every string of the labelled corpus, the
real captures, and a table of hostile and edge cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import re2

from telemetry_audit.detectors import pii, secrets
from telemetry_audit.detectors.base import AuditEnvironment
from tests.detectors.corpus import CAPTURES, load


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _corpus_strings() -> list[str]:
    texts = [text for record in load() for text in _strings(record.event)]
    for path in sorted(CAPTURES.glob("*.json")):
        texts.extend(_strings(json.loads(path.read_text("utf-8"))))
    return texts


EDGE_CASES = [
    "fe80::1", "::1", "2001:db8::8a2e:370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:1.2.3.4",
    "1:2:3:4:5:6:7:8", "07:12:33", "a:b:c", "at 2606:4700:4700::1111%eth0 now",
    "https://alice:hunter2hunter@example.com/x", "postgres://u:p@db:5432/x", "https://github.com/x",
    "password=Zq8vL2pR5tW9yB", "API_KEY: 'k9Zq8vL2pR5tW9yB'", "--api-key k9Zq8vL2pR5tW9yB", "-token=abc12345XYZ",
    "my secret => s3cr3tV4lue!!", "db_password := Tr0ub4dor3horse", "TOKEN\"=\"abcdefgh12345", "token_count: 42",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _corpus_strings() + EDGE_CASES


def test_the_ipv6_gate_matches_wherever_an_address_is_accepted(texts: list[str]) -> None:
    detector = pii.build({"private_ips": True}, AuditEnvironment())
    gate = re2.compile(pii._IPV6_GATE)
    checked = 0
    for text in texts:
        found = [m for m in detector.find(text) if m.detector_id == "pii.ip-address" and ":" in text[m.start:m.end]]
        if found:
            checked += 1
            assert gate.search(text) is not None, text
    assert checked >= 5  # the table's addresses at least


@pytest.mark.parametrize("name", ["basic-auth-url", "generic-assignment"])
def test_a_secret_prefilter_matches_wherever_its_pattern_does(texts: list[str], name: str) -> None:
    pattern = next(p for p in secrets.PATTERNS if p.name == name)
    assert pattern.prefilter
    gate = re2.compile(pattern.prefilter)
    regexes = [re2.compile(source) for source in pattern.patterns]
    checked = 0
    for text in texts:
        if any(regex.search(text) is not None for regex in regexes):
            checked += 1
            assert gate.search(text) is not None, text
    assert checked >= 3


@pytest.mark.parametrize("text", ["07:12:33", "key\n\x00\n:\n\x00\nvalue", "https://github.com/bitinn/node-fetch",
                                  "api_key\n\x00\n:\n\x00\nphc_abc", "token_count"])
def test_the_gates_keep_clean_text_out(text: str) -> None:
    """What the gates are for: common clean text no longer reaches the pattern pass."""
    gates = [re2.compile(pii._IPV6_GATE)] + [re2.compile(p.prefilter) for p in secrets.PATTERNS
                                             if p.name in ("basic-auth-url", "generic-assignment")]
    assert all(gate.search(text) is None for gate in gates)
