"""`python -m telemetry_audit.sandbox SPEC.json`: the supervisor inside a sealed run (see `inside`)."""

from __future__ import annotations

from telemetry_audit.sandbox.inside import main

raise SystemExit(main())
