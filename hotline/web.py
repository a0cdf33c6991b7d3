"""The HTTP application: health, knowledge search, the chat channel and security headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from agent_console.routes import add_routes as add_console_routes
from channel_connectors.webchat.connector import WebChatChannel
from hotline.accounts import bootstrap_admin
from hotline.acd.service import AcdService
from hotline.answers import KnowledgeAnswers
from hotline.api import admin, calls, conversations
from hotline.api.agent_ws import AGENT_SOCKETS, AgentSockets, agent_socket
from hotline.appkeys import ACD, ENGINE, HTTP, HUB, KB, RASA, SESSIONS, SETTINGS, VOICE
from hotline.auth import auth_middleware
from hotline.bot import RasaClient, actions_healthy
from hotline.config import Settings
from hotline.conversations import ConversationStore
from hotline.hub import Hub
from hotline.store.db import make_engine, migrate, ping, sessionmaker
from hotline.tickets import TicketService
from hotline.tracker import TrackerPurger
from hotline.vault import IdentityVault
from knowledge.articles import load_articles
from knowledge.search import KnowledgeIndex
from voice_ivr.asterisk import ari_info
from voice_ivr.line import VoiceLine

log = logging.getLogger(__name__)


# Intents a button may carry; typed text never becomes an intent payload.
BUTTON_INTENTS = frozenset(
    {
        "greet",
        "goodbye",
        "affirm",
        "deny",
        "report_crime",
        "file_complaint",
        "appeal",
        "state_compensation",
        "case_status",
        "legal_consult",
        "lawyer_appointment",
        "request_human",
        "out_of_scope",
        "cancel",
        "skip",
        "rate_1",
        "rate_2",
        "rate_3",
    }
)

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
        components["speech"] = {"status": "ok", "detail": voice.ivr.speech_summary()}
    healthy = all(ok for ok, _ in checks)
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "components": components},
        status=200 if healthy else 503,
    )


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
    elif not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 50:
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


def create_app(settings: Settings, *, run_migrations: bool = True) -> web.Application:
    """Build the hub application; storage, HTTP clients and the KB start with the app."""
    app = web.Application(middlewares=[security_headers, auth_middleware], client_max_size=1 << 20)
    app[SETTINGS] = settings
    index = KnowledgeIndex(load_articles())
    app[KB] = index
    webchat = WebChatChannel(settings)
    webchat.add_routes(app)
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
        hub = Hub(
            ConversationStore(sessions),
            rasa,
            TicketService(sessions, IdentityVault(settings.secret_key), settings.holidays),
            KnowledgeAnswers(index),
            settings.secret_key,
            max_text_chars=settings.max_text_chars,
            intents=BUTTON_INTENTS,
            tracker=TrackerPurger(settings.rasa_tracker_url),
        )
        hub.channels.register(webchat)
        acd = AcdService(
            sessions, hub, timezone=settings.timezone, tick_seconds=settings.acd_tick_seconds
        )
        acd.push = app[AGENT_SOCKETS]
        hub.handoff = acd
        await acd.start()
        await hub.recover()
        app[ENGINE], app[HTTP], app[RASA], app[HUB], app[ACD] = engine, http, rasa, hub, acd
        voice = (
            await VoiceLine.start(settings, http, sessions, hub, acd)
            if settings.voice_enabled
            else None
        )
        if voice is not None:
            app[VOICE] = voice
        log.info("hub ready", extra={"articles": len(index.articles), "voice": voice is not None})
        yield
        if voice is not None:
            await voice.close()
        await acd.stop()
        await hub.drain()
        await hub.close()
        await http.close()
        await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/kb/search", kb_search)
    admin.add_routes(app)
    conversations.add_routes(app)
    calls.add_routes(app)
    app.router.add_get("/ws/agent", agent_socket)
    add_console_routes(app)
    return app
