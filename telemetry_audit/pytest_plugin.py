"""A pytest plugin for tool maintainers: run your CLI through the auditing proxy and assert on its telemetry.

```python
@pytest.mark.telemetry_audit(policy=["sst"])
def test_start_event(telemetry_audit):
    telemetry_audit.run(["sst", "version"], check=True)
    telemetry_audit.assert_sent(event="cli.start", fields={"properties.sst_version": "4.17.1"})
    telemetry_audit.assert_no_violations(fail_on="redact")
```

Speed against isolation: starting the proxy costs one to a few seconds, so one proxy per distinct configuration
runs for the whole session (its CA is created once, in a private confdir under pytest's temporary directory). Each test
gets a view of it that starts where the previous test left off: the audit log's size and the event store's last id
are remembered when the fixture is set up, and `requests()`, `events()`, `report()` and the assertions only see
what came after. Records are written before the client gets its answer, so a command that has returned has been
fully recorded. `@pytest.mark.telemetry_audit(isolated=True)` starts a proxy for one test alone, for tools whose
background processes may still be sending when the next test starts. The env-value detector knows the environment
the proxy started with plus the marker's `env`; variables given to `run(env=...)` alone are not looked for.

This module is imported by every pytest run once the package is installed (the `pytest11` entry point), so it
imports nothing heavy until a test asks for the fixture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from telemetry_audit.collectors.store import EventStore, StoredEvent
    from telemetry_audit.policy.model import Policy
    from telemetry_audit.session import ProxySession

MARKER = "telemetry_audit"
RUN_TIMEOUT = 120.0
"""Default `timeout` of `AuditProxy.run()`: a hung tool fails the test instead of the CI job."""

_ARTIFACTS = "telemetry-audit"
_VIEWS_KEY = pytest.StashKey[list["AuditProxy"]]()


@dataclass(frozen=True)
class AuditSettings:
    """How the proxy for a test runs: the keyword arguments of the `telemetry_audit` marker and the factory."""

    policy: tuple[str, ...] = ()
    """Built-in pack names or policy files (relative paths are read from the rootdir); empty: `default`."""
    mode: str = "enforce"
    """`enforce` blocks and redacts; `audit` records only and modifies nothing."""
    online: bool = False
    """Forward allowed and redacted requests upstream instead of answering them with the emulated collectors."""
    offline_unknown: str = "fail"
    """Offline, requests to hosts nobody emulates `fail` as without a network (default) or `pass`."""
    audit_all: bool = False
    """Audit (and log) every request, not only recognised telemetry."""
    block_style: str = "empty"
    """How blocked requests are answered: `empty` success, `kill` the connection, or `403`."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for the audited commands; the env-value detector knows these values."""
    proxy_loopback: bool = False
    seal: str = "auto"
    """`.run()` seals the command (its own namespaces, every packet through the proxy) where the kernel allows it
    (`auto`), or must (`on`: the test fails with the reason otherwise), or never (`off`)."""
    """Route requests to localhost through the proxy too (by default loopback goes direct)."""
    isolated: bool = False
    """Start a proxy for this test alone instead of sharing the session's."""

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> AuditSettings:
        """Validated settings from marker or factory keyword arguments; `ValueError` says what is wrong."""
        from telemetry_audit.proxy.settings import BLOCK_STYLES, MODES, UNKNOWN_HOST_CHOICES

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; expected: {', '.join(sorted(known))}")
        policy = kwargs.get("policy") or ()
        if isinstance(policy, str | os.PathLike):
            policy = (policy,)
        env = kwargs.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError("env must be a mapping of str to str")
        settings = cls(
            policy=tuple(os.fspath(p) for p in policy),
            mode=kwargs.get("mode", "enforce"),
            online=bool(kwargs.get("online", False)),
            offline_unknown=kwargs.get("offline_unknown") or ("pass" if kwargs.get("online") else "fail"),
            audit_all=bool(kwargs.get("audit_all", False)),
            block_style=kwargs.get("block_style", "empty"),
            env=tuple(sorted(env.items())),
            proxy_loopback=bool(kwargs.get("proxy_loopback", False)),
            seal=str(kwargs.get("seal", "auto")),
            isolated=bool(kwargs.get("isolated", False)),
        )
        choices_of = {"mode": MODES, "block_style": BLOCK_STYLES, "offline_unknown": UNKNOWN_HOST_CHOICES,
                      "seal": ("auto", "on", "off")}
        for name, choices in choices_of.items():
            value = getattr(settings, name)
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
        return settings

    def proxy_key(self) -> tuple[Any, ...]:
        """What makes two tests need different proxies (`proxy_loopback` only changes the client environment)."""
        return (self.policy, self.mode, self.online, self.offline_unknown, self.audit_all, self.block_style, self.env)


# --- the proxies of a session ------------------------------------------------------------------------------------


@dataclass
class _RunningProxy:
    """One proxy child and the files it writes."""

    settings: AuditSettings
    policy: Policy
    session: ProxySession
    workdir: Path
    log_path: Path
    store_path: Path
    ca_cert: str
    ca_bundle: str
    _store: EventStore | None = None

    @property
    def url(self) -> str:
        return self.session.url

    def store(self) -> EventStore:
        if self._store is None:
            from telemetry_audit.collectors.store import EventStore

            self._store = EventStore(self.store_path)
        return self._store

    def alive(self) -> bool:
        return self.session.alive()

    def run_sealed(self, cmd: list[str], env: dict[str, str], support: Any, *, timeout: float = RUN_TIMEOUT,
                   cwd: str | os.PathLike[str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `cmd` sealed behind a proxy of its own with this proxy's settings, log and store (so what it sent
        shows up like any other request); output captured as text."""
        from telemetry_audit.session import ProxySession

        workdir = Path(tempfile.mkdtemp(prefix="sealed-", dir=self.workdir))
        out, err = workdir / "stdout", workdir / "stderr"
        limit = shutil.which("timeout")
        wrapped = ["sh", "-c", 'o="$1"; e="$2"; shift 2; exec "$@" >"$o" 2>"$e" </dev/null', "sh", str(out), str(err),
                   *([limit, "-k", "5", f"{timeout:g}"] if limit else []), *cmd]
        settings = self.session.settings
        session = ProxySession(dataclasses.replace(settings, client_process=True), confdir=self.session.confdir,
                               audited_env=env, workdir=str(workdir))
        outcome = session.run_sealed(wrapped, env, support, linger=5.0, online=not settings.offline,
                                     audit_loopback=self.settings.proxy_loopback, cwd=os.fspath(cwd) if cwd else None)
        if outcome.setup_failed:
            raise RuntimeError(f"cannot seal the run: {outcome.error}")
        if limit and outcome.status == 124:
            raise subprocess.TimeoutExpired(cmd, timeout)
        result = subprocess.CompletedProcess(cmd, outcome.status, _read(out), _read(err))
        if check:
            result.check_returncode()
        return result

    def stop(self) -> None:
        """Stop the child (it writes its closing stats record) and close our reader of the event store."""
        if self._store is not None:
            self._store.close()
            self._store = None
        status = self.session.stop()
        if status not in (0, -signal.SIGTERM):
            # Leave a trace where the artifacts are; raising here would only hide the tests' own results.
            (self.workdir / "exit-status").write_text(f"{status}\n", encoding="utf-8")


class _ProxyPool:
    """The session's proxies: one per distinct configuration, started on first use, stopped at session end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, rootpath: Path) -> None:
        self._factory = tmp_path_factory
        self._rootpath = rootpath
        self._confdir: Path | None = None
        self._ca_cert = ""
        self._shared: dict[tuple[Any, ...], _RunningProxy] = {}

    def ca_cert(self) -> str:
        """The session's CA, created once in a private confdir (never the user's `~/.telemetry-audit`)."""
        if self._confdir is None:
            from telemetry_audit.proxy.ca import ensure_ca

            self._confdir = self._factory.mktemp("telemetry-audit-home")
            self._ca_cert = ensure_ca(str(self._confdir))
        return self._ca_cert

    def shared(self, settings: AuditSettings) -> _RunningProxy:
        key = settings.proxy_key()
        proxy = self._shared.get(key)
        if proxy is not None and not proxy.alive():
            raise RuntimeError(f"the session's telemetry-audit proxy exited ({proxy.session.stop()}):\n"
                               f"{proxy.session.stderr_text().strip()}\nits files: {proxy.workdir}")
        if proxy is None:
            proxy = self._shared[key] = self.start(settings)
        return proxy

    def start(self, settings: AuditSettings) -> _RunningProxy:
        from telemetry_audit.policy import PolicyError, load_policy
        from telemetry_audit.proxy.settings import ProxySettings
        from telemetry_audit.session import ProxySession, ProxyStartError

        policies = [self._policy_reference(p) for p in settings.policy]
        try:
            policy = load_policy(policies or None)
        except PolicyError as e:
            raise ValueError(f"invalid policy\n{e}") from None
        ca_cert = self.ca_cert()
        workdir = self._factory.mktemp("telemetry-audit-proxy")
        workdir.chmod(0o700)
        log_path, store_path = workdir / "audit.jsonl", workdir / "events.sqlite"
        proxy_settings = ProxySettings(
            policy=tuple(policies), mode=settings.mode, log=str(log_path), offline=not settings.online,
            offline_unknown=settings.offline_unknown, audit_all=settings.audit_all, block_style=settings.block_style,
            store=str(store_path), client_process=True,
        )
        session = ProxySession(proxy_settings, confdir=str(self._confdir), workdir=str(workdir),
                               audited_env={**os.environ, **dict(settings.env)})
        try:
            session.start(policy=policy)  # handed to the child: it does not read the files again
        except ProxyStartError as e:
            raise RuntimeError(f"the telemetry-audit proxy did not start: {e}\nits files: {workdir}") from None
        return _RunningProxy(settings, policy, session, workdir, log_path, store_path, ca_cert, session.ca_bundle)

    def _policy_reference(self, reference: str) -> str:
        """Built-in names pass through; relative paths are read from the rootdir, as pytest reads its ini paths."""
        is_name = "/" not in reference and os.sep not in reference and not reference.endswith((".yaml", ".yml"))
        if is_name or os.path.isabs(reference):
            return reference
        return str(self._rootpath / reference)

    def close(self) -> None:
        for proxy in self._shared.values():
            proxy.stop()
        self._shared.clear()


# --- one test's view ---------------------------------------------------------------------------------------------


class AuditProxy:
    """The auditing proxy as one test sees it: how to route a client through it, and what it saw since the test began.

    `requests()`, `events()`, `report()` and the `assert_*` methods see only traffic recorded after this object was
    created. Failure messages show masked previews and fingerprints, never a value in clear.
    """

    def __init__(self, proxy: _RunningProxy, artifacts: Path, *, owns_proxy: bool = False) -> None:
        self._proxy = proxy
        self._owns_proxy = owns_proxy
        self.artifacts = artifacts
        """Where this test's slice of the audit log and its report are written (at failures and at teardown)."""
        self.settings = proxy.settings
        self._log_offset = proxy.log_path.stat().st_size if proxy.log_path.exists() else 0
        previous = proxy.store().all()
        self._first_event_id = previous[-1].id + 1 if previous else 0
        base = {**os.environ, **dict(proxy.settings.env)}
        self.env: dict[str, str] = proxy.session.client_environment(
            base, bypass_loopback=not proxy.settings.proxy_loopback)
        """A full environment for `subprocess.run(..., env=...)`: every runtime routed through the proxy (Node too)."""

    # --- routing a client --------------------------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return self._proxy.url

    @property
    def proxies(self) -> dict[str, str]:
        """For `requests`: `requests.post(url, proxies=audit.proxies, verify=audit.ca_bundle)`."""
        return {"http": self.proxy_url, "https": self.proxy_url}

    @property
    def ca_cert(self) -> str:
        """The proxy's CA certificate alone (PEM)."""
        return self._proxy.ca_cert

    @property
    def ca_bundle(self) -> str:
        """System CAs plus the proxy CA (PEM): verifies proxied and direct connections alike."""
        return self._proxy.ca_bundle

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting `ca_bundle`, for clients that want one (httpx: `verify=audit.ssl_context()`)."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    def run(self, cmd: Sequence[str | os.PathLike[str]] | str, *, env: Mapping[str, str] | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """`subprocess.run` through the proxy: output captured as text and a timeout unless you say otherwise.

        `env` adds to (never replaces) `self.env`, so the proxy settings cannot be lost by accident.
        """
        support = self._seal_support()
        if support is not None and not (set(kwargs) - {"timeout", "cwd", "check"}) and not isinstance(cmd, str):
            return self._proxy.run_sealed([os.fspath(c) for c in cmd], {**os.environ, **dict(self.settings.env),
                                                                         **dict(env or {})}, support, **kwargs)
        kwargs.setdefault("capture_output", not ({"stdout", "stderr"} & kwargs.keys()))
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", RUN_TIMEOUT)
        return subprocess.run(cmd, env={**self.env, **dict(env or {})}, **kwargs)

    def _seal_support(self) -> Any:
        """Whether `.run()` seals (as `telemetry-audit run --seal`); None: proxy variables (output captured the
        usual way; also whenever `.run()` gets options a sealed run cannot honour, such as `stdin`)."""
        if self.settings.seal == "off":
            return None
        from telemetry_audit.sandbox.probe import probe_seal

        support = _SEAL_PROBE.get("support")
        if support is None:
            support = _SEAL_PROBE["support"] = probe_seal()
        if not support.ok and self.settings.seal == "on":
            raise RuntimeError(f"cannot seal the run (seal='on'): {support.reason}")
        return support if support.ok else None

    # --- what was seen -----------------------------------------------------------------------------------------

    def requests(self) -> list[dict[str, Any]]:
        """The audit-log records of the telemetry requests seen since the test began (see README: the audit log)."""
        try:
            with self._proxy.log_path.open("rb") as stream:
                stream.seek(self._log_offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        records = []
        for line in data.split(b"\n"):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the empty tail, or a line the proxy is still writing
            # The proxy records every request; other traffic (`telemetry: false`) is not what a test asserts on.
            if isinstance(record, dict) and record.get("record") == "request" and record.get("telemetry") is not False:
                records.append(record)
        return records

    def events(self, name: str | None = None, tool: str | None = None, *, collector: str | None = None,
               good: bool | None = True) -> list[StoredEvent]:
        """Events the emulated collectors received since the test began (offline only), oldest first.

        `good=True` (default) gives accepted events; `False` the rejected and blocked requests; `None` both.
        """
        store = self._proxy.store()
        rows = store.all(event=name, tool=tool, collector=collector)
        return [row for row in rows if row.id >= self._first_event_id and (good is None or row.good is good)]

    def report(self) -> dict[str, Any]:
        """The JSON report (version 1) of the requests seen since the test began."""
        from telemetry_audit.report.build import report_from_entries

        records = self.requests()
        return report_from_entries(records, self._proxy.policy, total_requests=len(records))

    def write_artifacts(self) -> tuple[Path, Path]:
        """Write this test's audit-log slice and report under `artifacts`; return their paths."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        log, report = self.artifacts / "audit.jsonl", self.artifacts / "report.json"
        log.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.requests()), encoding="utf-8")
        report.write_text(json.dumps(self.report(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return log, report

    # --- assertions --------------------------------------------------------------------------------------------

    def assert_no_violations(self, fail_on: str = "redact") -> None:
        """Fail when a finding reaches `fail_on`: an action (`log`, `redact`, `block`) or a severity; as `run`."""
        __tracebackhide__ = True
        from telemetry_audit.model import Action, Severity
        from telemetry_audit.report.build import reaches as fails

        if fail_on not in {*Action._value2member_map_, *Severity._value2member_map_}:
            raise ValueError(f"fail_on={fail_on!r}: expected an action, a severity or 'never'")
        report = self.report()
        if not fails(report, fail_on):
            return
        lines = [f"telemetry findings at or above {fail_on!r}:"]
        for entry in report["requests"]:
            for finding in entry["findings"]:
                if not finding.get("suppressed") and fails({"requests": [{"findings": [finding]}]}, fail_on):
                    lines.append(f"  {_request_line(entry)}\n    {_finding_line(finding)}")
        self._fail(lines)

    def assert_sent(self, event: str | None = None, tool: str | None = None, *,
                    fields: Mapping[str, Any] | None = None, collector: str | None = None) -> list[StoredEvent]:
        """Fail unless an emulated collector accepted an event with this name, tool and field values; return them.

        Field paths read the normalised event (`properties.x`, `raw.x`, `context.x`, `distinct_id`), then its
        properties and raw payload (`sst_version`); `[n]` indexes lists; keys may contain dots (`service.name`).
        Expected values compare with `==` (`unittest.mock.ANY` for any value), or `re.fullmatch` for a compiled
        pattern.
        """
        __tracebackhide__ = True
        candidates = self.events(event, tool, collector=collector)
        matching = [e for e in candidates if not _mismatches(e, fields or {})]
        if matching:
            return matching
        wanted = _describe_event(event, tool, collector, fields)
        lines = [f"no event {wanted} was received since the test began"]
        for candidate in candidates:
            lines.append(f"  {_event_line(candidate)} differs:")
            lines += [f"    {problem}" for problem in _mismatches(candidate, fields or {})]
        self._fail(lines + self._seen())

    def assert_not_sent(self, event: str | None = None, tool: str | None = None, *,
                        fields: Mapping[str, Any] | None = None, collector: str | None = None) -> None:
        """Fail when an emulated collector accepted an event with this name, tool and field values."""
        __tracebackhide__ = True
        matching = [e for e in self.events(event, tool, collector=collector) if not _mismatches(e, fields or {})]
        if matching:
            lines = [f"event {_describe_event(event, tool, collector, fields)} was received {len(matching)} time(s):"]
            self._fail(lines + [f"  {_event_line(e)}" for e in matching])

    def assert_nothing_sent(self) -> None:
        """Fail when any telemetry request reached the proxy since the test began (opt-out tests).

        Requests to hosts that are not telemetry are not recorded unless `audit_all=True`.
        """
        __tracebackhide__ = True
        requests, rows = self.requests(), self.events(good=None)
        if requests or rows:
            self._fail([f"expected no telemetry, but {len(requests)} request(s) reached the proxy"] + self._seen())

    # --- failure messages --------------------------------------------------------------------------------------

    def _seen(self) -> list[str]:
        requests, events = self.requests(), self.events()
        lines = [f"seen since the test began: {len(requests)} telemetry request(s), {len(events)} event(s)"]
        if self.settings.online:
            lines.append("  (online: requests go upstream, not to the emulated collectors, so no events are recorded)")
        for entry in requests:
            lines.append(f"  {_request_line(entry)}")
            lines += [f"    {_finding_line(f)}" for f in entry["findings"]]
        lines += [f"  event {_event_line(e)}" for e in events]
        return lines

    def _fail(self, lines: list[str]) -> NoReturn:
        __tracebackhide__ = True
        if not self._proxy.alive():
            lines.append(f"the proxy has exited ({self._proxy.session.stop()}): "
                         f"{self._proxy.session.stderr_text().strip()}")
        log, report = self.write_artifacts()
        lines.append(f"audit log: {log}\nreport: {report}")
        raise AssertionError("\n".join(lines))

    def summary(self) -> str:
        """One paragraph for the terminal: counts, each request's decision, and where the artifacts are."""
        from telemetry_audit.report.table import summary_text as summary_line

        report = self.report()
        lines = [summary_line(report)]
        for entry in report["requests"]:
            lines.append(_request_line(entry))
            lines += [f"  {_finding_line(f)}" for f in entry["findings"]]
        lines.append(f"artifacts: {self.artifacts}")
        return "\n".join(lines)

    def close(self) -> None:
        """Write the artifacts; stop the proxy if it was started for this test alone."""
        try:
            self.write_artifacts()
        finally:
            if self._owns_proxy:
                self._proxy.stop()


def _request_line(entry: Mapping[str, Any]) -> str:
    client = f" from {entry['client']}" if entry.get("client") else ""
    tool = f" [{entry['tool']}]" if entry.get("tool") else ""
    target = entry.get("url") or f"{entry.get('host', '')}{entry.get('path', '')}"
    return f"{str(entry.get('decision', '')).upper()} {entry.get('method', '')} {target}{tool}{client}"


def _finding_line(finding: Mapping[str, Any]) -> str:
    message = f" ({finding['message']})" if finding.get("message") else ""
    suppressed = " [suppressed]" if finding.get("suppressed") else ""
    return (f"{finding['rule_id']}: {finding['kind']} in {finding['field']}: {finding['preview']} "
            f"[{finding['severity']}, {finding['action']}, fingerprint {finding['fingerprint']}]{message}{suppressed}")


def _event_line(event: StoredEvent) -> str:
    if event.name is None:
        return f"(no event: {event.reason}) {event.request_meta.get('method', '')} " \
               f"{event.request_meta.get('host', '')}{event.request_meta.get('path', '')}"
    keys = ", ".join(sorted(event.properties)) or "none"
    return f"{event.name!r} tool={event.tool!r} collector={event.collector!r} properties: {keys}"


def _describe_event(event: str | None, tool: str | None, collector: str | None,
                    expected: Mapping[str, Any] | None) -> str:
    parts = [f"{name}={value!r}" for name, value in (("event", event), ("tool", tool), ("collector", collector))
             if value is not None]
    parts += [f"{path}={_expected_text(value)}" for path, value in (expected or {}).items()]
    return "(" + ", ".join(parts or ["any"]) + ")"


def _expected_text(value: Any) -> str:
    return f"re{value.pattern!r}" if isinstance(value, re.Pattern) else repr(value)


# --- field paths -------------------------------------------------------------------------------------------------

_MISSING = object()
_REDACTION_LABEL = re.compile(r"\[REDACTED:[a-z]+\]")
_INDEX = re.compile(r"\[(-?\d+)\]")


def _path_parts(path: str) -> list[str | int]:
    """`a.b[2].c` -> ["a", "b", 2, "c"]."""
    parts: list[str | int] = []
    for segment in path.split("."):
        name, *indices = _INDEX.split(segment)
        if name:
            parts.append(name)
        parts += [int(i) for i in indices if i]
    return parts


def _lookup(value: Any, parts: list[str | int]) -> Any:
    if not parts:
        return value
    head = parts[0]
    if isinstance(head, int):
        if isinstance(value, list) and -len(value) <= head < len(value):
            return _lookup(value[head], parts[1:])
        return _MISSING
    if not isinstance(value, Mapping):
        return _MISSING
    # Longest key first, so dotted keys (OTLP's `service.name`) resolve too.
    names = 0
    while names < len(parts) and isinstance(parts[names], str):
        names += 1
    for width in range(names, 0, -1):
        key = ".".join(str(p) for p in parts[:width])
        if key in value:
            found = _lookup(value[key], parts[width:])
            if found is not _MISSING:
                return found
    return _MISSING


def resolve_field(event: StoredEvent, path: str) -> Any:
    """The value at `path` in a received event (see `AuditProxy.assert_sent`), or raise `KeyError`."""
    parts = _path_parts(path)
    document = {"collector": event.collector, "tool": event.tool, "name": event.name,
                "distinct_id": event.distinct_id, "anonymous_id": event.anonymous_id, "timestamp": event.timestamp,
                "properties": event.properties, "context": event.context, "raw": event.raw}
    for root in (document, event.properties, event.raw):
        found = _lookup(root, parts)
        if found is not _MISSING:
            return found
    raise KeyError(path)


def _mismatches(event: StoredEvent, expected: Mapping[str, Any]) -> list[str]:
    """Why `event` does not have the `expected` field values (empty when it does); seen values masked."""
    problems = []
    for path, want in expected.items():
        try:
            seen = resolve_field(event, path)
        except KeyError:
            problems.append(f"{path}: missing (expected {_expected_text(want)})")
            continue
        if isinstance(want, re.Pattern):
            ok = isinstance(seen, str) and want.fullmatch(seen) is not None
        else:
            ok = bool(seen == want)
        if not ok:
            problems.append(f"{path}: {masked_value(seen)} (expected {_expected_text(want)})")
    return problems


def masked_value(value: Any) -> str:
    """A preview of a received value for failure messages: its shape and length, never its text."""
    from telemetry_audit.model import mask

    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str) and _REDACTION_LABEL.search(value):
        # The proxy's own label is safe to show; whatever surrounds it is still masked.
        return repr(value) + " (redacted by the proxy)" if _REDACTION_LABEL.fullmatch(value) else \
            f"str {mask(value)} (partly redacted by the proxy)"
    if isinstance(value, Mapping):
        return "{" + ", ".join(sorted(map(str, value))) + "}"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return f"{type(value).__name__} {mask(str(value))}"


# --- pytest hooks and fixtures -----------------------------------------------------------------------------------


_SEAL_PROBE: dict[str, Any] = {}
"""Whether this machine can seal, probed once per pytest process (the answer cannot change within it)."""


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(policy=None, mode='enforce', online=False, offline_unknown=None, audit_all=False, "
        "block_style='empty', env=None, proxy_loopback=False, isolated=False): how the `telemetry_audit` "
        "fixture's auditing proxy runs",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add what the proxy saw to a failed test's report, whatever made it fail."""
    report: pytest.TestReport = yield
    views = item.stash.get(_VIEWS_KEY, [])
    if report.failed and views and call.when in ("setup", "call"):
        for view in views:
            try:
                report.sections.append((f"telemetry-audit ({view.settings.mode})", view.summary()))
            except Exception as e:  # a broken summary must not replace the test's own failure
                report.sections.append(("telemetry-audit", f"cannot summarise: {e!r}"))
    return report


@pytest.fixture(scope="session")
def _telemetry_audit_pool(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[_ProxyPool]:
    pool = _ProxyPool(tmp_path_factory, pytestconfig.rootpath)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def telemetry_audit_factory(_telemetry_audit_pool: _ProxyPool, request: pytest.FixtureRequest,
                            tmp_path: Path) -> Iterator[Callable[..., AuditProxy]]:
    """`factory(**settings) -> AuditProxy` with the marker's keyword arguments: several configurations per test."""
    views: list[AuditProxy] = []
    request.node.stash[_VIEWS_KEY] = views

    def factory(**kwargs: Any) -> AuditProxy:
        __tracebackhide__ = True
        try:
            settings = AuditSettings.from_kwargs(**kwargs)
            if settings.isolated:
                proxy, owned = _telemetry_audit_pool.start(settings), True
            else:
                proxy, owned = _telemetry_audit_pool.shared(settings), False
        except (ValueError, RuntimeError) as e:
            pytest.fail(f"telemetry_audit: {e}", pytrace=False)
        artifacts = tmp_path / (_ARTIFACTS if not views else f"{_ARTIFACTS}-{len(views) + 1}")
        view = AuditProxy(proxy, artifacts, owns_proxy=owned)
        views.append(view)
        return view

    yield factory
    for view in views:
        view.close()


@pytest.fixture
def telemetry_audit(telemetry_audit_factory: Callable[..., AuditProxy], request: pytest.FixtureRequest) -> AuditProxy:
    """The auditing proxy for this test, configured by the `telemetry_audit` marker (closest marker wins per key)."""
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            pytest.fail(f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}", pytrace=False)
        kwargs.update(marker.kwargs)
    return telemetry_audit_factory(**kwargs)


__all__ = ["MARKER", "AuditProxy", "AuditSettings", "masked_value", "resolve_field"]
