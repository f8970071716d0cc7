"""The policy model's pieces on their own: field-path steps, `when` conditions and payload shapes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from telemetry_audit.model import FieldValue
from telemetry_audit.policy.model import Condition, PayloadShape, path_steps


@pytest.mark.parametrize(("path", "steps"), [
    ("events[0].metadata.session_id", ["events", "[0]", ".metadata", ".session_id"]),
    ("events[].name", ["events", "[]", ".name"]),
    ('tags["ai.device.id"][2].x', ["tags", '["ai.device.id"]', "[2]", ".x"]),
    ("header.localstack-session-id", ["header", ".localstack-session-id"]),
])
def test_path_steps(path: str, steps: list[str]) -> None:
    assert path_steps(path) == steps and "".join(steps) == path


def _field(path: str, generic: str, value: str) -> FieldValue:
    return FieldValue(path, value, generic)


BATCH = [
    _field("events[0].name", "events[].name", "aws_request"),
    _field("events[0].metadata.session_id", "events[].metadata.session_id", "s"),
    _field("events[1].name", "events[].name", "cli_cmd"),
    _field("events[1].metadata.session_id", "events[].metadata.session_id", "s"),
    _field("events[10].name", "events[].name", "aws_request"),
    _field("events[10].metadata.session_id", "events[].metadata.session_id", "s"),
    _field("header.localstack-session-id", "header.localstack-session-id", "s"),
]


@pytest.mark.parametrize(("index", "holds"), [
    (1, False),   # events[0] is an aws_request
    (3, True),    # events[1] is the cli_cmd
    (5, False),   # events[10] must not be taken for events[1] by its text prefix
    (6, True),    # a header shares no list with events[].name: any cli_cmd event of the request
])
def test_condition_reads_the_same_record(index: int, holds: bool) -> None:
    condition = Condition("events[].name", frozenset({"cli_cmd"}))
    assert condition.holds_for(BATCH[index], condition.hits(BATCH)) is holds


def test_condition_without_a_hit_holds_nowhere() -> None:
    condition = Condition("events[].name", frozenset({"cli_cmd"}))
    fields = [f for f in BATCH if f.value != "cli_cmd"]
    assert not any(condition.holds_for(f, condition.hits(fields)) for f in fields)


SHAPE = PayloadShape(keys=frozenset({"resourceSpans"}),
                     fields=frozenset({"resourceSpans[].spans[].attributes.executionID"}), names=(b"executionID",))


def _never() -> Iterable[str]:
    raise AssertionError("the field walk ran before the cheap tests")


@pytest.mark.parametrize("tree", [None, [], ["resourceSpans"], {"batch": []}, {"resourceSpan": []}])
def test_shape_tests_the_key_set_first(tree: object) -> None:
    assert not SHAPE.matches(tree, b"executionID", _never)


def test_shape_tests_the_names_in_the_body_before_walking() -> None:
    assert not SHAPE.matches({"resourceSpans": []}, b"no such name here", _never)


@pytest.mark.parametrize(("paths", "matches"), [
    (["resourceSpans[].spans[].attributes.executionID", "resourceSpans[].spans[].name"], True),
    (["resourceSpans[].spans[].attributes.executionIDs"], False),
    ([], False),
])
def test_shape_needs_every_field(paths: list[str], matches: bool) -> None:
    assert SHAPE.matches({"resourceSpans": []}, b"executionID", lambda: paths) is matches
