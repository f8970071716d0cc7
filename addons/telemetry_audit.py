"""mitmproxy addon script: `mitmdump -s addons/telemetry_audit.py` (or mitmweb, mitmproxy).

Options (`--set NAME=VALUE`): taudit_policy, taudit_mode (enforce|audit), taudit_log, taudit_offline,
taudit_offline_unknown, taudit_audit_all, taudit_block_style (empty|kill|403), taudit_store, taudit_baseline.
For HTTPS answered locally (offline collectors) also pass `--set connection_strategy=lazy`.
The logic lives in the installed package (`pip install .`); this file only loads it.
"""

import os
import sys


def _load_addon_class() -> type:
    # mitmproxy puts this script's folder first on sys.path, where this very file would shadow the
    # `telemetry_audit` package it shares a name with: import the package without that folder.
    here = os.path.dirname(os.path.abspath(__file__))
    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
        from telemetry_audit.proxy.addon import TelemetryAudit
    finally:
        sys.path[:] = saved
    return TelemetryAudit


addons = [_load_addon_class()()]
