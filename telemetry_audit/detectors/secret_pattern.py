"""`SecretPattern`: one secret detector declared as data (shared by `secrets` and `providers`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FAMILY = "secrets"


@dataclass(frozen=True)
class SecretPattern:
    """One secret detector, declared as data."""

    name: str
    """The id without the family: `github-pat` for `secrets.github-pat`."""
    title: str
    patterns: tuple[str, ...]
    """RE2 patterns; group 1, when present, is the secret."""
    keywords: tuple[str, ...]
    """Literal strings (matched case-insensitively), one of which must occur; empty means always run."""
    entropy: float | None = None
    """Shannon entropy floor (bits/char) of the secret; see the module docstring."""
    generic: bool = False
    """Generic detectors yield to specific ones on overlapping spans."""
    verify: Callable[[str], bool] | None = None
    """Extra check on the secret text (cheap: runs only on pattern matches)."""
    source: str = ""
    """The provider's documentation of the token format (URL)."""
    exact_keywords: bool = False
    """Match `keywords` case-sensitively (a documented prefix such as `PMAK-` is never spelled otherwise)."""
    prefilter: str = ""
    """An RE2 pattern used instead of `keywords` when a prefix alone is too common (`pat`, `DO`, `sk_`)."""

    @property
    def id(self) -> str:
        return f"{FAMILY}.{self.name}"
