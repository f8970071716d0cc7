"""The lean master's addon manager: the same handlers, order and error handling as mitmproxy's, from a table."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from mitmproxy import exceptions, hooks, options
from mitmproxy.addonmanager import AddonManager
from mitmproxy.http import HTTPFlow, Response
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow

from telemetry_audit.proxy.lean_addons import InlineHookConnectionHandler, LeanAddonManager, install_inline_hooks
from telemetry_audit.proxy.server import build_master


class Recorder:
    """Appends `(its name, hook)` to a shared list for each flow event it handles."""

    def __init__(self, name: str, calls: list[tuple[str, str]], *, fail: bool = False, halt: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail
        self.halt = halt

    def request(self, flow: HTTPFlow) -> None:
        self.calls.append((self.name, "request"))
        if self.fail:
            raise ValueError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt


class AsyncRecorder:
    name = "async"

    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls

    async def request(self, flow: HTTPFlow) -> None:
        await asyncio.sleep(0)
        self.calls.append((self.name, "request"))


class WithChildren(Recorder):
    """An addon with sub-addons (`addons`), like mitmproxy's script loader: they run right after it."""

    def __init__(self, name: str, calls: list[tuple[str, str]], children: list[Any]) -> None:
        super().__init__(name, calls)
        self.addons = children


class Updates:
    name = "updates"

    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls

    def update(self, flows: list[HTTPFlow]) -> None:
        self.calls.append((self.name, f"update {len(flows)}"))


def _master(lean: bool) -> Master:
    """A master (inside a running loop: it needs one), with a lean manager or mitmproxy's own."""
    master = Master(options.Options())
    if lean:
        LeanAddonManager.install(master)
    return master


def _done(master: Master) -> None:
    """What `Master.run` undoes when it stops: its log handler (it would outlive this test's loop)."""
    master._legacy_log_events.uninstall()


def _run(build: Callable[[Master], Any]) -> Any:
    """`build(master)` on a master with a lean manager, inside a running loop."""

    async def main() -> Any:
        master = _master(lean=True)
        try:
            return await build(master)
        finally:
            _done(master)

    return asyncio.run(main())


def _both_managers(setup: Callable[[Master, list[tuple[str, str]]], None],
                   event: Callable[[], hooks.Hook]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The calls one event makes on mitmproxy's own manager and on the lean one, with the same addons."""

    async def one(lean: bool) -> list[tuple[str, str]]:
        master = _master(lean)
        try:
            calls: list[tuple[str, str]] = []
            setup(master, calls)
            await master.addons.handle_lifecycle(event())
            return calls
        finally:
            _done(master)

    async def main() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return await one(lean=False), await one(lean=True)

    return asyncio.run(main())


def test_handlers_run_in_chain_order_with_sub_addons_and_async_ones_as_mitmproxy_runs_them() -> None:
    def setup(master: Master, calls: list[tuple[str, str]]) -> None:
        master.addons.add(Recorder("first", calls),
                          WithChildren("parent", calls, [Recorder("child", calls)]),
                          AsyncRecorder(calls), Updates(calls), Recorder("last", calls))

    plain, lean = _both_managers(setup, lambda: HttpRequestHook(tflow.tflow()))
    assert lean == plain == [("first", "request"), ("parent", "request"), ("child", "request"),
                             ("async", "request"), ("last", "request"), ("updates", "update 1")]


def test_an_addon_error_is_logged_and_the_next_addon_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    def setup(master: Master, calls: list[tuple[str, str]]) -> None:
        master.addons.add(Recorder("broken", calls, fail=True), Recorder("after", calls))

    with caplog.at_level(logging.ERROR):
        plain, lean = _both_managers(setup, lambda: HttpRequestHook(tflow.tflow()))
    assert lean == plain == [("broken", "request"), ("after", "request")]
    assert sum("Addon error: broken broke" in r.getMessage() for r in caplog.records) == 2  # once per manager


def test_an_error_in_a_sub_addon_skips_the_rest_of_its_parent_only() -> None:
    def setup(master: Master, calls: list[tuple[str, str]]) -> None:
        master.addons.add(WithChildren("parent", calls, [Recorder("child", calls, fail=True),
                                                          Recorder("sibling", calls)]),
                          Recorder("next", calls))

    plain, lean = _both_managers(setup, lambda: HttpRequestHook(tflow.tflow()))
    assert lean == plain == [("parent", "request"), ("child", "request"), ("next", "request")]


def test_addon_halt_stops_the_event_but_update_still_runs() -> None:
    def setup(master: Master, calls: list[tuple[str, str]]) -> None:
        master.addons.add(Recorder("halting", calls, halt=True), Recorder("never", calls), Updates(calls))

    plain, lean = _both_managers(setup, lambda: HttpRequestHook(tflow.tflow()))
    assert lean == plain == [("halting", "request"), ("updates", "update 1")]


def test_an_event_no_addon_handles_calls_nothing() -> None:
    def setup(master: Master, calls: list[tuple[str, str]]) -> None:
        master.addons.add(Recorder("only-requests", calls))

    plain, lean = _both_managers(setup, lambda: HttpResponseHook(tflow.tflow(resp=True)))
    assert lean == plain == []


def test_an_addon_added_later_gets_the_events_that_follow() -> None:
    async def scenario(master: Master) -> list[tuple[str, str]]:
        calls: list[tuple[str, str]] = []
        master.addons.add(Recorder("early", calls))
        await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
        late = Recorder("late", calls)
        master.addons.add(late)
        await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
        master.addons.remove(late)
        await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
        return calls

    assert _run(scenario) == [("early", "request"), ("early", "request"), ("late", "request"), ("early", "request")]


def test_options_still_reach_the_addons_through_configure() -> None:
    class Configured:
        def __init__(self) -> None:
            self.seen: list[set[str]] = []

        def configure(self, updated: set[str]) -> None:
            self.seen.append(set(updated))

    async def scenario(master: Master) -> list[set[str]]:
        addon = Configured()
        master.addons.add(addon)
        master.options.update(listen_port=8181)
        return addon.seen

    assert _run(scenario)[-1] == {"listen_port"}


def test_the_manager_is_replaced_only_while_it_is_empty() -> None:
    async def scenario() -> None:
        master = _master(lean=False)
        master.addons.add(Recorder("already", []))
        with pytest.raises(RuntimeError, match="before any addon"):
            LeanAddonManager.install(master)
        _done(master)

    asyncio.run(scenario())


@pytest.mark.parametrize("quiet", [True, False])
def test_the_proxy_master_uses_the_lean_manager(quiet: bool) -> None:
    async def scenario() -> tuple[AddonManager, list[str]]:
        master = build_master(options.Options(), quiet=quiet)
        _done(master)
        if master._termlog_addon is not None:
            master._termlog_addon.uninstall()
        return master.addons, [type(a).__name__ for a in master.addons.chain]

    manager, chain = asyncio.run(scenario())
    assert isinstance(manager, LeanAddonManager)
    assert chain[-2:] == ["TelemetryAudit", "ErrorCheck"]
    assert ("TermLog" in chain) is not quiet


def test_handlers_get_the_arguments_hook_args_gives() -> None:
    """The field names are read once per hook class; the values are the event's own, each time."""
    from mitmproxy.proxy.server_hooks import ServerConnectHook, ServerConnectionHookData

    flows = [tflow.tflow(), tflow.tflow()]
    data = ServerConnectionHookData(tflow.tflow().server_conn, tflow.tflow().client_conn)
    events: list[hooks.Hook] = [HttpRequestHook(flows[0]), HttpResponseHook(flows[1]), HttpRequestHook(flows[1]),
                                hooks.UpdateHook(flows), ServerConnectHook(data)]

    async def scenario(master: Master) -> list[tuple[list[Any], list[Any]]]:
        manager = master.addons
        assert isinstance(manager, LeanAddonManager)
        return [(manager.arguments(event), event.args()) for event in events]

    for ours, theirs in _run(scenario):
        assert len(ours) == len(theirs) and all(a is b for a, b in zip(ours, theirs, strict=True))


# --- hooks run inline (InlineHookConnectionHandler) ------------------------------------------------------------


class Answering:
    """Records the task each request hook runs in, and answers every request itself (`mode`: how)."""

    name = "answering"

    def __init__(self, mode: str = "now") -> None:
        self.mode = mode
        self.tasks: list[tuple[str, asyncio.Task[Any] | None]] = []

    def _seen(self, hook: str) -> None:
        self.tasks.append((hook, asyncio.current_task()))

    def requestheaders(self, flow: HTTPFlow) -> None:
        self._seen("requestheaders")

    def request(self, flow: HTTPFlow) -> Any:
        self._seen("request")
        if self.mode == "intercept":  # answered later, as a large body audited in a worker is
            flow.intercept()

            def answer() -> None:
                flow.response = Response.make(200, b"later")
                flow.resume()

            asyncio.get_running_loop().call_later(0.05, answer)
            return None
        if self.mode == "async":
            async def answer_async() -> None:
                await asyncio.sleep(0.01)
                flow.response = Response.make(200, b"awaited")

            return answer_async()
        if self.mode == "broken":
            raise ValueError("broken addon")
        flow.response = Response.make(200, b"now")
        return None

    def responseheaders(self, flow: HTTPFlow) -> None:
        self._seen("responseheaders")

    def response(self, flow: HTTPFlow) -> None:
        self._seen("response")


class AnswerIfUnanswered:
    name = "fallback"

    def request(self, flow: HTTPFlow) -> None:
        if flow.response is None:
            flow.response = Response.make(200, b"fallback")


def _serve_and_send(addons: list[Any], *, inline: bool, requests: int = 2) -> list[bytes]:
    """A lean master with mitmproxy's proxy core and `addons`, on 127.0.0.1; `requests` plain HTTP requests sent
    through it on one keep-alive connection. `inline`: its servers create `InlineHookConnectionHandler`s."""
    import http.client

    from mitmproxy.addons import core, next_layer, proxyserver
    from mitmproxy.proxy import mode_servers

    def send(port: int) -> list[bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        bodies = []
        for _ in range(requests):
            connection.request("POST", "http://collector.example/v1/track", body=b"{}")
            bodies.append(connection.getresponse().read())
        connection.close()
        return bodies

    async def main() -> list[bytes]:
        master = Master(options.Options())
        LeanAddonManager.install(master)
        master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), *addons)
        master.options.update(listen_host="127.0.0.1", listen_port=0, connection_strategy="lazy")
        running = asyncio.get_running_loop().create_task(master.run())
        try:
            server = master.addons.get("proxyserver")
            while not server.listen_addrs():
                await asyncio.sleep(0.01)
            return await asyncio.to_thread(send, server.listen_addrs()[0][1])
        finally:
            master.shutdown()
            await running

    stock = mode_servers.ProxyConnectionHandler
    try:
        if inline:
            assert install_inline_hooks(), "this mitmproxy no longer fits InlineHookConnectionHandler"
            assert mode_servers.ProxyConnectionHandler is InlineHookConnectionHandler
        return asyncio.run(main())
    finally:
        mode_servers.ProxyConnectionHandler = stock  # type: ignore[misc]


def test_the_request_hooks_run_inline_in_the_proxy_child_and_in_tasks_of_their_own_in_stock_mitmproxy() -> None:
    """The mechanism itself: the proxy child's handler runs a request's four hooks one after another in the task
    that handled the request's data, without a task each (mitmproxy's own handler, checked the same way, creates
    one per hook, eager or not: the test sees the difference)."""
    ours, stock = Answering(), Answering()
    assert _serve_and_send([ours], inline=True) == [b"now", b"now"]
    assert _serve_and_send([stock], inline=False) == [b"now", b"now"]
    hooks_of_a_request = ["requestheaders", "request", "responseheaders", "response"]
    assert [hook for hook, _ in ours.tasks] == [hook for hook, _ in stock.tasks] == hooks_of_a_request * 2
    # The second request, on the kept-alive connection (the first one's may start in the `next_layer` hook's task).
    ours_tasks = {id(task) for _, task in ours.tasks[4:]}
    stock_tasks = {id(task) for _, task in stock.tasks[4:]}
    assert (len(ours_tasks), len(stock_tasks)) == (1, 4)


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize(("mode", "answer"), [("intercept", b"later"), ("async", b"awaited"), ("broken", b"fallback")])
def test_a_hook_that_cannot_finish_inline_finishes_as_in_mitmproxy(inline: bool, mode: str, answer: bytes,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A flow left intercepted (a large body audited in a worker), a handler returning an awaitable, an addon
    error: the next requests on the connection are still answered, and the addons after it still run."""
    with caplog.at_level(logging.ERROR):
        assert _serve_and_send([Answering(mode), AnswerIfUnanswered()], inline=inline) == [answer, answer]
    assert (sum("broken addon" in r.getMessage() for r in caplog.records) == 2) is (mode == "broken")


def test_the_proxy_process_creates_inline_hook_handlers() -> None:
    probe = ("import telemetry_audit.proxy.server as server\nserver.prepare_process()\n"
             "from mitmproxy.proxy import mode_servers\nfrom telemetry_audit.proxy import lean_addons\n"
             "print(mode_servers.ProxyConnectionHandler is lean_addons.InlineHookConnectionHandler)")
    result = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


def test_consecutive_data_to_one_tcp_connection_leaves_as_one_send() -> None:
    """An answer's head and body (each a TLS record over TLS) go out in one write; order, other connections, other
    commands between them and UDP datagrams stay as they were."""
    from mitmproxy import connection
    from mitmproxy.proxy import commands

    from telemetry_audit.proxy.lean_addons import _joined

    def peer(cls: type[connection.Connection], protocol: str) -> Any:
        return cls(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), transport_protocol=protocol) \
            if cls is connection.Client else cls(address=("127.0.0.1", 3), transport_protocol=protocol)

    client, server, udp = (peer(connection.Client, "tcp"), peer(connection.Server, "tcp"),
                           peer(connection.Client, "udp"))
    log = commands.Log("between")
    sent = list(_joined(iter([
        commands.SendData(client, b"head"), commands.SendData(client, b"body"), commands.SendData(client, b"!"),
        commands.SendData(server, b"up"), commands.SendData(client, b"more"), log, commands.SendData(client, b"x"),
        commands.SendData(udp, b"d1"), commands.SendData(udp, b"d2"), commands.CloseConnection(client),
    ])))
    shown = [(type(c).__name__, getattr(c, "connection", None), getattr(c, "data", None)) for c in sent]
    assert shown == [("SendData", client, b"headbody!"), ("SendData", server, b"up"), ("SendData", client, b"more"),
                     ("Log", None, None), ("SendData", client, b"x"), ("SendData", udp, b"d1"),
                     ("SendData", udp, b"d2"), ("CloseConnection", client, None)]
    assert sent[5] is not sent[6]
