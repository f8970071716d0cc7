"""The proxy's sealed-run addon (proxy/sealed.py) on its own: naming flows and refusing every way out offline."""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from telemetry_audit.proxy.sealed import OFFLINE_ERROR, SealedNetwork
from telemetry_audit.proxy.synthetic_dns import SyntheticDNS


@pytest.fixture
def addon() -> SealedNetwork:
    return SealedNetwork(SyntheticDNS())


def test_offline_no_server_connection_is_ever_opened(addon: SealedNetwork) -> None:
    with taddons.context(addon):
        flow = tflow.tflow()
        data = server_hooks.ServerConnectionHookData(server=flow.server_conn, client=flow.client_conn)
        asyncio.run(addon.server_connect(data))
    assert data.server.error == OFFLINE_ERROR


def test_online_a_synthetic_address_without_a_name_goes_nowhere(addon: SealedNetwork) -> None:
    with taddons.context(addon) as context:
        context.configure(addon, taudit_relay="/nonexistent/relay.sock")
        flow = tflow.tflow()
        flow.server_conn.address = ("198.18.7.7", 443)
        flow.server_conn.sni = None
        data = server_hooks.ServerConnectionHookData(server=flow.server_conn, client=flow.client_conn)
        asyncio.run(addon.server_connect(data))
    assert data.server.error == "198.18.7.7 is a sandbox address with no name"


def test_server_connections_are_named_by_sni_then_by_the_synthetic_table(addon: SealedNetwork) -> None:
    address = addon.dns.names.address_for("api.segment.io")
    flow = tflow.tflow()
    flow.server_conn.address = (address, 5555)
    flow.server_conn.sni = None
    assert addon.name_of(flow.server_conn) == "api.segment.io"
    flow.server_conn.sni = "us.i.posthog.com"
    assert addon.name_of(flow.server_conn) == "us.i.posthog.com"
    flow.server_conn.sni, flow.server_conn.address = None, ("10.1.2.3", 80)
    assert addon.name_of(flow.server_conn) == "10.1.2.3"


def test_a_request_to_a_bare_synthetic_address_gets_its_name_back(addon: SealedNetwork) -> None:
    address = addon.dns.names.address_for("telemetry.sst.dev")
    with taddons.context(addon):
        flow = tflow.tflow()
        flow.request.host = address
        flow.request.headers["Host"] = address
        addon.requestheaders(flow)
    assert flow.request.pretty_host == "telemetry.sst.dev" and flow.request.host == "telemetry.sst.dev"


def test_requests_named_by_their_host_header_are_left_alone(addon: SealedNetwork) -> None:
    address = addon.dns.names.address_for("telemetry.sst.dev")
    with taddons.context(addon):
        flow = tflow.tflow()
        flow.request.host = address
        flow.request.headers["Host"] = "telemetry.sst.dev"
        addon.requestheaders(flow)
    assert flow.request.headers["Host"] == "telemetry.sst.dev"

