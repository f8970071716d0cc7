"""The environment of a sealed command: the user's own, trusting the proxy CA, with no proxy variables.

Sealed, routing is the kernel's job, so proxy variables are removed rather than set: a client that honours them
would try to reach a proxy address that does not exist inside the sandbox. The user's own proxy (a corporate
one) is used by the relay outside instead (`upstream_proxy_from`).
"""

from __future__ import annotations

from collections.abc import Mapping

from telemetry_audit.session.child_env import CA_BUNDLE_VARIABLES, NO_PROXY_VARIABLES, PROXY_VARIABLES

RUN_MARKER = "TELEMETRY_AUDIT_RUN"
"""Set in the audited command's environment (a per-run token): descendants inherit it and can be found in /proc."""


def sealed_environment(base: Mapping[str, str], *, ca_cert_path: str, ca_bundle_path: str,
                       marker: str = "") -> dict[str, str]:
    """A copy of `base` for a sealed command (pure: reads nothing but its arguments)."""
    env = {k: v for k, v in base.items() if k not in PROXY_VARIABLES and k not in NO_PROXY_VARIABLES}
    for name in CA_BUNDLE_VARIABLES:
        env[name] = ca_bundle_path
    env["NODE_EXTRA_CA_CERTS"] = ca_cert_path
    if marker:
        env[RUN_MARKER] = marker
    return env


def upstream_proxy_from(env: Mapping[str, str]) -> str:
    """The user's own HTTP(S) proxy URL (`HTTPS_PROXY` first, as curl reads it), or ''."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        value = env.get(name, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return ""
