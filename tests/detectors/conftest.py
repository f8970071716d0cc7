"""Fixtures for detector tests: the fixed test environment and built families."""

from __future__ import annotations

import pytest

from telemetry_audit.detectors.base import AuditEnvironment
from tests.detectors.corpus import TEST_ENVIRONMENT


@pytest.fixture
def environment() -> AuditEnvironment:
    return TEST_ENVIRONMENT
