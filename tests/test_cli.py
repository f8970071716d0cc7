"""`telemetry-audit check` and `rules` as a user runs them: real captures in, exit codes and reports out."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_audit.cli import main
from tests.report.samples import SARIF_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "data" / "captures"
SESSION = CAPTURES / "localstack-session.json"
CLEAN = CAPTURES / "sst-v4.17.1-posthog-batch.json"
SCHEMA = SARIF_SCHEMA


@pytest.fixture(autouse=True)
def _no_auth_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALSTACK_AUTH_TOKEN", raising=False)


def test_installed_console_script_and_module_entry_point(tmp_path: Path) -> None:
    for command in (["telemetry-audit"], [sys.executable, "-m", "telemetry_audit"]):
        executable = Path(sys.executable).with_name(command[0]) if len(command) == 1 else None
        argv = [str(executable)] if executable else command
        result = subprocess.run([*argv, "check", str(CLEAN)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr


def test_localstack_api_key_is_flagged_only_with_the_token_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--policy", "default", "-f", "json", str(SESSION)]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["findings"] == 0
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", "ls-FAKE-TOKEN-1234")
    assert main(["check", "--policy", "default", "-f", "json", str(SESSION)]) == 1
    report = json.loads(capsys.readouterr().out)
    [finding] = report["requests"][0]["findings"]
    assert (finding["field"], finding["kind"], finding["action"]) == ("payload.api_key", "env", "redact")
    assert "ls-FAKE-TOKEN-1234" not in json.dumps(report)


def test_the_localstack_pack_blocks_the_raw_token_without_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", "localstack", "-f", "json", str(SESSION)]) == 1
    request = json.loads(capsys.readouterr().out)["requests"][0]
    assert request["decision"] == "block" and request["tool"] == "localstack"


def test_all_real_captures_are_clean_under_the_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    inputs = sorted(str(p) for p in CAPTURES.glob("*.json"))
    assert main(["check", "--policy", "default", "-f", "json", *inputs]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["telemetry"] == len(inputs) and report["summary"]["findings"] == 0


@pytest.mark.parametrize(("fail_on", "expected"), [("redact", 1), ("block", 0), ("high", 1), ("critical", 0),
                                                   ("never", 0), ("log", 1)])
def test_fail_on_thresholds(monkeypatch: pytest.MonkeyPatch, fail_on: str, expected: int) -> None:
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", "ls-FAKE-TOKEN-1234")  # one high-severity redaction
    assert main(["check", "--policy", "default", "--fail-on", fail_on, "-f", "json", "-o", os.devnull,
                 str(SESSION)]) == expected


def test_several_formats_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", "ls-FAKE-TOKEN-1234")
    outputs = {fmt: tmp_path / f"report.{fmt}" for fmt in ("json", "sarif", "junit", "markdown", "table")}
    argv = ["check", "--policy", "default", str(SESSION), str(CLEAN)]
    for fmt, path in outputs.items():
        argv += ["--format", fmt, "--output", str(path)]
    assert main(argv) == 1
    assert json.loads(outputs["json"].read_text())["summary"]["redacted"] == 1
    sarif = json.loads(outputs["sarif"].read_text())
    assert sarif["runs"][0]["results"][0]["ruleId"] == "default.env-values"
    assert 'failures="1"' in outputs["junit"].read_text()
    assert "payload.api\\_key" in outputs["markdown"].read_text()  # markdown-escaped
    assert "redact" in outputs["table"].read_text() and "/v1/session" in outputs["table"].read_text()
    for path in outputs.values():
        assert "ls-FAKE-TOKEN-1234" not in path.read_text()
    import jsonschema

    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))


def test_baseline_round_trip_suppresses_known_findings_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", "ls-FAKE-TOKEN-1234")
    baseline = tmp_path / "baseline.json"
    bare = ["--policy", "default"]
    # Writing a baseline accepts what it found: exit 0 (a `set -e` script goes on).
    assert main(["check", *bare, "-f", "json", "-o", os.devnull, "--write-baseline", str(baseline), str(SESSION)]) == 0
    assert "ls-FAKE" not in baseline.read_text() and json.loads(baseline.read_text())["fingerprints"]
    assert main(["check", *bare, "-f", "json", "--baseline", str(baseline), str(SESSION)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {**report["summary"], "findings": 0, "suppressed": 1}
    new_leak = tmp_path / "new.json"
    data = json.loads(SESSION.read_text())
    data["body_json"]["payload"]["machine_id"] = "alice@example.com"
    new_leak.write_text(json.dumps(data))
    assert main(["check", *bare, "-f", "json", "-o", os.devnull, "--baseline", str(baseline), str(new_leak)]) == 1


def test_har_and_raw_body_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"event": "x", "properties": {"cwd": "/home/alice/app"}})
    har = {"log": {"entries": [
        {"request": {"method": "POST", "url": "https://api.segment.io/v1/track", "headers": [
            {"name": "Content-Type", "value": "application/json"}], "postData": {"mimeType": "application/json",
                                                                                "text": body}}},
        {"request": {"method": "GET", "url": "https://api.mixpanel.com/track?data="
                     + base64.b64encode(b'{"event":"e","properties":{"m":"bob@example.com"}}').decode(),
                     "headers": []}},
    ]}}
    (tmp_path / "traffic.har").write_text(json.dumps(har))
    (tmp_path / "body.bin").write_bytes(body.encode())
    assert main(["check", "-f", "json", str(tmp_path / "traffic.har")]) == 1
    report = json.loads(capsys.readouterr().out)
    kinds = [[f["kind"] for f in r["findings"]] for r in report["requests"]]
    assert kinds == [["path"], ["pii"]]
    assert "bob" not in report["requests"][1]["url"]  # query values with findings are masked in reports
    assert main(["check", "-f", "json", "--url", "https://t.example/v1/track", str(tmp_path / "body.bin")]) == 1
    assert json.loads(capsys.readouterr().out)["requests"][0]["host"] == "t.example"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "invalid JSON"),
    ('{"log": {"entries": [{"request": {}}]}}', "entry 0 has no request.url"),
])
def test_bad_inputs_exit_2_naming_the_file(tmp_path: Path, content: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "input.json"
    path.write_text(content)
    with pytest.raises(SystemExit) as exited:
        main(["check", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_missing_input_and_broken_policy_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", str(tmp_path / "missing.json")])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["check", "--policy", str(ROOT / "tests/data/rules/bad_action.yaml"), str(CLEAN)])
    assert exited.value.code == 2
    assert "bad_action.yaml:7:17" in capsys.readouterr().err


def test_rules_validate_list_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    packs = [str(ROOT / "rules" / f"{name}.yaml") for name in ("default", "serverless", "localstack", "sst", "werf")]
    assert main(["rules", "validate", *packs]) == 0
    assert main(["rules", "validate", str(ROOT / "tests/data/rules/bad_regex.yaml")]) == 2
    capsys.readouterr()
    assert main(["rules", "list", "--policy", "all", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"default", "sst", "all"} <= set(listing["packs"])
    assert any(r["id"] == "default.secrets" for r in listing["rules"])
    assert main(["rules", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "telemetry-audit policy"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "check" in capsys.readouterr().err


def test_writers_on_real_results_of_every_pack(tmp_path: Path) -> None:
    """Every capture under every tool pack: each writer's output parses, SARIF validates, nothing leaks."""
    import xml.etree.ElementTree as ElementTree

    inputs = sorted(str(p) for p in CAPTURES.glob("*.json"))
    sarif_path, junit_path, md_path = tmp_path / "r.sarif", tmp_path / "r.xml", tmp_path / "r.md"
    code = main(["check", "--policy", "all", *inputs, "-f", "sarif", "-o", str(sarif_path), "-f", "junit", "-o",
                 str(junit_path), "-f", "markdown", "-o", str(md_path)])
    assert code == 1  # LocalStack's raw token is blocked by its pack
    sarif = json.loads(sarif_path.read_text())
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"localstack.credentials", "sst.promises", "serverless.v3-metrics"}
    rule_ids = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rule_ids
    for result in results:  # built-in packs only: no result points at a file outside the repository
        assert "locations" not in result
    assert "%3Cbuiltin" not in sarif_path.read_text()
    suite = ElementTree.parse(junit_path).getroot()
    assert int(suite.get("tests", "0")) == len(inputs)
    for path in (sarif_path, junit_path, md_path):
        assert "ls-FAKE-TOKEN-1234" not in path.read_text()
    import jsonschema

    jsonschema.validate(sarif, json.loads(SCHEMA.read_text()))


def _imported_after(code: str, names: list[str]) -> list[str]:
    """Which of `names` a fresh interpreter has imported after running `code`."""
    probe = f"import sys\n{code}\nprint('\\n'.join(n for n in {names!r} if n in sys.modules))"
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_parsing_a_command_line_imports_none_of_the_core() -> None:
    """`run` starts its proxy right after parsing: what it imports before that is on every run's way."""
    heavy = ["rich", "yaml", "jsonschema", "mitmproxy", "http.server", "telemetry_audit.policy",
             "telemetry_audit.detectors", "telemetry_audit.collectors", "telemetry_audit.engine",
             "telemetry_audit.endpoints", "telemetry_audit.optout", "telemetry_audit.report.build"]
    code = ("from telemetry_audit.cli import build_parser\n"
            "build_parser()[0].parse_known_args(['run', '--', 'true'])\n"
            "import telemetry_audit.session, telemetry_audit.sandbox.probe")
    assert _imported_after(code, heavy) == []


def test_collector_options_are_declared_when_it_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["collector", "--help"])
    help_text = capsys.readouterr().out
    assert help_text.index("--listen") < help_text.index("--store") < help_text.index("--policy")
