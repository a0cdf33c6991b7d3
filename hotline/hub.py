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
import json
import logging
import re
import weakref
from dataclasses import replace
from typing import Any, Protocol

from sqlalchemy import select

from hotline import commands
from hotline.answers import KnowledgeAnswers
from hotline.bot import Bot, BotOverloaded, BotUnavailable, Reader
from hotline.botgate import BotGate
from hotline.channels import ChannelRegistry
from hotline.command_handlers import CommandHandlers
from hotline.contacts import ContactLinks
from hotline.conversations import ConversationStore
from hotline.lang import Lang, detect, parse
from hotline.letters import LetterDesk
from hotline.messages import Accepted, Button, Inbound, Outbound
from hotline.ports import InvalidInput
from hotline.store.models import (
    AuthorKind,
    Conversation,
    ConversationState,
    Message,
    TicketKind,
)
from hotline.texts import say
from hotline.tickets import NewCase, TicketService
from hotline.tracker import TrackerPurger
from hotline.vault import Sealer

log = logging.getLogger(__name__)

_INTENT_PAYLOAD = re.compile(r'^/[a-z][a-z0-9_]{1,39}(\{"kb_article":"[a-z0-9-]{1,60}"\})?$')
_RATINGS = {"1": 1, "2": 2, "3": 3, "/rate_1": 1, "/rate_2": 2, "/rate_3": 3}
_WITH_PERSON_OR_CLOSED = frozenset(
    (ConversationState.ASSIGNED.value, ConversationState.CLOSED.value)
)


class Handoff(Protocol):
    """Where conversations go when a person must take over (the ACD service)."""

    async def enqueue(self, conversation_id: str) -> None: ...

    async def citizen_message(self, conversation_id: str, message_id: int) -> None: ...

    def position(self, conversation_id: str) -> tuple[int, int] | None: ...

    async def close(self, conversation_id: str, disposition: str, *, by: str) -> None: ...


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
        gate: BotGate | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.conversations = conversations
        # Every Rasa turn (greetings too) takes a slot here; None: no limit.
        self.gate = gate or BotGate()
        # New conversations whose greeting has not started: a message from the citizen
        # first takes the conversation's place (its turn answers them instead).
        self._greeting_wanted: set[str] = set()
        self.channels = ChannelRegistry()
        self._bot = bot
        self.tickets = tickets
        self._handlers = CommandHandlers(
            conversations, tickets, answers, max_text_chars=max_text_chars
        )
        # Channels whose messages are letters (email) are answered once, not in dialogue.
        self._letters = LetterDesk(reader, tickets, answers) if reader is not None else None
        self._sealer = Sealer(secret_key, "message")
        # Who is the same citizen across channels; answers the /link command.
        self.links = ContactLinks(conversations.sessions, self.channels, secret_key, self.emit)
        self._max_text = max_text_chars
        self._intents = intents
        self._tracker = tracker
        self.handoff: Handoff | None = None
        self._purge_after_turn: set[str] = set()
        self._enqueue_after_turn: set[str] = set()
        # Replies of the turn in progress, per conversation: stored together at its end.
        self._pending: dict[str, list[tuple[Message, Outbound]]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- inbound
    def validate(self, inbound: Inbound) -> None:
        """Reject what no channel may send; raises ``InvalidInput``.

        Whatever is stored must be storable in every database, from every channel: no
        lone surrogates (JSON escapes and some transports carry them; UTF-8 cannot, so
        SQLite's driver fails on them) and no NUL characters (PostgreSQL refuses them).
        """
        for code, what, value in (
            ("bad_text", "message text", inbound.text),
            ("bad_id", "message id", inbound.client_id),
            ("bad_payload", "payload", inbound.payload or ""),
        ):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(code, f"{what} contains invalid characters") from None
            if "\x00" in value:
                raise InvalidInput(code, f"{what} contains a NUL character")
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
        self._greeting_wanted.discard(inbound.conversation_id)
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

        Nothing is stored for the citizen; if the bot is down the greeting is skipped. If
        it is only busy the greeting waits (the citizen sees it typing) behind every
        waiting turn, for as long as it takes, unless the citizen writes first: then the
        answer to that message opens the conversation instead.
        """
        self._greeting_wanted.add(conversation_id)
        task = asyncio.create_task(self._greet(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _greet(self, conversation_id: str) -> None:
        conversation = await self.conversations.get(conversation_id)
        channel = self.channels.get(conversation.channel) if conversation is not None else None
        if conversation is None or conversation.state != ConversationState.BOT:
            self._greeting_wanted.discard(conversation_id)
            return
        if channel is not None:
            await channel.busy(conversation_id, True)  # on while it waits for the bot
        async with self.gate.greeting():
            if conversation_id not in self._greeting_wanted:
                # The citizen wrote meanwhile: that turn answers and ends the typing.
                log.info("greeting superseded", extra={"conversation_id": conversation_id})
                return
            self._greeting_wanted.discard(conversation_id)
            async with self._lock(conversation_id):
                try:
                    conversation = await self.conversations.get(conversation_id)
                    if conversation is None or conversation.state != ConversationState.BOT:
                        return
                    replies = await self._bot.converse(
                        conversation.id,
                        "/greet",
                        channel=conversation.channel,
                        lang=_lang_of(conversation),
                    )
                    for reply in replies:
                        await self._handle_reply(conversation, reply)
                except BotUnavailable:
                    log.info(
                        "no greeting: bot unavailable", extra={"conversation_id": conversation_id}
                    )
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
            await self.change_state(conversation, ConversationState.BOT, None)
        if conversation.state in (ConversationState.QUEUED, ConversationState.ASSIGNED):
            # From the handoff on, Rasa is not asked: the message is the agent's.
            if self.handoff is not None:
                await self.handoff.citizen_message(conversation.id, message_id)
            return
        if conversation.state == ConversationState.LEAVE_MESSAGE:
            await self._register_message(conversation, inbound)
            return
        if conversation.state == ConversationState.BOT:
            if await self.links.take(conversation, inbound, lang):
                return
            # Typed text never reaches Rasa as a slash command: only buttons can do that.
            payload = inbound.payload if inbound.payload not in _RATINGS else None
            text = payload or inbound.text.lstrip("/") or inbound.text
            capabilities = self.channels.capabilities(conversation.channel)
            if capabilities is not None and capabilities.letters:
                await self._answer_letter(conversation, inbound, lang)
                return
            try:
                # The typing indicator is on while the turn waits for a slot; the wait
                # does not count against Rasa's timeout, which starts with the call.
                async with self.gate.turn():
                    replies = await self._bot.converse(
                        conversation.id, text, channel=conversation.channel, lang=lang
                    )
            except BotOverloaded as exc:
                await self._bot_away(conversation, lang, "bot_overloaded", exc)
            except BotUnavailable as exc:
                await self._bot_away(conversation, lang, "bot_unavailable", exc)
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

    async def _answer_letter(
        self, conversation: Conversation, inbound: Inbound, lang: Lang
    ) -> None:
        if self._letters is None:  # no NLU to read it with: a person reads it
            await self._bot_away(conversation, lang, "bot_unavailable", RuntimeError("no reader"))
            return
        try:
            async with self.gate.turn():
                await self._letters.answer(self, conversation, inbound.text, lang)
        except BotOverloaded as exc:
            await self._bot_away(conversation, lang, "bot_overloaded", exc)

    def enqueue_after_turn(self, conversation_id: str) -> None:
        """Give the conversation to the ACD once the turn's replies are stored."""
        self._enqueue_after_turn.add(conversation_id)

    async def _bot_away(
        self, conversation: Conversation, lang: Lang, reason: str, exc: Exception
    ) -> None:
        """The bot is down (``bot_unavailable``) or too busy (``bot_overloaded``): a person."""
        log.warning(
            "bot unavailable" if reason == "bot_unavailable" else "bot overloaded",
            extra={"conversation_id": conversation.id, "error": str(exc)},
        )
        await self.change_state(conversation, ConversationState.QUEUED, reason)
        await self.emit(conversation, AuthorKind.SYSTEM, say(reason, lang))
        self._enqueue_after_turn.add(conversation.id)

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
            for row, outbound in pending:
                await channel.deliver(replace(outbound, message_id=row.id))

    # ---------------------------------------------------------------- outbound
    async def _handle_reply(self, conversation: Conversation, reply: dict[str, Any]) -> None:
        try:
            command = commands.decode(reply.get("custom"))
        except commands.BadCommand as exc:
            log.warning(
                "bad bot command", extra={"conversation_id": conversation.id, "error": str(exc)}
            )
            return
        if command is not None:
            await self._handlers.run(self, conversation, command)
            return
        text = reply.get("text")
        if not isinstance(text, str) or not text:
            return
        buttons = tuple(
            Button(str(b.get("title", "")), str(b.get("payload", "")))
            for b in reply.get("buttons") or []
            if isinstance(b, dict)
        )
        await self.emit(conversation, AuthorKind.BOT, text, buttons)

    async def emit(
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
            await channel.deliver(replace(outbound, message_id=row.id))

    async def change_state(
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
                    await channel.deliver(
                        Outbound(conversation_id, author, text, buttons, message_id=row.id)
                    )
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
            await self.change_state(conversation, state, reason or conversation.handoff_reason)

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

    async def rate(self, conversation_id: str, rating: int) -> None:
        """Store the citizen's rating of a closed conversation (no reply: a channel that
        asks for it itself, the phone's survey, thanks the citizen)."""
        async with self.conversations.sessions() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None:
                return
            row.rating = rating
            row.awaiting_rating = False
            await session.commit()
        log.info("rated", extra={"conversation_id": conversation_id, "rating": rating})

    async def _rate(self, conversation: Conversation, rating: int) -> None:
        await self.rate(conversation.id, rating)
        conversation.awaiting_rating = False
        await self.emit(
            conversation, AuthorKind.SYSTEM, say("rate_thanks", _lang_of(conversation))
        )

    async def request_person(self, conversation_id: str, reason: str) -> None:
        """A channel hands the conversation to a person (a caller pressed 0, or the line
        cannot go on with the bot): queued with ``reason`` and given to the ACD, as the
        bot's handoff is. One already queued keeps its reason (the ACD takes it once);
        one with a person, or closed, stays as it is."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None or conversation.state in _WITH_PERSON_OR_CLOSED:
            return
        if conversation.state != ConversationState.QUEUED.value:
            self._handlers.reset_misses(conversation_id)
            await self.change_state(conversation, ConversationState.QUEUED, reason)
        if self.handoff is not None:
            await self.handoff.enqueue(conversation_id)

    async def leave_message(self, conversation_id: str, details: str) -> NewCase:
        """File ``details`` as a message ticket of the conversation, for a channel that
        takes the message itself (the phone's voicemail) and tells the citizen."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            raise InvalidInput("unknown_conversation", "no such conversation")
        return await self._file_message(conversation, details)

    async def _file_message(self, conversation: Conversation, details: str) -> NewCase:
        """A citizen's message becomes a ticket for a callback, with what the bot collected."""
        return await self.tickets.create(
            kind=TicketKind.MESSAGE,
            fields={"details": details, **self.open_fields(conversation)},
            identity=None,
            conversation_id=conversation.id,
            channel=conversation.channel,
            language=_lang_of(conversation),
            actor="hub",
        )

    async def _register_message(self, conversation: Conversation, inbound: Inbound) -> None:
        """No agent came in time: the citizen's message becomes a ticket for a callback."""
        lang = _lang_of(conversation)
        case = await self._file_message(conversation, inbound.text)
        await self.change_state(conversation, ConversationState.CLOSED, conversation.handoff_reason)
        text = say("message_registered", lang, code=case.case_code, pin=case.pin)
        masked = say(
            "message_registered", lang, code=case.case_code, pin=say("pin_placeholder", lang)
        )
        await self.emit(conversation, AuthorKind.SYSTEM, text, stored_text=masked)

    # ---------------------------------------------------------------- commands
    # The hub is the ``Turn`` the command handlers (hotline/command_handlers.py) answer
    # through: ``emit``, ``change_state``, ``hand_off``, ``purge_after_turn``.
    def purge_after_turn(self, conversation_id: str) -> None:
        self._purge_after_turn.add(conversation_id)

    async def hand_off(
        self, conversation: Conversation, reason: str, fields: dict[str, str] | None = None
    ) -> None:
        """Keep what the bot learned (sealed), forget Rasa's copy, queue after the turn.

        Fields come from the tracker's slots, and from the command when the action that
        hands off has already cleared its slots (a form ending in a handoff).
        """
        self._handlers.reset_misses(conversation.id)
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
        await self.change_state(conversation, ConversationState.QUEUED, reason)
        self._purge_after_turn.add(conversation.id)
        self._enqueue_after_turn.add(conversation.id)

    def open_fields(self, conversation: Conversation) -> dict[str, str]:
        """The form fields the bot collected before the handoff (staff only)."""
        if conversation.fields_sealed is None:
            return {}
        data = json.loads(self._sealer.open(conversation.fields_sealed, conversation.id))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _lang_of(conversation: Conversation) -> Lang:
    return parse(conversation.language) or "zh"
