"""`telemetry-audit rules validate|list|schema`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from telemetry_audit.cli.common import EXIT_CLEAN, EXIT_USAGE, add_policy_options, load_policy_or_exit, stderr_console


def register(commands: Any) -> argparse.ArgumentParser:
    rules = commands.add_parser("rules", help="validate and list policy rules")
    rules_commands = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    validate = rules_commands.add_parser("validate", help="validate policy files (exit 2 on the first broken one)")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=cmd_rules_validate)
    listing = rules_commands.add_parser("list", help="list the rules of a policy (default: the built-in one)")
    add_policy_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--detectors", action="store_true",
                         help="list every detector id with its family and a one-line description")
    listing.set_defaults(handler=cmd_rules_list)
    schema = rules_commands.add_parser("schema", help="print the policy JSON Schema (for editors)")
    schema.set_defaults(handler=cmd_rules_schema)
    return rules


def cmd_rules_validate(args: argparse.Namespace) -> int:
    from telemetry_audit.policy import PolicyError, load_policy

    failed = False
    console = stderr_console()
    for file in args.files:
        try:
            policy = load_policy([file])
        except PolicyError as e:
            console.print(str(e), markup=False)
            failed = True
            continue
        console.print(f"{file}: ok ({len(policy.rules)} rule(s) after composition)", markup=False)
    return EXIT_USAGE if failed else EXIT_CLEAN


def cmd_rules_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from telemetry_audit.policy import builtin_pack_names

    if args.detectors:
        from telemetry_audit.detectors import detector_rows

        rows = detector_rows()
        if args.json:
            print(json.dumps([{"id": i, "family": f, "description": d} for i, f, d in rows], indent=2))
        else:
            for detector_id, family, description in rows:
                print(f"{detector_id:<40} {family:<11} {description}")
        return EXIT_CLEAN
    policy = load_policy_or_exit(args)
    if args.json:
        rules = [{"id": r.id, "tool": r.tool, "severity": r.severity.value, "file": r.file, "line": r.line,
                  "description": r.description} for r in policy.rules]
        print(json.dumps({"packs": builtin_pack_names(), "files": list(policy.files), "rules": rules}, indent=2))
        return EXIT_CLEAN
    table = Table(title=f"Rules from {', '.join(policy.files)}")
    for column in ("id", "tool", "severity", "detectors / fields", "where"):
        table.add_column(column)
    for rule in policy.rules:
        what = ", ".join(s.detector_id or s.family if s.family != "custom" else s.custom_id for s in rule.forbid)
        if rule.fields is not None:
            what = ", ".join(filter(None, [what, f"{len(rule.fields.allow)} documented field(s)"]))
        table.add_row(rule.id, rule.tool, rule.severity.value, what, f"{rule.file}:{rule.line}")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"built-in packs: {', '.join(builtin_pack_names())}")
    return EXIT_CLEAN


def cmd_rules_schema(args: argparse.Namespace) -> int:
    from telemetry_audit.policy import policy_schema

    print(json.dumps(policy_schema(), indent=2))
    return EXIT_CLEAN
