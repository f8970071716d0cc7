"""`run --canary`: plant unique marker values before the command runs.

The command gets a fake credential in a secret-looking variable, a temporary
HOME whose path carries a marker, and a marker user name. Any outbound request
that carries one of them, in any wrapping (see `detectors.canary`), is a
`canary` finding: the tool sent something it had no business sending.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

CANARY_TOKEN_VARIABLE = "TELEMETRY_AUDIT_CANARY_API_TOKEN"


@dataclass(frozen=True)
class PlantedCanaries:
    """The environment to run the command with, and the markers to look for."""

    env: dict[str, str]
    markers: tuple[str, ...]
    token: str
    user: str
    home: str


def plant_canaries(base_env: Mapping[str, str], root: str) -> PlantedCanaries:
    """Markers unique to this run; HOME becomes a fresh directory under `root`."""
    tag = secrets.token_hex(6)
    token = f"tacanary_{secrets.token_urlsafe(24)}"
    user = f"tacanary{tag}"
    home = os.path.join(root, "home", user)
    os.makedirs(home, mode=0o700, exist_ok=True)
    env = dict(base_env)
    env[CANARY_TOKEN_VARIABLE] = token
    for name in ("USER", "LOGNAME", "USERNAME"):
        env[name] = user
    env["HOME"] = home
    return PlantedCanaries(env=env, markers=(token, user, home), token=token, user=user, home=home)
