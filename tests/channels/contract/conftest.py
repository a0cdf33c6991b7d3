"""Fixtures of the channel contract suite: one hub per test with the channel under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from hotline.config import Settings
from hotline.web import create_app
from tests.channels.contract.drivers import DRIVERS, Citizen, with_channel

ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture(params=[pytest.param(name, marks=DRIVERS[name].marks) for name in sorted(DRIVERS)])
def channel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def contract_settings(settings: Settings, channel: str, request: pytest.FixtureRequest) -> Settings:
    configured = DRIVERS[channel].configure(with_channel(settings, channel), request)
    return replace(configured, admin_password=ADMIN_PASSWORD, acd_tick_seconds=0.2)


HubFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_hub(contract_settings: Settings) -> AsyncIterator[HubFactory]:
    """Start the hub (``overrides`` replace settings, e.g. a dead Rasa)."""
    servers: list[TestServer] = []

    async def start(**overrides: Any) -> TestServer:
        settings = replace(contract_settings, **overrides)
        # The configured port: a gateway (Kannel) posts inbound messages there.
        server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.close()


CitizenFactory = Callable[..., Awaitable[Citizen]]


@pytest.fixture
async def arrive(
    channel: str, contract_settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[TestServer, str], Awaitable[Citizen]]]:
    """A new citizen on the channel under test, reaching the given hub."""
    citizens: list[Citizen] = []

    async def make(server: TestServer, lang: str | None = None) -> Citizen:
        """``lang``: the citizen's language; by default the one of the driver's lines."""
        driver = DRIVERS[channel]
        language = lang or driver.lines.lang
        citizen: Citizen = await driver.arrive(server, contract_settings, language, request)
        citizens.append(citizen)
        return citizen

    yield make
    for citizen in citizens:
        await citizen.close()
