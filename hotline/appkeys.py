"""Typed application keys shared by the hub's HTTP handlers and the connectors."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from hotline.acd.service import AcdService
from hotline.bot import RasaClient
from hotline.case_notices import CaseNotices
from hotline.config import Settings
from hotline.hub import Hub
from hotline.ports import Channel, PhoneDesk
from knowledge.search import KnowledgeIndex

SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
RASA = web.AppKey("rasa", RasaClient)
KB = web.AppKey("kb", KnowledgeIndex)
HTTP = web.AppKey("http", aiohttp.ClientSession)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS: web.AppKey[async_sessionmaker[Any]] = web.AppKey("sessions")
ACD = web.AppKey("acd", AcdService)
VOICE: web.AppKey[PhoneDesk] = web.AppKey("voice")
CHANNELS: web.AppKey[list[Channel]] = web.AppKey("channels")
# Channels whose start failed, and why (shown as down in /healthz).
CHANNEL_FAILURES: web.AppKey[dict[str, str]] = web.AppKey("channel_failures")
NOTICES = web.AppKey("notices", CaseNotices)
