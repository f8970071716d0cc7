"""rules/all.yaml: every tool pack at once, each real capture attributed to exactly its own tool."""

from __future__ import annotations

import pytest
import yaml

from telemetry_audit.policy import builtin_pack_names, load_policy
from tests.rules.audit import CAPTURES, OTLP, ROOT, audit, capture

TOOL_PACKS = ["localstack", "serverless", "sst", "werf"]


def test_all_extends_every_tool_pack() -> None:
    assert sorted(builtin_pack_names()) == sorted(["all", "default", *TOOL_PACKS])
    extends = yaml.safe_load((ROOT / "rules" / "all.yaml").read_text("utf-8"))["extends"]
    assert sorted(extends) == TOOL_PACKS


def test_all_is_the_four_packs() -> None:
    together = load_policy(["all"])
    separate = load_policy(TOOL_PACKS)
    assert sorted(r.id for r in together.rules) == sorted(r.id for r in separate.rules)
    assert {(s.tool, s.kind, s.name, s.path) for s in together.optout} == {
        (s.tool, s.kind, s.name, s.path) for s in separate.optout}


@pytest.mark.parametrize(
    "path", sorted(CAPTURES.glob("*.json")) + sorted(OTLP.glob("*.json")), ids=lambda p: p.stem
)
def test_each_capture_matches_only_its_own_tool(path: object) -> None:
    name = path.stem  # type: ignore[attr-defined]
    folder = path.parent  # type: ignore[attr-defined]
    decision = audit(capture(name, folder), "all")
    expected = next(tool for tool in TOOL_PACKS if name.startswith(tool))
    assert decision.tool == expected
    tools = {rule_id.split(".", 1)[0] for rule_id in decision.rule_ids} - {"default"}
    assert tools == {expected}
