"""A staff client for tests: signs in, sends the CSRF token, and listens on /ws/agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class StaffClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.user: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def login(self, username: str, password: str) -> StaffClient:
        async with self.http.post(
            f"{self.base_url}/api/login", json={"username": username, "password": password}
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        self.csrf, self.user = body["csrf"], body["user"]
        return self

    async def call(
        self, method: str, path: str, body: Any = None, *, expect: int | None = 200
    ) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if method != "GET" else {}
        async with self.http.request(
            method, f"{self.base_url}{path}", json=body, headers=headers
        ) as resp:
            data = await resp.json() if resp.content_type == "application/json" else None
            if expect is not None:
                assert resp.status == expect, (resp.status, data)
            return resp.status, data

    async def get(self, path: str) -> Any:
        return (await self.call("GET", path))[1]

    async def post(self, path: str, body: Any = None, *, expect: int | None = 200) -> Any:
        return (await self.call("POST", path, body if body is not None else {}, expect=expect))[1]

    async def connect(self) -> dict[str, Any]:
        url = self.base_url.replace("http", "ws", 1) + "/ws/agent"
        self.ws = await self.http.ws_connect(url, headers={"Origin": self.base_url})
        self._reader = asyncio.create_task(self._read())
        return await self.wait("hello")

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))
                self._arrived.set()

    async def wait(
        self,
        kind: str,
        match: Callable[[dict[str, Any]], bool] = lambda _f: True,
        timeout: float = 15,
    ) -> dict[str, Any]:
        """The first frame of ``kind`` that matches and was not consumed yet."""
        async with asyncio.timeout(timeout):
            while True:
                for i, frame in enumerate(self.frames):
                    if frame.get("type") == kind and match(frame):
                        return self.frames.pop(i)
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.http.close()
