"""The collector fixtures of `tests/collectors` (one shared collector child, its CA), for the session tests."""

from __future__ import annotations

from tests.collectors.conftest import collector_confdir, server, shared_collector

__all__ = ["collector_confdir", "server", "shared_collector"]
