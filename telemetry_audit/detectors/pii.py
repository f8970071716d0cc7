"""Personal data: e-mail addresses, the user and host names, MAC and IP addresses, git identities.

* `pii.email`: e-mail addresses (`local@domain.tld`).
* `pii.user`, `pii.hostname`: `AuditEnvironment.user` and `.hostname` as
  whole words, case-insensitively, wherever they appear: alone, in paths
  (`/home/<user>/`, `C:\\Users\\<user>`), in `user@host` strings. A host name's
  first label (`alice-laptop` of `alice-laptop.corp.example`) is looked for too.
  Names shorter than 3 characters and common service accounts and host names
  (`root`, `runner`, `ubuntu`, `localhost`, …) are not looked for; add your
  own with `ignore_users` / `ignore_hostnames`.
* `pii.mac-address`: `aa:bb:cc:dd:ee:ff` / `aa-bb-cc-dd-ee-ff` (not all-zero
  or broadcast).
* `pii.ip-address`: IPv4 and IPv6 addresses that are globally routable;
  private, loopback, link-local and documentation ranges only with
  `private_ips: true`. Dotted quads inside longer dotted numbers (versions such
  as `1.2.3.4.5`, OIDs) are not addresses, nor are four-part versions: a
  quad right after a product token's `/` (`Chrome/111.0.0.0` in a User-Agent)
  or after `v`/`version`, and a quad ending in `.0` (`8.0.0.0`: a network
  address, never a host's, and the usual spelling of a four-part version).
* `pii.url-user`: URLs whose authority carries a user name
  (`https://alice@host/…`, also `user:password@`, which the secrets family
  reports as a credential too). Service accounts `git`, `hg`, `anonymous`
  and `x-access-token` are not user names.
* `pii.git-remote`: git remotes in SCP form (`git@github.com:alice/repo.git`)
  or `ssh://` form. They are flagged because they only appear when a tool read
  a local checkout, and their owner segment is often a personal account name;
  `https://github.com/owner/repo` without user info is *not* flagged (it is
  the shape of public links in user agents and docs).

A value is only handed to a regex when it holds the character the pattern
needs (`@`, three dots, two colons, five separators) or one of the names.

Settings (policy YAML, `settings.detectors.pii` or a rule's `settings`):

* `disable` (list of detector ids, default `[]`), e.g. `[pii.email]`.
* `private_ips` (bool, default `false`): also flag private, loopback,
  link-local and reserved addresses.
* `ignore_users`, `ignore_hostnames` (lists, default `[]`): added to the
  built-in lists of generic names.
* `ignore_emails` (list of domains or addresses, default `[]`): e-mail
  addresses to accept, e.g. `[noreply@github.com, example.com]`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from telemetry_audit.detectors.base import AuditEnvironment, DetectorInfo, Match, gate_set
from telemetry_audit.detectors.settings import DetectorSettings, SettingSpec, SettingType
from telemetry_audit.detectors.spans import outermost
from telemetry_audit.model import FindingKind

FAMILY = "pii"
MAX_MATCHES = 1000
MIN_NAME_LENGTH = 3

GENERIC_USERS = frozenset({
    "root", "user", "admin", "administrator", "runner", "ubuntu", "debian", "ec2-user", "node", "nobody", "vscode",
    "codespace", "jenkins", "circleci", "gitpod", "app", "www-data", "daemon", "docker", "build", "builder", "ci",
    "test", "guest", "default", "system",
})
GENERIC_HOSTS = frozenset({
    "localhost", "localhost.localdomain", "ip6-localhost", "ubuntu", "debian", "raspberrypi", "docker-desktop",
    "host", "server", "runner", "default", "buildkitsandbox", "codespaces",
})
SERVICE_URL_USERS = frozenset({"git", "hg", "anonymous", "x-access-token", "oauth2", "x-oauth-basic", "token"})

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = r"\b([A-Za-z0-9._%+-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,24})\b"
_IPV4 = r"\b((?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))\b"
_IPV6 = r"(?:^|[^0-9A-Za-z:.])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[A-Za-z0-9]+)?)"
_MAC = r"\b([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5})\b"
_URL_USER = r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://([^\s:@/?#\"'<>\[\]]{1,128})(?::[^\s:@/?#\"'<>\[\]]{0,128})?@[A-Za-z0-9]"
_DOMAIN = _LABEL + r"(?:\." + _LABEL + r")+"
_REPO = r"[A-Za-z0-9._~-]+/[A-Za-z0-9._~/-]+"
_GIT_SCP = r"(?:^|[\s\"'(=,\[])([A-Za-z0-9._-]{1,64}@" + _DOMAIN + r":" + _REPO + r")"
_GIT_SSH = r"\b((?:git\+)?ssh://(?:[A-Za-z0-9._-]+@)?" + _DOMAIN + r"(?::[0-9]+)?/" + _REPO + r")"


@dataclass(frozen=True)
class PiiPattern:
    """One personal-data detector: group 1 of each pattern is the datum."""

    name: str
    title: str
    patterns: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{FAMILY}.{self.name}"


PATTERNS: tuple[PiiPattern, ...] = (
    PiiPattern("git-remote", "git remote URL naming a repository owner", (_GIT_SCP, _GIT_SSH)),
    PiiPattern("url-user", "user name in a URL", (_URL_USER,)),
    PiiPattern("email", "e-mail address", (_EMAIL,)),
    PiiPattern("mac-address", "MAC address", (_MAC,)),
    PiiPattern("ip-address", "IP address", (_IPV4, _IPV6)),
)
USER_ID = f"{FAMILY}.user"
HOSTNAME_ID = f"{FAMILY}.hostname"
CATALOGUE: tuple[DetectorInfo, ...] = (
    DetectorInfo(USER_ID, FAMILY, "user name of the audited process"),
    DetectorInfo(HOSTNAME_ID, FAMILY, "host name of the audited machine"),
    *(DetectorInfo(p.id, FAMILY, p.title) for p in PATTERNS),
)

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("disable", SettingType.DETECTOR_IDS, [], "detectors of this family to turn off"),
    SettingSpec("private_ips", SettingType.FLAG, False, "also flag private, loopback and reserved addresses"),
    SettingSpec("ignore_users", SettingType.STRINGS, [], "user names never looked for"),
    SettingSpec("ignore_hostnames", SettingType.STRINGS, [], "host names never looked for"),
    SettingSpec("ignore_emails", SettingType.STRINGS, [], "e-mail addresses or domains to accept"),
)


def _has_at(value: str) -> bool:
    return "@" in value


def _maybe_git_remote(value: str) -> bool:
    return "@" in value or "ssh://" in value


def _maybe_mac(value: str) -> bool:
    return value.count(":") >= 5 or value.count("-") >= 5


def _maybe_ipv4(value: str) -> bool:
    return value.count(".") >= 3


def _maybe_ipv6(value: str) -> bool:
    # A full IPv6 address has seven colons, a compressed one "::"; times of day have two.
    return "::" in value or value.count(":") >= 7


_PRODUCT_VERSION = re2.compile(r"(?:[A-Za-z][A-Za-z0-9._+-]*/|\b[vV]|(?i:version)[:= ]{0,2})$")
"""What precedes a version number: a User-Agent product token (`Chrome/`), `v` or `version `."""

_IPV6_GATE = r"::|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){7}"
"""What any IPv6 address `_accept_ip` takes holds: `::` or eight groups (seven colons). The pattern alone also
matches times of day (`07:12:33`), which are then rejected one by one; as the gate of the pattern pass,
this keeps such text out of it without changing what is found (the pattern is what finds)."""
_SET_GATES = {
    _IPV6: _IPV6_GATE,
    # Bounded repeats (`{1,64}` before `@`, `{1,128}` in a URL's user) make a DFA state per position in a run of
    # word characters: on high-entropy text (base64, hex, random ids) the set's DFA cache thrashed and one 1.4 KB
    # text took about a millisecond. These hold a character on each side of the `@` and no bound.
    _EMAIL: r"[A-Za-z0-9._%+-]@[A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9]",
    _URL_USER: r"://[^\s:@/?#\"'<>\[\]]+(?::[^\s:@/?#\"'<>\[\]]*)?@[A-Za-z0-9]",
    _GIT_SCP: r"[A-Za-z0-9._-]@[A-Za-z0-9][A-Za-z0-9.-]*:[A-Za-z0-9._~-]+/",
}
"""Set entries that stand in for a pattern: each matches wherever a match of the pattern exists."""

_LONG_TEXT = 512
"""From this length a value is looked at with one set pass instead of character tests first (see `find`)."""

_NEEDS: dict[str, tuple[Callable[[str], bool], ...]] = {
    "git-remote": (_maybe_git_remote, _maybe_git_remote), "url-user": (_has_at,), "email": (_has_at,),
    "mac-address": (_maybe_mac,), "ip-address": (_maybe_ipv4, _maybe_ipv6),
}
"""The cheap test a value must pass before each of a pattern's regexes runs."""


class PiiDetector:
    """The personal-data family, configured for one audited machine."""

    family = FAMILY

    def __init__(self, patterns: tuple[PiiPattern, ...], names: tuple[tuple[str, str, str], ...],
                 private_ips: bool, ignore_emails: frozenset[str]) -> None:
        self._patterns = tuple(
            (p, needed, re2.compile(x)) for p in patterns for needed, x in zip(_NEEDS[p.name], p.patterns, strict=True)
        )
        # One RE2 pass says which patterns occur at all: on a long text (a whole request's values) the cheap
        # character tests below nearly always pass, and running every pattern would cost one scan each.
        self._names = names
        self._names_regex: Any = None
        if names:
            alternation = "|".join(re2.escape(n) for _, _, n in sorted(names, key=lambda n: -len(n[2])))
            self._names_regex = re2.compile(r"(?i)(?:^|[^A-Za-z0-9])(" + alternation + r")")
        gate = [_SET_GATES.get(regex.pattern, regex.pattern) for _, _, regex in self._patterns]
        self._names_entry = len(gate) if self._names_regex is not None else -1
        """Index of the names regex in the gate (last), for long texts; -1 without names."""
        if self._names_regex is not None:
            gate.append(self._names_regex.pattern)
        self.gate: tuple[str, ...] = tuple(gate)
        self._set: Any = gate_set(gate) if gate else None
        self._private_ips = private_ips
        self._ignore_emails = ignore_emails

    def find(self, value: str) -> Iterator[Match]:
        if len(value) >= _LONG_TEXT and self._set is not None:
            # A long text (a request's whole scan text) nearly always passes the character tests below, and
            # lower-casing it costs a copy: one pass of the set says which patterns, and whether a name, occur.
            yield from self.find_gated(value, self._set.Match(value) or ())
            return
        found: list[Match] = []
        if self._names_regex is not None and len(value) >= MIN_NAME_LENGTH:
            lowered = value.lower()
            for _, _, name in self._names:
                if name in lowered:
                    found.extend(self._name_matches(value))
                    break
        if (  # else no pattern can match (see `_NEEDS`)
            "@" in value or "ssh://" in value or "::" in value or value.count(".") >= 3
            or value.count(":") >= 5 or value.count("-") >= 5
        ):
            hits = (self._set.Match(value) if self._set is not None else None) or []
            found.extend(self._pattern_matches(value, hits))
        if found:
            yield from outermost(found)

    def find_gated(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        if not hits:
            return
        found: list[Match] = []
        if self._names_entry in hits:
            found.extend(self._name_matches(value))
        found.extend(self._pattern_matches(value, hits))
        if found:
            yield from outermost(found)

    def _pattern_matches(self, value: str, hits: Sequence[int]) -> Iterator[Match]:
        for index in sorted(hits):
            if index >= len(self._patterns):
                continue  # the names entry
            pattern, needed, regex = self._patterns[index]
            if not needed(value):
                continue
            for count, m in enumerate(regex.finditer(value)):
                if count >= MAX_MATCHES:
                    break
                start, end = m.span(1)
                if start < end and self._accept(pattern.name, value, start, end):
                    yield Match(pattern.id, FindingKind.PII, self._title(pattern, value[start:end]), start, end)

    def _name_matches(self, value: str) -> Iterator[Match]:
        titles = {n: (i, t) for i, t, n in self._names}
        for count, m in enumerate(self._names_regex.finditer(value)):
            if count >= MAX_MATCHES:
                return
            start, end = m.span(1)
            if end < len(value) and value[end].isalnum():
                continue  # only a prefix of a longer word
            detector_id, title = titles.get(value[start:end].lower(), self._names[0][:2])
            yield Match(detector_id, FindingKind.PII, title, start, end)

    def _accept(self, name: str, value: str, start: int, end: int) -> bool:
        text = value[start:end]
        if name == "ip-address":
            return self._accept_ip(value, start, end)
        if name == "mac-address":
            return text.replace("-", ":").lower() not in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff")
        if name == "email":
            if start and value[start - 1] in "/:":
                return False  # the user-info of a URL: `pii.url-user` reports it
            lowered = text.lower()
            return lowered not in self._ignore_emails and lowered.split("@", 1)[1] not in self._ignore_emails
        if name == "url-user":
            return text.lower() not in SERVICE_URL_USERS
        return True

    def _accept_ip(self, value: str, start: int, end: int) -> bool:
        before = value[max(0, start - 2):start]
        after = value[end:end + 2]
        if (len(before) == 2 and before[1] == "." and before[0].isdigit()) or (
            len(after) == 2 and after[0] == "." and after[1].isdigit()
        ):
            return False  # part of a longer dotted number
        text = value[start:end]
        if "." in text and (text.endswith(".0") or _PRODUCT_VERSION.search(value[max(0, start - 40):start])):
            return False  # a four-part version (`8.0.0.0`, `Chrome/111.0.5563.64`), not an address
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return False
        return self._private_ips or address.is_global

    @staticmethod
    def _title(pattern: PiiPattern, text: str) -> str:
        if pattern.name == "ip-address":
            return "IPv6 address" if ":" in text else "IPv4 address"
        return pattern.title


def _hostname_forms(hostname: str, ignore: frozenset[str]) -> list[str]:
    forms: list[str] = []
    for form in (hostname, hostname.split(".", 1)[0]):
        form = form.lower()
        if len(form) >= MIN_NAME_LENGTH and form not in ignore and form not in forms:
            forms.append(form)
    return forms


def build(settings: Mapping[str, Any], environment: AuditEnvironment) -> PiiDetector:
    """The personal-data family for `environment.user`/`.hostname` as configured by `settings`."""
    read = DetectorSettings(FAMILY, settings, SETTINGS)
    disabled = set(read.strings("disable"))
    unknown = disabled - {d.id for d in CATALOGUE}
    if unknown:
        raise ValueError(f"{FAMILY}.disable: unknown detector id(s) {', '.join(sorted(unknown))}")
    ignore_users = GENERIC_USERS | {u.lower() for u in read.strings("ignore_users")}
    ignore_hosts = GENERIC_HOSTS | {h.lower() for h in read.strings("ignore_hostnames")}
    names: list[tuple[str, str, str]] = []
    user = environment.user.lower()
    if USER_ID not in disabled and len(user) >= MIN_NAME_LENGTH and user not in ignore_users:
        names.append((USER_ID, "user name of the audited process", user))
    if HOSTNAME_ID not in disabled:
        for form in _hostname_forms(environment.hostname, ignore_hosts):
            if form != user:
                names.append((HOSTNAME_ID, "host name of the audited machine", form))
    patterns = tuple(p for p in PATTERNS if p.id not in disabled)
    ignore_emails = frozenset(e.lower() for e in read.strings("ignore_emails"))
    return PiiDetector(patterns, tuple(names), read.flag("private_ips"), ignore_emails)
