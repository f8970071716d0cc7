"""Built-in policy packs (YAML); shipped in the wheel as `telemetry_audit.rules`."""
