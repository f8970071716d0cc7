"""Do a tool's documented opt-out switches really stop its telemetry? (`telemetry-audit optout-check`)

The command runs CMD once with telemetry on (the baseline), then once per opt-out switch of a policy pack
(`optout:` entries: an environment variable, a file under HOME, or a command run first) plus the cross-tool
`DO_NOT_TRACK=1`, and counts the telemetry requests each run still makes. Every run gets a fresh, empty HOME
(so a switch's file or a tool's cached events cannot leak into the next run) and its own proxy, offline, in
enforce mode: nothing leaves the machine, whatever the switch does.

The verdict is a pure function of the switch and the request counts (`judge`), so it is tested without
processes. Exit codes: 0 every documented switch stopped telemetry (or could not be judged), 1 a switch the
pack documents as stopping telemetry did not, 2 usage or policy-file error.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from telemetry_audit import __version__
from telemetry_audit.policy.model import OptOutSwitch, Policy
from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.session import ProxySession

REPORT_VERSION = 1

DO_NOT_TRACK = OptOutSwitch(
    tool="", kind="env", name="DO_NOT_TRACK", value="1",
    source="https://consoledonottrack.com (cross-tool convention)", expected="",
)
"""Tried for every tool; `expected` is empty: no tool promised anything, so it never fails the check."""

HOME_STATE_VARIABLES: tuple[str, ...] = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
"""Removed from every run's environment so that a tool's config and caches follow the fresh HOME."""

KILL_GRACE_S = 5.0


class OptOutRunError(RuntimeError):
    """A run could not even start (the command cannot be executed)."""


class Verdict(StrEnum):
    """What one run with a switch showed."""

    HONOURED = "honoured"
    """The baseline sent telemetry; with the switch, nothing was sent."""
    IGNORED = "ignored"
    """Telemetry was still sent with the switch."""
    INCONCLUSIVE = "inconclusive"
    """The baseline sent nothing, so a silent run proves nothing."""
    SETUP_FAILED = "setup-failed"
    """The switch could not be applied (its command failed or timed out)."""

    @property
    def label(self) -> str:
        return _VERDICT_LABELS[self]


_VERDICT_LABELS = {
    Verdict.HONOURED: "honoured",
    Verdict.IGNORED: "IGNORED",
    Verdict.INCONCLUSIVE: "baseline sent nothing: inconclusive",
    Verdict.SETUP_FAILED: "setup failed",
}


@dataclass(frozen=True)
class Judgement:
    """The verdict on one switch and whether it fails the check."""

    verdict: Verdict
    failed: bool
    """True when the pack documents the switch as stopping telemetry (`expected: stops`) and it did not."""
    note: str = ""
    """Why, in a few words, when the verdict alone could mislead."""


def judge(switch: OptOutSwitch, baseline_requests: int, switch_requests: int, setup_error: str = "") -> Judgement:
    """The verdict on `switch` from the telemetry requests of the baseline run and of the run with the switch."""
    documented = switch.expected == "stops"
    if setup_error:
        return Judgement(Verdict.SETUP_FAILED, documented, setup_error)
    if baseline_requests == 0:
        return Judgement(Verdict.INCONCLUSIVE, False, "the command sent no telemetry even without the switch")
    if switch_requests == 0:
        note = "the pack lists it as ignored, yet it stopped telemetry" if switch.expected == "ignored" else ""
        return Judgement(Verdict.HONOURED, False, note)
    if documented:
        note = "documented to stop telemetry"
    elif switch.expected == "ignored":
        note = "known gap (the pack lists it as ignored)"
    else:
        note = "not promised by the tool"
    return Judgement(Verdict.IGNORED, documented, note)


def describe(switch: OptOutSwitch) -> str:
    """How a switch reads in the table: `SST_TELEMETRY_DISABLED=1`, `file ~/.serverlessrc`, `run: sst ...`."""
    if switch.kind == "env":
        return f"{switch.name}={switch.value}"
    if switch.kind == "file":
        return f"file {switch.path}"
    return "run: " + " ".join(switch.command)


def switch_problem(switch: OptOutSwitch) -> str:
    """Why a switch cannot be tried as written in its pack ('' when it can); pure."""
    if switch.kind == "env":
        return "" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", switch.name) else "an env switch needs a variable `name`"
    if switch.kind == "file":
        if not switch.path.startswith("~/"):
            return f"file switch path {switch.path!r} must start with `~/` (it is created in a temporary HOME)"
        if ".." in PurePosixPath(switch.path[2:]).parts or switch.path.rstrip("/") == "~":
            return f"file switch path {switch.path!r} must name a file inside HOME"
        return ""
    if switch.kind == "command":
        return "" if switch.command else "a command switch needs a non-empty `command`"
    return f"unknown switch kind {switch.kind!r}"


def switches_to_try(declared: Iterable[OptOutSwitch], tool: str) -> tuple[OptOutSwitch, ...]:
    """The pack's switches plus `DO_NOT_TRACK=1` unless the pack lists that variable itself."""
    switches = tuple(declared)
    if not any(s.kind == "env" and s.name == DO_NOT_TRACK.name for s in switches):
        switches += (replace(DO_NOT_TRACK, tool=tool),)
    return switches


# --- running ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What one run of CMD did, as seen by the proxy."""

    exit_code: int | None
    """CMD's exit status (128+N for a signal), None when it timed out."""
    requests: tuple[Mapping[str, Any], ...]
    """Audit-log records of the telemetry CMD sent (the switch's own command excluded)."""
    setup_requests: int = 0
    """Telemetry sent by the switch's command itself."""
    setup_error: str = ""
    duration_s: float = 0.0
    kept_dir: str = ""
    """Where the run's HOME, output and audit log were kept (`--keep-home`)."""
    output_tail: str = ""
    """The last lines CMD printed (shown when the baseline sent nothing)."""


@dataclass(frozen=True)
class RunSettings:
    """What every run shares."""

    command: tuple[str, ...]
    policies: tuple[str, ...]
    confdir: str
    base_env: Mapping[str, str]
    hosts: tuple[str, ...]
    timeout_s: float
    settle_s: float
    keep_root: str = ""
    seal: Any = None
    """A `SealSupport` that can seal: each run (and a switch's command) runs sealed; None: proxy variables."""
    policy: Policy | None = None
    """The policy loaded from `policies`, handed to every run's proxy (each would otherwise read the files again)."""


def base_environment(environ: Mapping[str, str], switches: Iterable[OptOutSwitch]) -> dict[str, str]:
    """The caller's environment with telemetry on: no switch variable, no XDG override of HOME's folders."""
    names = {s.name for s in switches if s.kind == "env"} | {DO_NOT_TRACK.name, *HOME_STATE_VARIABLES}
    return {key: value for key, value in environ.items() if key not in names}


def run_case(settings: RunSettings, index: int, switch: OptOutSwitch | None) -> RunOutcome:
    """Run CMD once behind its own offline proxy, in a fresh HOME, with `switch` applied (None: the baseline)."""
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="telemetry-audit-optout-")
    try:
        keep = ""
        if settings.keep_root:
            keep = os.path.join(settings.keep_root, f"{index:02d}-{_slug(switch)}")
            os.makedirs(keep, mode=0o700)
        place = keep or workdir
        home = os.path.join(place, "home")
        os.makedirs(home, mode=0o700)
        env = dict(settings.base_env)
        env["HOME"] = home
        if switch is not None and switch.kind == "env":
            env[switch.name] = switch.value
        proxy_settings = ProxySettings(policy=settings.policies, mode="enforce", offline=True,
                                       log=os.path.join(place, "audit.jsonl"))
        session = ProxySession(proxy_settings, confdir=settings.confdir, audited_env=env, workdir=workdir)
        if settings.seal is not None:
            exit_code, setup_error, setup_records, output = _run_case_sealed(session, settings, switch, env, home,
                                                                              place)
            records = _telemetry(session.records()[0])
            tail = _tail(output)
            return RunOutcome(
                exit_code=exit_code, requests=tuple(records[setup_records:]), setup_requests=setup_records,
                setup_error=setup_error, duration_s=round(time.monotonic() - started, 2), kept_dir=keep,
                output_tail=tail,
            )
        session.start(policy=settings.policy)
        try:
            child_env = session.client_environment(env, audited_hosts=settings.hosts)
            setup_error = _apply(switch, home, child_env, settings, os.path.join(place, "setup-output.log"))
            setup_records = len(_telemetry(session.records()[0]))
            output = os.path.join(place, "output.log")
            exit_code = _run_command(list(settings.command), child_env, output, settings.timeout_s, settings.settle_s)
        finally:
            session.stop()
        records = _telemetry(session.records()[0])
        tail = _tail(output)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RunOutcome(
        exit_code=exit_code, requests=tuple(records[setup_records:]), setup_requests=setup_records,
        setup_error=setup_error, duration_s=round(time.monotonic() - started, 2), kept_dir=keep, output_tail=tail,
    )


def _run_case_sealed(session: ProxySession, settings: RunSettings, switch: OptOutSwitch | None,
                     env: dict[str, str], home: str, place: str) -> tuple[int | None, str, int, str]:
    """One case sealed: the switch's command (if any) and CMD each in a sandbox of their own behind this
    session's proxy (one log); (exit code or None on timeout, setup error, setup requests, output file)."""
    timeout = shutil.which("timeout")

    def sealed(command: list[str], output: str) -> int | None:
        # Output to a file and a time limit, inside the sandbox (the launcher runs in the foreground).
        wrapped = ["sh", "-c", 'out="$1"; shift; exec "$@" >"$out" 2>&1 </dev/null', "sh", output,
                   *([timeout, "-k", "5", f"{settings.timeout_s:g}"] if timeout else []), *command]
        outcome = session.start_sealed(wrapped, env, settings.seal, linger=settings.settle_s, online=False,
                                       audit_loopback=False, policy=settings.policy).wait()
        if outcome.setup_failed:
            raise OptOutRunError(f"cannot seal the run: {outcome.error}")
        return None if outcome.status == 124 and timeout else outcome.status

    setup_error = ""
    if switch is not None and switch.kind == "file":
        setup_error = _apply(switch, home, env, settings, os.path.join(place, "setup-output.log"))
    elif switch is not None and switch.kind == "command":
        code = sealed(list(switch.command), os.path.join(place, "setup-output.log"))
        if code is None:
            setup_error = f"`{' '.join(switch.command)}` timed out after {settings.timeout_s:g} s"
        elif code != 0:
            lines = _tail(os.path.join(place, "setup-output.log"), 40).splitlines()
            first = next((i for i, line in enumerate(lines) if "error" in line.lower()), len(lines) - 1)
            reason = " ".join(line.strip() for line in lines[first:first + 2])
            setup_error = f"`{' '.join(switch.command)}` exited with {code}" + (
                f": {reason.strip()[:200]}" if reason else "")
    setup_records = len(_telemetry(session.records()[0]))
    output = os.path.join(place, "output.log")
    return sealed(list(settings.command), output), setup_error, setup_records, output


def _telemetry(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The telemetry among what the proxy recorded (it records every request)."""
    return [r for r in records if r.get("telemetry") is not False]


def _apply(switch: OptOutSwitch | None, home: str, env: dict[str, str], settings: RunSettings, output: str) -> str:
    """Create the switch's file or run its command; '' on success, else what went wrong."""
    if switch is None or switch.kind == "env":
        return ""
    if switch.kind == "file":
        target = Path(home, switch.path[2:])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(switch.content, encoding="utf-8")
        return ""
    program = shutil.which(switch.command[0], path=env.get("PATH"))
    if program is None:
        return f"command not found: {switch.command[0]}"
    code = _run_command([program, *switch.command[1:]], env, output, settings.timeout_s, settings.settle_s)
    if code is None:
        return f"`{' '.join(switch.command)}` timed out after {settings.timeout_s:g} s"
    if code != 0:
        lines = _tail(output, 40).splitlines()
        first = next((i for i, line in enumerate(lines) if "error" in line.lower()), len(lines) - 1)
        reason = " ".join(line.strip() for line in lines[first:first + 2])  # `Error:` alone says little
        return f"`{' '.join(switch.command)}` exited with {code}" + (f": {reason.strip()[:200]}" if reason else "")
    return ""


def _run_command(command: list[str], env: dict[str, str], output: str, timeout_s: float, settle_s: float) -> int | None:
    """Run `command` in its own process group, output to a file, stdin closed; None on timeout.

    After it exits, wait `settle_s` for stragglers (a detached sender) and then end whatever it left running.
    """
    with open(output, "wb") as out:
        try:
            child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        except OSError as e:
            raise OptOutRunError(f"cannot run {command[0]}: {e.strerror or e}") from None
        try:
            code: int | None = child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        except KeyboardInterrupt:
            _end_group(child)
            raise
        if code is not None and settle_s > 0:
            time.sleep(settle_s)
        _end_group(child)
    if code is None:
        return None
    return 128 - code if code < 0 else code


def _end_group(child: subprocess.Popen[bytes]) -> None:
    """End the process group the command started: it, and anything it left running (SIGTERM, then SIGKILL)."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        child.poll()
        return
    deadline = time.monotonic() + KILL_GRACE_S
    try:
        child.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    while time.monotonic() < deadline and _group_alive(child.pid):
        time.sleep(0.05)
    if _group_alive(child.pid):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    child.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _tail(path: str, lines: int = 12) -> str:
    try:
        text = Path(path).read_text("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(line.rstrip() for line in text.splitlines()[-lines:] if line.strip())


def _slug(switch: OptOutSwitch | None) -> str:
    if switch is None:
        return "baseline"
    return re.sub(r"[^A-Za-z0-9]+", "-", describe(switch)).strip("-")[:48] or switch.kind


# --- report -----------------------------------------------------------------------------------------------------


def _run_entry(outcome: RunOutcome) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "telemetry_requests": len(outcome.requests),
        "requests": [
            {key: record.get(key) for key in ("method", "host", "path", "tool", "decision", "rule_ids")}
            for record in outcome.requests
        ],
        "exit_code": outcome.exit_code,
        "timed_out": outcome.exit_code is None,
        "duration_s": outcome.duration_s,
    }
    if outcome.setup_requests:
        entry["setup_telemetry_requests"] = outcome.setup_requests
    if outcome.kept_dir:
        entry["kept_dir"] = outcome.kept_dir
    return entry


def optout_report(
    pack: str,
    policy: Policy,
    command: Sequence[str],
    baseline: RunOutcome,
    results: Sequence[tuple[OptOutSwitch, RunOutcome]],
) -> dict[str, Any]:
    """The JSON report (version 1): the baseline, then one entry per switch with its verdict."""
    entries = []
    for switch, outcome in results:
        judgement = judge(switch, len(baseline.requests), len(outcome.requests), outcome.setup_error)
        entries.append({
            "switch": {"kind": switch.kind, "name": switch.name, "value": switch.value, "path": switch.path,
                       "command": list(switch.command), "source": switch.source, "expected": switch.expected,
                       "versions": list(switch.versions)},
            "label": describe(switch),
            "verdict": judgement.verdict.value,
            "failed": judgement.failed,
            "note": judgement.note,
            "run": _run_entry(outcome),
        })
    verdicts = [e["verdict"] for e in entries]
    return {
        "version": REPORT_VERSION,
        "tool": {"name": "telemetry-audit", "version": __version__},
        "pack": pack,
        "policy": {"files": list(policy.files)},
        "command": {"argv_length": len(command)},
        "baseline": _run_entry(baseline),
        "switches": entries,
        "summary": {
            "switches": len(entries),
            **{v.value.replace("-", "_"): verdicts.count(v.value) for v in Verdict},
            "failed": sum(1 for e in entries if e["failed"]),
        },
    }


