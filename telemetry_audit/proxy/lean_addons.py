"""The lean master's addon manager: each flow event goes to a table of the handlers that want it.

mitmproxy's `AddonManager.handle_lifecycle` looks the hook up on every addon of the chain for every event of every
flow (a `getattr` walk, a `safecall` context manager per addon), then does the same again for an `update` event
that no addon of the lean master handles: about a tenth of the proxy's time per request. Only the proxy child
(`proxy.server`) uses this; plain `mitmdump -s` keeps mitmproxy's own manager.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks
from mitmproxy.master import Master

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
        for group in self.handlers(event):
            try:
                for func in group:
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                break
            except exceptions.OptionsError:
                raise
            except Exception as e:  # as mitmproxy's `safecall`: logged, and the next addon still runs
                addonmanager.logger.error(f"Addon error: {e}", exc_info=True)
        if isinstance(args[0], flow.Flow) and self.handlers(_UPDATE):
            await self.trigger_event(hooks.UpdateHook([args[0]]))
