"""HTTP/1 request trailers reach the audit instead of stalling the connection.

mitmproxy's HTTP/1 server reads chunked bodies with h11 but raises `NotImplementedError` when the last chunk
carries trailer fields: the connection dies, the client waits for an answer that never comes, and the request is
never audited. HTTP/2 trailers already arrive as `RequestTrailers` events. `install()` wraps the HTTP/1 body
reading so that trailers take the same path: h11's end-of-message loses its trailer fields, and a
`RequestTrailers` event carrying them is emitted just before the end of the message, so `flow.request.trailers`
is set when the `request` hook runs (the addon audits them as `header.trailer:<name>`).

The wrapper only touches the request side (`Http1Server`), never mitmproxy's own code paths otherwise, and is
installed once per process.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

_INSTALLED = "_telemetry_audit_trailers"


class _TrailerCatcher:
    """Wraps an h11 body reader: keeps the trailer fields of the end-of-message event aside."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.trailers: list[tuple[bytes, bytes]] = []

    def _strip(self, event: Any) -> Any:
        import h11

        if isinstance(event, h11.EndOfMessage) and event.headers:
            self.trailers = [(bytes(name), bytes(value)) for name, value in event.headers]
            return h11.EndOfMessage()
        return event

    def __call__(self, buf: Any) -> Any:
        return self._strip(self.reader(buf))

    def read_eof(self) -> Any:
        return self._strip(self.reader.read_eof())


def install() -> bool:
    """Patch mitmproxy's HTTP/1 server once; False when this mitmproxy has no such layer (nothing to do)."""
    try:
        from mitmproxy import http
        from mitmproxy.proxy.layers.http import _http1
        from mitmproxy.proxy.layers.http._base import ReceiveHttp
        from mitmproxy.proxy.layers.http._events import RequestEndOfMessage, RequestTrailers
    except ImportError:  # pragma: no cover - another mitmproxy layout
        return False
    server = _http1.Http1Server
    if getattr(server, _INSTALLED, False):
        return True
    read_body = _http1.Http1Connection.read_body

    def read_body_with_trailers(self: Any, event: Any) -> Generator[Any, Any, None]:
        reader = getattr(self, "body_reader", None)
        if reader is not None and not isinstance(reader, _TrailerCatcher):
            self.body_reader = reader = _TrailerCatcher(reader)
        commands = read_body(self, event)
        reply = None
        while True:
            try:
                command = commands.send(reply)
            except StopIteration:
                return
            if (isinstance(reader, _TrailerCatcher) and reader.trailers and isinstance(command, ReceiveHttp)
                    and isinstance(command.event, RequestEndOfMessage)):
                trailers, reader.trailers = reader.trailers, []
                yield ReceiveHttp(RequestTrailers(command.event.stream_id, http.Headers(trailers)))
            reply = yield command

    server.read_body = read_body_with_trailers  # type: ignore[method-assign]
    setattr(server, _INSTALLED, True)
    return True
