from __future__ import annotations

import glob
import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.captures import load_requests
from telemetry_audit.detectors.base import AuditEnvironment
from telemetry_audit.engine import Auditor
from telemetry_audit.policy import load_policy
from telemetry_audit.report import WRITERS
from telemetry_audit.report.build import AuditedRequest, build_report
from telemetry_audit.report.html import write_html
from tests.factories import json_request

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
HOSTILE = [
    "<script>document.body.setAttribute('data-pwned','script')</script>",
    '"><img src=x onerror="document.body.setAttribute(\'data-pwned\',\'img\')">',
    "</style><h1 id=pwned-style>x</h1>",
    "</script><b id=pwned-script-close>x</b>",
    "ünïcödé ☃ \u202e rtl 'single' \"double\" & amp",
]


def _report(requests: list[Any], policy_names: list[str] | None = None) -> dict[str, Any]:
    policy = load_policy(policy_names)
    auditor = Auditor(policy, AuditEnvironment(env={}, home="/home/u", cwd="/home/u/w", user="u"), audit_all=True)
    items = [AuditedRequest(r, auditor.evaluate(r)) for r in requests]
    return build_report(items, policy, with_payload=True)


def _hostile_report() -> dict[str, Any]:
    body = {"event": HOSTILE[0], "properties": {"token": TOKEN, HOSTILE[1]: HOSTILE[2], "note": HOSTILE[3],
                                                "text": HOSTILE[4], "path": "/home/u/w/secret-project"}}
    report = _report([json_request(body, url="https://api.segment.io/v1/track?q=%3Cscript%3E")])
    report["requests"][0]["source"] = HOSTILE[1]
    report["requests"][0]["client"] = HOSTILE[0]
    report["requests"].append({**report["requests"][0], "telemetry": False, "findings": [], "host": "other.example",
                               "path": "/" + HOSTILE[2]})
    return report


def test_registered_as_a_writer() -> None:
    assert WRITERS["html"] is write_html


def test_self_contained() -> None:
    text = write_html(_hostile_report())
    assert text.startswith("<!DOCTYPE html>")
    # No external asset of any kind: nothing a browser would fetch.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", text, re.I)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text


def test_escapes_everything_from_traffic() -> None:
    text = write_html(_hostile_report())
    for hostile in HOSTILE[:4]:
        assert hostile not in text
    assert html.escape(HOSTILE[2]) in text
    # Exactly our own style and script blocks: traffic never opens or closes one.
    assert text.count("<script>") == 1 and text.count("</script>") == 1
    assert text.count("<style>") == 1 and text.count("</style>") == 1
    assert "ünïcödé ☃" in text


def test_never_shows_the_plaintext_secret() -> None:
    report = _hostile_report()
    assert TOKEN not in json.dumps(report)
    text = write_html(report)
    assert TOKEN not in text
    assert "ghp_…[40 chars]" in text


def test_optout_report_is_rendered() -> None:
    optout = {"pack": "sst", "baseline": {"telemetry_requests": 2}, "summary": {"switches": 1, "failed": 1},
              "switches": [{"label": "SST_TELEMETRY_DISABLED=1", "verdict": "ignored", "failed": True,
                            "note": HOSTILE[0], "switch": {"source": "https://sst.dev/docs", "expected": "none"},
                            "run": {"telemetry_requests": 2}}]}
    text = write_html(optout)
    assert "SST_TELEMETRY_DISABLED=1" in text and "Opt-out switches of sst" in text
    assert HOSTILE[0] not in text
    embedded = write_html({**_report([]), "optout": optout})
    assert 'data-switch="SST_TELEMETRY_DISABLED=1"' in embedded


def test_empty_report() -> None:
    text = write_html(_report([]))
    assert '<div class="card" data-count="requests"><b>0</b>' in text
    assert 'class="req"' not in text


# --- a real browser ----------------------------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (tests/run.sh installs it)")
    return found


def _browse(path: Path, tmp_path: Path) -> str:
    """The DOM after the page's scripts ran, and a screenshot next to it."""
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*args, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    shot = tmp_path / "report.png"
    subprocess.run([*args, f"--screenshot={shot}", "--window-size=1280,2000", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    return dom


def test_browser_renders_hostile_report_without_running_it(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(write_html(_hostile_report()), encoding="utf-8")
    dom = _browse(page, tmp_path)
    assert 'data-ready="yes"' in dom  # our script ran...
    body_tag = re.search(r"<body[^>]*>", dom)
    assert body_tag is not None and "data-pwned" not in body_tag.group(0)
    assert 'id="pwned-style"' not in dom and 'id="pwned-script-close"' not in dom  # ...and nothing else did
    assert 'class="finding"' in dom and "ghp_…[40 chars]" in dom
    assert TOKEN not in dom


def test_browser_shows_seed_tool_captures(tmp_path: Path) -> None:
    """The real seed-tool captures, audited with every pack: each request and each finding is in the DOM."""
    requests = []
    for name in sorted(glob.glob(str(ROOT / "tests/data/captures/*.json"))):
        requests.extend(load_requests(name))
    report = _report(requests, ["all"])
    page = tmp_path / "report.html"
    page.write_text(write_html(report), encoding="utf-8")
    dom = _browse(page, tmp_path)
    entries = report["requests"]
    assert len(entries) >= 10
    assert dom.count('class="req"') == len(entries)
    for entry in entries:
        assert html.escape(entry["url"]) in dom
        for finding in entry["findings"]:
            assert f'data-rule="{html.escape(finding["rule_id"])}" data-field="{html.escape(finding["field"])}"' in dom
    marked = sum(len(e["payload"]["marks"]) for e in entries)
    assert marked and dom.count('class="finding"') == marked
    for tool in ("localstack", "serverless", "sst"):
        assert f'data-tool="{tool}"' in dom
    print(f"screenshot: {tmp_path / 'report.png'}")


def test_check_infers_html_from_the_output_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from telemetry_audit.cli import main

    out = tmp_path / "report.html"
    main(["check", "--policy", "all", "-o", str(out), str(ROOT / "tests/data/captures")])
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and 'class="finding"' in text
    assert main(["check", "-o", str(tmp_path / "report.bin"), str(ROOT / "tests/data/captures")]) == 2
    assert "report.bin: cannot tell the format from the file name" in capsys.readouterr().err
