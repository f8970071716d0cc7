"""The proxy process: a lean mitmproxy master carrying only the addons an auditing proxy needs.

`telemetry-audit proxy`, `run`, `collector`, `optout-check` and the pytest plugin start this module as a
child process through `telemetry_audit.session.ProxySession` (`python -P -m telemetry_audit.proxy.server`,
its configuration as one JSON object on standard input; it answers with one JSON line on standard output
once it listens). A child keeps mitmproxy's
event loop and signal handling away from the supervising CLI, and a crash
of either side cannot silently take the other with it. Leaving out the ~30
interactive default addons of `mitmdump` (playback, map-local, sticky
cookies, ...) removes most of the per-flow hook dispatch cost, and `proxy.lean_addons` most of what is left.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mitmproxy import options
    from mitmproxy.master import Master

    from telemetry_audit.proxy.addon import TelemetryAudit

EXIT_CONFIG = 2
"""The configuration was refused (bad options, a policy that does not load)."""
EXIT_AUDIT_FAILED = 3
"""Auditing itself failed (the audit log could not be written): traffic was stopped, not passed."""


def skip_default_addons_import() -> None:
    """Let `from mitmproxy.addons import core` load only that module.

    `mitmproxy/addons/__init__.py` imports all ~35 default addons (the onboarding web app, proxy auth, ...) to
    build `default_addons()`, which this master never calls: about 0.6 s of every `run`'s start-up. Registering
    the package without running its `__init__` keeps the submodules importable. Only for the proxy child's own
    process (`main`), never in a process that may want `default_addons()`.
    """
    import importlib.util

    if "mitmproxy.addons" in sys.modules:
        return
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        return
    sys.modules["mitmproxy.addons"] = importlib.util.module_from_spec(spec)


def skip_message_type_checks() -> None:
    """Let mitmproxy build each request and response without type-checking its fields.

    `http.MessageData.__post_init__` checks the type of every field of every `Request` and `Response` through
    mitmproxy's option checker (`typing` introspection per field), unless Python runs with `-O`: about 4% of the
    proxy's CPU per request. The values come from mitmproxy's own HTTP/1 and HTTP/2 parsers (and our answers are
    built the same way, `addon._response`), not from addons or clients, so the check finds nothing here; it is a
    debugging aid. Later changes through the `Request`/`Response` setters are not checked by it anyway. Only for
    the proxy child's own process (`main`), like `skip_default_addons_import`.
    """
    from mitmproxy import http

    if "__post_init__" in vars(http.MessageData):  # absent under `python -O`
        http.MessageData.__post_init__ = _unchecked  # type: ignore[method-assign]


def _unchecked(self: object) -> None:
    """`MessageData.__post_init__` without the check (the dataclass `__init__`s still call it)."""


DEFERRED_MODULES = ("service_identity", "certifi", "ruamel.yaml")
"""Imported at the top of mitmproxy's and aioquic's modules, used only inside functions a start-up never calls:
`service_identity` checks a QUIC server's certificate (aioquic's client side; ~30 ms of CPU with pyasn1, attrs,
idna), `certifi` names the CA bundle for upstream TLS, `ruamel.yaml` reads and writes mitmproxy's config files
(which this master never does). See `defer_unused_imports`."""


class _DeferredModule(types.ModuleType):
    """Stands in `sys.modules` for a module that is imported only when one of its own attributes is first read.

    It carries the real module's spec, name, file and (for a package) `__path__`, so `import x`, `import x.y` and
    the import system's own checks find what they expect without loading it; any other attribute (`x.where`,
    `from x import where`) imports the real module, which takes its place in `sys.modules`, and is read from
    it. The importer's global keeps the stand-in: later reads go through it to the real module, so what they see
    is always the real module's current state. Unlike `importlib.util.LazyLoader` (whose module loads as soon as
    anything reads `__spec__`, which every `import` statement does) it stays unloaded through `import`.
    """

    def __getattr__(self, attribute: str) -> Any:
        real = self.__dict__.get("_deferred_real") or _load_deferred(self)
        return getattr(real, attribute)


_deferred_lock = threading.RLock()
"""Re-entrant: while the real module imports, its own submodules read it through the stand-in (`import x.y as z`
goes through the parent's attribute, still the stand-in); they get the real one, as it stands."""


def _load_deferred(stand_in: _DeferredModule) -> types.ModuleType:
    import importlib

    name = stand_in.__name__
    with _deferred_lock:  # a thread reading it at the same time waits for this import, not a second one
        module = sys.modules.get(name)  # the real one once imported, or while it imports (see the lock)
        if module is stand_in or module is None:
            sys.modules.pop(name, None)
            try:
                module = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, stand_in)
                raise
        stand_in.__dict__["_deferred_real"] = module
    return module


def defer_unused_imports(names: Sequence[str] = DEFERRED_MODULES) -> list[str]:
    """Put a `_DeferredModule` in place of each of `names` not imported yet; the names deferred.

    Only pure-Python modules are deferred (their spec's origin a `.py` file), never one already imported, so a
    version of mitmproxy or aioquic that uses one of them at import time just loads it then (the test suite checks
    on mitmproxy 11 and 12 that none is loaded by a start-up). Only for the proxy child's own process (`main`).
    """
    import importlib
    import importlib.util

    deferred = []
    for name in names:
        if name in sys.modules:
            continue
        parent_name, _, child = name.rpartition(".")
        try:
            parent = importlib.import_module(parent_name) if parent_name else None
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.loader is None or not str(spec.origin or "").endswith(".py"):
            continue
        stand_in = _DeferredModule(name)
        stand_in.__spec__ = spec
        stand_in.__loader__ = spec.loader
        stand_in.__file__ = spec.origin
        stand_in.__package__ = name if spec.submodule_search_locations is not None else parent_name
        if spec.submodule_search_locations is not None:
            stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = stand_in
        if parent is not None:
            setattr(parent, child, stand_in)
        deferred.append(name)
    return deferred


def skip_copying_plain_option_values() -> None:
    """Let mitmproxy read an option holding a string, number, bool or None without `copy.deepcopy`.

    Every `options.x` read goes through `_Option.current`, which deep-copies the value so that a caller cannot
    change a list in place; the HTTP layers read a few options per request (`body_size_limit`, ...), each through a
    `deepcopy` call that returns these values themselves anyway. Other values are still copied. Only for the proxy
    child's own process (`main`), like `skip_message_type_checks`; nothing changes when mitmproxy's option class
    does not look as expected.
    """
    from mitmproxy import optmanager

    option = getattr(optmanager, "_Option", None)
    unset = getattr(optmanager, "unset", None)
    stock = getattr(option, "current", None)
    if option is None or unset is None or stock is None or getattr(stock, "plain_values_uncopied", False):
        return

    def current(self: Any) -> Any:
        value = self._default if self.value is unset else self.value
        if type(value) in _PLAIN_OPTION_TYPES:
            return value
        return stock(self)

    current.plain_values_uncopied = True  # type: ignore[attr-defined]
    option.current = current


_PLAIN_OPTION_TYPES = frozenset({str, int, float, bool, type(None)})
"""Values `copy.deepcopy` returns as they are."""


PRELOADED_MODULES = ("mitmproxy.master", "mitmproxy.options", "mitmproxy.addons.core", "mitmproxy.addons.errorcheck",
                     "mitmproxy.addons.next_layer", "mitmproxy.addons.proxyserver", "mitmproxy.addons.tlsconfig",
                     "telemetry_audit.proxy.addon")
"""What every proxy imports, before its configuration is read (see `import_proxy_modules`)."""


def import_proxy_modules() -> None:
    """Import what every proxy needs before the configuration is read: the session spawns this process first
    and builds the configuration while the imports (most of a start-up) run."""
    import importlib

    for name in PRELOADED_MODULES:
        importlib.import_module(name)


def build_master(opts: options.Options, audit: TelemetryAudit | None = None, *, quiet: bool = True,
                 sealed: bool = False) -> Master:
    """A master with the proxy core and the telemetry-audit addon, nothing else.

    `sealed`: the proxy runs inside a sealed run's sandbox (tun mode) and also answers DNS and guards the way out
    (`proxy.synthetic_dns`, `proxy.sealed`), before the audit addon so that flows reach it already named.
    """
    from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, termlog
    from mitmproxy.master import Master

    from telemetry_audit.proxy.addon import TelemetryAudit
    from telemetry_audit.proxy.lean_addons import LeanAddonManager

    master = Master(opts)
    LeanAddonManager.install(master)
    if not quiet:  # as `Master(opts, with_termlog=True)` does, on the lean manager
        master._termlog_addon = termlog.TermLog()
        master.addons.add(master._termlog_addon)
    master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), own_ca_tls_config())
    if sealed:
        from telemetry_audit.proxy.sealed import SealedNetwork
        from telemetry_audit.proxy.synthetic_dns import SyntheticDNS

        resolver = SyntheticDNS()
        master.addons.add(resolver, SealedNetwork(resolver))
    master.addons.add(audit or TelemetryAudit(), errorcheck.ErrorCheck(repeat_errors_on_stderr=True))
    return master


def own_ca_tls_config() -> Any:
    """mitmproxy's TLS addon, loading the proxy's own CA once per confdir, without OpenSSL's RSA key check.

    The stock addon loads the CA whenever `confdir` is configured and again in `running` (a workaround for hosts
    that never configure it), and each load checks the RSA key's consistency: ~0.13 s of CPU a time, a
    quarter of a second of every `run`'s start-up. The key is the one `proxy.ca.ensure_ca` (or mitmproxy) wrote
    into the owner-only confdir, not foreign input, so the check buys nothing here. A `certs` or
    `cert_passphrase` option, or a key this cannot read, goes the stock way.
    """
    from mitmproxy import ctx
    from mitmproxy.addons import tlsconfig

    ca_options = {"certs", "confdir", "key_size", "cert_passphrase"}

    class OwnCaTlsConfig(tlsconfig.TlsConfig):
        name = "tlsconfig"

        def configure(self, updated: set[str]) -> None:
            if updated & ca_options and not ctx.options.certs and not ctx.options.cert_passphrase:
                try:
                    self.certstore = load_own_ca(os.path.expanduser(ctx.options.confdir), ctx.options.key_size)
                except (TypeError, ValueError, IndexError):  # encrypted or unreadable: the stock error messages
                    pass
                else:
                    if self.certstore.default_ca.has_expired():
                        logging.getLogger(tlsconfig.__name__).warning(
                            "The proxy's certificate authority has expired: delete the CA files in "
                            f"{ctx.options.confdir} and it is created anew on the next start.")
                    updated = updated - ca_options
            super().configure(updated)

        def running(self) -> None:
            if self.certstore is None:
                super().running()

    return OwnCaTlsConfig()


def load_own_ca(confdir: str, key_size: int) -> Any:
    """The `CertStore` of the CA in `confdir` (created first when missing), read as mitmproxy reads it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from mitmproxy import certs
    from mitmproxy.addons.tlsconfig import CONF_BASENAME

    folder = Path(confdir)
    ca_file = folder / f"{CONF_BASENAME}-ca.pem"
    if not ca_file.exists():
        certs.CertStore.create_store(folder, CONF_BASENAME, key_size)
    raw = ca_file.read_bytes()
    key = serialization.load_pem_private_key(raw, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")  # mitmproxy's own loading says what it makes of it
    chain = x509.load_pem_x509_certificates(raw)
    dhparams = certs.CertStore.load_dhparam(folder / f"{CONF_BASENAME}-dhparam.pem")
    chain_file = ca_file if len(chain) > 1 else None
    store: Any = certs.CertStore  # its signature differs between mitmproxy 11 and 12
    dummy_crl = getattr(certs, "dummy_crl", None)
    if dummy_crl is not None:  # mitmproxy 12 (Python 3.12+): the store also serves a CRL, as `from_files` makes it
        return store(key, certs.Cert(chain[0]), chain_file, dummy_crl(key, chain[0]), dhparams)
    return store(key, certs.Cert(chain[0]), chain_file, dhparams)


class ReadyAnnouncer:
    """Tells the supervisor where the proxy listens, once it does: one JSON line on standard output."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def running(self) -> None:
        from mitmproxy import ctx

        if self.stream.closed:
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = proxyserver.listen_addrs() if proxyserver else []
        host, port = addresses[0][:2] if addresses else ("", 0)
        self.stream.write(json.dumps({"host": host, "port": port, "pid": os.getpid()}) + "\n")
        self.stream.close()  # the supervisor stops reading after this line
        # Started: what start-up built stays for good, so later collections need not walk it (see `main`).
        gc.freeze()
        gc.enable()


def read_config(stream: TextIO) -> dict[str, Any]:
    """The session's configuration, handed over on standard input (never on the command line or on disk:
    it carries the audited process's environment)."""
    text = stream.read()
    if not text.strip():  # the supervisor went away before handing it over: never serve on defaults
        raise ValueError("no configuration on standard input")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the configuration on standard input is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError("the configuration on standard input must be a JSON object")
    return config


def report_own_errors() -> None:
    """Write the addon's errors to standard error (the session's `proxy.stderr`) when mitmproxy's own log is off.

    A request that fails closed is recorded in the audit log, but only the traceback says why; without this
    handler it went nowhere (mitmproxy's handler passes records to a term log that a quiet proxy does not have).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("telemetry-audit: %(message)s"))
    logging.getLogger("telemetry_audit").addHandler(handler)


async def serve(config: Mapping[str, Any]) -> int:
    from mitmproxy import exceptions, options

    from telemetry_audit.proxy.addon import TelemetryAudit, environment_from
    from telemetry_audit.proxy.handover import decode_policy

    opts = options.Options()
    verbose = bool(config.get("verbose"))
    handed = config.get("environment")
    try:
        policy = decode_policy(str(config["policy"])) if config.get("policy") else None
    except ValueError as e:
        print(f"telemetry-audit: {e}", file=sys.stderr)
        return EXIT_CONFIG
    audit = TelemetryAudit(environment=environment_from(handed) if handed is not None else None, policy=policy)
    sealed: Mapping[str, Any] = config.get("sealed") or {}
    master = build_master(opts, audit, quiet=not verbose, sealed=bool(sealed))
    # Standard output carries the ready line alone: everything else mitmproxy prints goes to standard error.
    ready = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    master.addons.add(ReadyAnnouncer(ready))
    values: dict[str, Any] = {}
    if sealed:
        # Every packet of the sandbox arrives here; QUIC stays plain UDP so that the sealed addon refuses it.
        values.update(mode=[f"tun:{sealed['tun']}"], http3=False,
                      taudit_tun_ready_file=sealed.get("tun_ready_file", ""), taudit_relay=sealed.get("relay", ""))
    elif config.get("upstream_proxy"):
        # Online behind the user's own (corporate) proxy: forward through it rather than around it.
        values.update(mode=[f"upstream:{config['upstream_proxy']}"])
    values.update(
        listen_host=config.get("listen_host", "127.0.0.1"),
        listen_port=int(config.get("listen_port", 8080)),
        confdir=config.get("confdir", "~/.telemetry-audit"),
        # Lazy: answer HTTPS locally without ever connecting upstream (offline collectors).
        connection_strategy="lazy",
    )
    values.update(dict(config.get("mitmproxy", {})))
    values.update(dict(config.get("options", {})))
    try:
        # One update, so each addon configures once (the policy loads once, the CA is read once).
        opts.update(**values)
    except exceptions.OptionsError as e:
        print(f"telemetry-audit: {e}", file=sys.stderr)
        return EXIT_CONFIG
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    parent_pid = int(config.get("parent_pid", 0))
    watcher = loop.create_task(_shutdown_when_orphaned(master, parent_pid)) if parent_pid else None
    await master.run()
    # Stopped: a late SIGTERM from the supervisor must not replace the exit status with a signal death.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    if watcher is not None:
        watcher.cancel()
    return EXIT_AUDIT_FAILED if audit.fatal_error else 0


async def _shutdown_when_orphaned(master: Master, parent_pid: int, interval: float = 1.0) -> None:
    """The proxy runs in its own session: if its supervisor dies without stopping it, stop (and flush) anyway."""
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != parent_pid:
            master.shutdown()
            return


def prepare_process() -> None:
    """What only the proxy child's own process does to mitmproxy: import less, check less, hook inline."""
    skip_default_addons_import()
    defer_unused_imports()
    import_proxy_modules()
    skip_message_type_checks()
    skip_copying_plain_option_values()
    from telemetry_audit.proxy.lean_addons import install_inline_hooks

    if not install_inline_hooks():
        logging.getLogger(__name__).warning("telemetry-audit: this mitmproxy does not fit the inline request hooks; "
                                            "using its own connection handler")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv:
        print(__doc__, file=sys.stderr)
        return EXIT_CONFIG
    # Start-up allocates a few hundred thousand objects that live as long as the process: collecting cycles
    # among them is wasted work (~7% of a start-up). Collection resumes once the proxy listens.
    gc.disable()
    prepare_process()
    try:
        config = read_config(sys.stdin)
    except ValueError as e:
        print(f"telemetry-audit: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.getLogger().setLevel(logging.INFO if config.get("verbose") else logging.WARNING)
    if not config.get("verbose"):
        report_own_errors()
    try:
        status = asyncio.run(serve(config))
    except KeyboardInterrupt:
        status = 130
    # Everything is flushed (the audit log's closing record, the store). Leave without the interpreter's own
    # teardown: in tun mode mitmproxy's Rust side crashes there now and then (SIGSEGV), which would read as a
    # proxy failure after a clean run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    raise SystemExit(main())
