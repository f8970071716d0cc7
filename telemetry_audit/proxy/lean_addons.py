"""The lean master's addon manager: each flow event goes to a table of the handlers that want it.

mitmproxy's `AddonManager.handle_lifecycle` looks the hook up on every addon of the chain for every event of every
flow (a `getattr` walk, a `safecall` context manager per addon), then does the same again for an `update` event
that no addon of the lean master handles: about a tenth of the proxy's time per request. Only the proxy child
(`proxy.server`) uses this; plain `mitmdump -s` keeps mitmproxy's own manager.

`InlineHookConnectionHandler` goes one step further for the four hooks of every HTTP request: their handlers run
as soon as the connection's event is handled, instead of in a task of their own (`install_inline_hooks`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks
from mitmproxy.master import Master
from mitmproxy.proxy import commands, events, mode_servers

_UPDATE = hooks.UpdateHook([])
"""A probe for the handlers of `update` (the table is keyed by event name; `_iter_hooks` reads only the name)."""


class LeanAddonManager(addonmanager.AddonManager):
    """mitmproxy's addon manager with the handlers of each flow event looked up once per chain.

    The same handlers run in the same order with the same error handling as mitmproxy's: an addon's error is
    logged (`Addon error: ...`) and the next addon still runs, `AddonHalt` stops the event, `OptionsError`
    propagates; `update` is triggered only when an addon handles it. Adding or removing an addon forgets the
    table. Everything but flow events (load, configure, running, done) is mitmproxy's own code.
    """

    def __init__(self, master: Master) -> None:
        super().__init__(master)
        self._table: dict[str, tuple[tuple[Callable[..., Any], ...], ...]] = {}
        """Event name -> for each addon of the chain that handles it, its handlers (it, then its sub-addons)."""
        self._arg_names: dict[type[hooks.Hook], tuple[str, ...]] = {}
        """Hook class -> its fields, the handlers' arguments (`Hook.args()` asks `dataclasses.fields` each time)."""

    @classmethod
    def install(cls, master: Master) -> LeanAddonManager:
        """Put a lean manager in place of `master`'s own, which must still be empty."""
        plain = master.addons
        if plain.chain:
            raise RuntimeError("the addon manager can only be replaced before any addon is added")
        master.options.changed.disconnect(plain._configure_all)
        lean = cls(master)
        master.addons = lean
        return lean

    def register(self, addon: Any) -> Any:
        self._table = {}
        return super().register(addon)

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self._table = {}

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self._table = {}

    def clear(self) -> None:
        super().clear()
        self._table = {}

    def handlers(self, event: hooks.Hook) -> tuple[tuple[Callable[..., Any], ...], ...]:
        """The handlers of `event`, grouped by the addon of the chain they belong to."""
        table = self._table.get(event.name)
        if table is None:
            groups = (tuple(func for _, func in self._iter_hooks(addon, event)) for addon in self.chain)
            table = self._table[event.name] = tuple(group for group in groups if group)
        return table

    def arguments(self, event: hooks.Hook) -> list[Any]:
        """`event.args()`: the values of its fields, in order."""
        names = self._arg_names.get(type(event))
        if names is None:
            names = self._arg_names[type(event)] = tuple(f.name for f in dataclasses.fields(event))  # type: ignore[arg-type]
        return [getattr(event, name) for name in names]

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        args = self.arguments(event)
        rest = self.run_now(event, args)
        if rest is not None:
            await rest
        if isinstance(args[0], flow.Flow) and self.handlers(_UPDATE):
            await self.trigger_event(hooks.UpdateHook([args[0]]))

    def run_now(self, event: hooks.Hook, args: list[Any]) -> Coroutine[Any, Any, None] | None:
        """Run `event`'s handlers until one returns an awaitable: None when all ran, else the coroutine that awaits
        it and runs the rest (`update` is the caller's)."""
        return self._run_from(self.handlers(event), args, 0, 0)

    def _run_from(self, table: tuple[tuple[Callable[..., Any], ...], ...], args: list[Any], group: int,
                  start: int) -> Coroutine[Any, Any, None] | None:
        while group < len(table):
            handlers = table[group]
            try:
                while start < len(handlers):
                    result = handlers[start](*args)
                    start += 1
                    if result is not None and inspect.isawaitable(result):
                        return self._await_then_run(table, args, group, start, result)
            except exceptions.AddonHalt:
                return None
            except exceptions.OptionsError:
                raise
            except Exception as e:  # as mitmproxy's `safecall`: logged, and the next addon still runs
                addonmanager.logger.error(f"Addon error: {e}", exc_info=True)
            group, start = group + 1, 0
        return None

    async def _await_then_run(self, table: tuple[tuple[Callable[..., Any], ...], ...], args: list[Any], group: int,
                              start: int, result: Any) -> None:
        try:
            await result
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception as e:
            addonmanager.logger.error(f"Addon error: {e}", exc_info=True)
            group, start = group + 1, 0
        rest = self._run_from(table, args, group, start)
        if rest is not None:
            await rest

    def runs_inline(self, hook: commands.StartHook) -> bool:
        """Whether `hook`'s handlers may run inline (`InlineHookConnectionHandler`): one of `INLINE_HOOKS`, and no
        addon handles `update` (it would follow each of them)."""
        return hook.name in INLINE_HOOKS and not self.handlers(_UPDATE)


INLINE_HOOKS = frozenset({"requestheaders", "request", "responseheaders", "response"})
"""The hooks every HTTP request goes through (four per request): the ones worth running inline."""


class InlineHookConnectionHandler(mode_servers.ProxyConnectionHandler):
    """mitmproxy's connection handler, running the handlers of each request's hooks (`INLINE_HOOKS`) inline.

    mitmproxy hands each hook to a task of its own (`hook_task`: a task with its debug info, the watchdog disarmed,
    the manager's coroutine, a wait for an intercepted flow, then the connection's lock again to deliver
    `HookCompleted`), one loop round later: four times per request, about a tenth of the proxy's cost per request.
    Here, once the connection's layers have handled an event, the hooks it started are run right away, in the order
    started, and each one's `HookCompleted` goes back into the layers before `server_event` returns: what a hook task
    does, minus the task. A hook whose flow is left intercepted, or whose handler returns an awaitable, finishes
    in a task as before (`_finish_hook`); every other hook, and everything outside the lean master, takes
    mitmproxy's own way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._finishing_hooks: set[asyncio.Task[None]] = set()
        """Hooks finishing in a task (`_finish_hook`), kept referenced until done."""
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def layer(self) -> Any:
        return self._inline_hooks_layer

    @layer.setter
    def layer(self, value: Any) -> None:
        # Set by `ConnectionHandler.__init__`, then by the server instance (`make_top_layer`).
        self._inline_hooks_layer = value if isinstance(value, _InlineHooksLayer) else _InlineHooksLayer(value, self)

    def run_hook_now(self, hook: commands.StartHook) -> bool:
        """Run `hook`'s handlers; True when it is done and its `HookCompleted` is due now."""
        manager = self.master.addons
        assert isinstance(manager, LeanAddonManager)
        args = manager.arguments(hook)
        try:
            rest = manager.run_now(hook, args)
        except Exception:  # `OptionsError` from a flow hook: mitmproxy's hook task would die with it; go on instead
            logging.getLogger(__name__).exception(f"Addon error in {hook.name}")
            rest = None
        data = args[0] if args else None
        if rest is None and not (isinstance(data, flow.Flow) and data.intercepted):
            return bool(hook.blocking)
        task = asyncio.create_task(self._finish_hook(hook, data, rest), name=f"handle_hook({hook.name})")
        self._finishing_hooks.add(task)
        task.add_done_callback(self._finishing_hooks.discard)
        return False

    async def _finish_hook(self, hook: commands.StartHook, data: Any,
                           rest: Coroutine[Any, Any, None] | None) -> None:
        """The end of mitmproxy's `handle_hook` and `hook_task` for a hook that could not finish inline."""
        with self.timeout_watchdog.disarm():
            if rest is not None:
                await rest
            if isinstance(data, flow.Flow):
                await data.wait_for_resume()
        if hook.blocking:
            await self.server_event(events.HookCompleted(hook))


class _InlineHooksLayer:
    """Stands in for a connection's top layer: its commands pass through, except the hooks to run inline, which run
    once the layers are done with the event; their `HookCompleted` then go into the layers the same way.

    Data sent on one TCP connection by consecutive commands goes out as one command (`_joined`).
    """

    def __init__(self, layer: Any, handler: InlineHookConnectionHandler) -> None:
        self.layer = layer
        self.handler = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)  # `context`, ...: the top layer's own

    def handle_event(self, event: events.Event) -> Iterator[commands.Command]:
        manager = self.handler.master.addons
        if not isinstance(manager, LeanAddonManager):
            yield from _joined(self.layer.handle_event(event))
            return
        queue = collections.deque([event])
        while queue:
            hooks_started: list[commands.StartHook] = []
            for command in _joined(self.layer.handle_event(queue.popleft())):
                if isinstance(command, commands.StartHook) and manager.runs_inline(command):
                    hooks_started.append(command)
                else:
                    yield command
            for hook in hooks_started:
                if self.handler.run_hook_now(hook):
                    queue.append(events.HookCompleted(hook))


def _joined(layer_commands: Iterator[commands.Command]) -> Iterator[commands.Command]:
    """`layer_commands`, with consecutive `SendData` to the same TCP connection joined into one.

    An HTTP/1 answer leaves the layers as two sends, its head and its body (two TLS records over TLS): two writes,
    two system calls, and on loopback the receiving side's TCP work twice. Joined, the peer gets the same bytes in
    the same order, with one write; nothing is held back past the command that follows. UDP keeps its datagrams.
    """
    pending: commands.SendData | None = None
    chunks: list[bytes] = []
    for command in layer_commands:
        if type(command) is commands.SendData and command.connection.transport_protocol == "tcp":
            if pending is not None and command.connection is pending.connection:
                chunks.append(command.data)
                continue
            if pending is not None:
                yield _send(pending, chunks)
            pending, chunks = command, [command.data]
            continue
        if pending is not None:
            yield _send(pending, chunks)
            pending = None
        yield command
    if pending is not None:
        yield _send(pending, chunks)


def _send(first: commands.SendData, chunks: list[bytes]) -> commands.SendData:
    return first if len(chunks) == 1 else commands.SendData(first.connection, b"".join(chunks))


def install_inline_hooks() -> bool:
    """Let mitmproxy's proxy servers create `InlineHookConnectionHandler`s; False (nothing changed) when this
    mitmproxy does not look as expected. Only for the proxy child's own process (`proxy.server.main`)."""
    stock = mode_servers.ProxyConnectionHandler
    if stock is InlineHookConnectionHandler:
        return True
    if (InlineHookConnectionHandler.__base__ is not stock or not hasattr(stock, "server_event")
            or not hasattr(stock, "hook_task") or not hasattr(events, "HookCompleted")):
        return False
    mode_servers.ProxyConnectionHandler = InlineHookConnectionHandler  # type: ignore[misc]
    return True
