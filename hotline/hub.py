"""The conversation hub: persist first, then ask the bot, then deliver the replies.

Every channel hands the hub the same ``Inbound``. The hub stores it (deduplicated by
client id) before anything else, so an accepted message survives a crash or a dead
bot. Replies are stored, then delivered through the channel that owns the conversation.

The bot never touches storage: when it needs something done (create a ticket, look up
a case, hand off, answer from the knowledge base) it returns a command in a custom
payload and the hub carries it out here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select

from hotline.answers import KnowledgeAnswers
from hotline.bot import Bot, BotUnavailable
from hotline.channels import ChannelRegistry
from hotline.conversations import ConversationStore
from hotline.lang import Lang, detect, parse
from hotline.messages import Accepted, Button, Inbound, Outbound
from hotline.store.models import (
    AuthorKind,
    Conversation,
    ConversationState,
    Message,
    TicketKind,
)
from hotline.texts import say
from hotline.tickets import CHINA, PUBLIC_STATUS, LookupOutcome, TicketService
from hotline.tracker import TrackerPurger
from hotline.vault import Identity, Sealer

log = logging.getLogger(__name__)

_INTENT_PAYLOAD = re.compile(r'^/[a-z][a-z0-9_]{1,39}(\{"kb_article":"[a-z0-9-]{1,60}"\})?$')
_HANDOFF_REASONS = frozenset({"requested", "bot_unavailable", "bot_gave_up", "intake_failed"})
MAX_MISSES = 3  # unanswerable questions in a row before a person takes over
_RATINGS = {"1": 1, "2": 2, "3": 3, "/rate_1": 1, "/rate_2": 2, "/rate_3": 3}


class Handoff(Protocol):
    """Where conversations go when a person must take over (the ACD service)."""

    async def enqueue(self, conversation_id: str) -> None: ...

    async def citizen_message(self, conversation_id: str, message_id: int) -> None: ...

    def position(self, conversation_id: str) -> tuple[int, int] | None: ...


class InvalidInput(ValueError):
    """A citizen's message breaks a rule; ``code`` goes back to the sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Hub:
    def __init__(
        self,
        conversations: ConversationStore,
        bot: Bot,
        tickets: TicketService,
        answers: KnowledgeAnswers,
        secret_key: bytes,
        *,
        max_text_chars: int = 2000,
        intents: frozenset[str] = frozenset(),
        tracker: TrackerPurger | None = None,
    ) -> None:
        self.conversations = conversations
        self.channels = ChannelRegistry()
        self._bot = bot
        self.tickets = tickets
        self._answers = answers
        self._sealer = Sealer(secret_key, "message")
        self._max_text = max_text_chars
        self._intents = intents
        self._tracker = tracker
        self.handoff: Handoff | None = None
        self._purge_after_turn: set[str] = set()
        self._enqueue_after_turn: set[str] = set()
        self._misses: dict[str, int] = {}
        # Replies of the turn in progress, per conversation: stored together at its end.
        self._pending: dict[str, list[tuple[Message, Outbound]]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands: dict[str, Callable[[Conversation, dict[str, Any]], Any]] = {
            "expect_sensitive": self._cmd_expect_sensitive,
            "create_ticket": self._cmd_create_ticket,
            "case_status": self._cmd_case_status,
            "handoff": self._cmd_handoff,
            "kb_answer": self._cmd_kb_answer,
            "forget": self._cmd_forget,
        }

    # ----------------------------------------------------------------- inbound
    def validate(self, inbound: Inbound) -> None:
        """Reject what no channel may send; raises ``InvalidInput``."""
        text = inbound.text.strip()
        if not text:
            raise InvalidInput("empty_text", "message text is empty")
        if len(inbound.text) > self._max_text:
            raise InvalidInput(
                "text_too_long", f"message text is longer than {self._max_text} characters"
            )
        if inbound.payload is not None:
            ok = _INTENT_PAYLOAD.match(inbound.payload)
            if not ok or (self._intents and inbound.payload[1:].split("{")[0] not in self._intents):
                raise InvalidInput("bad_payload", "unknown button payload")

    async def accept(self, inbound: Inbound) -> Accepted:
        """Validate and store the message. Nothing is acted on before this returns."""
        self.validate(inbound)
        return await self._store_inbound(inbound)

    def dispatch(self, inbound: Inbound, accepted: Accepted) -> None:
        """Process a stored message in the background, in order per conversation."""
        if accepted.duplicate:
            return
        task = asyncio.create_task(self._process(inbound, accepted.message_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def submit(self, inbound: Inbound) -> Accepted:
        """Accept, then dispatch: for channels that acknowledge nothing themselves."""
        accepted = await self.accept(inbound)
        self.dispatch(inbound, accepted)
        return accepted

    def greet(self, conversation_id: str) -> None:
        """Have the bot open a new conversation with its greeting (in the background).

        Nothing is stored for the citizen; if the bot is away the greeting is skipped.
        """
        task = asyncio.create_task(self._greet(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _greet(self, conversation_id: str) -> None:
        async with self._lock(conversation_id):
            conversation = await self.conversations.get(conversation_id)
            if conversation is None:
                return
            channel = self.channels.get(conversation.channel)
            if channel is not None:
                await channel.busy(conversation_id, True)
            try:
                replies = await self._bot.converse(
                    conversation.id,
                    "/greet",
                    channel=conversation.channel,
                    lang=_lang_of(conversation),
                )
                for reply in replies:
                    await self._handle_reply(conversation, reply)
            except BotUnavailable:
                log.info("no greeting: bot unavailable", extra={"conversation_id": conversation_id})
            except Exception:
                log.exception("greeting failed", extra={"conversation_id": conversation_id})
            finally:
                if channel is not None:
                    await channel.busy(conversation_id, False)

    async def recover(self) -> int:
        """Answer citizen messages a crash left stored but unanswered; returns how many.

        At-least-once: if the crash came after Rasa saw a message but before its replies
        were stored, the citizen may get that answer twice, which beats never.
        """
        async with self.conversations.sessions() as session:
            rows = (
                await session.execute(
                    select(Message, Conversation.language)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .where(
                        Message.author == AuthorKind.CITIZEN.value,
                        Message.handled.is_(False),
                        Conversation.state == ConversationState.BOT.value,
                    )
                    .order_by(Message.id)
                )
            ).all()
        for message, language in rows:
            text = message.text
            if message.sealed is not None:
                text = self._sealer.open(message.sealed, message.conversation_id).decode()
            inbound = Inbound(
                message.conversation_id,
                message.client_id or str(message.id),
                text,
                lang=parse(language),
            )
            self.dispatch(inbound, Accepted(message.id, duplicate=False))
        if rows:
            log.warning("recovering unanswered messages", extra={"count": len(rows)})
        return len(rows)

    async def close(self) -> None:
        if self._tracker is not None:
            await self._tracker.close()

    async def drain(self) -> None:
        """Wait for all in-flight processing (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    async def _store_inbound(self, inbound: Inbound) -> Accepted:
        async with self.conversations.sessions() as session:
            conversation = await session.get(Conversation, inbound.conversation_id)
            if conversation is None:
                raise InvalidInput("unknown_conversation", "no such conversation")
            sealed = None
            text = inbound.text
            if conversation.expect_sensitive:
                sealed = self._sealer.seal(text.encode(), conversation.id)
                text = say("sealed_placeholder", _lang_of(conversation))
                conversation.expect_sensitive = False
            message = Message(
                conversation_id=conversation.id,
                author=AuthorKind.CITIZEN.value,
                text=text,
                sealed=sealed,
                client_id=inbound.client_id,
            )
            stored = await self.conversations.add_message(session, message)
            if stored is None:
                await session.rollback()
                return Accepted(message_id=0, duplicate=True)
            await session.commit()
            log.info(
                "message stored",
                extra={"conversation_id": conversation.id, "message_id": message.id},
            )
            return Accepted(message_id=message.id, duplicate=False)

    async def _process(self, inbound: Inbound, message_id: int) -> None:
        async with self._lock(inbound.conversation_id):
            conversation = await self.conversations.get(inbound.conversation_id)
            if conversation is None:
                return
            channel = self.channels.get(conversation.channel)
            if channel is not None:
                await channel.busy(conversation.id, True)
            self._pending[conversation.id] = []
            try:
                await self._answer(conversation, inbound, message_id)
                await self._flush(conversation, message_id)
            except Exception:
                # Left unhandled on purpose: the next start answers it (see recover()).
                log.exception(
                    "processing failed",
                    extra={"conversation_id": conversation.id, "message_id": message_id},
                )
            finally:
                self._pending.pop(conversation.id, None)
                if channel is not None:
                    await channel.busy(conversation.id, False)
        # Outside the lock: ACD may answer the citizen at once (refused, no agents).
        if inbound.conversation_id in self._enqueue_after_turn:
            self._enqueue_after_turn.discard(inbound.conversation_id)
            if self.handoff is not None:
                await self.handoff.enqueue(inbound.conversation_id)

    async def _answer(self, conversation: Conversation, inbound: Inbound, message_id: int) -> None:
        current = _lang_of(conversation)
        hint = inbound.lang or current
        lang = hint if inbound.text.startswith("/") else detect(inbound.text, hint)
        if lang != current:
            await self.conversations.set_language(conversation.id, lang)
            conversation.language = lang
        if conversation.state == ConversationState.CLOSED:
            rating = _RATINGS.get(inbound.payload or inbound.text.strip())
            if conversation.awaiting_rating and rating is not None:
                await self._rate(conversation, rating)
                return
            await self._set_state(conversation, ConversationState.BOT, None)
        if conversation.state in (ConversationState.QUEUED, ConversationState.ASSIGNED):
            # From the handoff on, Rasa is not asked: the message is the agent's.
            if self.handoff is not None:
                await self.handoff.citizen_message(conversation.id, message_id)
            return
        if conversation.state == ConversationState.LEAVE_MESSAGE:
            await self._register_message(conversation, inbound)
            return
        if conversation.state == ConversationState.BOT:
            # Typed text never reaches Rasa as a slash command: only buttons can do that.
            payload = inbound.payload if inbound.payload not in _RATINGS else None
            text = payload or inbound.text.lstrip("/") or inbound.text
            try:
                replies = await self._bot.converse(
                    conversation.id, text, channel=conversation.channel, lang=lang
                )
            except BotUnavailable as exc:
                log.warning(
                    "bot unavailable", extra={"conversation_id": conversation.id, "error": str(exc)}
                )
                await self._set_state(conversation, ConversationState.QUEUED, "bot_unavailable")
                await self._emit(conversation, AuthorKind.SYSTEM, say("bot_unavailable", lang))
                self._enqueue_after_turn.add(conversation.id)
            else:
                for reply in replies:
                    await self._handle_reply(conversation, reply)
                if conversation.id in self._purge_after_turn and self._tracker is not None:
                    self._purge_after_turn.discard(conversation.id)
                    purged = await self._tracker.purge(conversation.id)
                    log.info(
                        "tracker purged",
                        extra={"conversation_id": conversation.id, "events": purged},
                    )

    async def _flush(self, conversation: Conversation, message_id: int) -> None:
        """Store the turn's replies and mark the message handled in one commit, then deliver."""
        pending = self._pending.get(conversation.id) or []
        async with self.conversations.sessions() as session:
            session.add_all(row for row, _ in pending)
            message = await session.get(Message, message_id)
            if message is not None:
                message.handled = True
            await session.commit()
        channel = self.channels.get(conversation.channel)
        if channel is not None:
            for _, outbound in pending:
                await channel.deliver(outbound)

    # ---------------------------------------------------------------- outbound
    async def _handle_reply(self, conversation: Conversation, reply: dict[str, Any]) -> None:
        custom = reply.get("custom")
        if isinstance(custom, dict) and isinstance(custom.get("hotline"), dict):
            command = custom["hotline"]
            handler = self._commands.get(str(command.get("cmd")))
            if handler is None:
                log.warning("unknown bot command", extra={"conversation_id": conversation.id})
                return
            await handler(conversation, command)
            return
        text = reply.get("text")
        if not isinstance(text, str) or not text:
            return
        buttons = tuple(
            Button(str(b.get("title", "")), str(b.get("payload", "")))
            for b in reply.get("buttons") or []
            if isinstance(b, dict)
        )
        await self._emit(conversation, AuthorKind.BOT, text, buttons)

    async def _emit(
        self,
        conversation: Conversation,
        author: AuthorKind,
        text: str,
        buttons: tuple[Button, ...] = (),
        *,
        stored_text: str | None = None,
    ) -> None:
        """Store one outgoing message (``stored_text`` redacts it), then deliver it.

        Inside a turn both wait for the end of the turn, so a turn costs one commit.
        """
        row = Message(
            conversation_id=conversation.id,
            author=author.value,
            text=stored_text if stored_text is not None else text,
            buttons=[{"title": b.title, "payload": b.payload} for b in buttons] or None,
            handled=True,
        )
        outbound = Outbound(conversation.id, author, text, buttons)
        pending = self._pending.get(conversation.id)
        if pending is not None:
            pending.append((row, outbound))
            return
        async with self.conversations.sessions() as session:
            session.add(row)
            await session.commit()
        channel = self.channels.get(conversation.channel)
        if channel is not None:
            await channel.deliver(outbound)

    async def _set_state(
        self, conversation: Conversation, state: ConversationState, reason: str | None
    ) -> None:
        async with self.conversations.sessions() as session:
            row = await session.get(Conversation, conversation.id)
            assert row is not None
            row.state = state.value
            row.handoff_reason = reason
            await session.commit()
        conversation.state = state.value
        conversation.handoff_reason = reason
        log.info(
            "conversation state",
            extra={"conversation_id": conversation.id, "state": state.value, "reason": reason},
        )
        channel = self.channels.get(conversation.channel)
        if channel is not None:
            await channel.state_changed(conversation.id, state)

    # ------------------------------------------------------- staff-side actions
    async def post(
        self,
        conversation_id: str,
        author: AuthorKind,
        text: str,
        buttons: tuple[Button, ...] = (),
    ) -> Message:
        """Store a message from staff or the system and deliver it (notes stay internal)."""
        async with self._lock(conversation_id):
            row = Message(
                conversation_id=conversation_id,
                author=author.value,
                text=text,
                buttons=[{"title": b.title, "payload": b.payload} for b in buttons] or None,
                handled=True,
            )
            async with self.conversations.sessions() as session:
                session.add(row)
                await session.commit()
            if author is not AuthorKind.NOTE:
                conversation = await self.conversations.get(conversation_id)
                channel = self.channels.get(conversation.channel) if conversation else None
                if channel is not None:
                    await channel.deliver(Outbound(conversation_id, author, text, buttons))
            return row

    async def say_to(self, conversation_id: str, key: str, **values: Any) -> Message | None:
        """A system line from the catalogue, in the conversation's language."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            return None
        return await self.post(
            conversation_id, AuthorKind.SYSTEM, say(key, _lang_of(conversation), **values)
        )

    async def set_state(
        self, conversation_id: str, state: ConversationState, reason: str | None = None
    ) -> None:
        conversation = await self.conversations.get(conversation_id)
        if conversation is not None:
            await self._set_state(conversation, state, reason or conversation.handoff_reason)

    async def awaiting(self, conversation_id: str) -> str | None:
        """The form slot the bot just asked for (the phone needs to know: digits or words)."""
        return (await self._bot.context(conversation_id)).awaiting

    async def queue_position(self, conversation_id: str, position: int, eta: int) -> None:
        conversation = await self.conversations.get(conversation_id)
        channel = self.channels.get(conversation.channel) if conversation else None
        if channel is not None:
            await channel.queue_position(conversation_id, position, eta)

    async def ask_rating(self, conversation_id: str) -> None:
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            return
        lang = _lang_of(conversation)
        buttons = tuple(Button(say(f"rate_{n}", lang), f"/rate_{n}") for n in (1, 2, 3))
        await self.post(conversation_id, AuthorKind.SYSTEM, say("rate_question", lang), buttons)

    async def _rate(self, conversation: Conversation, rating: int) -> None:
        async with self.conversations.sessions() as session:
            row = await session.get(Conversation, conversation.id)
            assert row is not None
            row.rating = rating
            row.awaiting_rating = False
            await session.commit()
        conversation.awaiting_rating = False
        log.info("rated", extra={"conversation_id": conversation.id, "rating": rating})
        await self._emit(
            conversation, AuthorKind.SYSTEM, say("rate_thanks", _lang_of(conversation))
        )

    async def _register_message(self, conversation: Conversation, inbound: Inbound) -> None:
        """No agent came in time: the citizen's message becomes a ticket for a callback."""
        lang = _lang_of(conversation)
        case = await self.tickets.create(
            kind=TicketKind.MESSAGE,
            fields={"details": inbound.text, **self.open_fields(conversation)},
            identity=None,
            conversation_id=conversation.id,
            channel=conversation.channel,
            language=lang,
            actor="hub",
        )
        await self._set_state(conversation, ConversationState.CLOSED, conversation.handoff_reason)
        text = say("message_registered", lang, code=case.case_code, pin=case.pin)
        masked = say(
            "message_registered", lang, code=case.case_code, pin=say("pin_placeholder", lang)
        )
        await self._emit(conversation, AuthorKind.SYSTEM, text, stored_text=masked)

    # ---------------------------------------------------------------- commands
    async def _cmd_expect_sensitive(self, conversation: Conversation, _cmd: dict[str, Any]) -> None:
        async with self.conversations.sessions() as session:
            row = await session.get(Conversation, conversation.id)
            assert row is not None
            row.expect_sensitive = True
            await session.commit()

    async def _cmd_forget(self, conversation: Conversation, _cmd: dict[str, Any]) -> None:
        """The bot dropped an intake or lookup: purge what Rasa kept of it."""
        self._purge_after_turn.add(conversation.id)

    async def _cmd_handoff(self, conversation: Conversation, cmd: dict[str, Any]) -> None:
        reason = str(cmd.get("reason") or "requested")
        raw = cmd.get("fields")
        fields = (
            {str(k)[:64]: str(v)[:2000] for k, v in list(raw.items())[:40]}
            if isinstance(raw, dict)
            else {}
        )
        await self._handoff(
            conversation, reason if reason in _HANDOFF_REASONS else "requested", fields
        )

    async def _handoff(
        self, conversation: Conversation, reason: str, fields: dict[str, str] | None = None
    ) -> None:
        """Keep what the bot learned (sealed), forget Rasa's copy, queue after the turn.

        Fields come from the tracker's slots, and from the command when the action that
        hands off has already cleared its slots (a form ending in a handoff).
        """
        self._misses.pop(conversation.id, None)
        context = await self._bot.context(conversation.id)
        collected = {**context.fields, **(fields or {})}
        async with self.conversations.sessions() as session:
            row = await session.get(Conversation, conversation.id)
            assert row is not None
            if collected:
                blob = json.dumps(collected, ensure_ascii=False).encode()
                row.fields_sealed = self._sealer.seal(blob, conversation.id)
            row.intent = context.intent or row.intent
            await session.commit()
        conversation.intent = context.intent or conversation.intent
        await self._set_state(conversation, ConversationState.QUEUED, reason)
        self._purge_after_turn.add(conversation.id)
        self._enqueue_after_turn.add(conversation.id)

    def open_fields(self, conversation: Conversation) -> dict[str, str]:
        """The form fields the bot collected before the handoff (staff only)."""
        if conversation.fields_sealed is None:
            return {}
        data = json.loads(self._sealer.open(conversation.fields_sealed, conversation.id))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    async def _cmd_create_ticket(self, conversation: Conversation, cmd: dict[str, Any]) -> None:
        lang = _lang_of(conversation)
        try:
            kind = TicketKind(str(cmd.get("kind")))
            fields = cmd.get("fields")
            if not isinstance(fields, dict):
                raise ValueError("fields must be an object")
            raw_identity = cmd.get("identity")
            identity = None
            if isinstance(raw_identity, dict) and raw_identity.get("name"):
                identity = Identity(
                    str(raw_identity.get("name", ""))[:200],
                    str(raw_identity.get("phone", ""))[:40],
                    str(raw_identity.get("id_number", ""))[:40],
                )
            case = await self.tickets.create(
                kind=kind,
                fields=fields,
                identity=identity,
                conversation_id=conversation.id,
                channel=conversation.channel,
                language=lang,
            )
        except (ValueError, RuntimeError):
            log.exception("ticket creation failed", extra={"conversation_id": conversation.id})
            await self._set_state(conversation, ConversationState.QUEUED, "intake_failed")
            await self._emit(conversation, AuthorKind.SYSTEM, say("ticket_failed", lang))
            return
        values = {
            "kind": say(f"kind_{kind.value}", lang),
            "code": case.case_code,
            "reply_due": _date(case.reply_due, lang),
            "result_due": _date(case.result_due, lang),
        }
        self._purge_after_turn.add(conversation.id)
        text = say("ticket_created", lang, pin=case.pin, **values)
        # The PIN is shown once and never stored in clear: the transcript keeps a mask.
        masked = say("ticket_created", lang, pin=say("pin_placeholder", lang), **values)
        await self._emit(conversation, AuthorKind.BOT, text, stored_text=masked)

    async def _cmd_case_status(self, conversation: Conversation, cmd: dict[str, Any]) -> None:
        lang = _lang_of(conversation)
        code, pin = str(cmd.get("code", "")), str(cmd.get("pin", ""))
        result = await self.tickets.lookup(code, pin, conversation.id)
        self._purge_after_turn.add(conversation.id)  # the PIN sat in a slot
        human = (Button(say("btn_human", lang), "/request_human"),)
        if result.outcome is LookupOutcome.FOUND and result.ticket is not None:
            ticket = result.ticket
            text = say(
                "status_found",
                lang,
                code=ticket.case_code,
                kind=say(f"kind_{ticket.kind}", lang),
                status=PUBLIC_STATUS[ticket.status][lang],
                created=_date(ticket.created_at.astimezone(CHINA).date(), lang),
                reply_due=_date(ticket.reply_due, lang),
                result_due=_date(ticket.result_due, lang),
            )
            await self._emit(conversation, AuthorKind.BOT, text)
        elif result.outcome is LookupOutcome.LOCKED and result.locked_until is not None:
            until = result.locked_until.astimezone(CHINA).strftime("%H:%M")
            await self._emit(
                conversation, AuthorKind.BOT, say("status_locked", lang, until=until), human
            )
        else:
            retry = Button(say("btn_status", lang), "/case_status")
            await self._emit(
                conversation,
                AuthorKind.BOT,
                say("status_no_match", lang, left=result.attempts_left),
                (retry, *human),
            )

    async def _cmd_kb_answer(self, conversation: Conversation, cmd: dict[str, Any]) -> None:
        lang = _lang_of(conversation)
        answer = self._answers.answer(
            query=str(cmd.get("query", ""))[: self._max_text],
            lang=lang,
            mode=str(cmd.get("mode", "consult")),
            topic=str(cmd["topic"]) if cmd.get("topic") else None,
        )
        if not answer.missed:
            self._misses.pop(conversation.id, None)
        else:
            self._misses[conversation.id] = self._misses.get(conversation.id, 0) + 1
            if self._misses[conversation.id] >= MAX_MISSES:
                await self._emit(conversation, AuthorKind.BOT, say("gave_up_handoff", lang))
                await self._handoff(conversation, "bot_gave_up")
                return
        await self._emit(conversation, AuthorKind.BOT, answer.text, answer.buttons)


def _date(day: dt.date, lang: Lang) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else day.isoformat()


def _lang_of(conversation: Conversation) -> Lang:
    return parse(conversation.language) or "zh"
