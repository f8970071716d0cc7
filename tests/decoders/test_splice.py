"""Locating and splicing through the per-body offset index: the same members and bytes as a plain scan."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from benchmarks import bench_engine
from telemetry_audit.decoders import DROP, EMBEDDED, DecodeError, decode_request, rewrite_body
from telemetry_audit.decoders.splice import OffsetIndex, child_holding, splice_json
from telemetry_audit.engine import Auditor
from telemetry_audit.model import Action, Request
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
