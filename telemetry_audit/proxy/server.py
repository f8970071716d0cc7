"""The proxy process: a lean mitmproxy master carrying only the addons an auditing proxy needs.

`telemetry-audit proxy` and `run` start this module as a child process
(`python -m telemetry_audit.proxy.server ...`). A child keeps mitmproxy's
event loop and signal handling away from the supervising CLI, and a crash
of either side cannot silently take the other with it. Leaving out the ~30
interactive default addons of `mitmdump` (playback, map-local, sticky
cookies, ...) removes most of the per-flow hook dispatch cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from mitmproxy import exceptions, options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from telemetry_audit.proxy.addon import BLOCK_STYLES, MODES, UNKNOWN_HOST_CHOICES, TelemetryAudit


def build_master(opts: options.Options, *, quiet: bool = True, sealed: bool = False) -> Master:
    """A master with the proxy core and the telemetry-audit addon, nothing else.

    `sealed`: the proxy runs inside a sealed run's sandbox (tun mode) and also answers DNS and guards the way out
    (`proxy.dns`, `proxy.sealed`), before the audit addon so that flows reach it already named.
    """
    master = Master(opts, with_termlog=not quiet)
    master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig())
    if sealed:
        from telemetry_audit.proxy.dns import SyntheticDNS
        from telemetry_audit.proxy.sealed import SealedNetwork

        resolver = SyntheticDNS()
        master.addons.add(resolver, SealedNetwork(resolver))
    master.addons.add(TelemetryAudit(), errorcheck.ErrorCheck(repeat_errors_on_stderr=True))
    return master


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m telemetry_audit.proxy.server")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080))
    parser.add_argument("--confdir", default="~/.telemetry-audit")
    parser.add_argument("--policy", action="append", default=[])
    parser.add_argument("--mode", choices=MODES, default="enforce")
    parser.add_argument("--log", default="")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--offline-unknown", choices=UNKNOWN_HOST_CHOICES, default="fail")
    parser.add_argument("--audit-all", action="store_true")
    parser.add_argument("--block-style", choices=BLOCK_STYLES, default="empty")
    parser.add_argument("--env-file", default="")
    parser.add_argument("--store", default="")
    parser.add_argument("--baseline", default="")
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--client-process", action="store_true")
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="shut down when this process is gone (the CLI that started us was killed)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--tun", default="", metavar="NAME",
                        help="sealed run: capture through tun interface NAME (inside the run's network namespace)")
    parser.add_argument("--tun-ready-file", default="", help="sealed run: written once the tun interface is up")
    parser.add_argument("--relay", default="", help="sealed online run: the relay's Unix socket outside")
    parser.add_argument("--upstream-proxy", default="", metavar="URL",
                        help="online: forward through this HTTP proxy (the user's own, e.g. a corporate proxy)")
    return parser


async def serve(args: argparse.Namespace) -> int:
    opts = options.Options()
    master = build_master(opts, quiet=not args.verbose, sealed=bool(args.tun))
    host, port = args.listen
    try:
        if args.tun:
            # Every packet of the sandbox arrives here; QUIC stays plain UDP so that the sealed addon refuses it.
            opts.update(mode=[f"tun:{args.tun}"], http3=False, taudit_tun_ready_file=args.tun_ready_file,
                        taudit_relay=args.relay)
        elif args.upstream_proxy:
            opts.update(mode=[f"upstream:{args.upstream_proxy}"])
        opts.update(
            listen_host=host,
            listen_port=port,
            confdir=args.confdir,
            # Lazy: answer HTTPS locally without ever connecting upstream (offline collectors).
            connection_strategy="lazy",
            taudit_policy=args.policy,
            taudit_mode=args.mode,
            taudit_log=args.log,
            taudit_offline=args.offline,
            taudit_offline_unknown=args.offline_unknown,
            taudit_audit_all=args.audit_all,
            taudit_block_style=args.block_style,
            taudit_env_file=args.env_file,
            taudit_store=args.store,
            taudit_baseline=args.baseline,
            taudit_ready_file=args.ready_file,
            taudit_client_process=args.client_process,
        )
    except exceptions.OptionsError as e:
        print(f"telemetry-audit: {e}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if args.parent_pid:
        watcher = loop.create_task(_shutdown_when_orphaned(master, args.parent_pid))
    await master.run()
    if args.parent_pid:
        watcher.cancel()
    return 0


async def _shutdown_when_orphaned(master: Master, parent_pid: int, interval: float = 1.0) -> None:
    """The proxy runs in its own session: if its supervisor dies without stopping it, stop (and flush) anyway."""
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != parent_pid:
            master.shutdown()
            return


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING if not args.verbose else logging.INFO)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
