"""Embedded Kannel: bearerbox, smsbox and (without a carrier link) the handset network.

Each runs in its own process group with its output in ``var/log/``; ``stop()`` sends
SIGTERM to the group and SIGKILL after a grace period. ``hotline run`` starts them
through the channel; the test suite starts one set per session with the same code.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from channel_connectors.sms import conf
from channel_connectors.sms.settings import SmsSettings
from hotline.config import PROJECT_ROOT

START_TIMEOUT = 30.0
log = logging.getLogger(__name__)


class KannelFailed(RuntimeError):
    pass


def _die_with_parent() -> None:
    """Runs in the child: if the hub dies (even by SIGKILL), the kernel kills the box too,
    so a restarted hub never finds its ports held by orphans."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


@dataclass
class _Proc:
    name: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, *, stdout_pipe: bool = False) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.cmd,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, grace)
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        if self.popen.stdout is not None:
            self.popen.stdout.close()


class KannelProcesses:
    def __init__(self, settings: SmsSettings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[_Proc] = []

    def _check(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise KannelFailed(f"{proc.name} exited early; see {proc.log}")

    async def _port(self, port: int, deadline: float) -> None:
        while True:
            self._check()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline:
                    raise KannelFailed(f"nothing listens on port {port}") from None
                await asyncio.sleep(0.05)  # the box has not bound its port yet
                continue
            writer.close()
            return

    async def start(self) -> None:
        s = self.settings
        path = conf.write(s, self.log_dir)
        deadline = time.monotonic() + START_TIMEOUT
        bearerbox = _Proc(
            "bearerbox", [s.bearerbox, str(path)], self.log_dir / "kannel-bearerbox.out"
        )
        self.procs.append(bearerbox)
        bearerbox.start()
        await self._port(s.box_port, deadline)
        smsbox = _Proc("smsbox", [s.smsbox, str(path)], self.log_dir / "kannel-smsbox.out")
        self.procs.append(smsbox)
        smsbox.start()
        await self._port(s.sendsms_port, deadline)
        if s.fake_link:
            handset = _Proc(
                "handset network",
                [
                    sys.executable,
                    "-m",
                    "channel_connectors.sms.handset",
                    "--smsc",
                    f"127.0.0.1:{s.fake_port}",
                    "--socket",
                    str(s.handset_socket),
                ],
                self.log_dir / "kannel-handset.log",
            )
            self.procs.append(handset)
            handset.start(stdout_pipe=True)
            assert handset.popen is not None and handset.popen.stdout is not None
            line = await asyncio.wait_for(
                asyncio.to_thread(handset.popen.stdout.readline), START_TIMEOUT
            )
            if line.strip() != b"ready":
                raise KannelFailed(f"the handset network did not start; see {handset.log}")

    def running(self) -> tuple[bool, str]:
        down = [p.name for p in self.procs if not p.alive()]
        if not self.procs:
            return False, "not started"
        return (not down, f"{', '.join(down)} not running" if down else "running")

    def stop(self) -> None:
        # bearerbox waits for its queues to drain, which cannot happen once smsbox is
        # gone; what it holds is in its store file and is delivered after the next start.
        for proc in reversed(self.procs):
            proc.stop(grace=3.0 if proc.name == "bearerbox" else 10.0)
        self.procs.clear()
