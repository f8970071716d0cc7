"""The supervisor inside a sealed run (see `inside`): `python -S -P .../sandbox/__main__.py SPEC_FD PROXY_STDERR
STARTED_FD` as the launcher starts it, or `python -m telemetry_audit.sandbox SPEC_FD PROXY_STDERR`.

Its first act is to spawn the proxy (`proxy_start`, which imports only `os`), the longest part of a sealed start;
then it waits for its spec, and only then imports the rest (while the proxy still imports, but no longer beside
`run` loading its policy: on two cores, three processes importing at once slowed the proxy). Started as a file
under `-S` (no `site`, no install finder: a few tens of milliseconds sooner), it puts the package's root on the
path itself; the supervisor needs the standard library only, while the proxy it spawns starts with `site` as
usual.
"""

from __future__ import annotations

import os
import sys

if not __package__:  # started as a file: this file is <root>/telemetry_audit/sandbox/__main__.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

args = sys.argv[1:]
if len(args) == 3 and args[2].isdigit():  # STARTED_FD: tell the launcher the sandbox exists (see launcher.wait)
    try:
        os.write(int(args[2]), b"1")
    except BrokenPipeError:  # the launcher has ended this sandbox already (`run` ended before its command)
        os._exit(2)
    os.close(int(args[2]))
    args = args[:2]

from telemetry_audit.sandbox.proxy_start import spawn_proxy  # noqa: E402 - after the path is known

proxy = None
if len(args) == 2 and args[0].isdigit():
    os.set_inheritable(int(args[0]), False)  # the spec is the supervisor's alone (it holds the environment)
    proxy = spawn_proxy(args[1])

spec_text = None
if proxy is not None:
    # The spec comes once `run` has loaded its policy, while the proxy imports. Until then this process only waits:
    # importing the rest of the supervisor now would take CPU from the proxy (and `run`) on a machine with two
    # cores, so it imports once the spec is here. Signals are handled as `inside.main` does meanwhile.
    import signal  # noqa: E402 - imported by proxy_start already

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    chunks: list[bytes] = []
    while chunk := os.read(int(args[0]), 65536):
        chunks.append(chunk)
    os.close(int(args[0]))
    spec_text = b"".join(chunks).decode("utf-8")

from telemetry_audit.sandbox.inside import main  # noqa: E402 - imports once the spec is here

status = main(args, proxy=proxy, spec_text=spec_text)
# The result file is written and closed: leave without the interpreter's teardown (it held up the end of every
# sealed run by a few tens of milliseconds); as PID 1 of the namespace, whatever is left ends with us.
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
