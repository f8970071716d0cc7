"""Write the werf fixtures in this folder (werf itself cannot be installed here).

Run from the project root: `python tests/data/otlp/generate_werf_captures.py`.
Each file is a JSON capture (the format of tests/data/captures/) whose body is
an OTLP/HTTP protobuf `ExportTraceServiceRequest` built to the schema of
../shared/seeds/werf-telemetry.md by `tests.rules.werf_otlp`; the output is
deterministic, and tests/rules/test_werf_pack.py checks the files match it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.rules import werf_otlp  # noqa: E402


def fixtures() -> dict[str, dict[str, Any]]:
    """File name -> capture."""
    return {
        "werf-CommandStarted.json": werf_otlp.capture(werf_otlp.command_started()),
        "werf-CommandExited.json": werf_otlp.capture(werf_otlp.command_exited()),
    }


def render(capture: dict[str, Any]) -> str:
    return json.dumps(capture, indent=2) + "\n"


def main() -> None:
    for name, capture in fixtures().items():
        (HERE / name).write_text(render(capture), encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
