"""Proxy benchmark: requests/s and added latency of the telemetry-audit proxy beside bare mitmdump.

Run from the project root (in the venv that has mitmproxy and the project):

    python benchmarks/bench_proxy.py [--requests N] [--concurrency N] [--repeat N] [--quick] [--json]

Sends ~1 KB JSON telemetry POSTs (Segment `track` to api.segment.io, PostHog
`batch` to us.i.posthog.com, ids and values varied per event) over keep-alive
connections, over HTTP (absolute-form requests to the proxy) and HTTPS
(CONNECT, then TLS to the proxy's certificate, which the client verifies
against the CA in a private temporary confdir), to:

1. a local asyncio HTTP/HTTPS server, no proxy: the direct baseline;
2. bare `mitmdump -q --set connection_strategy=lazy` with all its default
   addons and a tiny `-s` script answering every request itself with
   `http.Response.make(200, ...)`, so no upstream is measured;
3. the telemetry-audit proxy process (`telemetry_audit.proxy.server`, started
   through `start_proxy` exactly as `telemetry-audit proxy` does) with the
   built-in policy in offline mode, writing its audit log: the emulated
   collectors answer;
4. the same addon loaded into bare mitmdump
   (`-s addons/telemetry_audit.py --set taudit_offline=true`).

Each proxy phase has two parts. The load part: `--concurrency` client
processes, one keep-alive connection each, send `--requests` requests in all
as fast as answers come back: requests/s and p50/p99 under load. The latency
part: one connection sends `--latency-requests` requests one after another:
p50/p99 of an unloaded proxy; "added" is that minus the direct baseline's.
Each connection first sends `--warmup` requests that are not timed (TLS
handshake, certificate generation, imports on first use). The new-connection
part: `--concurrency` clients send `--new-connection-requests` requests in
all, each on a connection of its own (TCP connect, for HTTPS also CONNECT and
a TLS handshake, as a CLI that sends one event per run does): requests/s and
the proxy's CPU per request.

On a machine with 2+ CPUs the servers are pinned to the first CPU and the load
generator (this process and its clients) to the others with
`os.sched_setaffinity`, so the proxy gets one core and the clients cannot
steal it; `--no-pin` turns that off. The proxy's and the clients' CPU time are
reported to show the proxy, not the load generator, is the bottleneck.
Everything listens on 127.0.0.1 and nothing leaves the machine. Figures are
medians over `--repeat` runs; the proxies are restarted for every run.

`--instructions N` counts instead the instructions bare mitmdump and the
telemetry-audit proxy run per request (valgrind's callgrind, N sequential
keep-alive requests after a warm-up): on a machine shared with other work,
where req/s and even CPU time move by tens of percent from run to run, the
count moves by well under one. It leaves out cache misses, mispredicted
branches and the kernel, so it guides changes; the timed figures stay the
measure. `--stall` runs the no-stall scenario alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import ipaddress
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 20261122
BODY_BYTES = 1024
"""Each generated body is padded to about this many bytes of compact JSON."""
CORPUS_SIZE = 200
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0

DIRECT = "direct"
BARE = "mitmdump"
OURS = "telemetry-audit"
ADDON = "addon-in-mitmdump"
TARGETS = (DIRECT, BARE, OURS, ADDON)
TARGET_LABELS = {
    DIRECT: "direct (no proxy)",
    BARE: "bare mitmdump",
    OURS: "telemetry-audit proxy",
    ADDON: "addon in mitmdump",
}
SCHEMES = ("http", "https")

RESPONDER_SCRIPT = '''\
"""Bare-mitmdump responder: answer every request locally, so no upstream is measured."""
import json
import os

from mitmproxy import ctx, http


class Ready:
    def load(self, loader):
        loader.add_option("bench_ready_file", str, "", "Write the listening address here once ready.")

    def running(self):
        proxyserver = ctx.master.addons.get("proxyserver")
        addresses = proxyserver.listen_addrs() if proxyserver else []
        if ctx.options.bench_ready_file and addresses:
            host, port = addresses[0][:2]
            temp = ctx.options.bench_ready_file + ".tmp"
            with open(temp, "w") as stream:
                json.dump({"host": host, "port": port}, stream)
            os.replace(temp, ctx.options.bench_ready_file)


class Responder:
    def request(self, flow):
        flow.response = http.Response.make(200, b'{"success":true}', {"Content-Type": "application/json"})


addons = [Ready(), Responder()] if os.environ.get("BENCH_RESPOND", "1") == "1" else [Ready()]
'''


# --- corpus ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Telemetry:
    """One collector's endpoint and the bodies sent to it."""

    host: str
    path: str
    headers: dict[str, str]
    bodies: tuple[bytes, ...]


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _iso(rng: random.Random) -> str:
    return f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
           f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"


_COMMANDS = ("deploy", "print", "remove", "info", "invoke", "logs", "package", "dev", "version", "start", "status")
_FILLER = (("runtime", "nodejs20.x"), ("region", "eu-west-1"), ("provider", "aws"), ("shell", "zsh"),
           ("terminal", "iTerm.app"), ("package_manager", "npm"), ("node_version", "v20.11.1"),
           ("plugins", "serverless-offline,serverless-esbuild"), ("framework", "express"), ("arch", "arm64"),
           ("is_tty", True), ("color_depth", 24), ("memory_mb", 16384), ("cpu_count", 8))


def _pad(properties: dict[str, Any], size: int, rng: random.Random, encode: Callable[[], bytes]) -> bytes:
    """Add realistic properties until the body is about `size` bytes."""
    body = encode()
    index = 0
    while len(body) < size - 40:
        key, value = _FILLER[index % len(_FILLER)]
        properties[f"{key}_{index // len(_FILLER)}" if index >= len(_FILLER) else key] = value
        index += 1
        body = encode()
    if len(body) < size:
        properties["build_id"] = _s(rng, "0123456789abcdef", size - len(body) - len(',"build_id":""'))
        body = encode()
    return body


def _segment_track(rng: random.Random, write_key: str) -> bytes:
    """A Segment `track` call (HTTP tracking API, write key in the body)."""
    properties: dict[str, Any] = {
        "command": rng.choice(_COMMANDS), "duration_ms": rng.randint(10, 90_000), "success": rng.random() < 0.9,
        "cli_version": f"3.{rng.randint(0, 40)}.{rng.randint(0, 9)}", "ci": rng.random() < 0.2,
    }
    message: dict[str, Any] = {
        "userId": _s(rng, "0123456789abcdef", 32),
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event": rng.choice(("Command Run", "Command Succeeded", "Command Failed", "Project Created")),
        "properties": properties,
        "context": {"library": {"name": "analytics-node", "version": "6.2.0"},
                    "os": {"name": rng.choice(("linux", "darwin")), "version": f"6.{rng.randint(1, 18)}.0"},
                    "app": {"name": "example-cli", "version": properties["cli_version"]},
                    "locale": "en-US", "timezone": "Europe/Berlin"},
        "timestamp": _iso(rng),
        "messageId": f"node-next-{rng.getrandbits(40)}-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "integrations": {},
        "writeKey": write_key,
    }
    return _pad(properties, BODY_BYTES, rng,
                lambda: json.dumps(message, separators=(",", ":")).encode())


def _posthog_batch(rng: random.Random) -> bytes:
    """A PostHog `/batch/` call with one event, as posthog-node sends it."""
    distinct = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    properties: dict[str, Any] = {
        "$lib": "posthog-node", "$lib_version": "4.2.1", "$geoip_disable": True,
        "command": rng.choice(_COMMANDS), "duration_ms": rng.randint(10, 90_000),
        "cli_version": f"1.{rng.randint(0, 40)}.{rng.randint(0, 9)}", "os": rng.choice(("linux", "darwin")),
        "session_id": _s(rng, string.ascii_lowercase + string.digits, 26),
    }
    document = {
        "api_key": "phc_" + _s(rng, string.ascii_letters + string.digits, 43),
        "batch": [{"distinct_id": distinct, "event": rng.choice(("cli_command", "cli_error", "cli_success")),
                   "properties": properties, "type": "capture", "library": "posthog-node",
                   "library_version": "4.2.1", "timestamp": _iso(rng),
                   "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4))}],
        "sent_at": _iso(rng),
    }
    return _pad(properties, BODY_BYTES, rng,
                lambda: json.dumps(document, separators=(",", ":")).encode())


def make_corpus(size: int = CORPUS_SIZE, seed: int = SEED) -> tuple[Telemetry, ...]:
    """Segment and PostHog endpoints with `size` bodies each; deterministic, all allowed by the default policy."""
    rng = random.Random(seed)
    write_key = _s(rng, string.ascii_letters + string.digits, 32)
    # The write key goes in the body: sent as `Authorization: Basic` (as analytics-node does), the default
    # policy blocks it as a credential (`default.secrets`), and this benchmark measures the allow path.
    segment = Telemetry(
        "api.segment.io", "/v1/track",
        {"Content-Type": "application/json", "User-Agent": "analytics-node-next/latest"},
        tuple(_segment_track(rng, write_key) for _ in range(size)),
    )
    posthog = Telemetry(
        "us.i.posthog.com", "/batch/",
        {"Content-Type": "application/json", "User-Agent": "posthog-node/4.2.1"},
        tuple(_posthog_batch(rng) for _ in range(size)),
    )
    return segment, posthog


# --- servers ---------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A running server or proxy under test."""

    target: str
    host: str
    port: int
    """The proxy port, or for the direct server its plain HTTP port."""
    pid: int
    stop: Callable[[], None]
    tls_port: int = 0
    """The direct server's HTTPS port."""
    log_path: str = ""
    """The audit log, for the proxies that audit."""


@dataclass(frozen=True)
class Placement:
    """Which CPUs the servers and the load generator run on (empty: not pinned)."""

    server: frozenset[int] = frozenset()
    clients: frozenset[int] = frozenset()

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        if not pin or not hasattr(os, "sched_setaffinity"):
            return cls()
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls()
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def describe(self) -> str:
        if not self.server:
            return "not pinned"
        return f"server on CPU {_cpus(self.server)}, load generator on CPU {_cpus(self.clients)}"


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _pin(cpus: frozenset[int]) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


@contextmanager
def _pinned(cpus: frozenset[int]) -> Iterator[None]:
    """Run the block (and so start children, which inherit it) on `cpus`."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` (all its threads), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(ready_file: str, process: subprocess.Popen[bytes], stderr_path: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if os.path.exists(ready_file):
            with open(ready_file, encoding="utf-8") as stream:
                return dict(json.load(stream))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    _stop_process(process)
    message = Path(stderr_path).read_text("utf-8", "replace").strip()
    raise RuntimeError(f"{' '.join(map(str, process.args))} did not start:\n{message}")  # type: ignore[arg-type]


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_mitmdump(mitmdump: str, workdir: str, confdir: str, scripts: list[str], settings: dict[str, str],
                    target: str, log_path: str = "", respond: bool = True) -> Server:
    ready_file = os.path.join(workdir, f"{target}.ready.json")
    stderr_path = os.path.join(workdir, f"{target}.stderr")
    responder = os.path.join(workdir, "bench_responder.py")
    Path(responder).write_text(RESPONDER_SCRIPT, encoding="utf-8")
    command = [mitmdump, "-q", "--listen-host", "127.0.0.1", "--listen-port", "0", "-s", responder]
    for script in scripts:
        command += ["-s", script]
    command += ["--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
                "--set", f"bench_ready_file={ready_file}"]
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    env = {**os.environ, "BENCH_RESPOND": "1" if respond else "0"}
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                   start_new_session=True, env=env)
    ready = _wait_ready(ready_file, process, stderr_path)
    return Server(target, "127.0.0.1", int(ready["port"]), process.pid, lambda: _stop_process(process),
                  log_path=log_path)


def start_bare(mitmdump: str, workdir: str, confdir: str) -> Server:
    return _start_mitmdump(mitmdump, workdir, confdir, [], {}, BARE)


def start_addon(mitmdump: str, workdir: str, confdir: str) -> Server:
    log_path = os.path.join(workdir, f"{ADDON}.audit.jsonl")
    script = str(ROOT / "addons" / "telemetry_audit_addon.py")
    return _start_mitmdump(mitmdump, workdir, confdir, [script], {"taudit_offline": "true", "taudit_log": log_path},
                           ADDON, log_path, respond=False)


def start_ours(workdir: str, confdir: str) -> Server:
    from telemetry_audit.proxy.settings import ProxySettings
    from telemetry_audit.session import ProxySession

    run_dir = os.path.join(workdir, OURS)
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "audit.jsonl")
    session = ProxySession(ProxySettings(log=log_path), confdir=confdir, workdir=run_dir).start()
    assert session.process is not None
    return Server(OURS, session.host, session.port, session.process.pid, session.stop, log_path=log_path)


_DIRECT_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
                    b'{"success":true}')


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            writer.write(_DIRECT_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _direct_server_main(conn: Any, cert_file: str, key_file: str, cpus: frozenset[int]) -> None:
    _pin(cpus)

    async def serve() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        plain = await asyncio.start_server(_serve_connection, "127.0.0.1", 0)
        tls = await asyncio.start_server(_serve_connection, "127.0.0.1", 0, ssl=context)
        conn.send((plain.sockets[0].getsockname()[1], tls.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_direct(workdir: str, confdir: str, cpus: frozenset[int]) -> Server:
    """A minimal keep-alive HTTP/1.1 server on two ports (plain, TLS with a cert for 127.0.0.1 from our CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from mitmproxy.certs import CertStore

    store = CertStore.from_store(confdir, "mitmproxy", 2048)
    entry = store.get_cert("127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert_file, key_file = os.path.join(workdir, "direct-cert.pem"), os.path.join(workdir, "direct-key.pem")
    Path(cert_file).write_bytes(entry.cert.to_pem())
    Path(key_file).write_bytes(entry.privatekey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_direct_server_main, args=(child, cert_file, key_file, cpus), daemon=True)
    process.start()
    if not parent.poll(READY_TIMEOUT_S):
        process.terminate()
        raise RuntimeError("the direct server did not start")
    plain_port, tls_port = parent.recv()

    def stop() -> None:
        process.terminate()
        process.join(10)

    assert process.pid is not None
    return Server(DIRECT, "127.0.0.1", plain_port, process.pid, stop, tls_port=tls_port)


# --- load generator --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientJob:
    """What one client process sends, over one keep-alive connection."""

    host: str
    port: int
    via_proxy: bool
    scheme: str
    ca_file: str
    telemetry: Telemetry
    requests: int
    warmup: int
    max_seconds: float
    offset: int
    cpus: frozenset[int]
    fresh: bool = False
    """A new connection for every timed request."""


@dataclass
class ClientResult:
    started: float
    ended: float
    latencies_ms: list[float]
    errors: int
    cpu_seconds: float
    statuses: dict[int, int]
    failure: str = ""


def _connect(job: ClientJob) -> tuple[http.client.HTTPConnection, str]:
    """A connection and the request target to use on it."""
    telemetry = job.telemetry
    if job.scheme == "http":
        connection = http.client.HTTPConnection(job.host, job.port, timeout=REQUEST_TIMEOUT_S)
        target = f"http://{telemetry.host}{telemetry.path}" if job.via_proxy else telemetry.path
        return connection, target
    context = ssl.create_default_context(cafile=job.ca_file)
    connection = http.client.HTTPSConnection(job.host, job.port, timeout=REQUEST_TIMEOUT_S, context=context)
    if job.via_proxy:
        connection.set_tunnel(telemetry.host, 443)
    return connection, telemetry.path


def _send(connection: http.client.HTTPConnection, target: str, body: bytes, headers: dict[str, str]) -> int:
    connection.request("POST", target, body, headers)
    response = connection.getresponse()
    response.read()
    return response.status


def _client_main(job: ClientJob, barrier: Any, results: Any, index: int) -> None:
    _pin(job.cpus)
    telemetry = job.telemetry
    bodies = telemetry.bodies
    headers = dict(telemetry.headers)
    if not job.via_proxy:
        headers["Host"] = telemetry.host
    latencies = array("d")
    statuses: dict[int, int] = {}
    errors = 0
    started = ended = cpu = 0.0
    failure = ""
    try:
        connection, target = _connect(job)
        for i in range(job.warmup):
            _send(connection, target, bodies[(job.offset + i) % len(bodies)], headers)
    except Exception as e:  # reported, and the barrier still released so the other clients are not stuck
        failure = f"warm-up failed: {type(e).__name__}: {e}"
    try:
        barrier.wait(READY_TIMEOUT_S)
    except Exception:
        failure = failure or "barrier broken"
    if not failure:
        clock = time.perf_counter_ns
        cpu_before = sum(os.times()[:2])
        started = time.perf_counter()
        deadline = started + job.max_seconds
        for i in range(job.requests):
            body = bodies[(job.offset + job.warmup + i) % len(bodies)]
            t0 = clock()
            try:
                if job.fresh:
                    connection.close()
                    connection, target = _connect(job)
                status = _send(connection, target, body, headers)
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection, target = _connect(job)
                continue
            latencies.append((clock() - t0) / 1e6)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                errors += 1
            if time.perf_counter() > deadline:
                break
        ended = time.perf_counter()
        cpu = sum(os.times()[:2]) - cpu_before
        connection.close()
    results.put((index, ClientResult(started, ended, latencies.tolist(), errors, cpu, statuses, failure)))


@dataclass
class PhaseResult:
    """One timed phase against one server."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu: float | None
    """The server's CPU time during the phase, as a fraction of one core (1.0: one core saturated)."""
    server_cpu_ms: float | None
    """The server's CPU time per request in ms: unlike req/s, barely moved by other load on the machine."""
    client_cpu: float
    """All clients' CPU time during the phase, as a fraction of one core."""
    statuses: dict[int, int]
    sent: int
    """Requests sent including the untimed warm-up ones."""
    failures: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100); NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def run_phase(server: Server, scheme: str, ca_file: str, corpus: Sequence[Telemetry], *, requests: int,
              concurrency: int, warmup: int, max_seconds: float, cpus: frozenset[int],
              fresh: bool = False) -> PhaseResult:
    """`requests` POSTs from `concurrency` clients, each on one keep-alive connection (or, with `fresh`, a new
    connection per request); the clients alternate collectors."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(concurrency + 1)
    results = context.Queue()
    via_proxy = server.target != DIRECT
    port = server.tls_port if scheme == "https" and not via_proxy else server.port
    share, extra = divmod(requests, concurrency)
    processes = []
    for index in range(concurrency):
        job = ClientJob(server.host, port, via_proxy, scheme, ca_file, corpus[index % len(corpus)],
                        share + (index < extra), warmup, max_seconds, index * 997, cpus, fresh)
        process = context.Process(target=_client_main, args=(job, barrier, results, index), daemon=True)
        process.start()
        processes.append(process)
    barrier.wait(READY_TIMEOUT_S + 5)
    cpu_before = _cpu_seconds(server.pid)
    collected: list[ClientResult] = []
    for _ in processes:
        collected.append(results.get(timeout=max_seconds + READY_TIMEOUT_S + REQUEST_TIMEOUT_S)[1])
    cpu_after = _cpu_seconds(server.pid)
    for process in processes:
        process.join(10)

    timed = [r for r in collected if not r.failure]
    latencies = [value for r in timed for value in r.latencies_ms]
    seconds = (max(r.ended for r in timed) - min(r.started for r in timed)) if timed else 0.0
    done = len(latencies)
    statuses: dict[int, int] = {}
    for r in timed:
        for status, count in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    server_cpu = server_cpu_ms = None
    if cpu_before is not None and cpu_after is not None and seconds > 0 and done:
        server_cpu = (cpu_after - cpu_before) / seconds
        server_cpu_ms = (cpu_after - cpu_before) * 1000 / done
    return PhaseResult(
        requests=done,
        errors=sum(r.errors for r in collected) + sum(1 for r in collected if r.failure),
        seconds=seconds,
        rps=done / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        mean_ms=statistics.fmean(latencies) if latencies else math.nan,
        server_cpu=server_cpu,
        server_cpu_ms=server_cpu_ms,
        client_cpu=sum(r.cpu_seconds for r in timed) / seconds if seconds > 0 else 0.0,
        statuses=statuses,
        sent=done + sum(r.errors for r in timed) + sum(1 for r in collected if not r.failure) * warmup,
        failures=[r.failure for r in collected if r.failure],
    )


# --- the benchmark ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    requests: int = 3000
    concurrency: int = 8
    latency_requests: int = 500
    warmup: int = 10
    new_connection_requests: int = 400
    repeat: int = 3
    schemes: tuple[str, ...] = SCHEMES
    targets: tuple[str, ...] = TARGETS
    max_seconds: float = 120.0
    pin: bool = True
    mitmdump: str = str(Path(sys.executable).with_name("mitmdump"))


@dataclass
class Measurement:
    """One target over one scheme in one run: the load phase and the sequential latency phase."""

    run: int
    target: str
    scheme: str
    load: PhaseResult
    latency: PhaseResult
    fresh: PhaseResult | None
    """New connection per request; None when `new_connection_requests` is 0."""
    audited: int | None = None
    """Request records in the audit log (telemetry-audit targets), counted once per run over both schemes."""


def _count_audited(log_path: str) -> int:
    from telemetry_audit.proxy.auditlog import read_log

    records, _ = read_log(log_path)
    return len(records)


def _start(target: str, config: Config, workdir: str, confdir: str, placement: Placement) -> Server:
    with _pinned(placement.server):
        if target == DIRECT:
            return start_direct(workdir, confdir, placement.server)
        if target == BARE:
            return start_bare(config.mitmdump, workdir, confdir)
        if target == OURS:
            return start_ours(workdir, confdir)
        if target == ADDON:
            return start_addon(config.mitmdump, workdir, confdir)
    raise ValueError(f"unknown target {target!r}")


def run_benchmark(config: Config, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every target over every scheme `config.repeat` times; return the figures (see `summarize`)."""
    from telemetry_audit.proxy.ca import CA_CERT_NAME, ensure_ca

    say = progress or (lambda message: None)
    placement = Placement.choose(config.pin)
    corpus = make_corpus()
    original_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    workdir = tempfile.mkdtemp(prefix="bench-proxy-")
    measurements: list[Measurement] = []
    try:
        _pin(placement.clients)
        confdir = os.path.join(workdir, "confdir")
        ensure_ca(confdir)
        ca_file = os.path.join(confdir, CA_CERT_NAME)
        for run in range(config.repeat):
            for target in config.targets:
                say(f"run {run + 1}/{config.repeat}: {TARGET_LABELS[target]}")
                run_dir = os.path.join(workdir, f"run{run}-{target}")
                os.makedirs(run_dir)
                server = _start(target, config, run_dir, confdir, placement)
                try:
                    in_run: list[Measurement] = []
                    for scheme in config.schemes:
                        phases = [run_phase(server, scheme, ca_file, corpus, requests=requests,
                                            concurrency=concurrency, warmup=config.warmup,
                                            max_seconds=config.max_seconds, cpus=placement.clients, fresh=fresh)
                                  if requests else None
                                  for requests, concurrency, fresh in (
                                      (config.requests, config.concurrency, False),
                                      (config.latency_requests, 1, False),
                                      (config.new_connection_requests, config.concurrency, True))]
                        load, latency, fresh_phase = phases
                        assert load is not None and latency is not None
                        in_run.append(Measurement(run, target, scheme, load, latency, fresh_phase))
                finally:
                    server.stop()
                if server.log_path:
                    in_run[0].audited = _count_audited(server.log_path)
                measurements.extend(in_run)
    finally:
        if original_affinity is not None:
            os.sched_setaffinity(0, original_affinity)
        shutil.rmtree(workdir, ignore_errors=True)
    return summarize(config, placement, measurements)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(config: Config, placement: Placement, measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Medians per (scheme, target), added latency against the direct baseline, and ratios against bare mitmdump."""
    import mitmproxy.version

    sizes = [len(body) for telemetry in make_corpus(20) for body in telemetry.bodies]
    rows: list[dict[str, Any]] = []
    for scheme in config.schemes:
        for target in config.targets:
            mine = [m for m in measurements if m.target == target and m.scheme == scheme]
            if not mine:
                continue
            rows.append({
                "scheme": scheme,
                "target": target,
                "label": TARGET_LABELS[target],
                "rps": _median([m.load.rps for m in mine]),
                "rps_runs": [round(m.load.rps, 1) for m in mine],
                "load_p50_ms": _median([m.load.p50_ms for m in mine]),
                "load_p99_ms": _median([m.load.p99_ms for m in mine]),
                "p50_ms": _median([m.latency.p50_ms for m in mine]),
                "p99_ms": _median([m.latency.p99_ms for m in mine]),
                "server_cpu": _median([m.load.server_cpu for m in mine]),
                "server_cpu_ms": _median([m.load.server_cpu_ms for m in mine]),
                "client_cpu": _median([m.load.client_cpu for m in mine]),
                "new_connection_rps": _median([m.fresh.rps if m.fresh else None for m in mine]),
                "new_connection_p50_ms": _median([m.fresh.p50_ms if m.fresh else None for m in mine]),
                "new_connection_cpu_ms": _median([m.fresh.server_cpu_ms if m.fresh else None for m in mine]),
                "requests": sum(p.requests for m in mine for p in _phases(m)),
                "errors": sum(p.errors for m in mine for p in _phases(m)),
                "statuses": _merge([p.statuses for m in mine for p in _phases(m)]),
            })
    for row in rows:
        direct = next((r for r in rows if r["scheme"] == row["scheme"] and r["target"] == DIRECT), None)
        bare = next((r for r in rows if r["scheme"] == row["scheme"] and r["target"] == BARE), None)
        for q in ("p50", "p99"):
            row[f"added_{q}_ms"] = (row[f"{q}_ms"] - direct[f"{q}_ms"]
                                    if direct and row["target"] != DIRECT and row[f"{q}_ms"] is not None else None)
        for key, ratio_key in (("rps", "rps_vs_bare"), ("added_p50_ms", "added_p50_vs_bare"),
                               ("server_cpu_ms", "cpu_ms_vs_bare")):
            row[ratio_key] = _ratio(row[key], bare[key]) if bare is not None and row["target"] != DIRECT else None
    audits = []
    for m in measurements:
        if m.audited is not None:
            same_run = [x for x in measurements if x.run == m.run and x.target == m.target]
            audits.append({"run": m.run, "target": m.target, "audited": m.audited,
                           "sent": sum(p.sent for x in same_run for p in _phases(x))})
    return {
        "config": {**asdict(config), "schemes": list(config.schemes), "targets": list(config.targets)},
        "environment": {
            "python": sys.version.split()[0],
            "mitmproxy": mitmproxy.version.VERSION,
            "cpus": os.cpu_count(),
            "placement": placement.describe(),
            "body_bytes": [min(sizes), max(sizes)],
        },
        "rows": rows,
        "audits": audits,
        "runs": [asdict(m) for m in measurements],
    }


def _phases(measurement: Measurement) -> list[PhaseResult]:
    return [p for p in (measurement.load, measurement.latency, measurement.fresh) if p is not None]


def _merge(counters: Sequence[dict[int, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counter in counters:
        for status, count in counter.items():
            merged[str(status)] = merged.get(str(status), 0) + count
    return merged


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_report(figures: dict[str, Any]) -> str:
    config, env = figures["config"], figures["environment"]
    lines = [
        f"Proxy benchmark: ~{BODY_BYTES} B JSON telemetry POSTs (Segment track, PostHog batch), keep-alive, "
        f"127.0.0.1 only",
        f"Python {env['python']}, mitmproxy {env['mitmproxy']}, {env['cpus']} CPUs, {env['placement']}",
        f"load: {config['requests']} requests over {config['concurrency']} connections; latency: "
        f"{config['latency_requests']} sequential requests on 1 connection; median of {config['repeat']} run(s)",
        "",
        f"{'scheme':<6} {'target':<22} {'req/s':>8} {'load p50':>9} {'load p99':>9} {'p50':>7} {'p99':>7} "
        f"{'+p50':>7} {'+p99':>7} {'srv cpu':>8} {'cpu/req':>8} {'cli cpu':>8} {'vs bare':>8} "
        f"{'conn/s':>7} {'cpu/conn':>8} {'errors':>6}",
    ]
    for row in figures["rows"]:
        lines.append(
            f"{row['scheme']:<6} {row['label']:<22} {_fmt(row['rps'], '.0f'):>8} "
            f"{_fmt(row['load_p50_ms']):>9} {_fmt(row['load_p99_ms']):>9} {_fmt(row['p50_ms']):>7} "
            f"{_fmt(row['p99_ms']):>7} {_fmt(row['added_p50_ms']):>7} {_fmt(row['added_p99_ms']):>7} "
            f"{_fmt(None if row['server_cpu'] is None else row['server_cpu'] * 100, '.0f', '%'):>8} "
            f"{_fmt(row['server_cpu_ms']):>8} "
            f"{_fmt(row['client_cpu'] * 100, '.0f', '%'):>8} {_fmt(row['rps_vs_bare'], '.2f', 'x'):>8} "
            f"{_fmt(row['new_connection_rps'], '.0f'):>7} {_fmt(row['new_connection_cpu_ms']):>8} {row['errors']:>6}"
        )
    lines += ["", "latencies in ms; p50/p99: sequential requests, one connection; +p50/+p99: added over the "
                  "direct baseline;", "load p50/p99: under the load phase; srv/cli cpu: share of one core during it; "
              "cpu/req: server CPU ms per request (robust to other load on the machine); vs bare: req/s ratio;",
              "conn/s, cpu/conn: req/s and server CPU ms per request with a new connection for each request"]
    for scheme in config["schemes"]:
        rows = {r["target"]: r for r in figures["rows"] if r["scheme"] == scheme}
        bare = rows.get(BARE)
        for target in (OURS, ADDON):
            row = rows.get(target)
            if bare and row:
                lines.append(
                    f"{scheme}: {TARGET_LABELS[target]} / bare mitmdump: {_fmt(row['rps_vs_bare'], '.2f', 'x')} "
                    f"req/s (runs {row['rps_runs']} vs {bare['rps_runs']}), added p50 "
                    f"{_fmt(row['added_p50_ms'])} vs {_fmt(bare['added_p50_ms'])} ms, added p99 "
                    f"{_fmt(row['added_p99_ms'])} vs {_fmt(bare['added_p99_ms'])} ms, CPU/request "
                    f"{_fmt(row['cpu_ms_vs_bare'], '.2f', 'x')}, new connections "
                    f"{_fmt(_ratio(row['new_connection_rps'], bare['new_connection_rps']), '.2f', 'x')} req/s"
                )
    for audit in figures["audits"]:
        lines.append(f"run {audit['run'] + 1} {TARGET_LABELS[audit['target']]}: audit log has {audit['audited']} "
                     f"request records for {audit['sent']} requests sent")
    return "\n".join(lines)


# --- no flow waits on another's audit ------------------------------------------------------------------------


def stall_body(paths: int = 95_000) -> bytes:
    """About 4 MB of PostHog batch whose every event carries a home path and an e-mail (95k findings)."""
    events = [{"event": "x", "distinct_id": f"{i // 2}",
               "properties": {("c" if i % 2 else "e"): (f"/home/a/{i}" if i % 2 else f"u{i}@x.io")}}
              for i in range(paths)]
    return json.dumps({"api_key": "phc_bench", "batch": events}, separators=(",", ":")).encode()


SLOW_SMALL_SECONDS = 0.25
"""Small requests slower than this are listed with when they were sent (seconds after the large one started)."""


def stall_scenario(host: str, port: int, *, interval: float = 0.1, body: bytes | None = None) -> dict[str, Any]:
    """Send the large body once; meanwhile a small telemetry request every `interval` s. Latencies in seconds.

    `slow_small` lists (sent at, latency) of the small requests slower than `SLOW_SMALL_SECONDS`, to tell which
    phase of the large request's life (upload, audit, acting) held them up.
    """
    large = body if body is not None else stall_body()

    def post(path_host: str, path: str, payload: bytes, timeout: float) -> tuple[int, float]:
        started = time.perf_counter()
        request = (f"POST http://{path_host}{path} HTTP/1.1\r\nHost: {path_host}\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(request + payload)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
        return status, time.perf_counter() - started

    outcome: dict[str, Any] = {}

    def send_large() -> None:
        outcome["large_status"], outcome["large_seconds"] = post("us.i.posthog.com", "/batch/", large, 600)

    sender = threading.Thread(target=send_large)
    began = time.perf_counter()
    sender.start()
    small: list[tuple[int, float]] = []
    slow: list[tuple[float, float]] = []
    while sender.is_alive():
        sent = time.perf_counter() - began
        small.append(post("api.segment.io", "/v1/track", b'{"type":"track","event":"tick","userId":"u"}', 60))
        if small[-1][1] > SLOW_SMALL_SECONDS:
            slow.append((round(sent, 2), round(small[-1][1], 3)))
        time.sleep(interval)
    sender.join()
    latencies = sorted(seconds for _, seconds in small)
    outcome.update(small_requests=len(small), small_answered=sum(1 for code, _ in small if code == 200),
                   worst_small_seconds=latencies[-1] if latencies else None,
                   median_small_seconds=latencies[len(latencies) // 2] if latencies else None,
                   p99_small_seconds=percentile(latencies, 99) if latencies else None,
                   over_half_second=sum(1 for seconds in latencies if seconds > 0.5),
                   large_bytes=len(large),
                   slow_small=slow)
    return outcome


def run_stall(confdir: str) -> dict[str, Any]:
    """The stall scenario against the telemetry-audit proxy (offline, default policy)."""
    from telemetry_audit.proxy.settings import ProxySettings
    from telemetry_audit.session import ProxySession

    workdir = tempfile.mkdtemp(prefix="bench-stall-")
    try:
        with ProxySession(ProxySettings(), confdir=confdir, workdir=workdir, audited_env={}) as session:
            return stall_scenario(session.host, session.port)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- instructions per request (callgrind): steady on a machine shared with other work -------------------------

CALLGRIND_READY_TIMEOUT_S = 600.0
"""Start-up under valgrind is some fifty times slower."""
CALLGRIND_WARMUP = 20


def _callgrind(out_file: str) -> list[str]:
    """valgrind counting nothing until told (`callgrind_control -i on`): only the measured requests count."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}"]


def _start_under_callgrind(target: str, mitmdump: str, workdir: str, confdir: str,
                           out_file: str) -> tuple[subprocess.Popen[bytes], int]:
    """Bare mitmdump with its responder, or the telemetry-audit proxy child as `ProxySession` starts it."""
    stderr = open(os.path.join(workdir, f"{target}.callgrind.stderr"), "wb")  # noqa: SIM115 (the child keeps it)
    if target == BARE:
        ready_file = os.path.join(workdir, "bare.callgrind.ready.json")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ready_file)  # the previous scheme's
        responder = os.path.join(workdir, "bench_responder.py")
        Path(responder).write_text(RESPONDER_SCRIPT, encoding="utf-8")
        process = subprocess.Popen(
            _callgrind(out_file) + [mitmdump, "-q", "--listen-host", "127.0.0.1", "--listen-port", "0", "-s",
                                    responder, "--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
                                    "--set", f"bench_ready_file={ready_file}"],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + CALLGRIND_READY_TIMEOUT_S
        while not os.path.exists(ready_file):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop_process(process)
                raise RuntimeError(f"mitmdump under valgrind did not start (see {stderr.name})")
            time.sleep(0.2)
        with open(ready_file, encoding="utf-8") as stream:
            return process, int(json.load(stream)["port"])
    from telemetry_audit.proxy.settings import ProxySettings
    from telemetry_audit.session import ProxySession

    session = ProxySession(ProxySettings(log=os.path.join(workdir, "callgrind.audit.jsonl")), confdir=confdir,
                           workdir=workdir).prepare()
    process = subprocess.Popen(_callgrind(out_file) + [sys.executable, "-P", "-m", "telemetry_audit.proxy.server"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(session.config(supervised=False)).encode())
    process.stdin.close()
    line = process.stdout.readline()  # the ready line
    if not line:
        _stop_process(process)
        raise RuntimeError(f"the proxy under valgrind did not start (see {stderr.name})")
    return process, int(json.loads(line)["port"])


def instructions_per_request(target: str, scheme: str, requests: int, *, mitmdump: str, workdir: str,
                             confdir: str, ca_file: str, corpus: Sequence[Telemetry]) -> float:
    """Instructions the server runs per request (callgrind), over `requests` sequential keep-alive requests that
    alternate Segment and PostHog on two connections, after `CALLGRIND_WARMUP` uncounted ones.

    Unlike req/s and CPU time, the count barely moves with other work on the machine; it does not see cache
    misses, branch mispredictions nor the kernel, so it is a guide beside the timed figures, not their substitute.
    """
    out_file = os.path.join(workdir, f"{target}-{scheme}.callgrind.out")
    process, port = _start_under_callgrind(target, mitmdump, workdir, confdir, out_file)
    try:
        connections = []
        for telemetry in corpus[:2]:
            job = ClientJob("127.0.0.1", port, True, scheme, ca_file, telemetry, 0, 0, 0.0, 0, frozenset())
            connection, path = _connect(job)
            connection.timeout = CALLGRIND_READY_TIMEOUT_S
            connections.append((connection, path, telemetry))

        def send(k: int) -> None:
            connection, path, telemetry = connections[k % len(connections)]
            status = _send(connection, path, telemetry.bodies[k % len(telemetry.bodies)], dict(telemetry.headers))
            if status != 200:
                raise RuntimeError(f"{target} answered {status}")

        for k in range(CALLGRIND_WARMUP):
            send(k)
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
        for k in range(requests):
            send(CALLGRIND_WARMUP + k)
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
        for connection, _, _ in connections:
            connection.close()
    finally:
        process.terminate()
        try:
            process.wait(CALLGRIND_READY_TIMEOUT_S)  # callgrind writes its counts as the process ends
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    total = 0
    for path in Path(workdir).glob(f"{target}-{scheme}.callgrind.out*"):
        for line in path.read_text("utf-8", "replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    if not total:
        raise RuntimeError(f"callgrind counted nothing for {target} ({scheme})")
    return total / requests


def run_instructions(requests: int, schemes: Sequence[str], mitmdump: str, *, targets: Sequence[str] = (BARE, OURS),
                     keep: str = "") -> dict[str, Any]:
    """Instructions per request of bare mitmdump and the telemetry-audit proxy (or only `targets` of them), for each
    scheme. `keep`: a directory to copy callgrind's files into, for `callgrind_annotate`."""
    from telemetry_audit.proxy.ca import CA_CERT_NAME, ensure_ca

    workdir = tempfile.mkdtemp(prefix="bench-callgrind-")
    try:
        confdir = os.path.join(workdir, "confdir")
        ensure_ca(confdir)
        corpus = make_corpus()
        figures: dict[str, Any] = {"requests": requests}
        for scheme in schemes:
            counts = {target: instructions_per_request(target, scheme, requests, mitmdump=mitmdump, workdir=workdir,
                                                       confdir=confdir, ca_file=os.path.join(confdir, CA_CERT_NAME),
                                                       corpus=corpus)
                      for target in (BARE, OURS) if target in targets}
            figures[scheme] = {}
            if BARE in counts:
                figures[scheme]["mitmdump_instructions"] = round(counts[BARE])
            if OURS in counts:
                figures[scheme]["telemetry_audit_instructions"] = round(counts[OURS])
            if len(counts) == 2:
                figures[scheme]["mitmdump_over_ours"] = round(counts[BARE] / counts[OURS], 3)
        if keep:
            os.makedirs(keep, exist_ok=True)
            for path in Path(workdir).glob("*.callgrind.out*"):
                shutil.copy(path, keep)
        return figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=Config.requests,
                        help=f"requests in each load phase (default {Config.requests})")
    parser.add_argument("--concurrency", type=int, default=Config.concurrency,
                        help=f"client connections in each load phase (default {Config.concurrency})")
    parser.add_argument("--latency-requests", type=int, default=Config.latency_requests,
                        help=f"sequential requests in each latency phase (default {Config.latency_requests})")
    parser.add_argument("--warmup", type=int, default=Config.warmup,
                        help=f"untimed requests per connection first (default {Config.warmup})")
    parser.add_argument("--new-connection-requests", type=int, default=Config.new_connection_requests,
                        help="requests with a new connection each, per scheme (default "
                             f"{Config.new_connection_requests}; 0: skip)")
    parser.add_argument("--repeat", type=int, default=Config.repeat, help="runs; medians are reported")
    parser.add_argument("--scheme", action="append", choices=SCHEMES, help="only this scheme (repeatable)")
    parser.add_argument("--target", action="append", choices=TARGETS,
                        help="only this target (repeatable; the direct baseline is always included)")
    parser.add_argument("--max-seconds", type=float, default=Config.max_seconds,
                        help="stop a phase after this long even if requests are left")
    parser.add_argument("--mitmdump", default=Config.mitmdump, help="the mitmdump to compare with")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and clients to CPUs")
    parser.add_argument("--quick", action="store_true",
                        help="500 requests, 4 connections, 100 sequential, 100 on new connections, 1 run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--stall", action="store_true",
                        help="only the no-stall scenario: a ~4 MB body of 95k paths and e-mails is audited while a "
                             "small telemetry request goes every 100 ms; prints the worst small-request latency")
    parser.add_argument("--instructions", type=int, metavar="N", default=0,
                        help="only count the server's instructions per request under valgrind's callgrind (N "
                             "sequential requests each; steady on a busy machine, unlike req/s); needs valgrind")
    parser.add_argument("--callgrind-dir", metavar="DIR", default="",
                        help="with --instructions: keep callgrind's files in DIR (for callgrind_annotate)")
    args = parser.parse_args(argv)
    if args.instructions:
        if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
            parser.error("--instructions needs valgrind (callgrind_control) on PATH")
        targets = tuple(t for t in (BARE, OURS) if not args.target or t in args.target)
        print(json.dumps(run_instructions(args.instructions, tuple(args.scheme or SCHEMES), args.mitmdump,
                                          targets=targets, keep=args.callgrind_dir), indent=2))
        return
    if args.stall:
        confdir = tempfile.mkdtemp(prefix="bench-stall-ca-")
        try:
            figures = run_stall(confdir)
        finally:
            shutil.rmtree(confdir, ignore_errors=True)
        print(json.dumps(figures, indent=2))
        return
    requests, concurrency, latency_requests, new_connection_requests, repeat = (
        args.requests, args.concurrency, args.latency_requests, args.new_connection_requests, args.repeat)
    if args.quick:
        requests, concurrency, latency_requests, new_connection_requests, repeat = 500, 4, 100, 100, 1
    targets = tuple(t for t in TARGETS if t == DIRECT or not args.target or t in args.target)
    config = Config(requests=requests, concurrency=concurrency, latency_requests=latency_requests,
                    warmup=args.warmup, new_connection_requests=new_connection_requests, repeat=repeat,
                    schemes=tuple(args.scheme or SCHEMES), targets=targets,
                    max_seconds=args.max_seconds, pin=not args.no_pin, mitmdump=args.mitmdump)
    if (config.requests < config.concurrency or min(config.concurrency, config.latency_requests, config.repeat) < 1
            or config.new_connection_requests < 0):
        parser.error("need --requests >= --concurrency >= 1, --latency-requests >= 1, --repeat >= 1 and "
                     "--new-connection-requests >= 0")
    if BARE in targets or ADDON in targets:
        if not os.path.exists(config.mitmdump):
            parser.error(f"mitmdump not found at {config.mitmdump} (use --mitmdump)")
    figures = run_benchmark(config, progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps(figures, indent=2) if args.json else format_report(figures))


if __name__ == "__main__":
    main()
