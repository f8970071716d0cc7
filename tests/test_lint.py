"""The code stays ruff-clean and type-checks; the core never imports mitmproxy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "telemetry_audit", "tests", "addons", "benchmarks", "rules"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_type_checks() -> None:
    result = subprocess.run([_tool("mypy"), "telemetry_audit"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


CORE = ["model.py", "engine.py", "endpoints.py", "captures.py", "canary.py", "policy", "decoders", "detectors",
        "collectors", "report", "hosts.py", "catalogue.py"]


@pytest.mark.parametrize("part", CORE)
def test_core_does_not_import_mitmproxy(part: str) -> None:
    base = ROOT / "telemetry_audit" / part
    files = [base] if base.is_file() else sorted(base.rglob("*.py"))
    for file in files:
        text = file.read_text("utf-8")
        assert "import mitmproxy" not in text and "from mitmproxy" not in text, file
