"""mitmproxy addon script: `mitmdump -s addons/telemetry_audit_addon.py` (or mitmweb, mitmproxy).

The addon ships inside the package (`telemetry_audit/proxy/addon.py`, also loadable with `-s` directly); this
file only loads it, under a name that cannot shadow the `telemetry_audit` package (mitmproxy puts a script's
folder first on `sys.path`). Options: `--set taudit_NAME=VALUE`; `mitmdump --options | grep taudit_` lists
them with their help. Offline by default (telemetry answered by emulated collectors, other requests refused):
`--set taudit_offline=false` forwards upstream. Answering HTTPS locally needs `--set connection_strategy=lazy`.
"""

from telemetry_audit.proxy.addon import addons

__all__ = ["addons"]
