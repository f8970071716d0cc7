"""mitmproxy addon script: `mitmdump -s addons/telemetry_audit.py` (or mitmweb, mitmproxy).

Options (`--set NAME=VALUE`): taudit_policy, taudit_mode (enforce|audit), taudit_log, taudit_offline,
taudit_offline_unknown, taudit_audit_all, taudit_block_style (empty|kill|403), taudit_store, taudit_baseline.
For HTTPS answered locally (offline collectors) also pass `--set connection_strategy=lazy`.
The logic lives in the installed package (`pip install telemetry-audit`); this file only loads it.
"""

from telemetry_audit.proxy.addon import TelemetryAudit

addons = [TelemetryAudit()]
