"""What the commands share: exit codes, the one way to fail, option groups and report output.

Exit codes mean one thing each: 0 clean, 1 findings at or above `--fail-on`, 2 usage or policy-file error,
3 auditing itself failed (the proxy died or its audit log could not be written). Domain errors are caught in
the CLI and nowhere else; every check of the options runs before anything is started.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from telemetry_audit.model import Action, Severity
from telemetry_audit.proxy.ca import default_confdir
from telemetry_audit.proxy.settings import BLOCK_STYLES, MODES, UNKNOWN_HOST_CHOICES, ProxySettings

if TYPE_CHECKING:
    from rich.console import Console

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_AUDIT_FAILED = 3

FAIL_ON_CHOICES = [a.value for a in Action if a is not Action.ALLOW] + [s.value for s in Severity] + ["never"]

class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser that can add arguments whose declaring module is costly to import only when that
    subcommand is used (parsed, or its usage and help shown).

    `collector` takes its options from `collectors.server`, which imports every emulator and `http.server`:
    declared eagerly, every command, `run` included, would pay for that import at start-up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call `add_arguments(self)` before this parser is first used."""
        self._deferred.append(add_arguments)

    def _add_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._add_deferred()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_deferred()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_deferred()
        return super().format_help()


class UsageError(Exception):
    """A user error found while checking options; the CLI prints it and exits 2."""


def stderr_console() -> Console:
    from rich.console import Console  # imported on first output: `run` starts its proxy before it prints

    return Console(stderr=True, highlight=False, soft_wrap=True)


def fatal(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Report a user error (bad input, broken policy) and exit."""
    stderr_console().print(f"[bold red]telemetry-audit:[/] {message}", markup=True, highlight=False)
    raise SystemExit(code)


def command_after_dashes(args: argparse.Namespace, example: str) -> list[str]:
    """The command after `--`; a usage error when there is none or it cannot be found."""
    import shutil

    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError(f"nothing to run: give the command after `--`, e.g. `{example}`")
    if shutil.which(command[0]) is None and not (os.sep in command[0] and os.access(command[0], os.X_OK)):
        raise UsageError(f"command not found: {command[0]}")
    return command


# --- option groups -------------------------------------------------------------------------------------------


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy", "-p", action="append", default=None, metavar="FILE|NAME",
        help="policy file or built-in pack name (repeatable; later files override earlier ones; "
             "default: the built-in policy and every shipped tool pack)",
    )
    parser.add_argument("--baseline", metavar="FILE", default=os.environ.get("TELEMETRY_AUDIT_BASELINE"),
                        help="accept findings whose fingerprints are in this baseline file")


def add_report_options(parser: argparse.ArgumentParser, default_format: str = "table") -> None:
    from telemetry_audit.report import FORMATS, TERMINAL_FORMAT

    parser.add_argument(
        "--format", "-f", action="append", dest="formats", choices=[TERMINAL_FORMAT, *FORMATS], metavar="FORMAT",
        help=f"report format: {', '.join([TERMINAL_FORMAT, *FORMATS])} (repeatable, paired with --output in "
             "order; without it, each --output's extension names its format: .json .sarif .xml .md .html .txt)",
    )
    parser.add_argument("--output", "-o", action="append", dest="outputs", metavar="FILE",
                        help="write the report in the matching --format to FILE (default: standard output)")
    parser.add_argument("--fail-on", choices=FAIL_ON_CHOICES,
                        default=os.environ.get("TELEMETRY_AUDIT_FAIL_ON", "redact"),
                        help="exit 1 when a finding reaches this action or severity (default: redact)")
    parser.add_argument("--write-baseline", metavar="FILE", help="write the findings' fingerprints as a baseline")
    parser.set_defaults(default_format=default_format, table_to_stderr=False)


def add_proxy_options(parser: argparse.ArgumentParser) -> None:
    """The options `run` and `proxy` share (their meaning is declared once, in `ProxySettings`)."""
    parser.add_argument("--mode", choices=MODES, default="enforce",
                        help="enforce: block and redact as the policy says; audit: record only, modify nothing")
    parser.add_argument("--log", metavar="FILE", help="append the audit log (JSON lines) to FILE")
    parser.add_argument("--block-style", choices=BLOCK_STYLES, default="empty",
                        help="how blocked requests are answered (default: an empty success, so tools don't retry)")
    parser.add_argument("--audit-all", action="store_true",
                        help="audit every request with the full policy, not only telemetry")
    parser.add_argument("--store", metavar="FILE", help="keep received events in this SQLite file")
    parser.add_argument("--confdir", default=default_confdir(), help="where the proxy CA lives")
    parser.add_argument("--verbose", action="store_true",
                        help="list every request of other traffic in the table, and show mitmproxy's own log")
    online = parser.add_mutually_exclusive_group()
    online.add_argument("--online", dest="online", action="store_true", default=False,
                        help="forward allowed and redacted requests upstream")
    online.add_argument("--offline", dest="online", action="store_false",
                        help="answer telemetry with the emulated collectors; nothing leaves the machine (default)")
    parser.add_argument("--offline-unknown", choices=UNKNOWN_HOST_CHOICES, default="fail",
                        help="offline: requests that are not telemetry fail as with no network (default) or pass")


def proxy_settings(args: argparse.Namespace, **overrides: Any) -> ProxySettings:
    """The proxy settings the shared options describe."""
    values: dict[str, Any] = {
        "policy": tuple(args.policy or ()),
        "mode": args.mode,
        "log": os.path.abspath(args.log) if args.log else "",
        "offline": not args.online,
        "offline_unknown": "pass" if args.online else args.offline_unknown,
        "audit_all": args.audit_all,
        "block_style": args.block_style,
        "store": os.path.abspath(args.store) if args.store else "",
        "baseline": os.path.abspath(args.baseline) if getattr(args, "baseline", None) else "",
    }
    values.update(overrides)
    return ProxySettings(**values)


# --- checks before anything starts ---------------------------------------------------------------------------


def load_policy_or_exit(args: argparse.Namespace) -> Any:
    from telemetry_audit.policy import PolicyError, load_policy

    fingerprints: frozenset[str] = frozenset()
    if getattr(args, "baseline", None):
        from telemetry_audit.report.baseline import BaselineError, load_baseline

        try:
            fingerprints = load_baseline(args.baseline)
        except BaselineError as e:
            fatal(str(e))
    try:
        return load_policy(args.policy or None, extra_allowlist=fingerprints)
    except PolicyError as e:
        fatal(f"invalid policy\n{e}")


def format_targets(args: argparse.Namespace, default_format: str) -> list[tuple[str, str]]:
    """(format, output) pairs from repeated `--format`/`--output`; `-` is standard output.

    Without `--format`, each `--output` gets the format its extension names.
    """
    from telemetry_audit.report import EXTENSIONS, format_for_path

    formats = list(args.formats or [])
    outputs = list(args.outputs or [])
    for output in outputs[len(formats):]:  # an --output without its --format: the extension says
        inferred = format_for_path(output)
        if inferred is None:
            raise UsageError(f"--output {output}: cannot tell the format from the file name; give --format "
                             f"(or use one of {', '.join(EXTENSIONS)})")
        formats.append(inferred)
    formats = formats or [default_format]
    targets = [(fmt, outputs[i] if i < len(outputs) else "-") for i, fmt in enumerate(formats)]
    if sum(1 for _, target in targets if target == "-") > 1:
        raise UsageError("only one --format may go to standard output: give the others an --output FILE")
    return targets


def check_writable(path: str, option: str) -> None:
    """A file we will write later must be writable now (its folder exists, it is not a folder)."""
    if path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")


def check_report_options(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every report option checked up front; the (format, output) pairs to write."""
    targets = format_targets(args, args.default_format)
    for _, output in targets:
        check_writable(output, "--output")
    if getattr(args, "write_baseline", None):
        check_writable(args.write_baseline, "--write-baseline")
    return targets


def check_listen_free(host: str, port: int) -> None:
    """A fixed port that is already taken is the user's error, said in our words before the proxy starts."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UsageError(f"--listen {host}:{port}: {e.strerror or e}; choose another port with "
                             f"--listen {host}:PORT") from None


def listen_argument(value: str) -> tuple[str, int]:
    """argparse type for `--listen`: the subcommand's own usage error when malformed."""
    from telemetry_audit.session import parse_listen

    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --- output --------------------------------------------------------------------------------------------------


def emit_reports(args: argparse.Namespace, report: dict[str, Any], targets: Sequence[tuple[str, str]]) -> None:
    """Write every requested format to its output; the terminal view goes to the terminal."""
    from rich.console import Console

    from telemetry_audit.report import WRITERS
    from telemetry_audit.report.table import render_table

    for fmt, target in targets:
        if fmt == "table":
            if target == "-":
                # `run` keeps the audited command's stdout clean: its terminal view goes to stderr.
                # The command prints the summary line itself, once, after every report is written.
                render_table(report, Console(highlight=False, soft_wrap=False, stderr=args.table_to_stderr),
                             summary=False, verbose=bool(getattr(args, "verbose", False)))
            else:
                with open(private_file(target), "w", encoding="utf-8") as stream:
                    render_table(report, Console(file=stream, width=140, no_color=True))
            continue
        text = WRITERS[fmt](report)
        if target == "-":
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        else:
            with open(private_file(target), "w", encoding="utf-8") as stream:
                stream.write(text)
    if getattr(args, "write_baseline", None):
        from telemetry_audit.report.baseline import write_baseline

        with open(private_file(args.write_baseline), "w", encoding="utf-8") as stream:
            stream.write(write_baseline(report))


def reaches_fail_on(args: argparse.Namespace, report: dict[str, Any]) -> bool:
    """Whether the findings reach `--fail-on`; with `--write-baseline`, only findings the written baseline does
    not accept count (those of kind `error` are never baselined), so writing a baseline exits 0."""
    from telemetry_audit.report.build import reaches

    if getattr(args, "write_baseline", None):
        from telemetry_audit.report.baseline import accepted_by_own_baseline

        report = accepted_by_own_baseline(report)
    return reaches(report, args.fail_on)


def private_file(path: str) -> int:
    """Open `path` for writing, created 0600 (reports describe what a machine tried to send)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
