"""Letters: a message that carries the whole matter at once (an email), read once.

A chat is a dialogue; a letter is not: nobody wants five emails of form questions.
The bot's NLU (Rasa, the same model every channel uses) reads the letter once, and
the hub answers it in one reply:

- a report, complaint, appeal or compensation claim becomes a ticket, and the reply
  carries its case code and PIN (stored masked, as everywhere);
- a case code and PIN in the letter are looked up, throttled as on every channel;
- a question the knowledge base answers with confidence gets that article;
- anything else, a follow-up in a thread that already filed a case, or a letter that
  asks for a person goes to the agents as deferred work, and the citizen is told a
  person will reply in the same thread.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from hotline import casecode, intents, replies
from hotline.answers import KnowledgeAnswers
from hotline.bot import BotUnavailable, Reader
from hotline.command_handlers import Turn
from hotline.lang import Lang
from hotline.store.models import AuthorKind, Conversation, ConversationState, TicketKind
from hotline.texts import say
from hotline.tickets import TicketService

log = logging.getLogger(__name__)

# What a letter may file by itself, by the NLU's intent.
FILED: dict[str, TicketKind] = {
    intents.REPORT_CRIME: TicketKind.REPORT,
    intents.FILE_COMPLAINT: TicketKind.COMPLAINT,
    "appeal": TicketKind.APPEAL,
    "state_compensation": TicketKind.COMPENSATION,
}
MIN_CONFIDENCE = 0.6  # below this the letter goes to a person, not to a form
_DIGITS = re.compile(r"\d+")
_SEPARATOR = re.compile(r"[ \-]")
MIN_DETAILS = 20  # characters a letter needs to be filed as a case of its own
READ_CHARS = 600  # the NLU reads the opening of a letter: that is where the matter is


class LetterTurn(Turn, Protocol):
    """What answering a letter may do: a command's turn, and queueing after it."""

    def enqueue_after_turn(self, conversation_id: str) -> None: ...


def code_and_pin(text: str) -> tuple[str, str] | None:
    """A valid case code and a PIN written in ``text``: the code may be written in
    groups ("9404 5224 4347"), the PIN is the other number of its length."""
    runs = [(m.start(), m.end(), m.group()) for m in _DIGITS.finditer(text)]
    code = None
    for i in range(len(runs)):
        digits = ""
        for j in range(i, len(runs)):
            if j > i and not _SEPARATOR.fullmatch(text[runs[j - 1][1] : runs[j][0]]):
                break
            digits += runs[j][2]
            if len(digits) >= casecode.CODE_LENGTH:
                break
        if casecode.is_valid_code(digits):
            code, used = digits, range(i, j + 1)
            break
    if code is None:
        return None
    pins = [r[2] for k, r in enumerate(runs) if k not in used and casecode.is_valid_pin(r[2])]
    return (code, pins[0]) if pins else None


class LetterDesk:
    def __init__(self, reader: Reader, tickets: TicketService, answers: KnowledgeAnswers) -> None:
        self._reader = reader
        self._tickets = tickets
        self._answers = answers

    async def answer(
        self, turn: LetterTurn, conversation: Conversation, text: str, lang: Lang
    ) -> None:
        """Answer one stored letter of a conversation the bot holds."""
        if await self._tickets.filed_in(conversation.id):
            await self._to_person(turn, conversation, lang, "letter_followup")
            return
        found = code_and_pin(text)
        if found is not None:
            result = await self._tickets.lookup(*found, conversation.id)
            said = replies.case_status(result, lang)
            await turn.emit(conversation, AuthorKind.BOT, said.text)
            return
        try:
            reading = await self._reader.read(text[:READ_CHARS])
        except BotUnavailable as exc:
            log.warning(
                "letter not read: bot unavailable",
                extra={"conversation_id": conversation.id, "error": str(exc)},
            )
            await self._to_person(turn, conversation, lang, "bot_unavailable", "bot_unavailable")
            return
        log.info(
            "letter read",
            extra={
                "conversation_id": conversation.id,
                "intent": reading.intent,
                "confidence": round(reading.confidence, 3),
            },
        )
        confident = reading.confidence >= MIN_CONFIDENCE
        kind = FILED.get(reading.intent or "")
        if kind is not None and confident:
            if len(text.strip()) < MIN_DETAILS:  # "I want to report", and nothing more
                await turn.emit(conversation, AuthorKind.BOT, say("letter_report_needs", lang))
                return
            await self._file(turn, conversation, kind, text, lang)
            return
        if reading.intent == intents.CASE_STATUS and confident:
            await turn.emit(conversation, AuthorKind.BOT, say("letter_status_needs", lang))
            return
        if reading.intent == intents.GREET and confident:
            await turn.emit(conversation, AuthorKind.BOT, say("letter_greeting", lang))
            return
        if reading.intent == intents.REQUEST_HUMAN:
            await self._to_person(turn, conversation, lang, "requested")
            return
        if reading.intent not in FILED:  # an unsure report goes to a person, not to an article
            answer = self._answers.answer(text[:READ_CHARS], lang)
            # One article stands out (a clarifying choice between several is no answer
            # by letter); its offer of a person is the reply's closing line instead.
            if answer.article is not None:
                more = say("letter_kb_more", lang)
                await turn.emit(conversation, AuthorKind.BOT, f"{answer.text}\n\n{more}")
                return
        await self._to_person(turn, conversation, lang, "letter")

    async def _file(
        self, turn: LetterTurn, conversation: Conversation, kind: TicketKind, text: str, lang: Lang
    ) -> None:
        case = await self._tickets.create(
            kind=kind,
            fields={"details": text},
            identity=None,  # the sender's address stays on the contact, not in the case
            conversation_id=conversation.id,
            channel=conversation.channel,
            language=lang,
            actor="bot",
        )
        said = replies.ticket_created(case, kind.value, lang)
        await turn.emit(conversation, AuthorKind.BOT, said.text, stored_text=said.stored)

    @staticmethod
    async def _to_person(
        turn: LetterTurn,
        conversation: Conversation,
        lang: Lang,
        reason: str,
        text_key: str = "letter_received",
    ) -> None:
        await turn.change_state(conversation, ConversationState.QUEUED, reason)
        await turn.emit(conversation, AuthorKind.SYSTEM, say(text_key, lang))
        turn.enqueue_after_turn(conversation.id)
