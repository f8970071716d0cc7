"""Synthetic addresses: every name asked for inside a sealed run resolves to its own address from 198.18.0.0/15.

The range is reserved for benchmarking (RFC 2544) and never routed on the internet; inside the sandbox every
address goes to the proxy anyway. One address per name, stable for the run, so a connection to a bare address
(no SNI, no Host header) can be named back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

SYNTHETIC_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
"""Where synthetic addresses come from (131070 usable names per run)."""

_FIRST_HOST = 2  # 198.18.0.1 is left for the resolver address in a generated resolv.conf

LOOPBACK_ALIAS = str(SYNTHETIC_NETWORK[-2])
"""198.19.255.254 stands for the host's 127.0.0.1 when loopback traffic is audited (`run --proxy-loopback`): the
sandbox's loopback bridges connect here, through the proxy, which names it back to 127.0.0.1."""


def is_synthetic(address: str) -> bool:
    """Whether `address` is one a sealed run hands out (a string that is no IPv4 address is not)."""
    try:
        return ipaddress.ip_address(address) in SYNTHETIC_NETWORK
    except ValueError:
        return False


@dataclass
class SyntheticNames:
    """The run's name <-> address table (one proxy process owns it; not shared, not persisted)."""

    _by_name: dict[str, ipaddress.IPv4Address] = field(default_factory=dict)
    _by_address: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)

    def address_for(self, name: str) -> str:
        """The address for `name` (case and a trailing dot do not matter); allocated on first use."""
        key = normalise_name(name)
        address = self._by_name.get(key)
        if address is None:
            index = len(self._by_name) + _FIRST_HOST
            if index >= SYNTHETIC_NETWORK.num_addresses - 2:
                raise OverflowError(f"more than {index - _FIRST_HOST} names in one run: no synthetic address left")
            address = SYNTHETIC_NETWORK[index]
            self._by_name[key] = address
            self._by_address[address] = key
        return str(address)

    def name_for(self, address: str) -> str | None:
        """The name `address` was handed out for, or None (not synthetic, or never handed out)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if str(ip) == LOOPBACK_ALIAS:
            return "127.0.0.1"
        return self._by_address.get(ip) if isinstance(ip, ipaddress.IPv4Address) else None

    def __len__(self) -> int:
        return len(self._by_name)


def normalise_name(name: str) -> str:
    """`API.Segment.io.` -> `api.segment.io`; raises ValueError for an empty name or one with a space or NUL."""
    key = name.strip().rstrip(".").lower()
    if not key or any(c in key for c in " \t\r\n\x00/"):
        raise ValueError(f"not a host name: {name!r}")
    return key
