"""The synthetic DNS addon (proxy/synthetic_dns.py): every A query answered offline, stable per name."""

from __future__ import annotations

import ipaddress

from mitmproxy import dns
from mitmproxy.test import taddons, tflow

from telemetry_audit.proxy.synthetic_dns import SyntheticDNS

DNS_MESSAGE = getattr(dns, "DNSMessage", None) or dns.Message  # mitmproxy 12 renamed it


def _query(name: str, qtype: int = dns.types.A) -> dns.DNSFlow:
    flow = tflow.tdnsflow()
    flow.request = DNS_MESSAGE(
        timestamp=0, id=1, query=True, op_code=dns.op_codes.QUERY, authoritative_answer=False, truncation=False,
        recursion_desired=True, recursion_available=False, reserved=0, response_code=dns.response_codes.NOERROR,
        questions=[dns.Question(name, qtype, dns.classes.IN)], answers=[], authorities=[], additionals=[])
    flow.response = None
    return flow


def _answers(flow: dns.DNSFlow) -> list[str]:
    assert flow.response is not None
    return [str(ipaddress.ip_address(a.data)) for a in flow.response.answers]


def test_a_queries_get_stable_synthetic_addresses() -> None:
    resolver = SyntheticDNS()
    with taddons.context(resolver):
        first, again, other = _query("api.segment.io"), _query("API.SEGMENT.IO"), _query("us.i.posthog.com")
        for flow in (first, again, other):
            resolver.dns_request(flow)
    assert _answers(first) == _answers(again) != _answers(other)
    assert _answers(first)[0].startswith("198.18.")
    assert resolver.name_for(_answers(other)[0]) == "us.i.posthog.com"


def test_aaaa_is_empty_and_localhost_is_loopback() -> None:
    resolver = SyntheticDNS()
    with taddons.context(resolver):
        aaaa, local = _query("api.segment.io", dns.types.AAAA), _query("localhost")
        resolver.dns_request(aaaa)
        resolver.dns_request(local)
    assert aaaa.response is not None and aaaa.response.answers == []
    assert aaaa.response.response_code == dns.response_codes.NOERROR
    assert _answers(local) == ["127.0.0.1"]
    assert len(resolver.names) == 0  # neither took an address


def test_a_name_that_is_no_host_name_gets_nxdomain() -> None:
    resolver = SyntheticDNS()
    with taddons.context(resolver):
        flow = _query("bad name")
        resolver.dns_request(flow)
    assert flow.response is not None and flow.response.response_code == dns.response_codes.NXDOMAIN


def test_a_query_without_a_question_is_a_format_error() -> None:
    resolver = SyntheticDNS()
    with taddons.context(resolver):
        flow = _query("x")
        flow.request.questions = []
        resolver.dns_request(flow)
    assert flow.response is not None and flow.response.response_code == dns.response_codes.FORMERR
