"""Smoke test for `benchmarks/bench_startup.py`: one tiny run gives well-formed figures (nothing is timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_run_prints_well_formed_figures() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "--runs", "1",
                             "--phases", "--modules", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["runs"] == 1 and figures["seal"] == "off"
    assert figures["run_wall_median_s"] > 0 and figures["run_cpu_median_s"] > 0
    phases = figures["phases_cpu_median_s"]
    assert len(phases) == 4 and all(value >= 0 for value in phases.values())
    assert phases["proxy child until it listens"] > 0
    modules = figures["proxy_child_modules"]
    assert modules["count"] > 100  # mitmproxy's alone are a few hundred
    assert 0 < len(modules["costliest_top_level_ms"]) <= 8
