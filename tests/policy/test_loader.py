"""Broken policy files fail with the exact message the user sees (file, line, column, snippet, hint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry_audit.policy import PolicyError, builtin_pack_names, load_policy, tool_pack_names

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "data" / "rules").glob("bad_*.yaml"))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_policy_reports_exact_error(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    relative = str(path.relative_to(ROOT))
    with pytest.raises(PolicyError) as caught:
        load_policy([relative])
    expected = path.with_suffix(".expected").read_text("utf-8")
    assert str(caught.value) + "\n" == expected


def test_every_bad_file_has_an_expected_message() -> None:
    assert len(BAD) >= 10
    assert all(p.with_suffix(".expected").is_file() for p in BAD)


def test_unknown_builtin_pack_lists_the_packs() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(["no-such-pack"])
    assert "no built-in policy pack named 'no-such-pack'" in str(caught.value)
    assert "default" in caught.value.hint


def test_missing_file() -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(["/nonexistent/policy.yaml"])


def test_default_policy_loads_with_positions() -> None:
    policy = load_policy(["default"])
    assert policy.files == ("<builtin>/default.yaml",)
    rule = policy.rule("default.secrets")
    assert rule is not None and rule.line > 1 and rule.file == "<builtin>/default.yaml"


def test_later_files_override_earlier_rules_and_settings(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        "version: 1\nsettings: {max_body_bytes: 100, decode_failure: block}\n"
        "rules:\n  - id: a\n    match: {hosts: [x.test]}\n    action: log\n  - id: b\n    match: {hosts: [y.test]}\n"
    )
    top = tmp_path / "top.yaml"
    top.write_text(
        "version: 1\nextends: [base.yaml]\nsettings: {max_body_bytes: 200}\n"
        "rules:\n  - id: a\n    match: {hosts: [z.test]}\n    action: block\n  - id: b\n    match: {telemetry: true}\n"
        "    disabled: true\n"
    )
    policy = load_policy([str(top)])
    assert [r.id for r in policy.rules] == ["a"]
    assert policy.rules[0].match[0].hosts == ("z.test",)
    assert policy.settings.max_body_bytes == 200
    assert policy.settings.decode_failure.value == "block"  # merged key by key
    assert policy.files == (str(base), str(top))


def test_two_policy_arguments_compose_in_order(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("rules:\n  - id: r\n    match: {hosts: [a.test]}\n    severity: low\n")
    two = tmp_path / "two.yaml"
    two.write_text("rules:\n  - id: r\n    match: {hosts: [a.test]}\n    severity: high\n")
    assert load_policy([str(one), str(two)]).rules[0].severity.value == "high"
    assert load_policy([str(two), str(one)]).rules[0].severity.value == "low"


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("rules: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(PolicyError):
        load_policy([str(evil)])


def test_schema_is_valid_json_schema() -> None:
    import jsonschema

    from telemetry_audit.policy import policy_schema

    jsonschema.Draft202012Validator.check_schema(policy_schema())


def test_no_policy_is_default_plus_every_tool_pack() -> None:
    policy = load_policy()
    assert policy.files == ("<builtin>/default.yaml", *(f"<builtin>/{n}.yaml" for n in tool_pack_names()))
    assert set(tool_pack_names()) >= {"localstack", "serverless", "sst", "werf"}
    assert {r.tool for r in policy.rules} >= {"localstack", "serverless", "sst", "werf"}
    # The same rules as `--policy all`, which names the tool packs by hand.
    assert sorted(r.id for r in policy.rules) == sorted(r.id for r in load_policy(["all"]).rules)


def test_policy_default_alone_is_the_bare_default() -> None:
    assert {r.tool for r in load_policy(["default"]).rules} == {""}


def test_every_shipped_pack_cites_public_documentation() -> None:
    for name in builtin_pack_names():
        policy = load_policy([name])
        sources = [s.source for r in policy.rules for s in r.forbid if s.source]
        sources += [src for r in policy.rules if r.fields is not None for src in r.fields.sources.values()]
        sources += [o.source for o in policy.optout if o.source]
        for source in sources:
            assert source.startswith("https://"), (name, source)


@pytest.mark.parametrize(("version", "expected"), [
    ("2.49.8", {("DO_NOT_TRACK", "ignored"), ("SST_TELEMETRY_DISABLED", "stops"),
                ("npx sst telemetry disable", "stops")}),
    ("4.17.1", {("DO_NOT_TRACK", "stops"), ("SST_TELEMETRY_DISABLED", "stops"), ("npx sst telemetry disable", "stops"),
                ("~/.config/sst/telemetry-disable", "stops")}),
    # unknown version: every switch once; a version-bound one expects nothing, so it cannot fail the check
    ("", {("DO_NOT_TRACK", ""), ("SST_TELEMETRY_DISABLED", "stops"), ("npx sst telemetry disable", "stops"),
          ("~/.config/sst/telemetry-disable", "")}),
])
def test_switches_for_version(version: str, expected: set[tuple[str, str]]) -> None:
    from telemetry_audit.policy.model import switches_for_version

    switches = switches_for_version(load_policy(["sst"]).optout, version)
    assert {(s.name or s.path or " ".join(s.command), s.expected) for s in switches} == expected
    assert len(switches) == len(expected)


@pytest.mark.parametrize("name", tool_pack_names())
def test_every_tool_pack_check_cites_the_vendor_and_says_its_kind(name: str) -> None:
    # Every promise check names the public page it enforces; every custom pattern says what it finds.
    rules = [r for r in load_policy([name]).rules if r.tool]
    assert rules
    for rule in rules:
        for spec in rule.forbid:
            assert spec.source.startswith("https://"), (rule.id, spec.custom_id or spec.family)
            if spec.family == "custom":
                assert spec.kind is not None, (rule.id, spec.custom_id)


def test_a_custom_pattern_reports_its_own_kind(tmp_path: Path) -> None:
    from telemetry_audit.detectors.base import AuditEnvironment
    from telemetry_audit.engine import Auditor
    from telemetry_audit.model import FindingKind, Request

    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - id: r\n    match: {hosts: [c.test]}\n    forbid:\n"
                      "      - {id: acme.user-id, pattern: 'usr_[0-9]+', kind: pii}\n"
                      "      - {id: acme.debug-flag, pattern: 'debug=on', kind: field}\n")
    request = Request.from_url("POST", "https://c.test/e", {"Content-Type": "application/json"},
                               b'{"u": "usr_42", "f": "debug=on"}')
    decision = Auditor(load_policy([str(policy)]), AuditEnvironment(env={}), audit_all=True).evaluate(request)
    assert {(f.detector, f.kind) for f in decision.findings} == {
        ("acme.user-id", FindingKind.PII), ("acme.debug-flag", FindingKind.FIELD)}


@pytest.mark.parametrize("name", builtin_pack_names())
def test_every_shipped_pack_is_valid_and_both_parsers_read_it_alike(name: str) -> None:
    """Shipped packs skip schema validation at run time and may be read by libyaml: this test is why that is safe."""
    from telemetry_audit.policy import builtin_pack_path
    from telemetry_audit.policy.loader import parse_yaml, validate

    path = builtin_pack_path(name)
    assert path is not None
    source = path.read_text("utf-8")
    plain = parse_yaml(f"<builtin>/{name}.yaml", source)
    validate(plain)
    fast = parse_yaml(f"<builtin>/{name}.yaml", source, shipped=True)
    assert fast.data == plain.data
    assert fast.positions == plain.positions


def test_a_user_file_named_like_a_pack_is_still_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "<builtin>").mkdir()
    fake = tmp_path / "<builtin>" / "default.yaml"
    fake.write_text("rules:\n  - id: r\n    match: {hosts: [a.test]}\n    acton: block\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError, match="unknown key 'acton'"):
        load_policy(["<builtin>/default.yaml"])


def test_a_shipped_pack_that_libyaml_refuses_reads_as_before() -> None:
    from telemetry_audit.policy.loader import parse_yaml

    source = "rules:\n  - id: a\n   bad: [\n"
    with pytest.raises(PolicyError) as fast:
        parse_yaml("<builtin>/x.yaml", source, shipped=True)
    with pytest.raises(PolicyError) as plain:
        parse_yaml("<builtin>/x.yaml", source)
    assert str(fast.value) == str(plain.value)
