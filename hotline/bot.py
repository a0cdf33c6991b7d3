"""The dialogue layer as the hub sees it: a client for Rasa's REST webhook.

The hub is Rasa's only client. ``BotUnavailable`` covers every way a call Rasa was sent
can fail (down, slower than ``HOTLINE_RASA_TIMEOUT``, an error page). ``BotOverloaded``
is the other case: the turn was never sent because Rasa is busy (``hotline.botgate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from hotline.intents import META_INTENTS
from hotline.lang import Lang


class BotUnavailable(Exception):
    """Rasa did not answer in time or answered with an error: it is down."""


class BotOverloaded(Exception):
    """Rasa is up but saturated: the turn found no free slot in time (``hotline.botgate``).

    Not a kind of ``BotUnavailable``: the hub tells a busy bot from a dead one.
    """


# Bookkeeping slots, not answers the citizen gave.
_INTERNAL_SLOTS = frozenset({"lang", "retries", "outcome", "requested_slot", "confirm"})


@dataclass(frozen=True, slots=True)
class BotContext:
    """What the bot learned, for the agent who takes over: slots and the topic intent."""

    fields: dict[str, str]
    intent: str | None
    awaiting: str | None = None  # the form slot the bot's last question asks for


class Bot(Protocol):
    async def converse(
        self, conversation_id: str, text: str, *, channel: str, lang: Lang
    ) -> list[dict[str, Any]]: ...

    async def context(self, conversation_id: str) -> BotContext: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """What the bot's NLU makes of a whole text (a letter): its intent and confidence."""

    intent: str | None
    confidence: float


class Reader(Protocol):
    async def read(self, text: str) -> Reading:
        """Classify ``text`` without a dialogue; raises ``BotUnavailable``."""
        ...


def context_from_tracker(tracker: dict[str, Any]) -> BotContext:
    slots = tracker.get("slots")
    fields = {
        str(k): str(v)[:2000]
        for k, v in (slots.items() if isinstance(slots, dict) else ())
        if v not in (None, "", [], {}) and k not in _INTERNAL_SLOTS and not str(k).startswith("_")
    }
    intent = None
    for event in reversed(tracker.get("events") or []):
        if isinstance(event, dict) and event.get("event") == "user":
            name = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            if isinstance(name, str) and name not in META_INTENTS:
                intent = name
                break
    requested = slots.get("requested_slot") if isinstance(slots, dict) else None
    return BotContext(fields, intent, requested if isinstance(requested, str) else None)


class RasaClient:
    def __init__(
        self, session: aiohttp.ClientSession, url: str, token: str, timeout: float
    ) -> None:
        self._session = session
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def converse(
        self, conversation_id: str, text: str, *, channel: str, lang: Lang
    ) -> list[dict[str, Any]]:
        body = {
            "sender": conversation_id,
            "message": text,
            "metadata": {"channel": channel, "lang": lang, "conversation_id": conversation_id},
        }
        try:
            async with self._session.post(
                f"{self._url}/webhooks/rest/webhook", json=body, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    raise BotUnavailable(f"rasa answered HTTP {resp.status}")
                data = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise BotUnavailable(type(exc).__name__) from exc
        if not isinstance(data, list):
            raise BotUnavailable("rasa answered with something other than a list")
        return [item for item in data if isinstance(item, dict)]

    async def read(self, text: str) -> Reading:
        """Rasa's NLU on ``text`` (``POST /model/parse``): no tracker, no dialogue."""
        try:
            async with self._session.post(
                f"{self._url}/model/parse",
                params={"token": self._token},
                json={"text": text},
                timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    raise BotUnavailable(f"rasa answered HTTP {resp.status}")
                data = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise BotUnavailable(type(exc).__name__) from exc
        intent = data.get("intent") if isinstance(data, dict) else None
        if not isinstance(intent, dict):
            return Reading(None, 0.0)
        name, confidence = intent.get("name"), intent.get("confidence")
        return Reading(
            name if isinstance(name, str) else None,
            float(confidence) if isinstance(confidence, int | float) else 0.0,
        )

    async def context(self, conversation_id: str) -> BotContext:
        """Read the conversation's tracker; an empty context when Rasa can't say."""
        try:
            async with self._session.get(
                f"{self._url}/conversations/{conversation_id}/tracker",
                params={"token": self._token, "include_events": "APPLIED"},
                timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    return BotContext({}, None)
                data = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return BotContext({}, None)
        return context_from_tracker(data if isinstance(data, dict) else {})

    async def healthy(self) -> tuple[bool, str]:
        """Rasa is healthy when its API answers and a model is loaded."""
        try:
            async with self._session.get(
                f"{self._url}/status",
                params={"token": self._token},
                timeout=aiohttp.ClientTimeout(total=2),
            ) as resp:
                if resp.status != 200:
                    return False, f"HTTP {resp.status}"
                data = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return False, type(exc).__name__
        model = data.get("model_file") if isinstance(data, dict) else None
        return (True, str(model)) if model else (False, "no model loaded")


async def actions_healthy(session: aiohttp.ClientSession, url: str) -> tuple[bool, str]:
    try:
        async with session.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        return False, type(exc).__name__
