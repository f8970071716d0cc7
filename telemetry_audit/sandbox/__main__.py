"""`python -m telemetry_audit.sandbox SPEC.json`: the supervisor inside a sealed run (see `inside`)."""

from __future__ import annotations

import os
import sys

from telemetry_audit.sandbox.inside import main

status = main()
# The result file is written and closed: leave without the interpreter's teardown (it held up the end of every
# sealed run by a few tens of milliseconds); as PID 1 of the namespace, whatever is left ends with us.
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
