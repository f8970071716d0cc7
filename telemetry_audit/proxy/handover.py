"""A policy the session hands its proxy child already loaded, instead of the child loading the files again.

`run` loads its policy (for the report) while the proxy child imports mitmproxy; the child loading the same files
again (YAML, schema checks, a few hundred patterns compiled) was about a tenth of a second of its start-up, on the
way of every run. So the session pickles the policy it loaded into the child's configuration (standard input,
never disk or the command line), together with the `taudit_policy` and `taudit_baseline` values it was loaded from;
the addon takes it only while its options still say exactly those, and loads the files itself otherwise.

The pickle comes from the process that spawned the child, on a pipe only that process holds: the same trust as the
rest of the configuration (which carries the audited environment).
"""

from __future__ import annotations

import base64
import binascii
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from telemetry_audit.policy.model import Policy


@dataclass(frozen=True)
class HandedPolicy:
    """A policy loaded by the session, and what it was loaded from."""

    policy: Policy
    sources: tuple[str, ...]
    """The policy files and pack names (`taudit_policy`), as given; empty for the default policy."""
    baseline: str
    """The baseline file whose fingerprints were added to the allowlist (`taudit_baseline`), or ''."""

    def fits(self, sources: Sequence[str], baseline: str) -> bool:
        """Whether it is the policy these option values describe."""
        return tuple(sources) == self.sources and baseline == self.baseline


def encode_policy(policy: Policy, sources: Sequence[str], baseline: str) -> str:
    """The text for the configuration's `policy` entry; '' when the policy cannot be pickled (the child then loads
    the files itself, as it always can)."""
    try:
        data = pickle.dumps((tuple(sources), baseline, policy), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return ""
    # Compressed to a fifth, so the whole configuration fits the pipe's buffer: the session writes it before the
    # child reads it (after its imports) and must not wait on it meanwhile.
    return base64.b64encode(zlib.compress(data, 1)).decode("ascii")


def decode_policy(text: str) -> HandedPolicy:
    """The policy `encode_policy` wrote; `ValueError` when `text` is not one."""
    try:
        sources, baseline, policy = pickle.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (binascii.Error, zlib.error, pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError,
            ImportError) as e:
        raise ValueError(f"the policy in the configuration cannot be read: {e}") from None
    if not (isinstance(policy, Policy) and isinstance(baseline, str) and isinstance(sources, tuple)
            and all(isinstance(source, str) for source in sources)):
        raise ValueError("the policy in the configuration is not one the session wrote")
    return HandedPolicy(policy, sources, baseline)
