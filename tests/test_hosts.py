"""`host_matches`: the one host matcher of the package, as a table of its semantics."""

from __future__ import annotations

import pytest

from telemetry_audit.hosts import canonical_host, compile_host_patterns, host_matches, host_pattern_error


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [
        # exact names: case, trailing dot and port never matter
        ("api.segment.io", "api.segment.io", True),
        ("API.Segment.IO.", "api.segment.io", True),
        ("api.segment.io:443", "api.segment.io", True),
        ("api.segment.io", "API.SEGMENT.IO.", True),
        ("api.segment.io", "api.segment.io:8443", True),
        ("xapi.segment.io", "api.segment.io", False),
        ("api.segment.io.evil.test", "api.segment.io", False),
        ("segment.io", "api.segment.io", False),
        # `*.example.com`: the apex and every name under it, at any depth
        ("sentry.io", "*.sentry.io", True),
        ("o1.ingest.sentry.io", "*.sentry.io", True),
        ("a.b.c.d.sentry.io.", "*.SENTRY.io", True),
        ("evilsentry.io", "*.sentry.io", False),
        ("sentry.io.evil.test", "*.sentry.io", False),
        ("io", "*.sentry.io", False),
        # `telemetry.*`: one or more labels after it
        ("telemetry.nuxt.com", "telemetry.*", True),
        ("telemetry.sst.dev", "telemetry.*", True),
        ("telemetry.test", "telemetry.*", True),
        ("telemetry.a.b.c.example", "telemetry.*", True),
        ("telemetry", "telemetry.*", False),
        ("api.telemetry.test", "telemetry.*", False),
        ("telemetryx.test", "telemetry.*", False),
        ("analytics.localstack.cloud", "analytics.*", True),
        ("metrics.example.org", "metrics.*", True),
        ("metricsx.example.org", "metrics.*", False),
        # `*.telemetry.*`: a telemetry label anywhere but last
        ("collector.telemetry.test", "*.telemetry.*", True),
        ("a.b.telemetry.example.com", "*.telemetry.*", True),
        ("telemetry.mozilla.org", "*.telemetry.mozilla.org", True),
        ("incoming.telemetry.mozilla.org", "*.telemetry.mozilla.org", True),
        ("telemetry.test", "*.telemetry.*", True),
        ("www.test.telemetry", "*.telemetry.*", False),
        ("mytelemetry.test", "*.telemetry.*", False),
        # middle and in-label wildcards
        ("a.b.example.com", "a.*.example.com", True),
        ("a.example.com", "a.*.example.com", False),
        ("a.b.c.example.com", "a.*.example.com", False),
        ("api2.amplitude.com", "api*.amplitude.com", True),
        ("api.amplitude.com", "api*.amplitude.com", True),
        ("api.eu.amplitude.com", "api*.amplitude.com", False),
        ("anything.at.all", "*", True),
        ("10.0.0.1", "*", True),
        # IP literals: compared as addresses, never by a wildcard
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1:8080", "127.0.0.1", True),
        ("::1", "0:0::1", True),
        ("[::1]:443", "::1", True),
        ("[fe80::1%eth0]", "fe80::1", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("fd00::5", "fd00::/8", True),
        ("1.2.3.4", "*.3.4", False),
        ("1.2.3.4", "1.2.*", False),
        ("example.com", "10.0.0.0/8", False),
        # IDNA: the Unicode and punycode spellings are one host
        ("bücher.example", "xn--bcher-kva.example", True),
        ("xn--bcher-kva.example", "bücher.example", True),
        ("shop.xn--bcher-kva.example", "*.bücher.example", True),
        ("BÜCHER.example", "bücher.example", True),
        ("bucher.example", "bücher.example", False),
        # bad input: never raises, never matches by accident
        ("", "*.example.com", False),
        ("", "example.com", False),
        (".", "example.com", False),
        ("a" * 300 + ".example.com", "*.example.com", True),
        ("\u00e9" * 300 + ".example.com", "example.com", False),
        ("x..example.com", "*.example.com", True),
        ("example.com", "", False),
        ("example.com", "a..b", False),
        ("example.com", "*..com", False),
        ("example.com", "10.0.0.0/99", False),
    ],
)
def test_host_matches(host: str, pattern: str, expected: bool) -> None:
    assert host_matches(host, pattern) is expected
    assert host_matches(host, [pattern]) is expected
    assert host_matches(host, ("unrelated.test", pattern)) is expected


def test_several_patterns_match_when_any_does() -> None:
    assert host_matches("api.segment.io", ("api.mixpanel.com", "*.segment.io"))
    assert not host_matches("api.segment.io", ())
    assert not host_matches("api.segment.io", ("api.mixpanel.com", "telemetry.*"))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("example.com:443", "example.com"),
        ("[::1]:8080", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("127.000.000.001", "127.000.000.001"),  # not an address to `ipaddress` (leading zeros): kept as text
        ("bücher.example", "xn--bcher-kva.example"),
        ("  spaced.example ", "spaced.example"),
        ("", ""),
    ],
)
def test_canonical_host(host: str, expected: str) -> None:
    assert canonical_host(host) == expected


def test_patterns_compile_once() -> None:
    patterns = ("*.example.com", "telemetry.*")
    assert compile_host_patterns(patterns) is compile_host_patterns(patterns)


@pytest.mark.parametrize(
    "pattern",
    ["*", "api.segment.io", "*.sentry.io", "telemetry.*", "*.telemetry.*", "api*.amplitude.com", "10.0.0.0/8",
     "::1", "[::1]", "127.0.0.1", "bücher.example", "API.Segment.IO.", "host:8443", "fd00::/8"],
)
def test_good_host_patterns(pattern: str) -> None:
    assert host_pattern_error(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("https://api.segment.io/v1", "URL"),
        ("/v1/batch", "URL or a path"),
        ("10.0.0.0/99", "not an IP network"),
        ("a..b", "empty label"),
        ("*..com", "empty label"),
        ("**.example.com", "`**`"),
        ("10.*.0.1", "IP literals"),
        ("api segment.io", "characters"),
        ("api.segment.io?x=1", "characters"),
    ],
)
def test_bad_host_patterns_are_named(pattern: str, says: str) -> None:
    error = host_pattern_error(pattern)
    assert error is not None and says in error


def test_hostile_hosts_are_matched_in_linear_time() -> None:
    """RE2 has no backtracking: a name of 100k labels against the widest globs returns (no timing asserted)."""
    many = "a." * 100_000
    assert host_matches(many + "telemetry.test", "*.telemetry.*")
    assert not host_matches(many + "x", ("*.telemetry.*", "telemetry.*", "*.example.com", "a.*.b"))
    assert not host_matches("\x00\n" * 1000, "*.example.com")
