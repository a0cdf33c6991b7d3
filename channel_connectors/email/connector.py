"""The email channel: letters in over IMAP (IDLE, or polling), replies out over SMTP.

A letter is stored through the ``Inbox`` before it is marked seen in the mailbox
(persist first), so a crash between the two only makes the mailbox hand it over again,
and its ``Message-ID`` (the thread index, ``store.email_message``) takes it once. The
conversation is the thread: ``In-Reply-To``/``References`` find it; a letter outside
every thread starts a new one. Every message is a letter (``Capabilities.letters``):
the hub answers it once (hotline/letters.py), and agents reply from the console into
the same thread. Logs carry codes and ids, never addresses, subjects or text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channel_connectors.email import store
from channel_connectors.email.attachments import AttachmentFiles, Checked, Limits, check
from channel_connectors.email.imap import ImapMailbox, MailboxError
from channel_connectors.email.mailsystem import LocalMailSystem
from channel_connectors.email.parse import Attachment, BadLetter, Letter, key_of, read_letter
from channel_connectors.email.settings import EmailSettings
from channel_connectors.email.smtp import SendError, SmtpSubmission
from hotline.api.common import ID, visible
from hotline.api.errors import json_error
from hotline.audit import record
from hotline.auth import in_scope, require_user
from hotline.config import Settings
from hotline.lang import Lang, detect, parse
from hotline.messages import Inbound, Outbound
from hotline.ports import Capabilities, Channel, ChannelRuntime, Health, Inbox, InvalidInput
from hotline.ratelimit import KeyedRateLimit
from hotline.roles import STAFF
from hotline.store.models import AuthorKind, Conversation
from hotline.texts import say
from recordings.http import serve
from recordings.sealed import SealedError

log = logging.getLogger(__name__)

NAME = "email"
BATCH = 50  # letters fetched per round
SEND_TRIES = 3
LETTER_FILE = "letter.txt"  # the whole text of a letter longer than the transcript takes
_AUTOMATIC_AUTHORS = frozenset({AuthorKind.BOT, AuthorKind.SYSTEM})


class EmailChannel(Channel):
    name = NAME
    capabilities = Capabilities(
        media="deferred", buttons=False, attachments=True, address="email", letters=True
    )
    notice_address = "email"  # hotline.ports.Notifier: one-off notices to an address

    def __init__(self, settings: EmailSettings, core: Settings, inbox: Inbox) -> None:
        self.settings = settings
        self._core = core
        self._inbox = inbox
        self._files = AttachmentFiles(core.var_dir / "attachments", core.secret_key)
        self._limits = Limits(settings.max_attachment_bytes, settings.max_attachments)
        self._rate = KeyedRateLimit(settings.rate_limit, settings.rate_window)
        self._rate_notices = KeyedRateLimit(1, settings.rate_window)
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._mail_system: LocalMailSystem | None = None
        self._reader: asyncio.Task[None] | None = None
        self._error: str | None = "not started"
        self._idle: bool | None = None
        s = settings
        self._smtp = SmtpSubmission(
            s.smtp_host,
            s.smtp_port,
            s.smtp_user or None,
            s.smtp_password or None,
            tls=s.smtp_tls,
            timeout=30.0,
        )

    # --------------------------------------------------------------- wiring
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(
            "/api/channels/email/conversations/{conversation_id}/attachments", self.list_api
        )
        app.router.add_get("/api/channels/email/attachments/{attachment_id}", self.download_api)

    async def start(self, runtime: ChannelRuntime) -> None:
        s = self.settings
        if not s.enabled:
            return
        self._sessions = runtime.sessions
        if s.server == "embedded":
            system = LocalMailSystem(
                self._core.var_dir / "mail",
                imap_port=s.imap_port,
                smtp_port=s.smtp_port,
                password=s.imap_password,
            )
            await system.start()
            self._mail_system = system
            log.info("embedded mail system running", extra={"imap_port": s.imap_port})
        self._reader = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._mail_system is not None:
            system, self._mail_system = self._mail_system, None
            await system.stop()

    async def health(self) -> Health:
        s = self.settings
        if not s.enabled:
            return Health("off", s.off_reason)
        if self._error is not None:
            return Health("down", self._error)
        how = "IDLE" if self._idle else f"polling every {s.poll_seconds} s"
        return Health("ok", f"{s.imap_host}:{s.imap_port} by {how} ({s.server})")

    def how_to_try(self, origin: str) -> str | None:
        s = self.settings
        if not s.enabled:
            return f"off ({s.off_reason})"
        if s.server == "embedded":
            return (
                f"write to {s.address} through the local mail system (SMTP 127.0.0.1:"
                f"{s.smtp_port}): .venv/bin/hotline simulate email --from "
                'citizen@example.test --subject "咨询" --text "举报之后多久会有答复？"'
            )
        return f"write to {s.address}"

    # -------------------------------------------------------------- inbound
    async def _watch(self) -> None:
        """Take what is unseen, then wait (IDLE, else the poll interval); reconnect with
        backoff when the server goes away. A failure of our own (the database) leaves
        the letter unseen, so the next round takes it again."""
        s, delay = self.settings, 1.0
        while True:
            mailbox = ImapMailbox(
                s.imap_host,
                s.imap_port,
                s.imap_user,
                s.imap_password,
                tls=s.imap_tls,
                folder=s.imap_folder,
                timeout=30.0,
            )
            try:
                await mailbox.connect()
                self._idle, self._error, delay = mailbox.idle_supported, None, 1.0
                while True:
                    fetched = await mailbox.fetch_unseen(BATCH)
                    for item in fetched:
                        try:
                            await self.take(item.raw)
                        except Exception as exc:  # ours: the letter stays unseen
                            log.error("letter not taken; tried again", extra=_error_of(exc))
                            await asyncio.sleep(delay)
                            delay = min(delay * 2, 30.0)
                            break
                        await mailbox.mark_seen(item.uid)
                    else:
                        delay = 1.0
                    if len(fetched) < BATCH:
                        await mailbox.wait_for_mail(float(s.poll_seconds))
            except MailboxError as exc:
                self._error = f"IMAP: {exc}"
                log.warning("mailbox unavailable", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):
                    await mailbox.close()

    async def take(self, raw: bytes) -> str:
        """Store one letter and have it answered; what happened to it (for logs, tests)."""
        try:
            letter = read_letter(raw, own_address=self.settings.address)
        except BadLetter as exc:  # no sender to tell: the mailbox keeps it, seen
            log.info("letter refused", extra={"code": exc.code})
            return f"refused:{exc.code}"
        person = letter.automatic is None  # only a person gets automatic answers
        if letter.unreadable is not None:
            log.info("letter refused", extra={"code": letter.unreadable})
            if person:
                await self._notice_to(letter, "email_unreadable")
            return f"refused:{letter.unreadable}"
        checked = check(letter.attachments, self._limits)
        kept = [c for c in checked if c.refused is None]
        text = self._text_of(letter, kept)
        if not text:
            if person:
                await self._notice_to(letter, "email_empty")
            return "empty"
        limit = self._core.max_text_chars
        if len(text) > limit:  # the transcript gets the opening; staff get the whole letter
            whole = Attachment(LETTER_FILE, "text/plain", text.encode("utf-8"))
            kept.append(Checked(whole, "text/plain", None))
            text = text[: limit - 40] + "…\n📎 " + LETTER_FILE
        key = key_of(letter.message_id)
        known = await self._letter(key)
        if known is None:
            if await self._inbox.blocked(NAME, letter.sender):
                log.info("letter from a blacklisted sender kept unanswered")
                return "refused:blacklisted"
            conversation_id = await self._thread_of(letter)
            if conversation_id is None and not person:
                log.info("automatic letter outside any thread", extra={"why": letter.automatic})
                return f"ignored:{letter.automatic}"
            if conversation_id is None:
                opened = await self._inbox.open(NAME, _language(letter), address=letter.sender)
                conversation_id = opened.conversation_id
            known = await self._index(key, conversation_id, "in", letter)
        letter_id, conversation_id = known
        await self._keep_attachments(conversation_id, letter_id, key, kept)
        inbound = Inbound(conversation_id, f"mail-{key[:40]}", text)
        if not person:
            await self._inbox.record(inbound)
            log.info("automatic letter kept unanswered", extra={"why": letter.automatic})
            return "kept_automatic"
        if self._rate.take(letter.sender):
            accepted = await self._inbox.record(inbound)
            if not accepted.duplicate and not self._rate_notices.take(letter.sender):
                lang = _language(letter)
                await self._notice_in_thread(conversation_id, "email_rate_limited", lang)
            return "rate_limited"
        try:
            accepted = await self._inbox.accept(inbound)
        except InvalidInput as exc:
            log.info("letter refused", extra={"code": exc.code})
            return f"refused:{exc.code}"
        self._inbox.dispatch(inbound, accepted)
        refused = [c for c in checked if c.refused is not None]
        if refused and not accepted.duplicate:
            await self._refused_notice(conversation_id, refused, _language(letter))
        return "duplicate" if accepted.duplicate else "accepted"

    def _text_of(self, letter: Letter, kept: list[Checked]) -> str:
        """The transcript's text: the subject of a new matter, the new text, the files."""
        parts = []
        if letter.subject and not letter.thread_ids:
            parts.append(letter.subject)
        if letter.text:
            parts.append(letter.text)
        names = [f"📎 {c.attachment.filename} ({_size(len(c.attachment.data))})" for c in kept]
        if names:
            parts.append("\n".join(names))
        return "\n\n".join(parts)

    async def _letter(self, key: str) -> tuple[int, str] | None:
        table = store.email_message
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(table.c.id, table.c.conversation_id).where(table.c.key == key)
                )
            ).first()
        return (row.id, row.conversation_id) if row is not None else None

    async def _thread_of(self, letter: Letter) -> str | None:
        ids = letter.thread_ids
        if not ids:
            return None
        table = store.email_message
        keys = [key_of(mid) for mid in ids]
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(table.c.key, table.c.conversation_id).where(table.c.key.in_(keys))
                )
            ).all()
        found = {r.key: r.conversation_id for r in rows}
        return next((found[k] for k in keys if k in found), None)

    async def _index(
        self,
        key: str,
        conversation_id: str,
        direction: str,
        letter: Letter | None,
        *,
        message_id: str = "",
        subject: str = "",
    ) -> tuple[int, str]:
        """Add a letter (or a reply) to the thread index; the row it has (a race: theirs)."""
        row = {
            "key": key,
            "conversation_id": conversation_id,
            "direction": direction,
            "message_id": (letter.message_id if letter else message_id)[:255],
            "subject": (letter.subject if letter else subject)[:255],
            "created_at": dt.datetime.now(dt.UTC),
        }
        try:
            async with self.sessions() as session:
                result = await session.execute(
                    insert(store.email_message).values(**row).returning(store.email_message.c.id)
                )
                await session.commit()
                return int(result.scalar_one()), conversation_id
        except IntegrityError:
            known = await self._letter(key)
            if known is None:
                raise
            return known

    async def _keep_attachments(
        self, conversation_id: str, letter_id: int, key: str, kept: list[Checked]
    ) -> None:
        """Seal and list the accepted files; ids come from the letter, so a letter taken
        twice keeps its files once."""
        table = store.email_attachment
        for index, item in enumerate(kept):
            attachment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hotline-mail:{key}:{index}"))
            async with self.sessions() as session:
                found = await session.execute(select(table.c.id).where(table.c.id == attachment_id))
                if found.first() is not None:
                    continue
            digest = await asyncio.to_thread(self._files.store, attachment_id, item.attachment.data)
            with contextlib.suppress(IntegrityError):
                async with self.sessions() as session:
                    await session.execute(
                        insert(table).values(
                            id=attachment_id,
                            conversation_id=conversation_id,
                            letter_id=letter_id,
                            filename=item.attachment.filename,
                            content_type=item.content_type or "application/octet-stream",
                            size=len(item.attachment.data),
                            sha256=digest,
                            created_at=dt.datetime.now(dt.UTC),
                        )
                    )
                    await session.commit()

    async def _refused_notice(
        self, conversation_id: str, refused: list[Checked], lang: Lang
    ) -> None:
        lines = [
            say(
                "email_attachment_refused",
                lang,
                name=c.attachment.filename,
                reason=say(f"email_reason_{c.refused}", lang),
                limit=self._limits.describe(),
            )
            for c in refused
        ]
        await self._send_in_thread(conversation_id, "\n".join(lines), automatic=True)

    async def _notice_to(self, letter: Letter, key: str) -> None:
        """Answer a letter that is not taken, in both languages (its text may be unread)."""
        text = "\n\n".join(say(key, lang) for lang in ("zh", "en"))
        subject = f"Re: {letter.subject}" if letter.subject else say("email_subject", "zh")
        mail = self._compose(letter.sender, subject, text, automatic=True)
        mail["In-Reply-To"] = f"<{letter.message_id}>"
        mail["References"] = f"<{letter.message_id}>"
        await self._send(mail)

    async def _notice_in_thread(self, conversation_id: str, key: str, lang: Lang) -> None:
        """A line of the channel's own (not stored: it answers nothing the hub holds)."""
        await self._send_in_thread(conversation_id, say(key, lang), automatic=True)

    # ------------------------------------------------------------- outbound
    async def deliver(self, message: Outbound) -> None:
        automatic = message.author in _AUTOMATIC_AUTHORS
        text = self.as_text(message)  # buttons (a rating) become numbered lines
        await self._send_in_thread(message.conversation_id, text, automatic=automatic)

    async def send_notice(self, address: str, text: str) -> bool:
        """A new letter to ``address`` (a proof code, a case notice): not in any thread."""
        mail = self._compose(
            address,
            say("email_notice_subject", "zh") + " / " + say("email_notice_subject", "en"),
            text,
            automatic=True,
        )
        return await self._send(mail)

    async def _send_in_thread(self, conversation_id: str, text: str, *, automatic: bool) -> None:
        address = await self._inbox.address(conversation_id)
        if address is None:
            log.warning("no mail address", extra={"conversation_id": conversation_id})
            return
        subject, replied, references = await self._thread_head(conversation_id)
        lang = await self._language_of(conversation_id)
        if not subject:
            subject = say("email_subject", lang)
        elif not subject.lower().startswith(("re:", "回复:", "回复：")):
            subject = f"Re: {subject}"
        mail = self._compose(address, subject, text, automatic=automatic)
        if replied:
            mail["In-Reply-To"] = f"<{replied}>"
            mail["References"] = " ".join(f"<{r}>" for r in (*references, replied)[-10:])
        message_id = str(mail["Message-ID"]).strip("<>")
        await self._index(
            key_of(message_id),
            conversation_id,
            "out",
            None,
            message_id=message_id,
            subject=subject,
        )
        if not await self._send(mail):
            log.warning("reply not sent", extra={"conversation_id": conversation_id})

    def _compose(self, to: str, subject: str, text: str, *, automatic: bool) -> EmailMessage:
        s = self.settings
        mail = EmailMessage()
        mail["From"] = formataddr((s.from_name, s.address))
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        mail["Message-ID"] = make_msgid(domain=s.domain)
        if automatic:  # RFC 3834: an auto-responder will not answer it
            mail["Auto-Submitted"] = "auto-replied"
            mail["X-Auto-Response-Suppress"] = "All"
        mail.set_content(text or "…")
        return mail

    async def _send(self, mail: EmailMessage) -> bool:
        delay = 1.0
        for attempt in range(SEND_TRIES):
            try:
                await self._smtp.send(mail)
                return True
            except SendError as exc:
                log.warning(
                    "mail send failed",
                    extra={"permanent": exc.permanent, "attempt": attempt + 1, "error": str(exc)},
                )
                if exc.permanent:
                    return False
            await asyncio.sleep(delay)
            delay *= 4
        return False

    async def _thread_head(self, conversation_id: str) -> tuple[str, str | None, list[str]]:
        """The thread's subject, the citizen's last letter (answered) and earlier ids."""
        table = store.email_message
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(table.c.direction, table.c.message_id, table.c.subject)
                    .where(table.c.conversation_id == conversation_id)
                    .order_by(table.c.id)
                )
            ).all()
        subject = next((r.subject for r in rows if r.direction == "in" and r.subject), "")
        inbound = [r.message_id for r in rows if r.direction == "in"]
        replied = inbound[-1] if inbound else None
        earlier = [r.message_id for r in rows if r.message_id != replied]
        return subject, replied, earlier

    async def _language_of(self, conversation_id: str) -> Lang:
        async with self.sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
        return (parse(conversation.language) if conversation else None) or "zh"

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("the email channel is not running")
        return self._sessions

    # ------------------------------------------------------------ staff API
    async def list_api(self, request: web.Request) -> web.Response:
        """The files of a conversation's letters (audited: names are the citizen's)."""
        user = require_user(request, *STAFF)
        conversation_id = (await visible(request, user, "conversation_id")).id
        table = store.email_attachment
        async with self.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(table)
                        .where(table.c.conversation_id == conversation_id)
                        .order_by(table.c.created_at, table.c.id)
                    )
                )
                .mappings()
                .all()
            )
            if rows:
                record(session, user.id, "attachment.list", "conversation", conversation_id)
                await session.commit()
        return web.json_response(
            {
                "conversation_id": conversation_id,
                "attachments": [
                    {
                        "id": r["id"],
                        "filename": r["filename"],
                        "content_type": r["content_type"],
                        "size": r["size"],
                        "created_at": r["created_at"].isoformat(),
                        "url": f"/api/channels/email/attachments/{r['id']}",
                    }
                    for r in rows
                ],
            }
        )

    async def download_api(self, request: web.Request) -> web.StreamResponse:
        user = require_user(request, *STAFF)
        attachment_id = request.match_info["attachment_id"]
        if not ID.fullmatch(attachment_id):
            raise _not_found()
        table = store.email_attachment
        async with self.sessions() as session:
            row = (
                (await session.execute(select(table).where(table.c.id == attachment_id)))
                .mappings()
                .first()
            )
            conversation = await session.get(Conversation, row["conversation_id"]) if row else None
            if row is None or conversation is None or not in_scope(user, conversation.org_unit_id):
                raise _not_found()
            record(
                session,
                user.id,
                "attachment.download",
                "attachment",
                attachment_id,
                conversation=row["conversation_id"],
            )
            await session.commit()
        try:
            reader = self._files.open(attachment_id)
        except (SealedError, OSError):
            raise json_error(
                500,
                "attachment_damaged",
                "the attachment file is missing or damaged",
                "附件文件缺失或损坏",
            ) from None
        try:
            return await serve(
                request, reader, row["content_type"], disposition=_disposition(row["filename"])
            )
        finally:
            reader.close()


def _disposition(filename: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"


def _not_found() -> web.HTTPException:
    return json_error(
        404, "not_found", "no such attachment or conversation", "没有找到该附件或会话"
    )


def _language(letter: Letter) -> Lang:
    hint = parse(letter.language or "") or "zh"
    return detect(f"{letter.subject}\n{letter.text}", hint)


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1 << 20 else f"{max(1, n // 1024)} KB"


def _error_of(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__}


def make_channel(settings: EmailSettings, core: Settings, inbox: Inbox) -> EmailChannel:
    return EmailChannel(settings, core, inbox)
