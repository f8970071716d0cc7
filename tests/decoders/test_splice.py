"""Locating and splicing through the per-body offset index: the same members and bytes as a plain scan."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import bench_engine
from telemetry_audit.decoders import (
    DROP,
    EMBEDDED,
    DecodeError,
    _nesting_exceeds,
    decode_request,
    rewrite_body,
    scan_text,
)
from telemetry_audit.decoders.splice import OffsetIndex, child_holding, splice_json
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Limits, Request
from telemetry_audit.policy import load_policy

# --- child_holding ----------------------------------------------------------------------------------------------

CONTAINERS = [
    '[1,{"a":[2,3]},"x"]',
    '[ 1 ,\n {"a" : [2, 3]}\t, "x" ]',
    '{"k":1,"m":{"a":[2,3]},"z":"x"}',
    '{ "k" : 1 ,\n "m" : { "a" : [ 2 , 3 ] } , "z" : "x"  }',
    '[1.50,1E400,-0,"\\u00e9",[],{}]',
]


def _plain_members(text: str, pos: int) -> list[tuple[Any, int, int]]:
    """(key, value start, value end) of each member, found by asking for every position in turn."""
    found: list[tuple[Any, int, int]] = []
    for first in range(len(text)):
        child = child_holding(OffsetIndex(text), pos, first, first)
        if child is not None and child not in found:
            found.append(child)
    return found


@pytest.mark.parametrize("text", CONTAINERS)
def test_child_holding_with_size_and_end_hints_finds_the_same_members(text: str) -> None:
    tree = json.loads(text)
    expected = _plain_members(text, 0)
    assert [key for key, _, _ in expected] == (list(tree) if isinstance(tree, dict) else list(range(len(tree))))
    for key, start, end in expected:
        assert json.loads(text[start:end]) == tree[key] or text[start:end] in ("1E400", "-0")
    index = OffsetIndex(text, tree)  # the root's size and end are known: its last member is not scanned
    for first in range(len(text)):
        hinted = child_holding(index, 0, first, first, len(text.rstrip()), len(tree))
        assert hinted == child_holding(OffsetIndex(text), 0, first, first), first


@pytest.mark.parametrize("text", CONTAINERS)
def test_child_holding_answers_positions_in_any_order_from_one_index(text: str) -> None:
    index = OffsetIndex(text)
    positions = list(range(len(text)))
    forward = [child_holding(OffsetIndex(text), 0, p, p) for p in positions]
    assert [child_holding(index, 0, p, p) for p in reversed(positions)] == forward[::-1]


def test_a_span_across_two_members_holds_no_single_child() -> None:
    text = '[ "ab" , "cd" ]'
    assert child_holding(OffsetIndex(text), 0, 3, 10) is None
    assert child_holding(OffsetIndex(text), 0, 3, 4) == (0, 2, 6)


@pytest.mark.parametrize("text", ['[1,2', '{"a":1 "b":2}', '[1;2]', "1"])
def test_a_malformed_container_raises_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        splice_json(text, {(1,): "x"}, DROP, EMBEDDED)


def test_an_index_of_another_text_is_refused() -> None:
    with pytest.raises(ValueError, match="not of this text"):
        splice_json('[1]', {(0,): "x"}, DROP, EMBEDDED, OffsetIndex('[2]'))


# --- a batch: the index shared by locating and splicing ---------------------------------------------------------

LEAK = bench_engine.ENVIRONMENT.cwd + "/serverless.yml"


def _batch(indent: int | None) -> tuple[Request, dict[str, Any], list[tuple[int, str]]]:
    """A bench-style batch with leaks in its first, a middle and its last events (two in the middle one)."""
    _, document = bench_engine.make_big_request(120_000)
    document = copy.deepcopy(document)
    batch = document["batch"]
    middle = len(batch) // 2
    planted = [(0, "argv"), (middle, "argv"), (middle, "cwd"), (len(batch) - 1, "argv")]
    for at, name in planted:
        batch[at].setdefault("properties", {})[name] = f"ENOENT: no such file or directory, open '{LEAK}'"
    body = json.dumps(document, indent=indent, separators=None if indent else (",", ":")).encode()
    request = Request.from_url("POST", "https://telemetry.ion.sst.dev/batch/", {"content-type": "application/json"},
                               body)
    return request, document, planted


def _leaves(tree: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    if isinstance(tree, dict):
        return {k: v for key, child in tree.items() for k, v in _leaves(child, (*path, key)).items()}
    if isinstance(tree, list):
        return {k: v for at, child in enumerate(tree) for k, v in _leaves(child, (*path, at)).items()}
    return {path: tree}


@pytest.mark.parametrize("indent", [None, 1])
def test_a_redacted_batch_is_the_document_with_only_the_leaks_rewritten(indent: int | None) -> None:
    request, document, planted = _batch(indent)
    policy = load_policy(["default"])
    fast = Auditor(policy, bench_engine.ENVIRONMENT).evaluate(request)
    full = Auditor(policy, bench_engine.ENVIRONMENT, fast_path=False).evaluate(request)
    assert fast.action is full.action is Action.REDACT
    assert fast.findings == full.findings and fast.redacted_body == full.redacted_body
    assert fast.redacted_body is not None and LEAK.encode() not in fast.redacted_body
    redacted = json.loads(fast.redacted_body)
    # Straightforward reference: the document with each redacted value replaced, serialized as the body was.
    before, after = _leaves(document), _leaves(redacted)
    assert list(before) == list(after)  # same structure, same key order
    changed = {path for path in before if before[path] != after[path]}
    assert {("batch", at, "properties", name) for at, name in planted} <= changed
    expected = copy.deepcopy(document)
    for path in changed:
        assert "[REDACTED:" in after[path]
        node = expected
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = after[path]
    assert fast.redacted_body == json.dumps(expected, indent=indent, separators=None if indent else (",", ":")).encode()


def test_splicing_after_locating_equals_splicing_a_fresh_decode() -> None:
    request, _, planted = _batch(None)
    edits: dict[tuple[Any, ...], Any] = {("batch", at, "properties", name): "[x]" for at, name in planted}
    edits[("batch", 1)] = DROP
    located = decode_request(request)
    text = located.offsets.text
    positions = [m.start() for m in re.finditer(re.escape(LEAK), text)]
    for position, (at, _) in zip(positions, planted, strict=True):  # each leak located as fields_near does
        root_child = child_holding(located.offsets, 0, position, position, len(text), len(located.body_tree))
        assert root_child is not None and root_child[0] == "batch"
        event = child_holding(located.offsets, root_child[1], position, position, root_child[2],
                              len(located.body_tree["batch"]))
        assert event is not None and event[0] == at
    assert rewrite_body(located, edits) == rewrite_body(decode_request(request), edits)
    assert rewrite_body(located, edits) == splice_json(request.body.decode(), edits, DROP, EMBEDDED).encode()


# --- nesting depth of a text without escapes (the scan-text glance) ---------------------------------------------


def _depth(text: str) -> int | None:
    """Deepest nesting outside strings, char by char; None when brackets do not pair."""
    depth = deepest = 0
    inside = False
    stack: list[str] = []
    for char in text:
        if char == '"':
            inside = not inside
        elif not inside and char in "[{":
            stack.append("]" if char == "[" else "}")
            depth += 1
            deepest = max(deepest, depth)
        elif not inside and char in "]}":
            if not stack or stack.pop() != char:
                return None
            depth -= 1
    return deepest if not stack else None


NESTING = [
    ('{"a":[1,{"b":[]}]}', 4),
    ('["]]]]", ["[[[", {"x": "{"}]]', 3),
    ('[""]', 1),
    ('["a""b"]', 1),
    ('[["é", ["ü\U0001f600"]]]', 3),
    ('[[[[[[]]]]]]', 6),
]


@pytest.mark.parametrize(("text", "depth"), NESTING)
@pytest.mark.parametrize("slack", [-1, 0, 1])
def test_nesting_exceeds_counts_only_brackets_outside_strings(text: str, depth: int, slack: int) -> None:
    assert _depth(text) == depth
    assert _nesting_exceeds(text, depth + slack) is (slack < 0)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='"[]{}a ,:é', max_size=60), limit=st.integers(0, 6))
def test_nesting_exceeds_agrees_with_a_char_by_char_count(text: str, limit: int) -> None:
    depth = _depth(text)
    if depth is not None and text.count('"') % 2 == 0:
        assert _nesting_exceeds(text, limit) is (depth > limit)


@pytest.mark.parametrize("extra", [-1, 0, 1, 2, 30, 62])
def test_a_body_nested_past_the_depth_limit_takes_the_full_path(extra: int) -> None:
    """Mixed `{[{[...]}]}` nesting: counting it at half its depth let the glance allow what the full path blocks."""
    depth = Limits().max_depth + extra
    body: Any = "x"
    for level in range(depth):
        body = [body] if level % 2 else {"a": body}
    request = Request.from_url("POST", "https://c.test/e", {"content-type": "application/json"},
                               json.dumps(body).encode())
    assert (scan_text(decode_request(request)) is None) is (extra > 0)
    policy = load_policy(["default"])
    fast = Auditor(policy, bench_engine.ENVIRONMENT).evaluate(request)
    full = Auditor(policy, bench_engine.ENVIRONMENT, fast_path=False).evaluate(request)
    assert fast == full and (fast.action is Action.BLOCK) is (extra > 0)


def test_the_ascii_blocker_class_is_python_white_space() -> None:
    """The RE2 spelling of the base64-document blocker for ASCII texts must see the same white space as the
    Python one (`str.strip` before `sniff_embedded`), or a document would pass unseen at a glance."""
    import re2

    from telemetry_audit.decoders import _ASCII_SPACE
    python = {chr(c) for c in range(128) if re.fullmatch(r"\s", chr(c))}
    ours = {chr(c) for c in range(128) if re2.fullmatch(_ASCII_SPACE, chr(c))}
    assert ours == python == {chr(c) for c in range(128) if chr(c).isspace()}


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='"eWxyz09+/= a\u00a0', max_size=80))
def test_the_ascii_and_unicode_blockers_find_the_same_candidates(text: str) -> None:
    from telemetry_audit.decoders import _SCAN_TEXT_BLOCKERS, _SCAN_TEXT_BLOCKERS_ASCII
    ascii_text = text.replace("\u00a0", " ")
    assert [m.group(0).decode() for m in _SCAN_TEXT_BLOCKERS_ASCII.finditer(ascii_text.encode())] == \
        [m.group(0) for m in _SCAN_TEXT_BLOCKERS.finditer(ascii_text)]
