"""Install the real CLIs once, run them offline under `telemetry-audit run` / `optout-check`.

Installs are cached between test runs in `$TELEMETRY_AUDIT_REALTOOLS_CACHE` (default
`~/.cache/telemetry-audit-realtools`), one directory per tool and exact version (`serverless-3.40.0`,
`sst-4.17.1`, `localstack-2026.8.2`, ...), next to npm's and pip's own caches (`npm-cache/`, `pip-cache/`). An
install runs under an exclusive lock (`<dir>.lock`) and counts only once its `.complete` marker is written, so
parallel runs wait for each other and an interrupted install is redone, never used half-way.

Only the package registries are needed (npm, PyPI); the tools themselves run offline behind the proxy.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INSTALL_TIMEOUT_S = 1200.0
"""SST v2 is 836 MB from npm: about 2.5 minutes here cold; the limit leaves room for a slow registry."""
LOCK_TIMEOUT_S = INSTALL_TIMEOUT_S + 120.0
RUN_TIMEOUT_S = 300.0
"""One `telemetry-audit run` of a tool; `optout-check` gets this per run of the tool."""

SERVERLESS = "3.40.0"
SST_V4 = "4.17.1"
SST_V2 = "2.49.8"
LOCALSTACK = "2026.8.2"
"""The versions measured in shared/wire/README.md; bump them together with the assertions."""

SCRUBBED = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NODE_OPTIONS", "NODE_USE_ENV_PROXY",
            "SLS_TELEMETRY_DISABLED", "SLS_TRACKING_DISABLED", "SLS_ANALYTICS_URL", "SST_TELEMETRY_DISABLED",
            "DISABLE_EVENTS", "ANALYTICS_API", "DO_NOT_TRACK", "LOCALSTACK_AUTH_TOKEN", "LOCALSTACK_API_KEY",
            "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
"""Variables of the developer's or CI's shell that would change what the tools send (or where to)."""

needs_npm = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                               reason="node and npm are needed to install and run this tool")


def cache_root() -> Path:
    root = os.environ.get("TELEMETRY_AUDIT_REALTOOLS_CACHE") or Path.home() / ".cache" / "telemetry-audit-realtools"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run has held {lock_path} for over {LOCK_TIMEOUT_S:.0f} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"installing {what} took over {INSTALL_TIMEOUT_S:.0f} s")
    if result.returncode != 0:
        pytest.fail(f"installing {what} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def cached_install(key: str, install: Any) -> Path:
    """The directory `<cache>/<key>`, filled once by `install(path)` under a lock; reused while complete."""
    root = cache_root()
    target = root / key
    marker = target / ".complete"
    if marker.exists():
        return target
    with _locked(root / f"{key}.lock"):
        if marker.exists():  # someone else finished it while we waited
            return target
        shutil.rmtree(target, ignore_errors=True)  # an interrupted install: start over
        started = time.monotonic()
        install(target)
        marker.write_text(json.dumps({"seconds": round(time.monotonic() - started, 1),
                                      "bytes": _size(target)}), encoding="utf-8")
    return target


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def npm_tool(package: str, version: str) -> Path:
    """`node_modules` of a prefix where `npm install package@version` ran (npm's cache in the cache root)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")

    def install(target: Path) -> None:
        target.mkdir(parents=True)
        (target / "package.json").write_text('{"name": "telemetry-audit-realtool", "private": true}\n')
        _install(["npm", "install", "--prefix", str(target), "--cache", str(cache_root() / "npm-cache"),
                  "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error", f"{package}@{version}"],
                 f"{package}@{version} from npm")

    return cached_install(f"{package}-{version}", install) / "node_modules"


def pip_venv(package: str, version: str) -> Path:
    """The `bin/` of a virtualenv where `pip install package==version` ran (pip's cache in the cache root)."""

    def install(target: Path) -> None:
        _install([sys.executable, "-m", "venv", str(target)], f"a virtualenv for {package}")
        _install([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--cache-dir",
                  str(cache_root() / "pip-cache"), f"{package}=={version}"], f"{package}=={version} from PyPI")

    return cached_install(f"{package}-{version}", install) / "bin"


# --- running telemetry-audit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audit:
    """What `telemetry-audit run` left behind."""

    result: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    log_text: str

    def requests(self, host: str = "", path: str = "") -> list[dict[str, Any]]:
        return [r for r in self.report["requests"] if host in r["host"] and (not path or r["path"] == path)]

    @property
    def records(self) -> list[dict[str, Any]]:
        lines = (json.loads(line) for line in self.log_text.splitlines() if line)
        return [r for r in lines if r.get("record") == "request"]


@dataclass(frozen=True)
class RealTool:
    """Runs telemetry-audit as a subprocess with a private CA home, a private HOME and a clean environment."""

    confdir: Path
    home: Path
    path_prefix: tuple[Path, ...] = ()

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in SCRUBBED}
        env.update(TELEMETRY_AUDIT_HOME=str(self.confdir), HOME=str(self.home))
        env["PATH"] = os.pathsep.join([*map(str, self.path_prefix), env.get("PATH", "")])
        env.update(extra or {})
        return env

    def cli(self, args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
            timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "telemetry_audit", *args], cwd=cwd, env=self.env(extra_env),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def run(self, policy: str, command: list[str], cwd: Path, tmp_path: Path,
            extra_env: dict[str, str] | None = None) -> Audit:
        """`telemetry-audit run --policy POLICY -- COMMAND`, offline; the JSON report and the audit log."""
        report, log = tmp_path / f"{policy}-report.json", tmp_path / f"{policy}-audit.jsonl"
        result = self.cli(["run", "--policy", policy, "--report", str(report), "--log", str(log), "--", *command],
                          cwd, extra_env, timeout=RUN_TIMEOUT_S + 60)
        assert report.exists(), f"no report\n{result.stdout}\n{result.stderr}"
        return Audit(result, json.loads(report.read_text()), log.read_text() if log.exists() else "")

    def optout_check(self, pack: str, command: list[str], cwd: Path, tmp_path: Path) -> tuple[
            subprocess.CompletedProcess[str], dict[str, Any]]:
        """`telemetry-audit optout-check --pack PACK -- COMMAND`: its exit status and JSON report."""
        out = tmp_path / f"{pack}-optout.json"
        args = ["--pack", pack, "--timeout", str(RUN_TIMEOUT_S), "-f", "json", "-o", str(out), "-f", "table", "--",
                *command]
        command = [sys.executable, "-m", "telemetry_audit", "optout-check", *args]
        result = subprocess.run(command, cwd=cwd, env=self.env(),
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S * 8,
                                stdin=subprocess.DEVNULL)
        assert out.exists(), f"no optout report\n{result.stdout}\n{result.stderr}"
        print(result.stdout)  # the table, for the CI log
        return result, json.loads(out.read_text())


def verdicts(report: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """`{switch label: (verdict, telemetry requests seen)}` from an optout-check report."""
    return {e["label"]: (e["verdict"], e["run"]["telemetry_requests"]) for e in report["switches"]}


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telemetry-audit-home")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path
