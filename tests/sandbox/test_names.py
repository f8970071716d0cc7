"""Synthetic addresses: one per name, stable, inside 198.18.0.0/15, and named back."""

from __future__ import annotations

import ipaddress

import pytest

from telemetry_audit.sandbox.names import (
    LOOPBACK_ALIAS,
    SYNTHETIC_NETWORK,
    SyntheticNames,
    is_synthetic,
    normalise_name,
)


def test_each_name_gets_its_own_stable_address_in_the_benchmarking_range() -> None:
    names = SyntheticNames()
    first = names.address_for("api.segment.io")
    second = names.address_for("us.i.posthog.com")
    assert first != second
    assert names.address_for("API.Segment.io.") == first  # case and the root dot do not matter
    assert all(ipaddress.ip_address(a) in SYNTHETIC_NETWORK for a in (first, second))
    assert names.name_for(first) == "api.segment.io" and names.name_for(second) == "us.i.posthog.com"
    assert len(names) == 2


@pytest.mark.parametrize("address", ["198.18.0.2", "10.0.0.1", "not an address", "::1", ""])
def test_unknown_addresses_have_no_name(address: str) -> None:
    assert SyntheticNames().name_for(address) is None


def test_the_loopback_alias_names_the_hosts_loopback() -> None:
    assert SyntheticNames().name_for(LOOPBACK_ALIAS) == "127.0.0.1"
    assert is_synthetic(LOOPBACK_ALIAS)


@pytest.mark.parametrize(("address", "synthetic"), [
    ("198.18.0.2", True), ("198.19.255.254", True), ("198.20.0.1", False), ("127.0.0.1", False),
    ("api.segment.io", False), ("", False),
])
def test_is_synthetic(address: str, synthetic: bool) -> None:
    assert is_synthetic(address) is synthetic


@pytest.mark.parametrize("bad", ["", ".", "  ", "a b", "evil\x00.com", "a/b"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        normalise_name(bad)


def test_the_range_runs_out_loudly() -> None:
    names = SyntheticNames()
    names._by_name.update({f"n{i}": SYNTHETIC_NETWORK[2] for i in range(SYNTHETIC_NETWORK.num_addresses - 4)})
    with pytest.raises(OverflowError, match="no synthetic address left"):
        names.address_for("one-too-many.example")
