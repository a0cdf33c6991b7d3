"""The dialogue layer as the hub sees it: a client for Rasa's REST webhook.

The hub is Rasa's only client. ``BotUnavailable`` covers every way Rasa can fail us
(down, slow, an error page), so the hub has one failure path to handle.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from hotline.lang import Lang


class BotUnavailable(Exception):
    """Rasa did not answer in time or answered with an error."""


class Bot(Protocol):
    async def converse(
        self, conversation_id: str, text: str, *, channel: str, lang: Lang
    ) -> list[dict[str, Any]]: ...


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
