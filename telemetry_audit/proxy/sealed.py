"""The proxy's side of a sealed run: readiness, names instead of synthetic addresses, and no way out but ours.

Loaded by `telemetry_audit.proxy.server --tun NAME`. Inside the sandbox every packet of the audited command
arrives through the tun interface, so this addon decides what leaves:
- HTTP flows are named by Host/SNI; a request sent to a bare synthetic address gets its name back before the
  audit addon sees it.
- Offline, no server connection is ever opened (the audit addon answers telemetry itself, `connection_strategy`
  is lazy), so whatever is not answered locally reaches nothing.
- Online, each server connection goes to a per-destination bridge on the sandbox's loopback that tunnels it
  through the relay outside (`sandbox.relay`): the proxy forwards, the command still has no route.
- Raw TCP (neither HTTP nor TLS) and UDP other than DNS (QUIC) are recorded in the audit log with host name,
  port and byte counts, the TCP bytes scanned by the policy; UDP is refused so clients fall back to TCP.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from typing import Any

from mitmproxy import connection, ctx, http, tcp, udp
from mitmproxy.proxy import layer, layers, server_hooks

from telemetry_audit.model import Request
from telemetry_audit.proxy.auditlog import AuditLog, AuditLogError
from telemetry_audit.proxy.client_process import process_for_port
from telemetry_audit.proxy.synthetic_dns import SyntheticDNS
from telemetry_audit.report.build import AuditedRequest, request_entry
from telemetry_audit.sandbox.names import is_synthetic
from telemetry_audit.sandbox.relay import connect_line

logger = logging.getLogger(__name__)

_SCAN_LIMIT = 1 << 20
"""Bytes of a raw TCP stream kept for the policy scan (the byte count covers everything)."""

OFFLINE_ERROR = "sealed offline run: nothing leaves the sandbox"


class SealedNetwork:
    """See the module docstring; `dns` is the run's synthetic resolver (shared name table)."""

    def __init__(self, dns: SyntheticDNS) -> None:
        self.dns = dns
        self.log: AuditLog | None = None
        self._bridges: dict[tuple[str, int], int] = {}
        self._bridge_servers: list[asyncio.Server] = []
        self._sent: dict[str, bytearray] = {}
        self._first: dict[str, bytes] = {}

    def load(self, loader: Any) -> None:
        loader.add_option("taudit_tun_ready_file", str, "",
                          "Sealed run: write this file once the tun interface is up.")
        loader.add_option("taudit_relay", str, "",
                          "Sealed online run: the relay's Unix socket outside the sandbox; server connections are "
                          "tunnelled through it. Empty: offline, no server connection is opened.")

    def running(self) -> None:
        path = ctx.options.taudit_tun_ready_file
        if not path:
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        tun_names = [getattr(s, "tun_name", None) for s in getattr(proxyserver, "servers", [])]
        if not any(tun_names):
            logger.error("telemetry-audit: no tun interface is running")
            return
        temp = f"{path}.tmp"
        with open(temp, "w", encoding="utf-8") as stream:
            json.dump({"tun": [name for name in tun_names if name], "pid": os.getpid()}, stream)
        os.replace(temp, path)

    async def done(self) -> None:
        for server in self._bridge_servers:
            server.close()
        if self.log is not None:
            self.log.close()

    # --- names -------------------------------------------------------------------------------------------------

    def name_of(self, conn: connection.Server) -> str:
        """The host name behind a server connection: SNI, else the name its synthetic address was given for."""
        if conn.sni:
            return str(conn.sni)
        host = str(conn.address[0]) if conn.address else ""
        return self.dns.name_for(host) or host

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        wanted = "taudit_client_process" in ctx.options and ctx.options.taudit_client_process  # the audit addon's
        if wanted and getattr(flow.client_conn, "telemetry_audit_client", None) is None:
            # Inside the sandbox the client's socket is in this namespace too, bound to the tun address.
            try:
                setattr(flow.client_conn, "telemetry_audit_client",  # noqa: B010 - read by client_process()
                        process_for_port(int(flow.client_conn.peername[1])))
            except (AttributeError, TypeError, ValueError, IndexError):
                pass
        if is_synthetic(flow.request.pretty_host):
            name = self.dns.name_for(flow.request.pretty_host)
            if name:
                flow.request.host = name  # also fixes the Host header / :authority

    # --- what leaves -------------------------------------------------------------------------------------------

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.error or data.server.address is None:
            return
        relay = ctx.options.taudit_relay
        if not relay:
            data.server.error = OFFLINE_ERROR
            return
        host = self.name_of(data.server)
        port = int(data.server.address[1])
        if is_synthetic(host):  # an address nobody resolved: there is no real destination behind it
            data.server.error = f"{host} is a sandbox address with no name"
            return
        try:
            bridge = await self._bridge(relay, host, port)
        except OSError as e:
            data.server.error = f"cannot open a bridge to {host}:{port}: {e}"
            return
        data.server.address = ("127.0.0.1", bridge)

    async def _bridge(self, relay: str, host: str, port: int) -> int:
        """A listener on the sandbox loopback whose every connection is tunnelled to (host, port)."""
        key = (host, port)
        if key in self._bridges:
            return self._bridges[key]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(relay)
                up_writer.write(connect_line(host, port))
                await up_writer.drain()
                status = await up_reader.readuntil(b"\r\n\r\n")
                if not status.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(status.split(b"\r\n", 1)[0].decode("latin-1"))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as e:
                logger.warning(f"telemetry-audit: relay to {host}:{port} failed: {e}")
                writer.close()
                return
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
            for stream in (writer, up_writer):
                stream.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self._bridge_servers.append(server)
        bound = int(server.sockets[0].getsockname()[1])
        self._bridges[key] = bound
        return bound

    # --- raw channels ------------------------------------------------------------------------------------------

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if nextlayer.layer is None:
            return
        context = nextlayer.context
        if context.client.transport_protocol == "udp" and not isinstance(nextlayer.layer, (layers.DNSLayer,
                                                                                            layers.UDPLayer)):
            # QUIC would be taken apart by mitmproxy's QUIC layers without a flow hook to refuse it in: make it a
            # plain UDP flow, which `udp_start` records and refuses.
            nextlayer.layer = layers.UDPLayer(context)
            return
        # Offline a raw TCP flow ends before its first message is relayed: keep what the client sent first.
        if isinstance(nextlayer.layer, layers.TCPLayer):
            first = nextlayer.data_client()[:_SCAN_LIMIT]
            self._first[nextlayer.context.client.id] = first

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._sent[flow.id] = bytearray()

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        buffer = self._sent.setdefault(flow.id, bytearray())
        if message.from_client and len(buffer) < _SCAN_LIMIT:
            buffer += message.content[: _SCAN_LIMIT - len(buffer)]

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    def udp_start(self, flow: udp.UDPFlow) -> None:
        # QUIC and anything else on UDP: refused, so clients fall back to TCP (where they are audited).
        self._write({"record": "connection", "protocol": "udp", "time": time.time(),
                     "host": self.name_of(flow.server_conn), "port": _port(flow.server_conn),
                     "outcome": "refused"})
        flow.kill()

    def _record_tcp(self, flow: tcp.TCPFlow) -> None:
        scanned = bytes(self._sent.pop(flow.id, b""))
        first = self._first.pop(flow.client_conn.id, b"")
        if flow.metadata.get("telemetry_audit_recorded"):
            return
        flow.metadata["telemetry_audit_recorded"] = True
        sent = sum(len(m.content) for m in flow.messages if m.from_client)
        if not scanned and first:  # never relayed: what the client had sent when the connection was refused
            scanned, sent = first, len(first)
        received = sum(len(m.content) for m in flow.messages if not m.from_client)
        host, port = self.name_of(flow.server_conn), _port(flow.server_conn)
        record: dict[str, Any] = {
            "record": "connection", "protocol": "tcp", "time": time.time(), "host": host, "port": port,
            "bytes_sent": sent, "bytes_received": received, "sha256": hashlib.sha256(scanned).hexdigest(),
            "outcome": "forwarded" if flow.server_conn.timestamp_start else "reached nothing",
        }
        record.update(self._scan(host, port, scanned))
        self._write(record)

    def _scan(self, host: str, port: int, data: bytes) -> dict[str, Any]:
        """The policy's verdict on a raw stream's bytes, through the audit addon's engine (if loaded)."""
        audit = ctx.master.addons.get("telemetryaudit")
        auditor = getattr(audit, "auditor", None)
        if auditor is None or not data:
            return {}
        request = Request("TCP", "tcp", host.lower(), port, "/", (), (), data)
        try:
            decision = auditor.evaluate(request)
        except Exception as e:  # the engine fails closed itself; this guards the adapter
            return {"decision": "error", "error": f"{type(e).__name__}: {e}"[:300]}
        entry = request_entry(AuditedRequest(request, decision, time=time.time()))
        return {"decision": entry["decision"], "tool": entry.get("tool"), "findings": entry["findings"]}

    def _write(self, record: dict[str, Any]) -> None:
        try:
            if self.log is None:  # opened on first use: the audit addon declares `taudit_log` after this one loads
                self.log = AuditLog(ctx.options.taudit_log or None)
            self.log.write(record)
        except AuditLogError as e:
            logger.error(f"telemetry-audit: {e}; shutting down")
            ctx.master.shutdown()


def _port(conn: connection.Server) -> int:
    return int(conn.address[1]) if conn.address else 0


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass
