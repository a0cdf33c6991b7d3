"""The hub's side of the bot's commands (``hotline/commands.py``).

A handler acts on storage and answers through the ``Turn`` of the conversation being
answered; the hub supplies that turn, so the handlers never deliver anything themselves.
"""

from __future__ import annotations

import logging
from typing import Protocol

from hotline import commands, replies
from hotline.answers import KnowledgeAnswers
from hotline.conversations import ConversationStore
from hotline.lang import Lang, parse
from hotline.messages import Button
from hotline.store.models import AuthorKind, Conversation, ConversationState, TicketKind
from hotline.texts import say
from hotline.tickets import TicketService
from hotline.vault import Identity

log = logging.getLogger(__name__)

MAX_MISSES = 3  # unanswerable questions in a row before a person takes over


class Turn(Protocol):
    """What a handler may do within the turn being answered (the hub implements it)."""

    async def emit(
        self,
        conversation: Conversation,
        author: AuthorKind,
        text: str,
        buttons: tuple[Button, ...] = (),
        *,
        stored_text: str | None = None,
    ) -> None: ...

    async def change_state(
        self, conversation: Conversation, state: ConversationState, reason: str | None
    ) -> None: ...

    async def hand_off(
        self, conversation: Conversation, reason: str, fields: dict[str, str] | None = None
    ) -> None: ...

    def purge_after_turn(self, conversation_id: str) -> None:
        """Delete Rasa's copy of the dialogue once the turn ends (it held a PIN or identity)."""
        ...


class CommandHandlers:
    def __init__(
        self,
        conversations: ConversationStore,
        tickets: TicketService,
        answers: KnowledgeAnswers,
        *,
        max_text_chars: int,
    ) -> None:
        self._conversations = conversations
        self._tickets = tickets
        self._answers = answers
        self._max_text = max_text_chars
        self._misses: dict[str, int] = {}

    def reset_misses(self, conversation_id: str) -> None:
        self._misses.pop(conversation_id, None)

    async def run(self, turn: Turn, conversation: Conversation, command: commands.Command) -> None:
        match command:
            case commands.ExpectSensitive():
                await self._conversations.expect_sensitive(conversation.id)
            case commands.Forget():
                turn.purge_after_turn(conversation.id)
            case commands.Handoff(reason, fields):
                await turn.hand_off(conversation, reason, fields)
            case commands.CreateTicket():
                await self._create_ticket(turn, conversation, command)
            case commands.CaseStatus(code, pin):
                result = await self._tickets.lookup(code, pin, conversation.id)
                turn.purge_after_turn(conversation.id)  # the PIN sat in a slot
                said = replies.case_status(result, _lang_of(conversation))
                await turn.emit(conversation, AuthorKind.BOT, said.text, said.buttons)
            case commands.KbAnswer():
                await self._kb_answer(turn, conversation, command)

    async def _create_ticket(
        self, turn: Turn, conversation: Conversation, cmd: commands.CreateTicket
    ) -> None:
        lang = _lang_of(conversation)
        try:
            kind = TicketKind(cmd.kind)
            raw_identity = cmd.identity or {}
            identity = None
            if raw_identity.get("name"):
                identity = Identity(
                    raw_identity.get("name", "")[:200],
                    raw_identity.get("phone", "")[:40],
                    raw_identity.get("id_number", "")[:40],
                )
            case = await self._tickets.create(
                kind=kind,
                fields=cmd.fields,
                identity=identity,
                conversation_id=conversation.id,
                channel=conversation.channel,
                language=lang,
                notify_reporter=cmd.notify,
            )
        except (ValueError, RuntimeError):
            log.exception("ticket creation failed", extra={"conversation_id": conversation.id})
            await turn.change_state(conversation, ConversationState.QUEUED, "intake_failed")
            await turn.emit(conversation, AuthorKind.SYSTEM, say("ticket_failed", lang))
            return
        turn.purge_after_turn(conversation.id)
        said = replies.ticket_created(case, kind.value, lang)
        await turn.emit(conversation, AuthorKind.BOT, said.text, stored_text=said.stored)

    async def _kb_answer(
        self, turn: Turn, conversation: Conversation, cmd: commands.KbAnswer
    ) -> None:
        lang = _lang_of(conversation)
        answer = self._answers.answer(
            query=cmd.query[: self._max_text], lang=lang, mode=cmd.mode, topic=cmd.topic
        )
        if not answer.missed:
            self._misses.pop(conversation.id, None)
        else:
            self._misses[conversation.id] = self._misses.get(conversation.id, 0) + 1
            if self._misses[conversation.id] >= MAX_MISSES:
                await turn.emit(conversation, AuthorKind.BOT, say("gave_up_handoff", lang))
                await turn.hand_off(conversation, "bot_gave_up")
                return
        await turn.emit(conversation, AuthorKind.BOT, answer.text, answer.buttons)


def _lang_of(conversation: Conversation) -> Lang:
    return parse(conversation.language) or "zh"
