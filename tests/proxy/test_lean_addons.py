"""The lean master's addon manager: the same handlers, order and error handling as mitmproxy's, from a table."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from mitmproxy import exceptions, hooks, options
from mitmproxy.addonmanager import AddonManager
from mitmproxy.http import HTTPFlow
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import tflow

from telemetry_audit.proxy.lean_addons import LeanAddonManager
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
