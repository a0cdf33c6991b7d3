"""The stack the SMS benchmarks run on: Rasa + action server, Kannel (bearerbox, smsbox,
the handset network on the fake SMSC) and the hub in this process on a temporary SQLite
database, with the SMS channel in external mode pointed at that Kannel."""

from __future__ import annotations

import platform
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import hub_env  # noqa: E402

from channel_connectors.sms.connector import SmsChannel  # noqa: E402
from channel_connectors.sms.embedded import KannelProcesses  # noqa: E402
from channel_connectors.sms.settings import SmsSettings, load  # noqa: E402
from hotline.appkeys import CHANNELS  # noqa: E402
from hotline.config import Settings, load_settings  # noqa: E402
from hotline.supervisor import rasa_children, wait_ready  # noqa: E402
from hotline.training import model_path  # noqa: E402
from hotline.web import create_app  # noqa: E402
from tests.conftest import free_port  # noqa: E402

SECRET = "bench-inbound-secret-0123456789"
PASSWORD = "bench-sendsms-password"


@dataclass
class Stack:
    settings: Settings
    sms: SmsSettings
    app: web.Application

    @property
    def channel(self) -> SmsChannel:
        return next(c for c in self.app[CHANNELS] if isinstance(c, SmsChannel))


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, noisy)"


@asynccontextmanager
async def stack(*, rasa: bool = True, rate_limit: int = 20) -> AsyncIterator[Stack]:
    var = Path(tempfile.mkdtemp(prefix="hotline-sms-bench-"))
    # A burst queues for Rasa rather than being handed to people as "overloaded".
    env = hub_env(var, HOTLINE_BOT_MAX_WAITING="100000", HOTLINE_BOT_MAX_WAIT="600")
    settings = load_settings(env)
    (var / "log").mkdir()
    sms = load(
        {
            "kannel": "embedded",
            **{
                k: str(free_port()) for k in ("admin_port", "box_port", "sendsms_port", "fake_port")
            },
            "sendsms_password": PASSWORD,
            "inbound_secret": SECRET,
        },
        settings,
    )
    section = {
        "kannel": "external",
        "sendsms_url": sms.sendsms_url,
        "sendsms_password": PASSWORD,
        "inbound_secret": SECRET,
        "rate_limit": str(rate_limit),
    }
    settings = replace(
        settings, channels=("webchat", "sms"), channel_sections={"webchat": {}, "sms": section}
    )
    children = rasa_children(settings, model_path(settings), var / "log") if rasa else []
    kannel = KannelProcesses(sms, var / "log")
    runner = None
    try:
        for child in children:
            child.start()
        await kannel.start()
        await wait_ready(children)
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        yield Stack(settings, sms, app)
    finally:
        if runner is not None:
            await runner.cleanup()
        kannel.stop()
        for child in reversed(children):
            child.stop()
