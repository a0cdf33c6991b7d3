"""A citizen's side of email for the tests: write a letter, send it through the embedded
relay, and read what arrives in their own mailbox (IMAP IDLE, no sleeps).

``MailSystemThread`` runs one ``LocalMailSystem`` on an event loop of its own in a
daemon thread, so that one mail system can serve a whole session while each test runs
on its own loop (the SMTP relay lives on the loop that started it).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib

from channel_connectors.email.imap import ImapMailbox
from channel_connectors.email.mailsystem import LocalMailSystem
from tests.conftest import free_port

T = TypeVar("T")
Attachment = tuple[str, bytes, str]  # file name, content, MIME type ("image/png")


class MailSystemThread:
    """A LocalMailSystem on its own loop in a daemon thread."""

    def __init__(self, root: Path, *, password: str, max_message_bytes: int) -> None:
        self.password = password
        self.system = LocalMailSystem(
            root,
            imap_port=free_port(),
            smtp_port=free_port(),
            password=password,
            max_message_bytes=max_message_bytes,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mail", daemon=True)

    @property
    def imap_port(self) -> int:
        return self.system.imap_port

    @property
    def smtp_port(self) -> int:
        return self.system.smtp_port

    def start(self) -> None:
        self.thread.start()
        self.run(self.system.start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """From synchronous code (fixtures): run ``coro`` on the mail loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a test's loop: run ``coro`` on the mail loop and await it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        try:
            self.run(self.system.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def letter(
    frm: str,
    to: str | Iterable[str],
    subject: str,
    text: str,
    *,
    html: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Iterable[Attachment] = (),
    in_reply_to: str | None = None,
    references: str | Iterable[str] | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A letter as a mail client would write it (Date and Message-ID included)."""
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    domain = email.utils.parseaddr(frm)[1].rpartition("@")[2] or "localhost"
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain=domain)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references if isinstance(references, str) else " ".join(references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
    return msg


async def send_mail(smtp_port: int, message: EmailMessage) -> None:
    """Send ``message`` through the embedded relay (no AUTH, from loopback)."""
    await aiosmtplib.send(
        message,
        hostname="127.0.0.1",
        port=smtp_port,
        start_tls=False,
        local_hostname="citizen.test",
        timeout=10,
    )


async def wait_taken(imap_port: int, address: str, password: str, timeout: float = 30) -> None:
    """Wait until the mailbox at ``address`` holds nothing unseen: the email channel
    marks a letter seen once it stored it, so then every letter was taken."""
    box = ImapMailbox("127.0.0.1", imap_port, address, password, tls="none", timeout=10.0)
    await box.connect()
    try:
        async with asyncio.timeout(timeout):
            while await box.fetch_unseen(1):
                await asyncio.sleep(0.05)
    finally:
        await box.close()


def parse(raw: bytes) -> EmailMessage:
    """A stored message as Python's email package reads it (line ends as "\\n")."""
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class CitizenMailbox:
    """A citizen's own INBOX on the embedded IMAP server."""

    def __init__(self, imap_port: int, address: str, password: str) -> None:
        self.box = ImapMailbox("127.0.0.1", imap_port, address, password, tls="none", timeout=10.0)
        self._backlog: list[EmailMessage] = []

    async def connect(self) -> CitizenMailbox:
        await self.box.connect()
        return self

    async def __aenter__(self) -> CitizenMailbox:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def next_message(
        self, timeout: float, predicate: Callable[[EmailMessage], bool] | None = None
    ) -> EmailMessage:
        """The next message this mailbox has not returned before (and that matches
        ``predicate``), waiting for it with IDLE; TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for fetched in await self.box.fetch_unseen(100):
                await self.box.mark_seen(fetched.uid)
                self._backlog.append(parse(fetched.raw))
            for i, message in enumerate(self._backlog):
                if predicate is None or predicate(message):
                    return self._backlog.pop(i)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout} s")
            await self.box.wait_for_mail(remaining)

    async def close(self) -> None:
        await self.box.close()
