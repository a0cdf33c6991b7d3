"""Starting and stopping the stack's child processes: Rasa and its action server.

Each child runs in its own process group so a stop reaches its workers too (rasa-sdk
forks). The same code starts the stack for ``hotline run`` and for the test suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import aiohttp

from hotline.config import PROJECT_ROOT, Settings
from hotline.training import rasa_env

READY_TIMEOUT = 180.0


@dataclass
class Child:
    name: str
    cmd: list[str]
    ready_url: str
    log: IO[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=PROJECT_ROOT,
            env=rasa_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)
        try:  # reap forked workers that outlived their parent
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def write_endpoints(settings: Settings) -> tuple[Path, Path]:
    """Rasa's endpoints.yml (actions, SQL tracker store) and credentials.yml (REST only)."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    tracker = urlsplit(settings.rasa_tracker_url)
    if tracker.scheme == "sqlite":
        path = settings.rasa_tracker_url.split(":///", 1)[1]
        store = f"  type: SQL\n  dialect: sqlite\n  db: {path}\n"
    else:
        store = (
            "  type: SQL\n  dialect: postgresql\n"
            f"  url: {tracker.hostname}\n  port: {tracker.port or 5432}\n"
            f"  db: {tracker.path.lstrip('/') or 'rasa'}\n"
            f"  username: {tracker.username or ''}\n  password: {tracker.password or ''}\n"
        )
    endpoints = settings.var_dir / "endpoints.yml"
    endpoints.write_text(
        f"action_endpoint:\n  url: {settings.actions_url}/webhook\n"
        f"tracker_store:\n{store}lock_store:\n  type: in_memory\n",
        encoding="utf-8",
    )
    os.chmod(endpoints, 0o600)
    credentials = settings.var_dir / "credentials.yml"
    credentials.write_text("rest:\n", encoding="utf-8")
    return endpoints, credentials


def rasa_children(settings: Settings, model: Path, logs: Path | None = None) -> list[Child]:
    endpoints, credentials = write_endpoints(settings)
    venv = settings.rasa_venv / "bin"
    rasa_log = open(logs / "rasa.log", "ab") if logs else None
    actions_log = open(logs / "actions.log", "ab") if logs else None
    actions = Child(
        "actions",
        [
            str(venv / "python"),
            "-m",
            "rasa_sdk",
            "--actions",
            "bots.actions",
            "--port",
            str(_port(settings.actions_url)),
        ],
        f"{settings.actions_url}/health",
        actions_log,
    )
    rasa = Child(
        "rasa",
        [
            str(venv / "rasa"),
            "run",
            "--enable-api",
            "-i",
            urlsplit(settings.rasa_url).hostname or "127.0.0.1",
            "-p",
            str(_port(settings.rasa_url)),
            "--auth-token",
            settings.rasa_token,
            "-m",
            str(model),
            "--endpoints",
            str(endpoints),
            "--credentials",
            str(credentials),
            "--cors",
            "",  # no browser talks to Rasa directly
        ],
        f"{settings.rasa_url}/status?token={settings.rasa_token}",
        rasa_log,
    )
    return [actions, rasa]


async def wait_ready(children: list[Child], timeout: float = READY_TIMEOUT) -> None:
    """Poll each child's readiness URL, printing progress; fail if one exits."""
    deadline = time.monotonic() + timeout
    pending = list(children)
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while pending:
            for child in list(pending):
                if child.proc is not None and child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
                try:
                    async with http.get(
                        child.ready_url, timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        if r.status == 200:
                            body = await r.text()
                            if child.name != "rasa" or "model_file" in body:
                                pending.remove(child)
                                print(
                                    f"[run] {child.name} ready after "
                                    f"{time.monotonic() - started:.0f}s",
                                    flush=True,
                                )
                except (TimeoutError, aiohttp.ClientError):
                    pass
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise RuntimeError(f"timed out waiting for {names}")
            if pending:
                await asyncio.sleep(1)
