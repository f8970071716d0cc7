"""telemetry-audit: see what CLI tools phone home, and stop what must not leave the machine."""

__version__ = "0.1.0"
