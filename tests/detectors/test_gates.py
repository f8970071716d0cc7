"""The set entries that stand in for a pattern (`pii._SET_GATES`, a secret pattern's `prefilter`) are conservative:
wherever the pattern finds something, its gate matches. Checked on every string of the labelled corpus, the
real captures, and a table of hostile and edge cases. Every family keeps the `GatedDetector` contract: given its
gate's hits (from its own set or from a joint gate of every family), it finds exactly what `find` finds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_audit.detectors import FAMILIES, pii, secrets
from telemetry_audit.detectors.base import ALWAYS, AuditEnvironment, GatedDetector, JointGate, gate_set
from tests.detectors.corpus import CAPTURES, TEST_ENVIRONMENT, load


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


@pytest.mark.parametrize("pattern", [pii._EMAIL, pii._URL_USER, pii._GIT_SCP], ids=["email", "url-user", "git-scp"])
def test_a_pii_set_gate_matches_wherever_its_pattern_does(texts: list[str], pattern: str) -> None:
    """The gates that replaced bounded repeats in the pii set (they thrashed RE2's DFA on high-entropy text)."""
    gate = re2.compile(pii._SET_GATES[pattern])
    regex = re2.compile(pattern)
    checked = 0
    for text in texts + ["alice.smith@initech.example", "git@github.com:acme/billing.git", "x a@b.co y",
                         "https://alice:pw@example.com", "svn+ssh://bob@host.example/r", "u@h.c:r/p"]:
        if regex.search(text) is not None:
            checked += 1
            assert gate.search(text) is not None, text
    assert checked >= 3


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab9._%+-@:/#?'\"[] \n", max_size=60))
def test_a_pii_set_gate_matches_wherever_its_pattern_does_on_any_text(text: str) -> None:
    """Unlike the IPv6 gate (which holds only for addresses `_accept_ip` takes), these hold for any match."""
    for pattern in (pii._EMAIL, pii._URL_USER, pii._GIT_SCP):
        if re2.search(pattern, text) is not None:
            assert re2.search(pii._SET_GATES[pattern], text) is not None, (pattern, text)


def _detectors() -> dict[str, GatedDetector]:
    built: dict[str, Any] = {
        "secrets": FAMILIES["secrets"]({}, TEST_ENVIRONMENT),
        "secrets, secret_names": FAMILIES["secrets"]({"secret_names": ["launch_code"]}, TEST_ENVIRONMENT),
        "paths": FAMILIES["paths"]({}, TEST_ENVIRONMENT),
        "env_values": FAMILIES["env_values"]({}, TEST_ENVIRONMENT),
        "pii": FAMILIES["pii"]({"private_ips": True}, TEST_ENVIRONMENT),
        "canary": FAMILIES["canary"]({}, AuditEnvironment(canaries=("TA-CANARY-7f3e9a1c",))),
    }
    return built


def _gate_texts(texts: list[str]) -> list[str]:
    """The corpus strings, long texts made of them (a scan text's shape), and high-entropy text."""
    joined = ["\n\x00\n".join(texts[i:i + 40]) for i in range(0, len(texts), 40)]
    return texts + joined + ["Zq8vL2pR5tW9yBx7Kd3a" * 80, "0123456789abcdef:-." * 80, "x TA-CANARY-7f3e9a1c y",
                             "\x00\nlaunch_code\n\x00\n: \n\x00\nZq8vL2pR5tW9yBx7Kd3a\n\x00\n"]


@pytest.mark.parametrize("name", list(_detectors()))
def test_find_gated_finds_what_find_finds(texts: list[str], name: str) -> None:
    """Given the hits of its own gate, or its part of a joint gate's, a detector finds exactly what `find` finds;
    where no entry of its gate hits, `find` finds nothing (what lets the engine skip it)."""
    detectors = _detectors()
    detector = detectors[name]
    own = gate_set(detector.gate)
    joint = JointGate([d.gate for d in detectors.values()])
    position = list(detectors).index(name)
    found_any = 0
    for text in _gate_texts(texts):
        expected = list(detector.find(text))
        hits = own.Match(text) or []
        assert sorted(joint.hits(text).get(position, [])) == sorted(hits)
        assert list(detector.find_gated(text, hits)) == expected, text[:200]
        if not hits:
            assert expected == [], text[:200]
        found_any += bool(expected)
    assert found_any >= 1


def test_a_detector_with_work_no_pattern_predicts_has_a_gate_that_always_matches() -> None:
    """`secret_names` makes any name say secret: the name-value pairs of every scan text are read."""
    assert ALWAYS not in FAMILIES["secrets"]({}, TEST_ENVIRONMENT).gate
    named = FAMILIES["secrets"]({"secret_names": ["launch_code"]}, TEST_ENVIRONMENT)
    assert ALWAYS in named.gate
    assert gate_set(named.gate).Match("plain words")


def test_a_joint_gate_re2_cannot_run_says_so() -> None:
    many = tuple(f"(?i)[a-z]{{1,40}}@{i}[a-z]{{1,40}}" for i in range(200))
    assert JointGate([many]).usable
    import telemetry_audit.detectors.base as base
    originals = base.JOINT_GATE_MAX_MEM, base.SET_MAX_MEM_LIMIT
    base.JOINT_GATE_MAX_MEM = base.SET_MAX_MEM_LIMIT = 1 << 10  # a budget RE2 cannot compile it in, never grown
    try:
        small = JointGate([many])
    finally:
        base.JOINT_GATE_MAX_MEM, base.SET_MAX_MEM_LIMIT = originals
    assert not small.usable


def test_a_set_past_its_budget_grows_it_until_it_compiles() -> None:
    """RE2 has no slower fallback for a set: one whose program outgrows its budget does not compile at all."""
    needles = [re2.escape(f"needle-{i:05d}-" + "x" * 30) for i in range(3000)]
    with pytest.raises(re2.error):
        _compile_at(needles, 8 << 20)  # what the default budget did
    assert gate_set(needles).Match("a needle-02999-" + "x" * 30) == [2999]


def _compile_at(entries: list[str], budget: int) -> None:
    options = re2.Options()
    options.max_mem = budget
    found = re2.Set.SearchSet(options)
    for entry in entries:
        found.Add(entry)
    found.Compile()
