"""The `telemetry-audit` command line: one module per command, registered here in order.

The CLI is the only layer that prints and exits. Commands import the session and the core; nothing imports
the CLI back. The commands are imported when the parser is built, not with this package: `main` starts `run`'s
proxy before that (see `cli.early`).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from telemetry_audit import __version__

if TYPE_CHECKING:
    from telemetry_audit.cli.early import EarlyStart


def commands() -> tuple[ModuleType, ...]:
    """Every subcommand module, in help order; each has `register(subparsers) -> its parser`."""
    from telemetry_audit.cli import ca, check, collector, optout, proxy, rules, run

    return (check, rules, run, proxy, optout, collector, ca)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's own (for usage errors in the subcommand's words)."""
    from telemetry_audit.cli.common import CommandParser

    parser = argparse.ArgumentParser(
        prog="telemetry-audit",
        description="Audit what CLI tools send as telemetry: decode it, check it against policy, "
        "block or redact leaks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    subparsers = {}
    for module in commands():
        sub = module.register(subcommands)
        subparsers[sub.prog.rsplit(" ", 1)[-1]] = sub
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    from telemetry_audit.cli.early import start_early

    argv = list(sys.argv[1:] if argv is None else argv)
    early = start_early(argv)  # before anything else is imported: see `cli.early`
    try:
        return _main(argv, early)
    finally:
        if early is not None:
            early.discard()


def console_main() -> NoReturn:
    """The `telemetry-audit` executable and `python -m telemetry_audit`: `main`, then exit without the interpreter's
    teardown once the output is flushed, if no other thread is left to finish. The teardown frees, one by one,
    everything the command built (modules, the policy, the report): tens of milliseconds that every `run` spent
    after its command had exited and its report was out. `main` returns as usual, for callers in the same process.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # closed by the reader: nothing more can be written anyway
        pass
    if threading.active_count() == 1:
        os._exit(code)
    sys.exit(code)


def _main(argv: list[str], early: EarlyStart | None) -> int:
    from telemetry_audit.cli.common import EXIT_CLEAN, EXIT_USAGE, UsageError, stderr_console

    parser, subparsers = build_parser()
    args, unknown = parser.parse_known_args(argv)
    args.early_start = early
    sub = subparsers.get(getattr(args, "command", None) or "")
    if unknown:
        (sub or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        (sub or parser).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except UsageError as e:
        stderr_console().print(f"[bold red]telemetry-audit {args.command}:[/] {e}", highlight=False)
        if sub is not None:
            stderr_console().print(f"usage: see `telemetry-audit {args.command} --help`", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN
