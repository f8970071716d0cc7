"""Synthetic DNS for a sealed run: every name resolves, offline, to its own address that leads to the proxy.

Inside the sandbox the default route is the proxy's tun interface, so resolver queries arrive here as DNS flows.
Each A query gets the name's synthetic address (stable for the run, see `sandbox.names`); AAAA and other types
get an empty answer so clients use IPv4. `localhost` answers 127.0.0.1 (clients that skip /etc/hosts and ask DNS
still reach the sandbox's loopback). TLS SNI and the Host header carry the name afterwards; for a connection to a
bare address `name_for()` names it back.
"""

from __future__ import annotations

import ipaddress
import logging

from mitmproxy import dns

from telemetry_audit.sandbox.names import SyntheticNames, normalise_name

logger = logging.getLogger(__name__)

_TTL = 300
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class SyntheticDNS:
    """Answers every DNS query itself; nothing is forwarded to a real resolver."""

    def __init__(self, names: SyntheticNames | None = None) -> None:
        self.names = names if names is not None else SyntheticNames()

    def dns_request(self, flow: dns.DNSFlow) -> None:
        if flow.response is not None:
            return
        question = flow.request.question
        if question is None:
            flow.response = flow.request.fail(dns.response_codes.FORMERR)
            return
        try:
            key = normalise_name(question.name)
        except ValueError:
            flow.response = flow.request.fail(dns.response_codes.NXDOMAIN)
            return
        if question.type != dns.types.A or question.class_ != dns.classes.IN:
            flow.response = flow.request.succeed([])  # no AAAA: clients fall back to the synthetic IPv4 address
            return
        address = "127.0.0.1" if key in _LOOPBACK_NAMES else self._allocate(key)
        if not address:
            flow.response = flow.request.fail(dns.response_codes.SERVFAIL)
            return
        record = dns.ResourceRecord(question.name, dns.types.A, dns.classes.IN, _TTL,
                                    ipaddress.ip_address(address).packed)
        flow.response = flow.request.succeed([record])

    def _allocate(self, name: str) -> str:
        try:
            return self.names.address_for(name)
        except OverflowError as e:
            logger.error(f"telemetry-audit: {e}")
            return ""

    def name_for(self, address: str) -> str | None:
        """The name a synthetic address was handed out for."""
        return self.names.name_for(address)
