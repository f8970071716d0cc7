"""Start-up benchmark: what `telemetry-audit run -- true` costs over a bare `true`, and where it goes.

Run from the project root:

    python benchmarks/bench_startup.py [--runs N] [--seal off|auto] [--phases] [--modules]

Each run is a whole `python -m telemetry_audit run --seal S -- true` process, timed from outside (wall time and
the CPU of every process it waited for: the CLI, the proxy child, the sealed run's supervisor), after one
warm-up, alternating with a bare `true`. The median is printed; on a shared machine wall time mostly measures
the other load, CPU time much less so.

`--phases` also splits the critical path. Unsealed, one process's CPU: the CLI until it spawns the proxy child
(before it parses its arguments: `cli.early`), the child until it listens, and the CLI after that (the command,
the report, the output); what the CLI does while the child starts (parsing, the policy it hands the child) runs in
parallel on a second core. Sealed (`--seal auto`, run here with `--seal on`), wall time
from the process's start: the CLI until it spawns the sandbox, the sandbox and its proxy until the tun interface
is up, the command through the result file, the sandbox's teardown, the report. Nothing of this is a test: the
figures are printed, never asserted.

`--modules` counts the modules the proxy child imports in one more unsealed run (`-X importtime`): a figure that
holds still on a busy machine, unlike the times.

Bytecode: an installed package has its `.pyc` files (pip compiles them when it installs), but an editable checkout
run with `PYTHONDONTWRITEBYTECODE=1` compiles every module of the package from source in every process (the CLI,
the proxy child: ~80 modules, tenths of a second in all). So the package is byte-compiled first, as an
install would have it, and the figures say so; `--as-is` measures the checkout as it stands.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: wraps the session's launch and wait_ready to read the CPU spent at each point.
_PHASES = r"""
import json, os, resource, sys
TICKS = os.sysconf("SC_CLK_TCK")

def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def process_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS

marks = {}
from telemetry_audit import session
spawn, wait_ready = session.spawn_proxy_child, session.ProxySession.wait_ready

def timed_spawn(workdir):
    marks["cli_before_spawn"] = own_cpu()
    return spawn(workdir)

def timed_wait_ready(self, *args, **kwargs):
    result = wait_ready(self, *args, **kwargs)
    marks["child_until_listening"] = process_cpu(self.process.pid)
    marks["cli_until_listening"] = own_cpu()
    return result

session.spawn_proxy_child, session.ProxySession.wait_ready = timed_spawn, timed_wait_ready
from telemetry_audit.cli import main
main(["run", "--seal", "off", "--", "true"])
marks["cli_end"] = own_cpu()
print(json.dumps(marks), file=sys.stderr)
"""


# The same for a sealed run, in wall seconds from just before the process was started (argv[1]): the sandbox's
# own steps are read from the files it writes (the proxy's tun-ready file, the supervisor's result file).
_SEALED_PHASES = r"""
import json, os, sys, time
started = float(sys.argv[1])
marks = {}
from telemetry_audit.sandbox import spawn as spawning
spawn = spawning.spawn_supervisor

def timed_spawn(workdir, unshare):
    marks["spawn"] = time.time()
    marks["workdir"] = workdir
    spawned = spawn(workdir, unshare)
    from telemetry_audit.sandbox import launcher  # after the spawn, as `run` imports it
    wait = launcher.StartedSealedRun.wait

    def timed_wait(self):
        outcome = wait(self)
        marks["sandbox_ended"] = time.time()
        for name, file in (("proxy_ready", "tun-ready"), ("result_written", "sealed-result.json")):
            marks[name] = os.stat(os.path.join(marks["workdir"], file)).st_mtime_ns / 1e9
        return outcome

    launcher.StartedSealedRun.wait = timed_wait
    return spawned

spawning.spawn_supervisor = timed_spawn
from telemetry_audit.cli import main
main(["run", "--seal", "on", "--", "true"])
marks["cli_end"] = time.time()
marks.pop("workdir")
print(json.dumps({name: value - started for name, value in marks.items()}), file=sys.stderr)
"""


# Runs an unsealed `run -- true` whose proxy child reports each module it imports (`-X importtime`) to argv[1].
_MODULES = r"""
import sys
from telemetry_audit import session
session.PROXY_COMMAND = ("sh", "-c", 'exec "$0" -X importtime -P -m telemetry_audit.proxy.server 2>>"$1"',
                         sys.executable, sys.argv[1])
from telemetry_audit.cli import main
main(["run", "--seal", "off", "--", "true"])
"""


def child_modules(top: int = 8) -> dict[str, object]:
    """How many modules the proxy child imports until `run -- true` ends, and the costliest top-level imports.

    The count does not move with the machine's load (the times beside it do, and `-X importtime` inflates them):
    the figure to compare when cutting what the child imports.
    """
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "importtime.txt"
        subprocess.run([sys.executable, "-c", _MODULES, str(report)], capture_output=True, cwd=ROOT, timeout=300,
                       check=True)
        lines = report.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = [re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line) for line in lines]
    found = [row for row in rows if row]
    costliest = sorted(((int(row[1]), row[3]) for row in found if not row[2]), reverse=True)[:top]
    return {"count": len(found), "costliest_top_level_ms": {name: round(us / 1000, 1) for us, name in costliest}}


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and every process it waited for)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def phases(runs: int) -> dict[str, float]:
    """Median CPU seconds of each critical-path phase of an unsealed run."""
    samples = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", _PHASES], capture_output=True, text=True, cwd=ROOT,
                                timeout=300)
        samples.append(json.loads(result.stderr.strip().splitlines()[-1]))

    def median(key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    return {
        "cli until it spawns the proxy (interpreter start-up included)": median("cli_before_spawn"),
        "proxy child until it listens": median("child_until_listening"),
        "cli meanwhile (policy, output set-up; on another core)": median("cli_until_listening")
        - median("cli_before_spawn"),
        "cli after (command, report, output)": median("cli_end") - median("cli_until_listening"),
    }


def sealed_phases(runs: int) -> dict[str, float]:
    """Median wall seconds of each critical-path step of a sealed run."""
    samples = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", _SEALED_PHASES, repr(time.time())], capture_output=True,
                                text=True, cwd=ROOT, timeout=300)
        samples.append(json.loads(result.stderr.strip().splitlines()[-1]))

    def median(key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    return {
        "cli until it spawns the sandbox (interpreter start-up, seal probe)": median("spawn"),
        "sandbox and its proxy until the tun interface is up": median("proxy_ready") - median("spawn"),
        "command, linger, proxy stop, result written": median("result_written") - median("proxy_ready"),
        "until the sandbox has ended (namespace teardown)": median("sandbox_ended") - median("result_written"),
        "cli after (report, output)": median("cli_end") - median("sandbox_ended"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="counted runs of each command (default: 10)")
    parser.add_argument("--seal", choices=("off", "auto"), default="off", help="run's --seal (default: off)")
    parser.add_argument("--phases", action="store_true", help="also split the CPU along the critical path")
    parser.add_argument("--modules", action="store_true",
                        help="also count the modules the proxy child imports (one extra unsealed run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--as-is", action="store_true",
                        help="do not byte-compile the package first (with PYTHONDONTWRITEBYTECODE=1 and no .pyc "
                             "files, every process compiles it from source)")
    args = parser.parse_args()
    if not args.as_is:  # as pip leaves an installed package (written even under PYTHONDONTWRITEBYTECODE)
        compileall.compile_dir(ROOT / "telemetry_audit", quiet=1)
    audited = [sys.executable, "-m", "telemetry_audit", "run", "--seal", args.seal, "--", "true"]
    bare = ["true"]
    timed(audited)  # warm-up: page cache, the CA
    walls: list[float] = []
    cpus: list[float] = []
    bare_walls: list[float] = []
    for _ in range(args.runs):
        wall, cpu = timed(audited)
        walls.append(wall)
        cpus.append(cpu)
        bare_walls.append(timed(bare)[0])
    figures: dict[str, object] = {
        "runs": args.runs,
        "seal": args.seal,
        "run_wall_median_s": round(statistics.median(walls), 3),
        "bare_wall_median_s": round(statistics.median(bare_walls), 4),
        "overhead_wall_median_s": round(statistics.median(w - b for w, b in zip(walls, bare_walls, strict=True)), 3),
        "run_cpu_median_s": round(statistics.median(cpus), 3),
        "bytecode": "as is" if args.as_is else "precompiled",
    }
    split: dict[str, float] = {}
    if args.phases:
        measured = phases(args.runs) if args.seal == "off" else sealed_phases(args.runs)
        split = {name: round(value, 3) for name, value in measured.items()}
        figures["phases_cpu_median_s" if args.seal == "off" else "phases_wall_median_s"] = split
    if args.modules:
        figures["proxy_child_modules"] = child_modules()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"run --seal {args.seal} -- true, {args.runs} runs (median), package bytecode {figures['bytecode']}")
    print(f"  wall: {figures['run_wall_median_s']} s; bare true {figures['bare_wall_median_s']} s; "
          f"overhead {figures['overhead_wall_median_s']} s")
    print(f"  CPU of every process: {figures['run_cpu_median_s']} s")
    for name, value in split.items():
        print(f"  {name}: {value} s {'CPU' if args.seal == 'off' else 'wall'}")
    if args.modules:
        modules: dict[str, Any] = figures["proxy_child_modules"]  # type: ignore[assignment]
        print(f"  modules the proxy child imports: {modules['count']}; costliest top-level imports "
              "(ms under -X importtime): " + ", ".join(f"{name} {ms}" for name, ms in
                                                       modules["costliest_top_level_ms"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
