"""Env values: the real values of the audited process's environment variables.

A tool that sends `LOCALSTACK_AUTH_TOKEN` as `api_key`, or echoes a variable
inside an error message, leaks a value whatever its format. This family looks
for every sensitive value of `AuditEnvironment.env` as is, JSON-escaped,
URL-encoded (`quote` and `quote_plus`) and base64-encoded (standard and
URL-safe alphabets, at each of the three byte alignments, so the value is also
found inside a larger base64 blob such as `Basic dXNlcjp0b2tlbg==`), alone or
inside larger strings. The finding names the variable (`value of $NAME`):
the name is not secret, the value is, and detectors never report plaintext.

Which variables are looked for:

1. Names matching `ignore_names` (shell globs, case-insensitive, added to a
   built-in list: `PATH`, `*PATH`, `HOME`, `PWD`, `USER`, `HOSTNAME`, `SHELL`,
   `TERM*`, `LANG`, `LC_*`, `TZ`, `XDG_*`, `*_REGION`, `CI`, `NODE_ENV`…)
   are skipped. Home, user and host name are covered by the paths and pii
   families with better titles. Version variables (`*_VERSION`, `*_VER`,
   `VERSION`) are skipped when their value is a version string: official
   images set `NODE_VERSION=20.11.1` and tools report their runtime's version.
2. Values in `ignore_values` (case-insensitive, added to a built-in list of
   booleans, shells, terminals, locales, stage names and dummy credentials
   such as `test`), values that are PATH-like lists, system paths (`/usr/…`,
   `/bin/…`, `C:\\Windows…`) and numbers shorter than 8 digits are skipped.
3. Names that look secret (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*PASSWD*`,
   `*PASSPHRASE*`, `*_PASS`, `*_KEY`, `*_KEY_*`, `*KEY_ID`, `*APIKEY*`,
   `*AUTH*`, `*CREDENTIAL*`, `*_PAT`, `*_DSN`, `*PRIVATE*`, `*COOKIE*`,
   `*WEBHOOK*`, plus `sensitive_names`) are looked for from
   `secret_min_length` characters; every other variable from `min_length`.
   Values shorter than `min_length` only match as whole words (not inside a
   longer run of letters and digits). Base64 forms are looked for only when
   their stable core is at least 8 characters.

Matching is one pass: an `re2.Set` of every needle (escaped literals) says
whether any occurs; only then does one alternation of the needles, longest
first, give positions.

Settings (policy YAML, `settings.detectors.env_values` or a rule's `settings`):

* `disable` (list of detector ids, default `[]`).
* `min_length` (int, default 6): shortest value looked for.
* `secret_min_length` (int, default 4): shortest value looked for when the
  name looks secret.
* `ignore_names` (list of globs, default `[]`): added to the built-in list.
* `ignore_values` (list of strings, default `[]`): added to the built-in list.
* `sensitive_names` (list of globs, default `[]`): added to the built-in list.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote, quote_plus

import re2

from telemetry_audit.detectors.base import AuditEnvironment, DetectorInfo, Match, gate_set
from telemetry_audit.detectors.settings import DetectorSettings, SettingSpec, SettingType
from telemetry_audit.detectors.spans import outermost
from telemetry_audit.model import FindingKind

FAMILY = "env_values"
VALUE_ID = f"{FAMILY}.value"
ENCODED_ID = f"{FAMILY}.value-encoded"
CATALOGUE: tuple[DetectorInfo, ...] = (
    DetectorInfo(VALUE_ID, FAMILY, "value of an environment variable"),
    DetectorInfo(ENCODED_ID, FAMILY, "URL- or base64-encoded value of an environment variable"),
)
MAX_MATCHES = 1000
MIN_BASE64_CORE = 8

IGNORE_NAMES: tuple[str, ...] = (
    "PATH", "*PATH", "PWD", "OLDPWD", "HOME", "USER", "USERNAME", "LOGNAME", "HOSTNAME", "HOST", "SHELL",
    "TERM", "TERM_*", "COLORTERM", "LANG", "LANGUAGE", "LC_*", "TZ", "SHLVL", "_", "EDITOR", "VISUAL", "PAGER",
    "LESS*", "DISPLAY", "XDG_*", "TMPDIR", "TMP", "TEMP", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "HIST*",
    "COLUMNS", "LINES", "HOSTTYPE", "OSTYPE", "MACHTYPE", "MAIL", "NODE_ENV", "CI", "*_REGION", "DEBIAN_FRONTEND",
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK", "NO_COLOR", "FORCE_COLOR",
    "DO_NOT_TRACK", "*_TELEMETRY*", "*_TRACKING_DISABLED", "SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS",
    "SHELL_SESSION_ID", "TERM_SESSION_ID", "WINDOWID", "LS_COLORS", "GPG_TTY", "SSH_TTY",
)
IGNORE_VALUES: frozenset[str] = frozenset({
    "true", "false", "yes", "no", "on", "off", "y", "n", "none", "null", "nil", "undefined", "enabled", "disabled",
    "c", "posix", "utf-8", "utf8", "c.utf-8", "en_us.utf-8", "en_us", "en_gb.utf-8", "en", "en_us:en",
    "xterm", "xterm-256color", "screen", "screen-256color", "tmux-256color", "dumb", "vt100", "linux", "rxvt",
    "sh", "bash", "zsh", "fish", "dash", "ksh", "/bin/sh", "/bin/bash", "/bin/zsh", "/usr/bin/zsh",
    "/usr/bin/bash", "/usr/bin/fish", "/usr/local/bin/fish", "vim", "vi", "nano", "less", "more", "emacs",
    "development", "production", "staging", "prod", "dev", "test", "testing", "qa", "local", "default",
    "localhost", "127.0.0.1", "::1", "0.0.0.0", "utc", "docker", "amd64", "x86_64", "arm64", "aarch64",
    "dummy", "changeme", "foobar", "example", "secret", "password", "token", "xxx", "xxxx",
})
SENSITIVE_NAMES: tuple[str, ...] = (
    "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*_PASS", "*_KEY", "*_KEY_*", "*KEY_ID",
    "*APIKEY*", "*AUTH*", "*CREDENTIAL*", "*_PAT", "*_DSN", "*PRIVATE*", "*COOKIE*", "*WEBHOOK*",
)
VERSION_NAMES: tuple[str, ...] = ("VERSION", "*_VERSION", "*_VER")
_VERSION_VALUE = re2.compile(r"v?[0-9]+(?:\.[0-9]+){0,3}(?:[-+][0-9A-Za-z.-]{1,40})?")
"""`20.11.1`, `v1.2`, `3.12.1-rc1`, `8.0.0.0`: a version number, never a secret."""
_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/etc/", "/opt/", "/lib", "/nix/", "/snap/", "/System/",
                    "/Library/", "/proc/", "/dev/", "C:\\Windows", "C:\\Program Files")

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("disable", SettingType.DETECTOR_IDS, [], "detectors of this family to turn off"),
    SettingSpec("min_length", SettingType.INTEGER, 6, "shortest value looked for", minimum=1),
    SettingSpec("secret_min_length", SettingType.INTEGER, 4, "shortest value looked for when the name looks secret",
                minimum=1),
    SettingSpec("ignore_names", SettingType.STRINGS, [], "variable name globs never looked for"),
    SettingSpec("ignore_values", SettingType.STRINGS, [], "values never looked for (case-insensitive)"),
    SettingSpec("sensitive_names", SettingType.STRINGS, [], "variable name globs that look secret"),
)


@dataclass(frozen=True)
class Needle:
    """One literal spelling of one variable's value."""

    text: str
    detector_id: str
    title: str
    whole_word: bool


def _matches_any(name: str, globs: tuple[str, ...]) -> bool:
    upper = name.upper()
    return any(fnmatchcase(upper, g.upper()) for g in globs)


def _is_uninteresting(value: str, ignore_values: frozenset[str]) -> bool:
    if value.lower() in ignore_values:
        return True
    if value.isdigit() and len(value) < 8:
        return True
    if value.startswith(_SYSTEM_PREFIXES):
        return True
    parts = [p for p in value.split(":") if p] if ":" in value else []
    if len(parts) >= 2 and all(p.startswith(("/", "~", ".")) for p in parts):
        return True  # a PATH-like list
    return ";" in value and all(len(p) > 2 and p[1] == ":" for p in value.split(";") if p)


def base64_cores(value: str) -> tuple[str, ...]:
    """Base64 spellings of `value` that do not depend on the bytes around it (3 alignments, 2 alphabets)."""
    raw = value.encode("utf-8", "surrogatepass")
    cores: list[str] = []
    for shift, drop in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii").rstrip("=")
        stable = (8 * (shift + len(raw))) // 6
        core = encoded[drop:stable]
        if len(core) >= MIN_BASE64_CORE:
            for spelling in (core, core.replace("+", "-").replace("/", "_")):
                if spelling not in cores:
                    cores.append(spelling)
    return tuple(cores)


def needles_for(name: str, value: str, whole_word: bool) -> list[Needle]:
    """Every spelling of one variable's value, raw forms first."""
    title = f"value of ${name}"
    found = [Needle(value, VALUE_ID, title, whole_word)]
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    if escaped != value:
        found.append(Needle(escaped, VALUE_ID, f"{title} (JSON-escaped)", whole_word))
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value)):
        if encoded != value:
            found.append(Needle(encoded, ENCODED_ID, f"{title} (URL-encoded)", whole_word))
    for core in base64_cores(value):
        found.append(Needle(core, ENCODED_ID, f"{title} (base64)", False))
    return found


class EnvValuesDetector:
    """The env-values family, configured for one audited environment."""

    family = FAMILY

    def __init__(self, needles: tuple[Needle, ...]) -> None:
        by_text: dict[str, Needle] = {}
        for needle in needles:
            by_text.setdefault(needle.text, needle)
        self._needles = by_text
        self._shortest = min((len(t) for t in by_text), default=0)
        ordered = sorted(by_text, key=len, reverse=True)
        self.gate: tuple[str, ...] = tuple(re2.escape(text) for text in ordered)
        self._set: Any = gate_set(self.gate) if ordered else None
        self._regexes: dict[tuple[int, ...], Any] = {}
        """Per set of gate entries that hit: the alternation of just those needles (see `_regex_for`)."""

    def find(self, value: str) -> Iterator[Match]:
        if self._set is None or len(value) < self._shortest:
            return
        yield from self.find_gated(value, self._set.Match(value) or ())

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        if not hits or len(value) < self._shortest:
            return
        found: list[Match] = []
        for m in self._regex_for(hits).finditer(value):
            start, end = m.span()
            needle = self._needles[value[start:end]]
            if needle.whole_word and (_word_char(value, start - 1) or _word_char(value, end)):
                continue
            found.append(Match(needle.detector_id, FindingKind.ENV, needle.title, start, end))
            if len(found) >= MAX_MATCHES:
                break
        if found:
            yield from outermost(found)


    def _regex_for(self, hits: Sequence[int]) -> Any:
        """The alternation, longest first, of the needles whose gate entries hit. Needles absent from a value never
        match in it, so this finds what the alternation of every needle finds; and it stays small where the whole
        environment's would outgrow RE2 (10,000 variables of 300 characters: a 3 MB pattern it refuses)."""
        key = tuple(sorted(hits))
        regex = self._regexes.get(key)
        if regex is None:
            if len(self._regexes) >= _REGEX_CACHE_SIZE:
                self._regexes.clear()
            regex = self._regexes[key] = re2.compile("|".join(self.gate[index] for index in key))
        return regex


_REGEX_CACHE_SIZE = 1024


def _word_char(value: str, index: int) -> bool:
    return 0 <= index < len(value) and value[index].isalnum()


def build(settings: Mapping[str, Any], environment: AuditEnvironment) -> EnvValuesDetector:
    """The env-values family for `environment.env` as configured by `settings`."""
    read = DetectorSettings(FAMILY, settings, SETTINGS)
    disabled = set(read.strings("disable"))
    unknown = disabled - {d.id for d in CATALOGUE}
    if unknown:
        raise ValueError(f"{FAMILY}.disable: unknown detector id(s) {', '.join(sorted(unknown))}")
    min_length = read.integer("min_length", minimum=1)
    secret_min = read.integer("secret_min_length", minimum=1)
    ignore_names = IGNORE_NAMES + read.strings("ignore_names")
    ignore_values = IGNORE_VALUES | {v.lower() for v in read.strings("ignore_values")}
    sensitive = SENSITIVE_NAMES + read.strings("sensitive_names")
    secret_first: list[Needle] = []
    others: list[Needle] = []
    for name, value in sorted(environment.env.items()):
        if not value or _matches_any(name, ignore_names) or _is_uninteresting(value, ignore_values):
            continue
        if _matches_any(name, VERSION_NAMES) and _VERSION_VALUE.fullmatch(value) is not None:
            continue
        is_secret = _matches_any(name, sensitive)
        if len(value) < (secret_min if is_secret else min_length):
            continue
        whole_word = len(value) < min_length
        (secret_first if is_secret else others).extend(needles_for(name, value, whole_word))
    needles = tuple(n for n in secret_first + others if n.detector_id not in disabled)
    return EnvValuesDetector(needles)
