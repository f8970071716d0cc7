"""`telemetry-audit optout-check`: run a tool with each documented opt-out switch and judge the result.

The runs and the verdicts live in `telemetry_audit.optout`; this module checks the options, shows progress,
prints and writes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telemetry_audit.cli.common import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    UsageError,
    add_policy_options,
    check_writable,
    command_after_dashes,
    fatal,
    load_policy_or_exit,
    private_file,
    stderr_console,
)
from telemetry_audit.proxy.ca import default_confdir

if TYPE_CHECKING:
    from rich.console import Console

    from telemetry_audit.optout import OptOutSwitch

FORMATS: tuple[str, ...] = ("table", "json", "html")


def check_targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(format, output) pairs, checked before any run starts."""
    from telemetry_audit.report import format_for_path

    formats = list(args.formats or [])
    outputs = list(args.outputs or [])
    for output in outputs[len(formats):]:  # an --output without its --format: the extension says
        inferred = format_for_path(output)
        if inferred not in FORMATS:
            raise UsageError(f"--output {output}: give --format (optout-check writes {', '.join(FORMATS)})")
        formats.append(inferred)
    formats = formats or ["table"]
    targets = [(fmt, outputs[i] if i < len(outputs) else "-") for i, fmt in enumerate(formats)]
    if sum(1 for _, target in targets if target == "-") > 1:
        raise UsageError("only one --format may go to standard output: give the others an --output FILE")
    for _, target in targets:
        check_writable(target, "--output")
    return targets


def emit(report: Mapping[str, Any], targets: list[tuple[str, str]]) -> None:
    from rich.console import Console

    from telemetry_audit.report.html import write_html

    for fmt, target in targets:
        if fmt in ("json", "html"):
            text = write_json(report) if fmt == "json" else write_html(report)
            if target == "-":
                sys.stdout.write(text)
            else:
                with open(private_file(target), "w", encoding="utf-8") as stream:
                    stream.write(text)
        elif target == "-":
            render_table(report, Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160))
        else:
            with open(private_file(target), "w", encoding="utf-8") as stream:
                render_table(report, Console(file=stream, width=160, no_color=True))


def write_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


_VERDICT_STYLES = {"honoured": "green", "ignored": "yellow", "inconclusive": "dim", "setup-failed": "red"}


def render_table(report: Mapping[str, Any], console: Console) -> None:
    """One row per run: switch, documented source, expected, telemetry requests seen, verdict."""
    from rich.table import Table
    from rich.text import Text

    from telemetry_audit.optout import Verdict

    table = Table(title=f"Opt-out switches of {report['pack']}", show_edge=False, pad_edge=False)
    table.add_column("Switch", overflow="fold")
    table.add_column("Documented source", overflow="fold")
    table.add_column("Expected", no_wrap=True)
    table.add_column("Telemetry requests seen", justify="right", no_wrap=True)
    table.add_column("Verdict", overflow="fold")
    baseline = report["baseline"]
    table.add_row(Text("(baseline: telemetry on)", style="bold"), Text(""), Text("sends"),
                  Text(str(baseline["telemetry_requests"])), Text(""))
    for entry in report["switches"]:
        verdict = Verdict(entry["verdict"])
        text = Text(verdict.label, style="bold red" if entry["failed"] else _VERDICT_STYLES[verdict.value])
        if entry["note"]:
            text.append(f"\n{entry['note']}", style="dim")
        expected = entry["switch"]["expected"] or "-"
        table.add_row(Text(entry["label"]), Text(entry["switch"]["source"]), Text(expected),
                      Text(str(entry["run"]["telemetry_requests"])), text)
    console.print(table)


def summary_line(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    return (f"{s['switches']} switch(es) tried: {s['honoured']} honoured, {s['ignored']} ignored, "
            f"{s['inconclusive']} inconclusive, {s['setup_failed']} setup failed; "
            f"{s['failed']} documented switch(es) did not stop telemetry")


# --- command ----------------------------------------------------------------------------------------------------


def cmd_optout_check(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from telemetry_audit.optout import (
        OptOutRunError,
        RunSettings,
        base_environment,
        describe,
        optout_report,
        run_case,
        switch_problem,
        switches_to_try,
    )
    from telemetry_audit.policy import PolicyError, load_policy
    from telemetry_audit.policy.model import switches_for_version
    from telemetry_audit.session import ProxyStartError, audited_hosts

    command = command_after_dashes(args, "telemetry-audit optout-check --pack sst -- sst version")
    targets = check_targets(args)
    if not args.pack and not args.policy:
        raise UsageError("which tool's switches? give --pack NAME (a built-in pack such as `sst`, or a policy file)")
    if args.timeout <= 0 or args.settle < 0:
        raise UsageError("--timeout must be positive and --settle not negative")
    declared: tuple[OptOutSwitch, ...] = ()
    if args.pack:
        try:
            declared = load_policy([args.pack]).optout
        except PolicyError as e:
            fatal(f"invalid policy\n{e}")
        args.policy = args.policy or [args.pack]
    policy = load_policy_or_exit(args)
    if not args.pack:
        declared = policy.optout
    declared = switches_for_version(declared, args.tool_version)
    tools = sorted({s.tool for s in declared})
    pack = ", ".join(tools) or (Path(args.pack).stem if args.pack else "policy")
    switches = switches_to_try(declared, pack)
    for switch in switches:
        problem = switch_problem(switch)
        if problem:
            fatal(f"invalid opt-out switch in {pack}: {problem}")
    console = stderr_console()
    from telemetry_audit.cli.run import seal_support

    support = seal_support(args.seal)
    seal = support if support.ok else None
    if not support.ok and args.seal != "off":
        console.print(f"telemetry-audit: not sealed ({support.reason}); capturing through proxy variables",
                      markup=False)
    if not declared:
        console.print(f"telemetry-audit: {pack} documents no opt-out switch; trying DO_NOT_TRACK only", markup=False)

    keep_root = tempfile.mkdtemp(prefix="telemetry-audit-optout-") if args.keep_home else ""
    settings = RunSettings(
        command=tuple(command), policies=tuple(args.policy), confdir=args.confdir,
        base_env=base_environment(os.environ, switches), hosts=tuple(audited_hosts(policy)),
        timeout_s=args.timeout, settle_s=args.settle, keep_root=keep_root, seal=seal, policy=policy,
    )
    console.print(f"telemetry-audit: running `{command[0]}` {len(switches) + 1} times (baseline + "
                  f"{len(switches)} switch(es)), offline, each in a fresh HOME", markup=False)
    results = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("baseline (telemetry on)", total=len(switches) + 1)
        try:
            baseline = run_case(settings, 0, None)
            console.print(f"  baseline: {len(baseline.requests)} telemetry request(s), exit {baseline.exit_code}",
                          markup=False)
            if not baseline.requests and baseline.output_tail:
                console.print(f"  the baseline sent no telemetry; its last output:\n{baseline.output_tail}",
                              markup=False)
            for index, switch in enumerate(switches, start=1):
                progress.update(task, advance=1, description=describe(switch))
                outcome = run_case(settings, index, switch)
                console.print(f"  {describe(switch)}: {len(outcome.requests)} telemetry request(s), exit "
                              f"{outcome.exit_code}" + (f" ({outcome.setup_error})" if outcome.setup_error else ""),
                              markup=False)
                results.append((switch, outcome))
            progress.update(task, advance=1)
        except OptOutRunError as e:
            fatal(str(e))
        except ProxyStartError as e:
            fatal(str(e))

    report = optout_report(pack, policy, command, baseline, results)
    emit(report, targets)
    console.print(summary_line(report), markup=False)
    if keep_root:
        console.print(f"telemetry-audit: homes, outputs and audit logs kept in {keep_root}", markup=False)
    return EXIT_FINDINGS if report["summary"]["failed"] else EXIT_CLEAN


def register(commands: Any) -> argparse.ArgumentParser:
    """Add `optout-check` to the `telemetry-audit` subcommands."""
    parser = commands.add_parser(
        "optout-check", help="check that a tool's documented opt-out switches stop its telemetry",
        description="Run CMD with telemetry on, then once per opt-out switch of the pack (and DO_NOT_TRACK=1), each "
                    "time in a fresh temporary HOME behind the offline auditing proxy, and report which switches "
                    "stopped telemetry. Exit 1 when a documented switch did not.",
    )
    parser.add_argument("--pack", metavar="NAME|FILE",
                        help="the pack whose `optout:` switches are tried (also the policy unless --policy is given)")
    add_policy_options(parser)
    parser.add_argument("--format", "-f", action="append", dest="formats", choices=FORMATS, metavar="FORMAT",
                        help="table, json or html (repeatable, paired with --output in order; default: table)")
    parser.add_argument("--output", "-o", action="append", dest="outputs", metavar="FILE",
                        help="write the matching --format to FILE (default: standard output)")
    parser.add_argument("--keep-home", action="store_true",
                        help="keep each run's temporary HOME, output and audit log, and print where")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="give up on a run (or a switch's command) after this long (default: 300)")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                        help="after CMD exits, wait this long for late telemetry before stopping (default: 1)")
    parser.add_argument("--confdir", default=default_confdir(), help="where the proxy CA lives")
    parser.add_argument("--seal", choices=("auto", "on", "off"), default="auto",
                        help="run each case in a sandbox whose only way out is the proxy (as `run --seal`)")
    parser.add_argument("--tool-version", default="", metavar="VERSION",
                        help="the tool's version (`3.40.0`): expect only the switches the pack lists for it "
                             "(`versions:`); without it, version-bound switches are tried but expect nothing")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    parser.set_defaults(handler=cmd_optout_check)
    return parser


