"""Real Kannel for the SMS tests: bearerbox + smsbox + the handset network on the fake
SMSC, started once per session; each test's hub uses it in external mode."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from channel_connectors.sms import conf, store
from channel_connectors.sms.connector import SmsChannel
from channel_connectors.sms.embedded import KannelProcesses
from channel_connectors.sms.handset import HandsetClient
from channel_connectors.sms.settings import SmsSettings, load
from hotline.appkeys import CHANNELS, HUB, SESSIONS
from hotline.config import Settings
from tests.conftest import free_port

SECRET = "inbound-secret-" + "x" * 16
SENDSMS_PASSWORD = "sendsms-password-123"
ADMIN_PASSWORD = "admin-password-kannel"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"kannel:{SECRET}".encode()).decode()}


@dataclass(frozen=True)
class Kannel:
    sms: SmsSettings

    def section(self, **extra: str) -> dict[str, str]:
        return {
            "kannel": "external",
            "sendsms_url": self.sms.sendsms_url,
            "sendsms_password": SENDSMS_PASSWORD,
            "inbound_secret": SECRET,
            "public_url": self.sms.public_url,
            # What lets group sends settle rows a killed hub left mid-hand-off.
            "admin_url": self.sms.admin_url,
            "admin_password": ADMIN_PASSWORD,
            "access_log": str(self.sms.access_log),
            **extra,
        }


@pytest.fixture(scope="session")
def kannel(base_settings: Settings) -> Iterator[Kannel]:
    """One bearerbox, smsbox and handset network for the whole session."""
    sendsms = free_port()
    sms = load(
        {
            "kannel": "embedded",
            "admin_port": str(free_port()),
            "box_port": str(free_port()),
            "sendsms_port": str(sendsms),
            "fake_port": str(free_port()),
            "sendsms_password": SENDSMS_PASSWORD,
            "inbound_secret": SECRET,
            "admin_password": ADMIN_PASSWORD,
        },
        base_settings,
    )
    assert sms.kannel == "embedded", sms.off_reason
    procs = KannelProcesses(sms, base_settings.var_dir / "log")
    try:
        asyncio.run(procs.start())
        yield Kannel(sms)
    finally:
        procs.stop()


@pytest.fixture
def sms_settings(settings: Settings, kannel: Kannel) -> Settings:
    return replace(
        settings,
        channels=("webchat", "sms"),
        channel_sections={"webchat": {}, "sms": kannel.section()},
    )


@pytest.fixture
async def sms_hub(sms_settings: Settings, rasa_stack: object) -> AsyncIterator[TestServer]:
    """The hub with the SMS channel, real Rasa behind it."""
    from hotline.web import create_app

    server = TestServer(create_app(sms_settings), host="127.0.0.1", port=sms_settings.http_port)
    await server.start_server()
    yield server
    await server.close()


_counter = iter(range(10_000, 99_999))


def new_number() -> str:
    return f"139{next(_counter):08d}"


def channel_of(server: TestServer) -> SmsChannel:
    return next(c for c in server.app[CHANNELS] if isinstance(c, SmsChannel))


class Phone:
    """A citizen's phone on the fake SMSC; ``say`` returns the whole turn's replies."""

    def __init__(self, server: TestServer, kannel: Kannel, number: str | None = None) -> None:
        self.server = server
        self.number = number or new_number()
        self.handset = HandsetClient(kannel.sms.handset_socket)
        self.received: list[dict[str, Any]] = []

    async def __aenter__(self) -> Phone:
        await self.handset.connect()
        await self.handset.subscribe(self.number)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.handset.close()

    async def sent_count(self) -> int:
        table = store.sms_outbound
        async with self.server.app[SESSIONS]() as session:
            return int(
                (
                    await session.execute(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.number == self.number, table.c.status == "sent")
                    )
                ).scalar_one()
            )

    async def receive(self, timeout: float = 30) -> dict[str, Any]:
        event = await self.handset.receive(timeout)
        self.received.append(event)
        return event

    async def settle(self) -> list[str]:
        """Everything the hub has handed to Kannel for this number, once it arrives."""
        await self.server.app[HUB].drain()
        texts = []
        expected = await self.sent_count()
        while len(self.received) < expected:
            texts.append((await self.receive(15))["text"])
        return texts

    async def say(self, text: str, timeout: float = 30) -> list[str]:
        await self.handset.send(self.number, text)
        first = (await self.receive(timeout))["text"]
        return [first, *await self.settle()]


def joined(texts: list[str]) -> str:
    return "\n".join(texts)


def case_code_and_pin(text: str) -> tuple[str, str]:
    code = re.search(r"(?:Case code|案件编号)[:：]\s*(\d{12})", text)
    pin = re.search(r"(?:PIN|查询密码)[:：]\s*(\d{6})", text)
    assert code and pin, text
    return code.group(1), pin.group(1)


async def post_inbound(
    server: TestServer,
    number: str,
    body: bytes,
    *,
    coding: str = "0",
    charset: str = "UTF-8",
    msg_id: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """What smsbox's post-url sends, sent by hand (a redelivery, or a broken request)."""
    url = server.make_url(conf.INBOUND_PATH)
    params = {"from": number, "to": "12309", "time": "1796287360", "id": msg_id, "fid": ""}
    params.update(coding=coding, charset=charset)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url, params=params, data=body, headers=AUTH if headers is None else headers
        ) as resp,
    ):
        return resp.status, await resp.json()
