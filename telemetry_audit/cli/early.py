"""`run` starts its proxy before the rest of the CLI is imported or its arguments are parsed.

The proxy child's start-up (importing mitmproxy) is most of what `run` adds to a command, and it does not depend on
the arguments: the child reads its configuration only once it has imported everything. So `main` spawns it first
(sealed: the sandbox, whose supervisor spawns it first), from a quick look at the command line, `run` and its
`--seal`, and only then imports the commands and parses. `cmd_run` adopts what was started when the parsed options
and the seal probe agree (they nearly always do); otherwise, and whenever the CLI ends without adopting it (a usage
error, `--help`), it is ended. Either way nothing can have run: the audited command starts only after the proxy
has its configuration, which only `cmd_run` hands over.

This module imports nothing of the CLI, the core or the session at the top: it runs before them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

SEAL_DEFAULT = "auto"
"""`run --seal`'s default (`cli.run` declares the option)."""


class EarlyStart:
    """What `main` started before parsing: a private working directory and in it the proxy child (unsealed) or the
    sandbox (sealed)."""

    def __init__(self, workdir: str, seal: str, support: Any = None, process: Any = None, sandbox: Any = None) -> None:
        self.workdir = workdir
        self.seal = seal
        """The `--seal` value it was started for."""
        self.support = support
        """The seal probe's verdict it was started on (`SealSupport`; None for `--seal off`)."""
        self._process = process
        self._sandbox = sandbox
        self._adopted = False

    def adopt(self, sealed: bool) -> Any:
        """Take the working directory (the caller removes it) and what was started if it is what the run needs:
        the sandbox (`sealed`) or the proxy child; None otherwise (then whatever was started is ended here)."""
        self._adopted = True
        process, sandbox = self._process, self._sandbox
        self._process = self._sandbox = None
        if sealed and sandbox is not None:
            return sandbox
        if not sealed and process is not None:
            return process
        _end(process, sandbox)
        return None

    def discard(self) -> None:
        """End what was not adopted, and remove the working directory unless it was."""
        process, sandbox = self._process, self._sandbox
        self._process = self._sandbox = None
        _end(process, sandbox)
        if not self._adopted:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _end(process: Any, sandbox: Any) -> None:
    if sandbox is not None:
        sandbox.abort()
    if process is not None:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def seal_requested(argv: Sequence[str]) -> str | None:
    """The `--seal` value of a `run` command line (the default when it has none), or None when `argv` is not
    `run` or asks for help.

    A quick look, not argparse: only `--seal VALUE` and `--seal=VALUE` before `--` count. A command line it reads
    otherwise than argparse does (an abbreviated `--se off`, options after the command) only costs the early
    start: `cmd_run` ends what was started and starts what the parsed options say.
    """
    if not argv or argv[0] != "run":
        return None
    seal = SEAL_DEFAULT
    words = list(argv[1:])
    for index, word in enumerate(words):
        if word == "--":
            break
        if word in ("-h", "--help"):
            return None
        if word == "--seal" and index + 1 < len(words):
            seal = words[index + 1]
        elif word.startswith("--seal="):
            seal = word.split("=", 1)[1]
    return seal if seal in ("auto", "on", "off") else None


def start_early(argv: Sequence[str]) -> EarlyStart | None:
    """Start `run`'s proxy (or sandbox) now, if `argv` is a `run` command line; None otherwise."""
    seal = seal_requested(argv)
    if seal is None:
        return None
    support = None
    if seal != "off":
        from telemetry_audit.sandbox.probe import probe_seal

        support = probe_seal()
        if not support.ok and seal == "on":
            return None  # a usage error once parsed
    workdir = tempfile.mkdtemp(prefix="telemetry-audit-")
    try:
        if support is not None and support.ok:
            from telemetry_audit.sandbox.spawn import spawn_supervisor

            spawned = spawn_supervisor(workdir, support.unshare)  # before the launcher's own imports
            try:
                from telemetry_audit.sandbox.launcher import started_from
            except BaseException:
                if spawned.process is not None:
                    spawned.process.kill()
                    spawned.process.wait()
                raise
            return EarlyStart(workdir, seal, support, sandbox=started_from(spawned, workdir, support))
        from telemetry_audit.session import spawn_proxy_child

        return EarlyStart(workdir, seal, support, process=spawn_proxy_child(workdir))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
