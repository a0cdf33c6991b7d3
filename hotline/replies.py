"""What the hub says when it carries out a command: pure, so every channel shares it.

Each builder returns a ``Said``: the text the citizen sees, the text the transcript
keeps (a PIN is shown once and stored masked), and the buttons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hotline import intents
from hotline.lang import Lang
from hotline.messages import Button
from hotline.texts import say
from hotline.tickets import CHINA, PUBLIC_STATUS, Lookup, LookupOutcome, NewCase


@dataclass(frozen=True)
class Said:
    text: str
    stored: str | None = None  # what the transcript keeps, when it differs
    buttons: tuple[Button, ...] = ()


def date(day: dt.date, lang: Lang) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else day.isoformat()


def human_button(lang: Lang) -> Button:
    return Button(say("btn_human", lang), intents.payload(intents.REQUEST_HUMAN))


def ticket_created(case: NewCase, kind: str, lang: Lang) -> Said:
    values = {
        "kind": say(f"kind_{kind}", lang),
        "code": case.case_code,
        "reply_due": date(case.reply_due, lang),
        "result_due": date(case.result_due, lang),
    }
    return Said(
        say("ticket_created", lang, pin=case.pin, **values),
        stored=say("ticket_created", lang, pin=say("pin_placeholder", lang), **values),
    )


def case_status(result: Lookup, lang: Lang) -> Said:
    """The answer to a lookup; an unknown code and a wrong PIN read the same."""
    if result.outcome is LookupOutcome.FOUND and result.ticket is not None:
        ticket = result.ticket
        return Said(
            say(
                "status_found",
                lang,
                code=ticket.case_code,
                kind=say(f"kind_{ticket.kind}", lang),
                status=PUBLIC_STATUS[ticket.status][lang],
                created=date(ticket.created_at.astimezone(CHINA).date(), lang),
                reply_due=date(ticket.reply_due, lang),
                result_due=date(ticket.result_due, lang),
            )
        )
    if result.outcome is LookupOutcome.LOCKED and result.locked_until is not None:
        until = result.locked_until.astimezone(CHINA).strftime("%H:%M")
        return Said(say("status_locked", lang, until=until), buttons=(human_button(lang),))
    retry = Button(say("btn_status", lang), intents.payload(intents.CASE_STATUS))
    return Said(
        say("status_no_match", lang, left=result.attempts_left),
        buttons=(retry, human_button(lang)),
    )
