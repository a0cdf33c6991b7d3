"""How many turns Rasa works on at once, and who waits for it.

Rasa answers some 10-20 turns a second on a small machine. Sent more at once, every
turn gets slower until they all pass ``HOTLINE_RASA_TIMEOUT`` and the hub takes a busy
bot for a dead one. So at most ``concurrency`` calls are in flight; the others wait
here, in order, and their wait does not count against Rasa's timeout (that clock starts
when the call is sent). A citizen's turn waits at most ``max_wait`` seconds, and at
most ``max_waiting`` turns wait at all (beyond that a turn could not be served within
``max_wait`` anyway): either way it gets :class:`BotOverloaded` and the hub hands the
conversation to a person with the reason ``bot_overloaded``.

Greetings wait behind every waiting turn and for as long as it takes: an answer to
someone who wrote matters more than a hello, and a hello is never refused for load.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from hotline.bot import BotOverloaded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateStats:
    in_flight: int
    waiting_turns: int
    waiting_greetings: int
    waited: int  # calls (turns and greetings) that had to wait for a slot
    shed: int  # turns refused because too many were waiting
    expired: int  # turns that waited past max_wait


class BotGate:
    def __init__(
        self,
        concurrency: int | None = None,
        *,
        max_waiting: int = 200,
        max_wait: float = 15.0,
    ) -> None:
        """``concurrency=None``: no limit (every call goes straight through)."""
        self._concurrency = concurrency
        self._max_waiting = max_waiting
        self._max_wait = max_wait
        self._in_flight = 0
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()
        self._greetings: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shed = 0
        self._expired = 0
        self._waited = 0

    @property
    def stats(self) -> GateStats:
        return GateStats(
            self._in_flight,
            len(self._turns),
            len(self._greetings),
            self._waited,
            self._shed,
            self._expired,
        )

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a slot for one citizen turn; raises ``BotOverloaded`` if none comes in time."""
        await self._acquire(self._turns, self._max_wait)
        try:
            yield
        finally:
            self._release()

    @asynccontextmanager
    async def greeting(self) -> AsyncIterator[None]:
        """Hold a slot for a greeting: after every waiting turn, with no time limit."""
        await self._acquire(self._greetings, None)
        try:
            yield
        finally:
            self._release()

    def _free(self) -> bool:
        return self._concurrency is None or self._in_flight < self._concurrency

    async def _acquire(
        self, line: collections.deque[asyncio.Future[None]], max_wait: float | None
    ) -> None:
        # The lines hold only futures still waiting: granted ones are popped, abandoned
        # ones removed.
        ahead = bool(self._turns) or (line is self._greetings and bool(self._greetings))
        if self._free() and not ahead:
            self._in_flight += 1  # no await before this: nobody can take it in between
            return
        if line is self._turns:
            waiting = len(self._turns)
            if waiting >= self._max_waiting:
                self._shed += 1
                log.warning("bot saturated: turn refused", extra={"waiting": waiting})
                raise BotOverloaded(f"{waiting} turns already waiting for the bot")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(future)
        self._waited += 1
        try:
            async with asyncio.timeout(max_wait):
                await future
        except (TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled():
                self._release()  # the slot came just as we gave up: pass it on
            else:
                future.cancel()
            _discard(line, future)
            if isinstance(exc, TimeoutError):
                self._expired += 1
                log.warning("bot saturated: turn waited too long", extra={"max_wait": max_wait})
                raise BotOverloaded(f"no bot slot within {max_wait} s") from None
            raise
        _discard(line, future)
        # The releasing call handed its slot over: _in_flight already counts this one.

    def _release(self) -> None:
        for line in (self._turns, self._greetings):
            while line:
                future = line.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes on; in_flight is unchanged
                    return
        self._in_flight -= 1


def _discard(line: collections.deque[asyncio.Future[None]], future: asyncio.Future[None]) -> None:
    try:
        line.remove(future)
    except ValueError:
        pass
