"""Speech turns with the bot: a caller talks to the same hub and Rasa conversation as chat.

The menu's report, complaint and legal choices open a ``voice`` conversation in the
bot's hands. Each turn the caller's answer (what they said, a key for a button, digits
ended by #) is stored by the hub before the bot sees it, exactly like a chat message.
The bot's replies come back as events of the call and are spoken; buttons are read out
("for X, press 1"). 0 asks for a person at any time, * repeats. When the bot hands off
(asked to, or it gave up), the call goes to the ACD with that same conversation, so the
agent sees the transcript and the fields the bot collected.

A recognizer without dictation (pocketsphinx) listens with a grammar: the turn's button
titles and the bot's own training phrases. It cannot take down free-form details (a
name, what happened), so when the bot asks for one a person takes over; a Vosk model
(``HOTLINE_VOSK_MODELS``) takes them down itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hotline.lang import Lang
from hotline.messages import Inbound
from hotline.ports import InvalidInput
from hotline.store.models import ConversationState
from voice_ivr.calls import Call, Calls, Heard
from voice_ivr.errors import NeedsAgent
from voice_ivr.prompts import prompt, speakable

log = logging.getLogger(__name__)

TURN_TIMEOUT = 30.0  # seconds for the bot to answer a turn (Rasa's own timeout is less)
MAX_TRIES = 3  # silences or misses in a row before a person takes over
MAX_SPEECH = 20.0  # seconds of one spoken answer
# Slots answered with the phone's keys: digits can't be misheard.
DIGIT_SLOTS = frozenset({"reporter_phone", "reporter_id", "case_code", "case_pin"})
HUMAN = "/request_human"
QUESTION = "legal_consult"


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (title, payload)


@dataclass(frozen=True)
class Answer:
    """What goes to the hub for a turn: the text stored, and a button's payload."""

    text: str
    payload: str | None = None
    how: str = "speech"  # for the IVR path: speech, button, digits, agent


async def converse(ivr: Calls, call: Call, intent: str) -> str | None:
    """Bot turns from ``intent`` on; the conversation id once the caller must go to a
    person (the ACD queues it), ``None`` when the bot's part is over and the caller has
    been seen off. The conversation is closed when the call ends, however it ends
    (``Ivr._end_conversation``), unless an agent closed it first."""
    inbox = ivr.inbox
    conversation_id = await ivr.open_conversation(call, intent)
    call.state = "bot"
    await ivr.step(call, "bot", intent)
    try:
        turn, last = 0, list[Reply]()
        if intent == QUESTION:  # the caller asks first; the bot has nothing to open with
            answer = await _answer(ivr, call, [Reply(prompt("ask_question", call.lang))], None)
        else:  # the menu choice opens the bot's form, as its button would in chat
            answer = Answer(prompt(f"chose_{intent}", call.lang), f"/{intent}", "menu")
        while answer is not None:
            turn += 1
            inbound = Inbound(
                conversation_id,
                f"{call.record_id}-{turn}",
                answer.text,
                payload=answer.payload,
                lang=call.lang,
            )
            if answer.payload == HUMAN:  # asked for a person: hanging up now abandons
                call.handed_off = True
            try:
                replies, state = await _turn(ivr, call, inbound)
            except TimeoutError:
                call.handed_off = True
                await inbox.hand_off(conversation_id, "bot_unavailable")
                return conversation_id
            if state == ConversationState.QUEUED.value:
                # The hub queues it; hanging up from here on abandons the call.
                call.handed_off = True
                with contextlib.suppress(NeedsAgent):  # on the way to a person anyway
                    await ivr.say(call, _spoken(replies, call.lang), interruptible=False)
                return conversation_id
            last = replies or last
            answer = await _answer(ivr, call, last, await inbox.awaiting(conversation_id))
        return None
    except NeedsAgent:  # speech synthesis failed: the caller heard "please hold"
        call.handed_off = True
        await inbox.hand_off(conversation_id, "tts_failed")
        return conversation_id


async def _answer(
    ivr: Calls, call: Call, replies: list[Reply], awaiting: str | None
) -> Answer | None:
    """The caller's answer to the bot's replies; ``None`` when they had nothing more to
    ask and have been seen off. Silence and misses are reprompted, then a person."""
    engine = ivr.engine(call.lang)
    free = awaiting is not None and awaiting not in DIGIT_SLOTS and not _buttons(replies)
    if free and (engine is None or not engine.dictation):
        # Words this line cannot take down (a name, what happened): a person will.
        await ivr.step(call, "bot_turn", "cannot_take")
        await ivr.say(call, prompt("staff_takes_details", call.lang))
        return Answer(HUMAN, HUMAN, "agent")
    asking = awaiting is not None or bool(_buttons(replies))
    misses = 0
    while True:
        heard = await _listen(ivr, call, replies, awaiting, hint=call.bot_turns == 0)
        call.bot_turns += 1
        result: Answer | str
        if awaiting in DIGIT_SLOTS and heard is not None and (heard.key or "").isdigit():
            result = Answer(f"{heard.key}{await ivr.digits(call, 32)}", how="digits")
        else:
            result = _understand(heard, replies, awaiting)
        if isinstance(result, Answer):
            await ivr.step(call, "bot_turn", result.how)
            return result
        await ivr.step(call, "bot_turn", result)
        if result == "repeat":
            continue
        misses += 1
        if misses >= MAX_TRIES:
            return Answer(HUMAN, HUMAN, "agent")
        if not asking:
            if result == "no_input" and misses >= 2:
                await ivr.say(call, prompt("goodbye", call.lang), interruptible=False)
                return None
            replies = [Reply(prompt("anything_else", call.lang))]


async def _turn(ivr: Calls, call: Call, inbound: Inbound) -> tuple[list[Reply], str | None]:
    """Submit the caller's answer; the bot's replies and the state they left it in.

    The hub stores the answer before acting on it. Keys pressed while the bot thinks are
    kept as type-ahead; events for later phases (an offer after a handoff) stay queued.
    """
    try:
        await ivr.inbox.submit(inbound)
    except InvalidInput as exc:  # e.g. a dictation longer than a message may be
        log.warning(
            "answer refused by the hub", extra={"call_id": call.record_id, "code": exc.code}
        )
        return [], None
    # Until the turn ends the hub may still hand off (and queue) the conversation: a
    # caller hanging up meanwhile has it closed only after that (``Ivr._end_conversation``).
    call.turn_pending = True
    replies: list[Reply] = []
    state: str | None = None
    kept: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TURN_TIMEOUT
    try:
        while True:
            event = await ivr.next(call, timeout=max(deadline - loop.time(), 0))
            if event is None:
                call.turn_pending = False  # given up on: the caller goes to a person
                raise TimeoutError("the hub did not finish the turn")
            kind = event.get("type")
            if kind == "hl_say":
                buttons = tuple(
                    (str(b[0]), str(b[1])) for b in event.get("buttons") or () if len(b) == 2
                )
                replies.append(Reply(str(event.get("text", "")), buttons))
            elif kind == "hl_state":
                state = str(event.get("state"))
            elif kind == "hl_turn_end":
                call.turn_pending = False
                return replies, state
            elif kind == "ChannelDtmfReceived":
                call.keys.append(str(event.get("digit", "")))
            elif kind != "PlaybackFinished":
                kept.append(event)
    finally:
        call.later[:0] = kept


async def _listen(
    ivr: Calls, call: Call, replies: list[Reply], awaiting: str | None, *, hint: bool
) -> Heard | None:
    """Speak the bot's replies, then hear the caller's answer."""
    engine = ivr.engine(call.lang)
    digits = awaiting in DIGIT_SLOTS
    text = _spoken(replies, call.lang)
    if hint:
        text += " " + prompt("bot_hint", call.lang)
    if digits:
        text += " " + prompt("key_in", call.lang)
    grammar = None
    if engine is not None and not engine.dictation:
        titles = [title for title, _ in _buttons(replies)]
        known = await asyncio.to_thread(engine.vocabulary, titles) if titles else []
        grammar = known + ivr.phrases.get(call.lang, [])
    listen = engine is not None and not digits and (engine.dictation or bool(grammar))
    return await ivr.ask(call, text, grammar=grammar, listen=listen, max_speech=MAX_SPEECH)


def _understand(heard: Heard | None, replies: list[Reply], awaiting: str | None) -> Answer | str:
    """The answer for the hub, or why there is none: no_input, no_match, repeat."""
    if heard is None:
        return "no_input"
    buttons = _buttons(replies)
    if heard.key is not None:
        if heard.key == "0":
            return Answer(HUMAN, HUMAN, "agent")
        if heard.key == "*":
            return "repeat"
        index = int(heard.key) - 1 if heard.key.isdigit() else -1
        if buttons and 0 <= index < len(buttons) and awaiting not in DIGIT_SLOTS:
            title, payload = buttons[index]
            return Answer(title, payload, "button")
        return "no_match"
    if not heard.text:
        return "no_match"
    for title, payload in buttons:
        if _plain(title) == heard.text:
            return Answer(title, payload, "button")
    return Answer(heard.text)


def _buttons(replies: list[Reply]) -> tuple[tuple[str, str], ...]:
    return next((r.buttons for r in reversed(replies) if r.buttons), ())


def _spoken(replies: list[Reply], lang: Lang) -> str:
    """The replies as one text to be heard: markup dropped, long numbers read digit by
    digit (a case code is not "two hundred billion..."), buttons read out as choices."""
    parts = [speakable(r.text, lang) for r in replies if r.text]
    for n, (title, _) in enumerate(_buttons(replies), 1):
        parts.append(prompt("press_for", lang, title=speakable(title, lang), n=n))
    return " ".join(p for p in parts if p)


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


def training_phrases(nlu_file: Path) -> dict[str, list[str]]:
    """The bot's English training examples, as a grammar for engines without dictation.

    Only English: the Mandarin examples are unsegmented text, and no Mandarin grammar
    engine ships here. Entity markup (``[text](entity)``) keeps its text.
    """
    data = yaml.safe_load(nlu_file.read_text(encoding="utf-8")) or {}
    english: list[str] = []
    for item in data.get("nlu") or []:
        if not isinstance(item, dict) or "intent" not in item:
            continue
        for line in str(item.get("examples", "")).splitlines():
            example = re.sub(r"\[([^\]]*)\][({][^)}]*[)}]", r"\1", line.strip().removeprefix("- "))
            if example and example.isascii() and re.search(r"[A-Za-z]", example):
                english.append(_plain(example))
    return {"en": list(dict.fromkeys(p for p in english if p))}
