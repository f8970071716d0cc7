"""Paths: local file-system locations that identify a user or a project.

Flagged by default: absolute paths under home directories (`/home/<user>/…`,
`/Users/<user>/…`, `/root/…`), Windows user paths (`C:\\Users\\<user>\\…`),
UNC paths (`\\\\server\\share`), `file://` URLs, `~/…` paths, absolute paths in
stack-trace frames (`(/opt/app/x.js:10:5)`), and the working directory and
home directory of the audited process in any of these spellings: as is, with
the other slash, with JSON-escaped slashes, URL-encoded (`%2F` or not), and
`~/`-relative. A bare file name (`serverless.yml`) or a relative path is not a
leak unless a setting says so.

Paths end at white space, quotes, `<>|*?:;,()`: a path with spaces is reported
up to its first space, and `file.js:10:5` is reported without the position.

One `re2.Set` over every enabled pattern tells which patterns occur; only
those are then run to find positions. Values without any of `/ \\ ~ %` (and
without `.` when bare file names are on) are skipped without a regex.

Settings (policy YAML, `settings.detectors.paths` or a rule's `settings`):

* `disable` (list of detector ids, default `[]`), e.g. `[paths.stack-frame]`.
* `bare_filenames` (bool, default `false`): flag bare file names with a
  common source/config extension (`serverless.yml`, `.env`) as
  `paths.filename`.
* `relative_paths` (bool, default `false`): flag `./x`, `../x` and
  `dir/sub/file.ext` as `paths.relative`.
* `absolute_paths` (bool, default `false`): flag any absolute POSIX path of
  two or more segments as `paths.absolute` (noisy: URL paths look the same).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import re2

from telemetry_audit.detectors.base import AuditEnvironment, DetectorInfo, Match, gate_set
from telemetry_audit.detectors.settings import DetectorSettings, SettingSpec, SettingType
from telemetry_audit.detectors.spans import outermost
from telemetry_audit.model import FindingKind

FAMILY = "paths"
MAX_MATCHES = 1000

_PCHAR = r"""[^\s"'<>|*?:;,()\[\]{}]"""
_START = r"""(?:^|[^A-Za-z0-9_.~$%\\/-])"""
_SEP = r"(?:\\\\|\\|/)"
_EXT = (
    r"(?:ya?ml|json5?|jsonc|toml|ini|cfg|conf|env|properties|js|mjs|cjs|ts|mts|tsx|jsx|py|rb|go|rs|java|kt|"
    r"cs|php|sh|bash|zsh|ps1|tf|tfvars|tfstate|lock|md|txt|log|csv|sql|xml|html|css|pem|key|crt|p12|pfx|"
    r"zip|tar|gz|tgz|dockerfile)"
)


@dataclass(frozen=True)
class PathPattern:
    """One path detector, declared as data: group 1 of `pattern` is the path."""

    name: str
    title: str
    pattern: str

    @property
    def id(self) -> str:
        return f"{FAMILY}.{self.name}"


PATTERNS: tuple[PathPattern, ...] = (
    PathPattern(
        "home-dir",
        "path under a home directory",
        _START + r"((?:/home|/Users|/usr/home|/var/home)/[^/\s\"'<>|*?:;,()\[\]{}]+(?:/" + _PCHAR + r"*)?"
        r"|/root(?:/" + _PCHAR + r"*|\b))",
    ),
    PathPattern(
        "windows-user",
        "Windows path under a user profile",
        r"(?i)\b([a-z]:" + _SEP + r"+(?:users|documents and settings)" + _SEP + r"+[^\\/\s\"'<>|*?:;,()]+"
        r"(?:" + _SEP + r"[^\s\"'<>|*?:;,()]*)?)",
    ),
    PathPattern(
        "unc",
        "Windows UNC network path",
        r"(?:^|[^\\A-Za-z0-9])(\\\\[A-Za-z0-9][A-Za-z0-9._-]*\\[A-Za-z0-9$][^\s\"'<>|*?:;,()]*)",
    ),
    PathPattern("file-url", "file:// URL", r"(?i)\b(file:///?[^\s\"'<>]+)"),
    PathPattern("tilde", "home-relative path (~/…)", r"(?:^|[\s\"'(=:,\[])(~[A-Za-z0-9._-]{0,32}/" + _PCHAR + r"+)"),
    PathPattern(
        "stack-frame",
        "absolute path in a stack trace or error position",
        r"(?:^|[\s\"'(=\[@])(/(?:[^\s\"'<>|*?:;,()/]+/)+[^\s\"'<>|*?:;,()/]+|(?i:[a-z]):\\[^\s\"'<>|*?:;,()]+)"
        r":[0-9]+(?::[0-9]+)?\b",
    ),
    PathPattern(
        "filename",
        "bare file name",
        r"(?i)(?:^|[^A-Za-z0-9_./\\@-])([A-Za-z0-9_][A-Za-z0-9_.-]{0,100}\." + _EXT + r"|\.(?:env|npmrc|netrc|"
        r"pypirc|serverlessrc|bashrc|zshrc|profile|gitconfig|git-credentials|dockercfg)(?:\.[a-z]+)?)\b",
    ),
    PathPattern(
        "relative",
        "relative path",
        r"(?:^|[\s\"'(=:,\[])((?:\.{1,2}/)+" + _PCHAR + r"+|[A-Za-z0-9_][A-Za-z0-9_.@-]*(?:/[A-Za-z0-9_.@-]+)+\."
        + _EXT + r")\b",
    ),
    PathPattern(
        "absolute",
        "absolute path",
        r"(?:^|[\s\"'(=:,\[])(/[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)+/?)",
    ),
)

_OPT_IN = {"filename": "bare_filenames", "relative": "relative_paths", "absolute": "absolute_paths"}

CWD_ID = f"{FAMILY}.cwd"
HOME_ID = f"{FAMILY}.home"
CATALOGUE: tuple[DetectorInfo, ...] = (
    DetectorInfo(CWD_ID, FAMILY, "working directory of the audited process"),
    DetectorInfo(HOME_ID, FAMILY, "home directory of the audited process"),
    *(DetectorInfo(p.id, FAMILY, p.title) for p in PATTERNS),
)

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("disable", SettingType.DETECTOR_IDS, [], "detectors of this family to turn off"),
    SettingSpec("bare_filenames", SettingType.FLAG, False, "flag bare file names such as `serverless.yml`"),
    SettingSpec("relative_paths", SettingType.FLAG, False, "flag `./x`, `../x` and `dir/sub/file.ext`"),
    SettingSpec("absolute_paths", SettingType.FLAG, False, "flag any absolute POSIX path (noisy)"),
)

_TOO_GENERAL = frozenset({"", "/", "/tmp", "/var/tmp", "/usr", "/var", "/opt", "/home", "/Users", "C:\\", "C:/"})
_MIN_DIR_LENGTH = 5
"""Working or home directories shorter than this (`/srv`) would match too much and are not looked for."""


def spellings(path: str, home: str = "") -> tuple[str, ...]:
    """The ways a directory can appear in a payload (see the module docstring)."""
    path = path.rstrip("/\\") if len(path) > 1 else path
    if path in _TOO_GENERAL or len(path) < _MIN_DIR_LENGTH:
        return ()
    forms = [path, path.replace("\\", "/"), path.replace("/", "\\"), path.replace("/", "\\\\"),
             path.replace("\\", "\\\\"), path.replace("/", "\\/"), quote(path), quote(path, safe="")]
    home = home.rstrip("/\\")
    if home and home != path and path.startswith(home + "/") and len(home) >= _MIN_DIR_LENGTH:
        forms.append("~" + path[len(home):])
    unique: list[str] = []
    for form in forms:
        if form not in unique:
            unique.append(form)
    return tuple(unique)


class PathsDetector:
    """The paths family, configured for one audited process."""

    family = FAMILY

    def __init__(self, patterns: tuple[PathPattern, ...], needles: tuple[tuple[str, str, str], ...],
                 triggers: str) -> None:
        self._patterns = patterns
        self._regexes = tuple(re2.compile(p.pattern) for p in patterns)
        self._needles = needles
        self._triggers = triggers
        # The working and home directory spellings are literal entries after the patterns: one pass says which
        # of either occur (a literal entry hits exactly where `str.find` finds it).
        self.gate: tuple[str, ...] = (*(p.pattern for p in patterns), *(re2.escape(n) for _, _, n in needles))
        self._set: Any = gate_set(self.gate) if self.gate else None

    def find(self, value: str) -> Iterator[Match]:
        if self._set is not None and self._triggered(value):
            yield from self._found(value, self._set.Match(value) or ())

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        if hits and self._triggered(value):
            yield from self._found(value, hits)

    def _triggered(self, value: str) -> bool:
        """Whether `value` holds a character every path spelling has (a test cheaper than the set pass)."""
        for trigger in self._triggers:
            if trigger in value:
                return True
        return False

    def _found(self, value: str, gate_hits: Sequence[int]) -> Iterator[Match]:
        found: list[Match] = []
        hits = sorted(gate_hits)
        needle_hits = {index - len(self._patterns) for index in hits if index >= len(self._patterns)}
        for number, (detector_id, title, needle) in enumerate(self._needles):
            if number not in needle_hits:
                continue
            start = value.find(needle)
            count = 0
            while start >= 0 and count < MAX_MATCHES:
                found.append(Match(detector_id, FindingKind.PATH, title, start, start + len(needle)))
                start = value.find(needle, start + len(needle))
                count += 1
        for index in hits:
            if index >= len(self._patterns):
                break
            pattern = self._patterns[index]
            for count, m in enumerate(self._regexes[index].finditer(value)):
                if count >= MAX_MATCHES:
                    break
                start, end = m.span(1)
                if 0 <= start < end:
                    found.append(Match(pattern.id, FindingKind.PATH, pattern.title, start, end))
        if found:
            yield from outermost(found)


def build(settings: Mapping[str, Any], environment: AuditEnvironment) -> PathsDetector:
    """The paths family as configured by `settings`, looking for `environment.cwd` and `.home`."""
    read = DetectorSettings(FAMILY, settings, SETTINGS)
    disabled = set(read.strings("disable"))
    unknown = disabled - {d.id for d in CATALOGUE}
    if unknown:
        raise ValueError(f"{FAMILY}.disable: unknown detector id(s) {', '.join(sorted(unknown))}")
    patterns = tuple(
        p for p in PATTERNS
        if p.id not in disabled and (p.name not in _OPT_IN or read.flag(_OPT_IN[p.name]))
    )
    needles: list[tuple[str, str, str]] = []
    titles = {d.id: d.title for d in CATALOGUE}
    for detector_id, directory in ((CWD_ID, environment.cwd), (HOME_ID, environment.home)):
        if detector_id in disabled:
            continue
        for form in spellings(directory, environment.home):
            needles.append((detector_id, titles[detector_id], form))
    triggers = "/\\~%" + ("." if any(p.name == "filename" for p in patterns) else "")
    return PathsDetector(patterns, tuple(needles), triggers)
