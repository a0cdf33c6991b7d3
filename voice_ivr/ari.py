"""A small asyncio ARI client: REST calls and the events WebSocket, with reconnection.

Only what the IVR needs is wrapped; everything else is ``request``. Query values are
strings (aiohttp refuses booleans). Events are handed to a callback in arrival order;
after a reconnect ``on_reconnect`` runs so the app can reconcile its calls with the
channels Asterisk still has.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value (aiohttp's BasicAuth is deprecated)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class AriError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ARI {status}: {message}")
        self.status = status

    @property
    def caller_gone(self) -> bool:
        """404: no such channel; 409: it has already left our Stasis app (hanging up)."""
        return self.status in (404, 409)


class AriClient:
    def __init__(
        self, http: aiohttp.ClientSession, url: str, user: str, password: str, app: str
    ) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._auth = {"Authorization": basic_auth(user, password)}
        self.app = app
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connected = asyncio.Event()

    async def request(self, method: str, path: str, **params: str) -> Any:
        async with self._http.request(
            method,
            f"{self._url}/ari{path}",
            params=params,
            headers=self._auth,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            if resp.status >= 400:
                raise AriError(resp.status, (await resp.text())[:200])
            if resp.status == 204 or resp.content_type != "application/json":
                return None
            return await resp.json()

    # ------------------------------------------------------------ helpers
    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str) -> None:
        try:
            await self.request("DELETE", f"/channels/{channel_id}")
        except AriError as exc:
            if exc.status != 404:  # already gone: that is what we wanted
                raise

    async def play(self, channel_id: str, media: str, playback_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/play/{playback_id}", media=media)

    async def stop_playback(self, playback_id: str) -> None:
        try:
            await self.request("DELETE", f"/playbacks/{playback_id}")
        except AriError as exc:
            if exc.status != 404:
                raise

    async def playing(self, playback_id: str) -> bool:
        try:
            await self.request("GET", f"/playbacks/{playback_id}")
        except AriError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def drop_events(self) -> None:
        """Close the events socket; it reconnects and reconciles as after a network cut."""
        if self._ws is not None:
            await self._ws.close()

    async def channels(self) -> list[dict[str, Any]]:
        found = await self.request("GET", "/channels")
        return found if isinstance(found, list) else []

    async def bridges(self) -> list[dict[str, Any]]:
        found = await self.request("GET", "/bridges")
        return found if isinstance(found, list) else []

    async def originate(
        self, endpoint: str, channel_id: str, *, app_args: str, timeout: int, caller_id: str
    ) -> None:
        """Dial ``endpoint``; the channel enters our app (StasisStart) once answered."""
        await self.request(
            "POST",
            "/channels",
            endpoint=endpoint,
            app=self.app,
            appArgs=app_args,
            channelId=channel_id,
            timeout=str(timeout),
            callerId=caller_id,
        )

    async def moh(self, channel_id: str, on: bool) -> None:
        await self.request("POST" if on else "DELETE", f"/channels/{channel_id}/moh")

    async def bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.request("POST", f"/bridges/{bridge_id}", type="mixing")
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", channel=",".join(channel_ids)
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        try:
            await self.request("DELETE", f"/bridges/{bridge_id}")
        except AriError as exc:
            if exc.status != 404:
                raise

    async def record(self, target: str, name: str, **options: str) -> None:
        """Record ``bridges/<id>`` or ``channels/<id>`` to ``<spool>/recording/<name>.wav``."""
        await self.request(
            "POST", f"/{target}/record", name=name, format="wav", ifExists="overwrite", **options
        )

    async def stop_recording(self, name: str) -> None:
        try:
            await self.request("POST", f"/recordings/live/{name}/stop")
        except AriError as exc:
            if exc.status != 404:
                raise

    async def endpoint_online(self, resource: str) -> bool:
        try:
            found = await self.request("GET", f"/endpoints/PJSIP/{resource}")
        except AriError as exc:
            if exc.status == 404:
                return False
            raise
        return isinstance(found, dict) and found.get("state") == "online"

    async def reload_module(self, module: str) -> None:
        await self.request("PUT", f"/asterisk/modules/{module}")

    # ------------------------------------------------------------- events
    def listen(
        self,
        handler: EventHandler,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._task = asyncio.create_task(self._listen(handler, on_reconnect))

    async def _listen(
        self, handler: EventHandler, on_reconnect: Callable[[], Awaitable[None]] | None
    ) -> None:
        url = self._url.replace("http", "ws", 1) + "/ari/events"
        delay = 0.2
        first = True
        while True:
            try:
                async with self._http.ws_connect(
                    url,
                    params={"app": self.app, "subscribeAll": "false"},
                    headers=self._auth,
                    heartbeat=20,
                ) as ws:
                    self._ws = ws
                    self.connected.set()
                    delay = 0.2
                    if not first and on_reconnect is not None:
                        await on_reconnect()
                    first = False
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        try:
                            event = json.loads(msg.data)
                        except ValueError:
                            log.warning("ARI sent a frame that is not JSON")
                            continue
                        if isinstance(event, dict):
                            try:
                                await handler(event)
                            except Exception:
                                log.exception("ARI event handler failed")
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("ARI events connection lost", extra={"error": type(exc).__name__})
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
