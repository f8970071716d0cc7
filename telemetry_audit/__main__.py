"""`python -m telemetry_audit` is the `telemetry-audit` command."""

from telemetry_audit.cli import console_main

console_main()
