"""The HTTP application: health, knowledge search, the chat channel and security headers."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from agent_console.routes import add_routes as add_console_routes
from hotline import intents
from hotline.accounts import bootstrap_admin
from hotline.acd.service import AcdService
from hotline.answers import KnowledgeAnswers
from hotline.api.agent_ws import AGENT_SOCKETS, AgentSockets, agent_socket
from hotline.api.routes import add_routes as add_api_routes
from hotline.appkeys import (
    ACD,
    CHANNEL_FAILURES,
    CHANNELS,
    ENGINE,
    HTTP,
    HUB,
    KB,
    NOTICES,
    RASA,
    SESSIONS,
    SETTINGS,
    VOICE,
)
from hotline.auth import auth_middleware
from hotline.bot import RasaClient, actions_healthy
from hotline.botgate import BotGate
from hotline.case_notices import CaseNotices
from hotline.config import PROJECT_ROOT, ConfigError, Settings
from hotline.conversations import ConversationStore
from hotline.hub import Hub
from hotline.inbox import HubInbox
from hotline.ports import Channel, ChannelContext, ChannelModule, ChannelRuntime, Health
from hotline.store.db import make_engine, migrate, ping, sessionmaker
from hotline.tickets import TicketService
from hotline.tracker import TrackerPurger
from hotline.vault import IdentityVault
from knowledge.articles import load_articles
from knowledge.search import KnowledgeIndex
from voice_ivr.asterisk import AsteriskUnavailable, EmbeddedAsterisk, ari_info
from voice_ivr.line import VoiceLine

log = logging.getLogger(__name__)


_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'self'; base-uri 'none'"
)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path == "/":
        response.headers.setdefault("Content-Security-Policy", _CSP)
    return response


async def healthz(request: web.Request) -> web.Response:
    app = request.app

    async def database() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(ping(app[ENGINE]), 2)
        except Exception as exc:  # any failure means unhealthy; say which
            return False, type(exc).__name__
        return True, "ok"

    async def asterisk() -> tuple[bool, str]:
        try:
            info = await ari_info(app[SETTINGS])
        except Exception as exc:  # any failure means voice is down; say which
            return False, type(exc).__name__
        system = info.get("system")
        return True, str(system.get("version") if isinstance(system, dict) else "ok")

    names = ["database", "rasa", "actions"]
    probes = [
        database(),
        app[RASA].healthy(),
        actions_healthy(app[HTTP], app[SETTINGS].actions_url),
    ]
    if app[SETTINGS].voice_enabled:
        names.append("asterisk")
        probes.append(asterisk())
    checks = await asyncio.gather(*probes)
    components: dict[str, dict[str, str]] = {
        name: {"status": "ok" if ok else "down", "detail": detail}
        for name, (ok, detail) in zip(names, checks, strict=True)
    }
    if not app[SETTINGS].voice_enabled:
        components["asterisk"] = {"status": "off", "detail": "voice is off (HOTLINE_VOICE)"}
    voice = app.get(VOICE)
    if voice is not None:
        # Informational: a language without a model still works, by keys.
        components["speech"] = {"status": "ok", "detail": voice.speech_summary()}
    healthy = all(ok for ok, _ in checks)
    channels: list[Channel] = app[CHANNELS]
    failures = app[CHANNEL_FAILURES]
    channel_health = await asyncio.gather(*(_channel_health(c, failures) for c in channels))
    for channel, health in zip(channels, channel_health, strict=True):
        components[f"channel:{channel.name}"] = {"status": health.status, "detail": health.detail}
        healthy = healthy and health.status != "down"
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "components": components},
        status=200 if healthy else 503,
    )


async def _channel_health(channel: Channel, failures: dict[str, str]) -> Health:
    if channel.name in failures:
        return Health("down", failures[channel.name])
    try:
        return await asyncio.wait_for(channel.health(), 2)
    except Exception as exc:  # any failure means the channel is down; say which
        return Health("down", type(exc).__name__)


async def kb_search(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    lang = request.query.get("lang") or None
    raw_limit = request.query.get("limit", "5")
    problem = None
    if not query:
        problem = "q is required"
    elif len(query) > 500:
        problem = "q is longer than 500 characters"
    elif lang not in (None, "zh", "en"):
        problem = "lang must be zh or en"
    elif not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3) or not (
        1 <= int(raw_limit) <= 50
    ):
        problem = "limit must be 1-50"
    if problem:
        return web.json_response({"error": problem}, status=400)
    hits = request.app[KB].search(query, lang=lang, limit=int(raw_limit))
    results: list[dict[str, Any]] = [
        {
            "id": h.article.id,
            "lang": h.article.lang,
            "title": h.article.title,
            "tags": list(h.article.tags),
            "score": round(h.score, 4),
            "coverage": round(h.coverage, 3),
            "snippet": h.article.body[:160],
        }
        for h in hits
    ]
    return web.json_response({"query": query, "results": results})


def channel_module(name: str) -> ChannelModule:
    """The enabled channel's package, ``channel_connectors/<name>/``."""
    try:
        module = importlib.import_module(f"channel_connectors.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"channel_connectors.{name}", "channel_connectors"):
            raise
        raise ConfigError(
            f"HOTLINE_CHANNELS: no channel {name!r} (no folder channel_connectors/{name}/)"
        ) from exc
    for attr in ("NAME", "load_settings", "setup"):
        if not hasattr(module, attr):
            raise ConfigError(f"HOTLINE_CHANNELS: channel_connectors/{name} lacks {attr}")
    return module


def available_channels() -> list[str]:
    """Every channel folder there is, enabled or not."""
    root = PROJECT_ROOT / "channel_connectors"
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def simulators() -> dict[str, Any]:
    """``channel_connectors/<name>/simulate.py`` modules: ``HELP``, ``add_arguments(parser)``
    and ``async run(args, settings) -> int``, for ``hotline simulate <name>``."""
    root = PROJECT_ROOT / "channel_connectors"
    return {
        path.parent.name: importlib.import_module(f"channel_connectors.{path.parent.name}.simulate")
        for path in sorted(root.glob("*/simulate.py"))
    }


def check_channels(settings: Settings) -> dict[str, Any]:
    """Validate every enabled channel's section; returns them (``hotline config``)."""
    return {
        name: channel_module(name).load_settings(settings.channel_sections.get(name, {}), settings)
        for name in settings.channels
    }


def load_channels(settings: Settings, context: ChannelContext) -> list[Channel]:
    """Build the enabled channels; a bad setting stops here with its name."""
    return [
        channel_module(name).setup(context, section)
        for name, section in check_channels(settings).items()
    ]


async def start_voice(settings: Settings) -> tuple[Settings, Any]:
    """Voice for `hotline run`: an existing Asterisk when configured, else the embedded
    one if it can run here (returns it, to be stopped at the end)."""

    if settings.voice == "off":
        print("[run] voice is off (HOTLINE_VOICE=off)", flush=True)
        return settings, None
    if settings.voice == "external":
        print(f"[run] voice: using the Asterisk ARI at {settings.ari_url}", flush=True)
        return replace(settings, voice_enabled=True), None
    box = EmbeddedAsterisk(settings)
    try:
        await asyncio.to_thread(box.provision)
        print("[run] starting Asterisk", flush=True)
        await box.start()
    except AsteriskUnavailable as exc:
        print(f"[run] {exc}", flush=True)
        return settings, None
    print(
        f"[run] voice: dial {settings.ivr_number} via the SIP trunk at "
        f"sip:{settings.sip_host}:{settings.sip_port} (user trunk; password in var/)",
        flush=True,
    )
    return replace(settings, voice_enabled=True), box


def create_app(settings: Settings, *, run_migrations: bool = True) -> web.Application:
    """Build the hub application; storage, HTTP clients and the KB start with the app."""
    app = web.Application(middlewares=[security_headers, auth_middleware], client_max_size=1 << 20)
    app[SETTINGS] = settings
    index = KnowledgeIndex(load_articles())
    app[KB] = index
    inbox = HubInbox()
    channels = load_channels(settings, ChannelContext(inbox=inbox, core=settings, app=app))
    app[CHANNELS] = channels
    app[CHANNEL_FAILURES] = {}
    app[AGENT_SOCKETS] = AgentSockets()

    async def close_agent_sockets(app: web.Application) -> None:
        await app[AGENT_SOCKETS].close_all()

    app.on_shutdown.append(close_agent_sockets)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if run_migrations:
            await migrate(engine)
        sessions = sessionmaker(engine)
        app[SESSIONS] = sessions
        await bootstrap_admin(sessions, settings)
        http = aiohttp.ClientSession()
        rasa = RasaClient(http, settings.rasa_url, settings.rasa_token, settings.rasa_timeout)
        vault = IdentityVault(settings.secret_key)
        hub = Hub(
            ConversationStore(sessions),
            rasa,
            TicketService(sessions, vault, settings.holidays),
            KnowledgeAnswers(index),
            settings.secret_key,
            max_text_chars=settings.max_text_chars,
            intents=intents.BUTTON_INTENTS,
            tracker=TrackerPurger(settings.rasa_tracker_url),
            gate=BotGate(
                settings.rasa_concurrency or None,
                max_waiting=settings.bot_max_waiting,
                max_wait=settings.bot_max_wait,
            ),
            reader=rasa,
        )
        for channel in channels:
            hub.channels.register(channel)
        inbox.bind(hub)
        acd = AcdService(
            sessions, hub, timezone=settings.timezone, tick_seconds=settings.acd_tick_seconds
        )
        acd.push = app[AGENT_SOCKETS]
        hub.handoff = acd
        await acd.start()
        await hub.recover()
        app[ENGINE], app[HTTP], app[RASA], app[HUB], app[ACD] = engine, http, rasa, hub, acd
        app[NOTICES] = CaseNotices(sessions, vault, hub.channels)
        runtime = ChannelRuntime(sessions=sessions, http=http)
        for channel in channels:
            try:
                await channel.start(runtime)
            except Exception as exc:
                # One channel's transport failing must not take the hotline down with it:
                # the others serve, and /healthz says which one is down and why.
                log.exception("channel failed to start", extra={"channel": channel.name})
                app[CHANNEL_FAILURES][channel.name] = f"failed to start: {exc}"[:300]
        voice = (
            await VoiceLine.build(settings, http, sessions, inbox, acd)
            if settings.voice_enabled
            else None
        )
        if voice is not None:  # voice gets the Inbox, as every channel does
            hub.channels.register(voice.channel)
            await voice.start()
            app[VOICE] = voice
        log.info("hub ready", extra={"articles": len(index.articles), "voice": voice is not None})
        yield
        if voice is not None:
            await voice.close()
        for channel in reversed(channels):
            await channel.stop()
        await acd.stop()
        await hub.drain()
        await hub.close()
        await http.close()
        await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/kb/search", kb_search)
    add_api_routes(app)
    app.router.add_get("/ws/agent", agent_socket)
    add_console_routes(app)
    return app
