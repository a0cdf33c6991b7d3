"""Reading a mailbox over IMAP (aioimaplib): unseen messages, the seen flag, and IDLE.

``ImapMailbox`` holds one connection with ``folder`` selected. Every failure (refused,
timed out, dropped, a NO/BAD answer) raises ``MailboxError`` with a short reason that
never carries mail content; after it the connection is unusable and the caller backs
off and calls ``connect()`` again.

Fetching uses ``BODY.PEEK[]``, so reading never marks a message seen: only
``mark_seen()`` does, once the caller has taken the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aioimaplib  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
# aioimaplib logs every line it sends and receives (message content included) at DEBUG
# and unknown lines at INFO.
logging.getLogger("aioimaplib.aioimaplib").setLevel(logging.WARNING)

Tls = Literal["none", "starttls", "tls"]
T = TypeVar("T")

_IDLE_SAFETY = 60.0  # aioimaplib's own IDLE timer; ours always ends IDLE first
_ATOM = re.compile(r"[A-Za-z0-9._/-]+")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_FETCH_UID = re.compile(rb"UID (\d+)")
_LITERAL = re.compile(rb"\{(\d+)\}$")
_PUSH = re.compile(rb"^\d+ (EXISTS|RECENT)\b")


class MailboxError(Exception):
    """The mailbox cannot be used now (connection or protocol failure): reconnect later."""


@dataclass(frozen=True)
class Fetched:
    """One message as stored: its UID in the selected folder and its raw bytes."""

    uid: int
    raw: bytes


def _status_text(response: Any) -> str:
    """The text of a tagged NO/BAD answer, shortened (it names no message content)."""
    lines = getattr(response, "lines", None) or [b""]
    last = lines[-1]
    text = bytes(last).decode("utf-8", "replace") if isinstance(last, bytes | bytearray) else ""
    return text[:120]


class ImapMailbox:
    """One IMAP folder, read through aioimaplib."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        tls: Tls,
        folder: str = "INBOX",
        timeout: float,
    ) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"tls must be none, starttls or tls, not {tls!r}")
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.tls: Tls = tls
        self.folder = folder
        self.timeout = timeout
        self._client: Any = None
        self._lost = asyncio.Event()
        self._broken = False
        self._uidvalidity: int | None = None
        self._highest_uid = 0

    # ---------------------------------------------------------------- state
    @property
    def connected(self) -> bool:
        return self._client is not None and not self._broken and not self._lost.is_set()

    @property
    def uidvalidity(self) -> int | None:
        """UIDVALIDITY of the selected folder (UIDs are only comparable while it holds)."""
        return self._uidvalidity

    @property
    def idle_supported(self) -> bool:
        """Whether the server offers IDLE (known once connected)."""
        return self._client is not None and bool(self._client.has_capability("IDLE"))

    @property
    def idling(self) -> bool:
        """Whether an IDLE is in progress (the server will push new mail now)."""
        return self._client is not None and bool(self._client.has_pending_idle())

    # ---------------------------------------------------------------- connection
    async def connect(self) -> None:
        """(Re)connect, log in and select the folder."""
        await self.close()
        self._lost = asyncio.Event()
        self._broken = False
        self._highest_uid = 0
        self._uidvalidity = None
        context = ssl.create_default_context() if self.tls != "none" else None
        try:
            if self.tls == "tls":
                client = aioimaplib.IMAP4_SSL(
                    self.host, self.port, timeout=self.timeout, ssl_context=context
                )
            else:
                client = aioimaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        except (OSError, ValueError) as exc:
            raise MailboxError(f"cannot connect: {type(exc).__name__}") from None
        client.protocol.conn_lost_cb = self._on_connection_lost
        self._client = client
        try:
            await self._run("connect", client.wait_hello_from_server)
            if self.tls == "starttls":
                assert context is not None
                await self._starttls(context)
            response = await self._run("login", lambda: client.login(self.user, self.password))
            if response.result != "OK":
                raise MailboxError(f"login refused: {_status_text(response)}")
            # Capabilities may change after login (RFC 3501 7.2.1): ask again.
            await self._run("capability", client.protocol.capability)
            folder = self.folder if _ATOM.fullmatch(self.folder) else aioimaplib.quoted(self.folder)
            response = await self._run("select", lambda: client.select(folder))
            if response.result != "OK":
                raise MailboxError(f"cannot select the folder: {_status_text(response)}")
        except BaseException:
            await self.close()
            raise
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and (m := _UIDVALIDITY.search(bytes(line))):
                self._uidvalidity = int(m.group(1))

    async def _starttls(self, context: ssl.SSLContext) -> None:
        """STARTTLS (RFC 3501 6.2.1), which aioimaplib lacks: upgrade its transport."""
        client = self._client
        protocol = client.protocol
        if not client.has_capability("STARTTLS"):
            raise MailboxError("the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._run("starttls", lambda: protocol.execute(command))
        if response.result != "OK":
            raise MailboxError(f"STARTTLS refused: {_status_text(response)}")
        loop = asyncio.get_running_loop()
        transport = await self._run(
            "tls handshake",
            lambda: loop.start_tls(
                protocol.transport, protocol, context, server_hostname=self.host
            ),
        )
        if transport is None:
            raise MailboxError("tls handshake failed")
        protocol.transport = transport
        await self._run("capability", protocol.capability)

    def _on_connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    async def close(self) -> None:
        """Log out (best effort) and drop the connection; never raises."""
        client, self._client = self._client, None
        if client is None:
            return
        protocol = client.protocol
        try:
            if not self._broken and not self._lost.is_set():
                if client.has_pending_idle():
                    client.idle_done()
                await asyncio.wait_for(client.logout(), min(self.timeout, 5.0))
        except Exception:  # noqa: S110 (closing anyway)
            pass
        finally:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.close()
            pending = [*getattr(client, "tasks", ()), *getattr(protocol, "tasks", ())]
            connecting = getattr(client, "_client_task", None)
            if connecting is not None:
                pending.append(connecting)
            for task in pending:
                if not task.done():
                    task.cancel()
            self._broken = True

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one protocol step, bounded by the timeout and by the connection's life."""
        if self._client is None or self._broken:
            raise MailboxError(f"{what}: not connected")
        if self._lost.is_set():
            self._broken = True
            raise MailboxError(f"{what}: connection lost")
        step = asyncio.ensure_future(call())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {step, lost}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            self._broken = True
            raise
        finally:
            for task in (step, lost):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(step, lost, return_exceptions=True)
        if step in done:
            try:
                return step.result()
            except (aioimaplib.AioImapException, OSError, TimeoutError, ValueError) as exc:
                self._broken = True
                raise MailboxError(f"{what} failed: {type(exc).__name__}") from None
        self._broken = True
        if lost in done:
            raise MailboxError(f"{what}: connection lost")
        raise MailboxError(f"{what}: no answer within {self.timeout:.0f} s")

    # ---------------------------------------------------------------- messages
    async def _search(self, *criteria: str) -> list[int]:
        client = self._client
        # The session shows new mail only after a sync: NOOP first, or SEARCH may answer
        # from the view of the previous command.
        response = await self._run("noop", lambda: client.noop())
        if response.result != "OK":
            raise MailboxError(f"noop refused: {_status_text(response)}")
        response = await self._run("search", lambda: client.uid_search(*criteria, charset=None))
        if response.result != "OK":
            raise MailboxError(f"search refused: {_status_text(response)}")
        uids: list[int] = []
        # aioimaplib hands over "* SEARCH 1 2 3" as b"1 2 3"; the last line is the status.
        for line in response.lines[:-1]:
            if isinstance(line, bytes | bytearray):
                words = bytes(line).split()
                if words[:1] == [b"SEARCH"]:
                    words = words[1:]
                uids.extend(int(word) for word in words if word.isdigit())
        return sorted(set(uids))

    async def fetch_unseen(self, limit: int) -> list[Fetched]:
        """Up to ``limit`` unseen messages, oldest first; none is marked seen."""
        uids = (await self._search("UNSEEN"))[: max(limit, 0)]
        if not uids:
            return []
        client = self._client
        message_set = ",".join(str(uid) for uid in uids)
        response = await self._run(
            "fetch", lambda: client.uid("fetch", message_set, "(UID BODY.PEEK[])")
        )
        if response.result != "OK":
            raise MailboxError(f"fetch refused: {_status_text(response)}")
        fetched = self._parse_fetch(response.lines)
        found = {f.uid for f in fetched}
        if fetched:
            self._highest_uid = max(self._highest_uid, *found)
        # A message expunged meanwhile is simply missing from the answer.
        return sorted((f for f in fetched if f.uid in uids), key=lambda f: f.uid)

    @staticmethod
    def _parse_fetch(lines: list[Any]) -> list[Fetched]:
        """Pair each ``n FETCH (... UID u ... BODY[] {size}`` with the literal after it;
        the UID may also come after the literal."""
        out: list[Fetched] = []
        uid: int | None = None
        body: bytes | None = None
        for item in lines:
            if isinstance(item, bytearray):
                body = bytes(item)
                continue
            if not isinstance(item, bytes):
                continue
            if _FETCH_START.match(item):
                if uid is not None and body is not None:
                    out.append(Fetched(uid, body))
                uid, body = None, None
            m = _FETCH_UID.search(item)
            if m and uid is None and (_FETCH_START.match(item) or body is not None):
                uid = int(m.group(1))
        if uid is not None and body is not None:
            out.append(Fetched(uid, body))
        return out

    async def mark_seen(self, uid: int) -> None:
        """Set \\Seen on one message."""
        client = self._client
        response = await self._run(
            "store", lambda: client.uid("store", str(int(uid)), "+FLAGS.SILENT", r"(\Seen)")
        )
        if response.result != "OK":
            raise MailboxError(f"store refused: {_status_text(response)}")

    # ---------------------------------------------------------------- waiting
    async def wait_for_mail(self, timeout: float) -> bool:
        """Wait for new mail: True as soon as the server reports some (IDLE), False at
        the timeout. Without IDLE, sleep ``timeout`` (the poll interval) and say True."""
        if not self.idle_supported:
            if not self.connected:
                raise MailboxError("wait: not connected")
            await asyncio.sleep(timeout)
            return True
        # Mail that came while we were busy (its EXISTS answered another command):
        # unseen messages above the highest UID handed out.
        if any(
            uid > self._highest_uid
            for uid in await self._search("UNSEEN", "UID", f"{self._highest_uid + 1}:*")
        ):
            return True
        client = self._client
        queue = client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle = await self._run("idle", lambda: client.idle_start(timeout=timeout + _IDLE_SAFETY))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        arrived = False
        try:
            while not arrived:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                push = asyncio.ensure_future(queue.get())
                lost = asyncio.ensure_future(self._lost.wait())
                try:
                    done, _ = await asyncio.wait(
                        {push, lost}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for task in (push, lost):
                        task.cancel()
                if push in done and not push.cancelled():
                    lines = push.result()
                    arrived = any(
                        isinstance(line, bytes | bytearray) and _PUSH.match(bytes(line))
                        for line in lines
                    )
                elif lost in done:
                    self._broken = True
                    raise MailboxError("idle: connection lost")
        except BaseException:
            # Leave IDLE even when cancelled; the connection is not reused after this.
            if not self._lost.is_set():
                with contextlib.suppress(Exception):
                    client.idle_done()
            self._broken = True
            idle.cancel()
            raise
        client.idle_done()
        response = await self._run("idle done", lambda: asyncio.shield(idle))
        if response.result != "OK":
            raise MailboxError(f"idle ended badly: {_status_text(response)}")
        return arrived
