"""`telemetry-audit optout-check`: the pure verdicts, then one real run on a tiny tool written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_audit.optout import (
    DO_NOT_TRACK,
    RunOutcome,
    Verdict,
    base_environment,
    describe,
    judge,
    optout_report,
    switch_problem,
    switches_to_try,
)
from telemetry_audit.policy.model import OptOutSwitch


def switch(kind: str = "env", expected: str = "stops", **fields: object) -> OptOutSwitch:
    values: dict[str, object] = {"tool": "demo", "kind": kind, "expected": expected, **fields}
    if kind == "env":
        values.setdefault("name", "DEMO_TELEMETRY_DISABLED")
    return OptOutSwitch(**values)  # type: ignore[arg-type]


def outcome(requests: int, setup_error: str = "") -> RunOutcome:
    record = {"method": "POST", "host": "api.segment.io", "path": "/v1/track", "tool": "", "decision": "allow",
              "rule_ids": []}
    return RunOutcome(exit_code=0, requests=(record,) * requests, setup_error=setup_error)


# --- the verdict ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "baseline", "seen", "setup_error", "verdict", "failed"),
    [
        ("stops", 2, 0, "", Verdict.HONOURED, False),
        ("stops", 2, 2, "", Verdict.IGNORED, True),
        ("stops", 2, 1, "", Verdict.IGNORED, True),  # fewer requests is still telemetry
        ("ignored", 2, 2, "", Verdict.IGNORED, False),  # a known gap does not fail the check
        ("ignored", 2, 0, "", Verdict.HONOURED, False),  # the tool got better than the pack says
        ("", 1, 1, "", Verdict.IGNORED, False),  # DO_NOT_TRACK: nothing promised
        ("stops", 0, 0, "", Verdict.INCONCLUSIVE, False),
        ("stops", 0, 3, "", Verdict.INCONCLUSIVE, False),  # flaky baseline: still nothing to compare with
        ("stops", 2, 2, "`demo off` exited with 1", Verdict.SETUP_FAILED, True),
        ("stops", 2, 0, "`demo off` timed out after 5 s", Verdict.SETUP_FAILED, True),
        ("ignored", 2, 2, "command not found: demo", Verdict.SETUP_FAILED, False),
    ],
)
def test_judge(expected: str, baseline: int, seen: int, setup_error: str, verdict: Verdict, failed: bool) -> None:
    judgement = judge(switch(expected=expected), baseline, seen, setup_error)
    assert (judgement.verdict, judgement.failed) == (verdict, failed)
    if setup_error:
        assert judgement.note == setup_error


def test_judge_notes_explain_surprises() -> None:
    assert "ignored" in judge(switch(expected="ignored"), 1, 0).note
    assert judge(switch(), 1, 0).note == ""
    assert "documented" in judge(switch(), 1, 1).note
    assert "no telemetry" in judge(switch(), 0, 0).note


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (switch(name="SLS_TELEMETRY_DISABLED", value="1"), "SLS_TELEMETRY_DISABLED=1"),
        (switch("file", path="~/.serverlessrc", content="{}"), "file ~/.serverlessrc"),
        (switch("command", command=("sst", "telemetry", "disable")), "run: sst telemetry disable"),
    ],
)
def test_describe(sw: OptOutSwitch, text: str) -> None:
    assert describe(sw) == text


@pytest.mark.parametrize(
    ("sw", "problem"),
    [
        (switch(name="DO_NOT_TRACK"), ""),
        (switch(name=""), "needs a variable `name`"),
        (switch(name="BAD NAME"), "needs a variable `name`"),
        (switch("file", path="~/.config/sst/telemetry-disable"), ""),
        (switch("file", path="/etc/telemetry-disable"), "must start with `~/`"),
        (switch("file", path="~/../outside"), "inside HOME"),
        (switch("file", path="~/"), "inside HOME"),
        (switch("command", command=("demo", "off")), ""),
        (switch("command"), "non-empty `command`"),
        (switch("registry"), "unknown switch kind"),
    ],
)
def test_switch_problem(sw: OptOutSwitch, problem: str) -> None:
    found = switch_problem(sw)
    assert (problem in found) if problem else found == ""


def test_do_not_track_is_added_once() -> None:
    declared = (switch(),)
    added = switches_to_try(declared, "demo")
    assert added[-1] == OptOutSwitch(tool="demo", kind="env", name="DO_NOT_TRACK", value="1",
                                     source=DO_NOT_TRACK.source, expected="")
    listed = (switch(), switch(name="DO_NOT_TRACK", expected="ignored"))
    assert switches_to_try(listed, "demo") == listed


def test_base_environment_turns_telemetry_on_and_follows_home() -> None:
    environ = {"PATH": "/bin", "DEMO_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1", "XDG_CONFIG_HOME": "/x",
               "XDG_RUNTIME_DIR": "/run/user/1"}
    assert base_environment(environ, [switch()]) == {"PATH": "/bin", "XDG_RUNTIME_DIR": "/run/user/1"}


def test_report_counts_and_fails_only_documented_switches() -> None:
    from telemetry_audit.policy import load_policy

    documented, known_gap = switch(), switch(name="DO_NOT_TRACK", expected="ignored")
    report = optout_report("demo", load_policy(["default"]), ["demo", "--secret-arg"], outcome(2),
                           [(documented, outcome(0)), (known_gap, outcome(2))])
    assert report["summary"] == {"switches": 2, "honoured": 1, "ignored": 1, "inconclusive": 0, "setup_failed": 0,
                                 "failed": 0}
    assert report["command"] == {"argv_length": 2}  # never the arguments themselves
    assert [e["verdict"] for e in report["switches"]] == ["honoured", "ignored"]
    assert report["baseline"]["requests"][0]["host"] == "api.segment.io"
    failing = optout_report("demo", load_policy(["default"]), ["demo"], outcome(1), [(documented, outcome(1))])
    assert failing["summary"]["failed"] == 1 and failing["switches"][0]["failed"] is True
    json.dumps(report)  # serialisable as is


# --- end to end: a tiny tool --------------------------------------------------------------------------------------

TOOL = '''
"""A tool that phones home unless told not to (but it ignores DO_NOT_TRACK)."""
import json, os, sys, urllib.request

home = os.environ["HOME"]
state = os.path.join(home, ".demo-tool")
if sys.argv[1:] == ["disable"]:
    os.makedirs(state, exist_ok=True)
    open(os.path.join(state, "optout"), "w").close()
    sys.exit(0)
if sys.argv[1:] == ["broken-disable"]:
    sys.exit("error: no such command")
os.makedirs(state, exist_ok=True)
runs = os.path.join(state, "runs")
previous = int(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "w").write(str(previous + 1))
if os.environ.get("DEMO_TELEMETRY_DISABLED") or os.path.exists(os.path.join(state, "optout")):
    sys.exit(previous)
body = json.dumps({"type": "track", "event": "demo_run", "userId": "u1", "properties": {"runs": previous}})
request = urllib.request.Request("https://api.segment.io/v1/track", data=body.encode(),
                                 headers={"content-type": "application/json"})
urllib.request.urlopen(request, timeout=20).read()
sys.exit(previous)  # 0 in a fresh HOME: a non-zero exit would mean state leaked between runs
'''


def optout_cli(args: list[str], confdir: Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `telemetry-audit optout-check ARGS` as a user does."""
    entry = ["-m", "telemetry_audit", "optout-check"]
    env = {**os.environ, "TELEMETRY_AUDIT_HOME": str(confdir)}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "DEMO_TELEMETRY_DISABLED", "DO_NOT_TRACK"):
        env.pop(name, None)
    return subprocess.run([sys.executable, *entry, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def write_pack(path: Path, tool: Path, extra: str = "") -> Path:
    """A pack whose three switches the demo tool honours, plus `extra` YAML list items."""
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(tool))}, disable]"
    path.write_text(
        "version: 1\nname: demo\nextends: [default]\noptout:\n"
        "  - {kind: env, name: DEMO_TELEMETRY_DISABLED, source: demo-docs#opt-out}\n"
        "  - {kind: file, path: ~/.demo-tool/optout, source: demo-docs#opt-out}\n"
        f"  - {{kind: command, command: {command}, source: demo-docs#opt-out}}\n"
        f"{extra}rules: []\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("confdir")


def test_optout_check_end_to_end(confdir: Path, tmp_path: Path) -> None:
    tool = tmp_path / "demo_tool.py"
    tool.write_text(TOOL, encoding="utf-8")
    broken = f"[{json.dumps(sys.executable)}, {json.dumps(str(tool))}, broken-disable]"
    extra = ("  - {kind: env, name: DEMO_NO_TELEMETRY, source: demo-docs#old-name}\n"
             f"  - {{kind: command, command: {broken}, source: demo-docs#cli, expected: ignored}}\n")
    pack = write_pack(tmp_path / "demo.yaml", tool, extra)
    report = tmp_path / "optout.json"
    result = optout_cli(["--pack", str(pack), "--settle", "0.2", "-f", "json", "-o", str(report), "-f", "table",
                         "--", sys.executable, str(tool)], confdir, tmp_path)
    assert result.returncode == 1, result.stderr  # DEMO_NO_TELEMETRY is documented but does nothing
    data = json.loads(report.read_text())
    rows = {e["label"].split(" ")[-1] if e["label"].startswith("run:") else e["label"]: e for e in data["switches"]}
    assert data["baseline"]["telemetry_requests"] == 1
    assert data["baseline"]["requests"][0]["host"] == "api.segment.io"
    verdicts = {label: (e["verdict"], e["run"]["telemetry_requests"], e["failed"]) for label, e in rows.items()}
    assert verdicts == {
        "DEMO_TELEMETRY_DISABLED=1": ("honoured", 0, False),
        "file ~/.demo-tool/optout": ("honoured", 0, False),
        "disable": ("honoured", 0, False),
        "DEMO_NO_TELEMETRY=1": ("ignored", 1, True),
        "broken-disable": ("setup-failed", 1, False),
        "DO_NOT_TRACK=1": ("ignored", 1, False),
    }
    assert "error: no such command" in rows["broken-disable"]["note"]
    # A fresh HOME every time: the tool's run counter never saw an earlier run.
    assert {e["run"]["exit_code"] for e in data["switches"]} | {data["baseline"]["exit_code"]} == {0}
    assert data["summary"]["failed"] == 1
    assert "IGNORED" in result.stdout and "demo-docs#old-name" in result.stdout  # the table
    assert "1 documented switch(es) did not stop telemetry" in result.stderr


def test_each_run_s_proxy_takes_the_policy_loaded_once(confdir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy is handed to every run's proxy: with its file gone after loading, the runs still go on."""
    from telemetry_audit.optout import RunSettings, run_case
    from telemetry_audit.policy import load_policy

    tool = tmp_path / "demo_tool.py"
    tool.write_text(TOOL, encoding="utf-8")
    pack = write_pack(tmp_path / "demo.yaml", tool)
    policy = load_policy([str(pack)])
    pack.unlink()  # a proxy that read the files again would not start
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = RunSettings(command=(sys.executable, str(tool)), policies=(str(pack),), confdir=str(confdir),
                           base_env=dict(os.environ), hosts=("api.segment.io",), timeout_s=60, settle_s=0.2,
                           policy=policy)
    baseline = run_case(settings, 0, None)
    assert (baseline.exit_code, [r["host"] for r in baseline.requests]) == (0, ["api.segment.io"])


def test_keep_home_keeps_each_run(confdir: Path, tmp_path: Path) -> None:
    tool = tmp_path / "demo_tool.py"
    tool.write_text(TOOL, encoding="utf-8")
    pack = tmp_path / "demo.yaml"
    pack.write_text("version: 1\nname: demo\noptout:\n  - {kind: env, name: DEMO_TELEMETRY_DISABLED}\nrules: []\n")
    result = optout_cli(["--pack", str(pack), "--policy", "default", "--keep-home", "--settle", "0", "-f", "json",
                         "--", sys.executable, str(tool)], confdir, tmp_path)
    assert result.returncode == 0, result.stderr  # DO_NOT_TRACK is ignored, but nothing promised it
    data = json.loads(result.stdout)
    kept = [Path(data["baseline"]["kept_dir"])] + [Path(e["run"]["kept_dir"]) for e in data["switches"]]
    try:
        assert [p.name for p in kept] == ["00-baseline", "01-DEMO-TELEMETRY-DISABLED-1", "02-DO-NOT-TRACK-1"]
        assert (kept[0] / "home" / ".demo-tool" / "runs").read_text() == "1"
        assert (kept[0] / "audit.jsonl").read_text().count('"record":"request"') == 1
        assert str(kept[0].parent) in result.stderr
    finally:
        import shutil

        shutil.rmtree(kept[0].parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("args", "pack_text", "message"),
    [
        ([], None, "give --pack NAME"),
        (["--pack", "PACK"], "version: 1\noptout:\n  - {kind: file, path: /etc/x}\nrules: []\n",
         "must start with `~/`"),
        (["--pack", "PACK"], "version: 1\noptout:\n  - {kind: registry}\nrules: []\n", "invalid policy"),
        (["--pack", "no-such-pack"], None, "invalid policy"),
    ],
)
def test_usage_and_policy_errors_exit_2(confdir: Path, tmp_path: Path, args: list[str], pack_text: str | None,
                                        message: str) -> None:
    if pack_text is not None:
        (tmp_path / "pack.yaml").write_text(pack_text, encoding="utf-8")
    args = [str(tmp_path / "pack.yaml") if a == "PACK" else a for a in args]
    result = optout_cli([*args, "--", sys.executable, "-c", "pass"], confdir, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_command_exits_2(confdir: Path, tmp_path: Path) -> None:
    result = optout_cli(["--pack", "sst", "--", "no-such-command-xyz"], confdir, tmp_path)
    assert result.returncode == 2 and "command not found: no-such-command-xyz" in result.stderr
