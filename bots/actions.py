"""Rasa custom actions. They talk, validate and decide; the hub does the side effects.

A command for the hub travels as a custom payload ``{"hotline": {"cmd": ...}}`` in the
bot's replies: create a ticket, look up a case, hand off, answer from the knowledge
base, or treat the citizen's next message as sensitive (stored encrypted).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bots import intake
from bots.texts import say
from hotline import commands
from hotline.casecode import is_valid_code, is_valid_pin

INTENT_KIND = {
    "report_crime": "report",
    "file_complaint": "complaint",
    "appeal": "appeal",
    "state_compensation": "compensation",
}
STATUS_SLOTS = ("case_code", "case_pin")
BOOKKEEPING = ("outcome", "retries", "form_turn")


def lang_of(tracker: Tracker) -> str:
    """The language the hub detected for the latest message (it sends it as metadata)."""
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    lang = metadata.get("lang") or tracker.get_slot("lang")
    return lang if lang in ("zh", "en") else "zh"


def command(dispatcher: CollectingDispatcher, cmd: commands.Command) -> None:
    dispatcher.utter_message(json_message=commands.encode(cmd))


def button(key: str, lang: str, payload: str) -> Dict[str, str]:
    return {"title": say(key, lang), "payload": payload}


def _intent(tracker: Tracker) -> tuple:
    intent = (tracker.latest_message or {}).get("intent") or {}
    return intent.get("name") or "", float(intent.get("confidence") or 0.0)


def _reset(names: Any) -> List[EventType]:
    return [SlotSet(name, None) for name in names]


# --------------------------------------------------------------------- small talk
class ActionGreet(Action):
    def name(self) -> Text:
        return "action_greet"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        dispatcher.utter_message(
            text=say("greet", lang),
            buttons=[
                button("btn_report", lang, "/report_crime"),
                button("btn_status", lang, "/case_status"),
                button("btn_faq", lang, '/legal_consult{"kb_article":"scope"}'),
                button("btn_human", lang, "/request_human"),
            ],
        )
        return [SlotSet("lang", lang)]


class ActionGoodbye(Action):
    def name(self) -> Text:
        return "action_goodbye"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        dispatcher.utter_message(text=say("goodbye", lang))
        return [SlotSet("lang", lang)]


class ActionAcknowledge(Action):
    def name(self) -> Text:
        return "action_acknowledge"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        intent, _ = _intent(tracker)
        dispatcher.utter_message(
            text=say("nothing_to_cancel" if intent == "cancel" else "acknowledge", lang)
        )
        return [SlotSet("lang", lang)]


class ActionHandoff(Action):
    def name(self) -> Text:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        dispatcher.utter_message(text=say("handoff", lang))
        command(dispatcher, commands.Handoff("requested"))
        return [SlotSet("lang", lang)]


# ----------------------------------------------------------------- knowledge base
class ActionAnswerQuestion(Action):
    """legal_consult, lawyer_appointment, out_of_scope and NLU fallback all end up here."""

    def name(self) -> Text:
        return "action_answer_question"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        intent, _ = _intent(tracker)
        text = (tracker.latest_message or {}).get("text") or ""
        topic = next(tracker.get_latest_entity_values("kb_article"), None)
        mode = "consult"
        if intent == "lawyer_appointment":
            dispatcher.utter_message(text=say("lawyer_intro", lang))
            topic = topic or "lawyer-appointment"
        elif intent == "out_of_scope":
            dispatcher.utter_message(text=say("out_of_scope_intro", lang))
            topic = topic or "out-of-scope"
        elif intent == "nlu_fallback":
            mode = "fallback"
        query = "" if text.startswith("/") else text
        command(dispatcher, commands.KbAnswer(query, mode, topic))
        return [SlotSet("lang", lang)]


# ------------------------------------------------------------------------ intake
class ActionStartIntake(Action):
    def name(self) -> Text:
        return "action_start_intake"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        intent, _ = _intent(tracker)
        kind = INTENT_KIND.get(intent, "report")
        dispatcher.utter_message(text=say(f"intake_start_{kind}", lang))
        return [
            *_reset(intake.INTAKE_SLOTS),
            *_reset(BOOKKEEPING),
            SlotSet("case_kind", kind),
            SlotSet("lang", lang),
        ]


class ValidateIntakeForm(FormValidationAction):
    """Every turn of the intake form: answers, skips, corrections, questions, cancel."""

    def name(self) -> Text:
        return "validate_intake_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        kind = tracker.get_slot("case_kind") or "report"
        slots = {name: tracker.get_slot(name) for name in intake.INTAKE_SLOTS}
        requested = tracker.get_slot("requested_slot")
        intent, confidence = _intent(tracker)
        text = (tracker.latest_message or {}).get("text") or ""
        turn = intake.step(
            kind,
            requested,
            slots,
            text,
            intent,
            confidence,
            int(tracker.get_slot("retries") or 0),
            lang,
        )
        # Always set a slot: a validation that sets none makes Rasa reject the form.
        events: List[EventType] = [
            SlotSet("lang", lang),
            SlotSet("retries", turn.retries),
            SlotSet("form_turn", int(tracker.get_slot("form_turn") or 0) + 1),
        ]
        for key, values in turn.say:
            shown = {k: say(v, lang) if k == "label" else v for k, v in values.items()}
            dispatcher.utter_message(text=say(key, lang, **shown))
        if turn.say and turn.say[-1][0].startswith("err_") and turn.retries >= 2:
            dispatcher.utter_message(text=say("retry_hint", lang))
        if turn.ask_kb:
            command(dispatcher, commands.KbAnswer(text))
            dispatcher.utter_message(text=say("resume_form", lang))
        if turn.outcome:
            events += [SlotSet("outcome", turn.outcome), SlotSet("requested_slot", None)]
            return events
        for name, value in turn.slots.items():
            events.append(SlotSet(name, value))
            slots[name] = value
        if slots.get("anonymous") == "anonymous":
            for name in intake.NAMED_SLOTS:
                if slots.get(name) is not None:
                    events.append(SlotSet(name, None))
                    slots[name] = None
        # "confirm" is never filled (confirming sets the outcome), so there is always a next.
        events.append(SlotSet("requested_slot", intake.next_slot(kind, slots)))
        return events


def _ask(slot: str):  # type: ignore[no-untyped-def]
    """Build the ``action_ask_<slot>`` action for one intake question."""

    class AskSlot(Action):
        def name(self) -> Text:
            return f"action_ask_{slot}"

        async def run(
            self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
        ) -> List[EventType]:
            lang = lang_of(tracker)
            kind = tracker.get_slot("case_kind") or "report"
            buttons = []
            if slot in intake.SENSITIVE:
                command(dispatcher, commands.ExpectSensitive())
            if slot == "person":
                buttons = [button("btn_dont_know", lang, "/skip")]
            elif slot in intake.OPTIONAL:
                buttons = [button("btn_skip", lang, "/skip")]
            elif slot == "anonymous":
                buttons = [
                    button("btn_named", lang, "/affirm"),
                    button("btn_anonymous", lang, "/deny"),
                ]
            elif slot == intake.NOTIFY:
                buttons = [
                    button("btn_notify_yes", lang, "/affirm"),
                    button("btn_notify_no", lang, "/deny"),
                ]
            key = f"ask_details_{kind}" if slot == "details" else f"ask_{slot}"
            dispatcher.utter_message(text=say(key, lang), buttons=buttons)
            return []

    AskSlot.__name__ = f"Ask_{slot}"
    return AskSlot


ASK_ACTIONS = [_ask(slot) for slot in intake.INTAKE_SLOTS if slot != "confirm"]


class ActionAskConfirm(Action):
    """Reads back what was collected (identity masked) and asks for confirmation."""

    def name(self) -> Text:
        return "action_ask_confirm"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        kind = tracker.get_slot("case_kind") or "report"
        slots = {name: tracker.get_slot(name) for name in intake.INTAKE_SLOTS}
        lines = [say("confirm_intro", lang)]
        for name in intake.plan(kind, slots):
            if name == "confirm":
                continue
            value = slots.get(name)
            if value is None:
                continue
            if value == intake.SKIPPED:
                shown = say("value_skipped", lang)
            elif name == "anonymous":
                shown = say(f"value_{value}", lang)
            elif name == intake.NOTIFY:
                shown = say(f"value_notify_{value}", lang)
            elif name == "reporter_name":
                shown = intake.mask_name(value)
            elif name == "reporter_phone":
                shown = intake.mask_phone(value)
            elif name == "reporter_id":
                shown = value[:4] + "**********" + value[-4:]
            else:
                shown = value
            lines.append(
                f"{say('label_' + name, lang)}：{shown}"
                if lang == "zh"
                else f"{say('label_' + name, lang)}: {shown}"
            )
        lines.append(say("confirm_outro", lang))
        if slots.get("anonymous") == "named":
            command(dispatcher, commands.ExpectSensitive())
        dispatcher.utter_message(
            text="\n".join(lines),
            buttons=[
                button("btn_confirm", lang, "/affirm"),
                button("btn_change", lang, "/deny"),
                button("btn_cancel", lang, "/cancel"),
            ],
        )
        return []


class ActionFinishIntake(Action):
    def name(self) -> Text:
        return "action_finish_intake"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        outcome = tracker.get_slot("outcome")
        kind = tracker.get_slot("case_kind") or "report"
        slots = {name: tracker.get_slot(name) for name in intake.INTAKE_SLOTS}
        fields = {
            name: value
            for name, value in slots.items()
            if name in ("person", "unit", "position", "details", "when", "place", "evidence")
            and value not in (None, intake.SKIPPED)
        }
        if "when" in fields:
            fields["time"] = fields.pop("when")
        if outcome == "confirmed":
            identity: Optional[Dict[str, str]] = None
            if slots.get("anonymous") == "named" and slots.get("reporter_name"):
                identity = {
                    "name": slots["reporter_name"] or "",
                    "phone": slots.get("reporter_phone") or "",
                    "id_number": ""
                    if slots.get("reporter_id") in (None, intake.SKIPPED)
                    else slots["reporter_id"],
                }
            notify = identity is not None and slots.get(intake.NOTIFY) == "yes"
            command(dispatcher, commands.CreateTicket(kind, fields, identity, notify))
        elif outcome == "handoff":
            intent, _ = _intent(tracker)
            gave_up = not (
                intent == "request_human"
                or intake.wants_human((tracker.latest_message or {}).get("text") or "")
            )
            dispatcher.utter_message(text=say("gave_up" if gave_up else "handoff", lang))
            # The slots are reset below, so what was collected travels with the command;
            # the hub seals it for the agent (identity answers included, shown by role).
            collected = {
                name: value
                for name, value in slots.items()
                if name != "confirm" and value not in (None, intake.SKIPPED)
            }
            reason = "bot_gave_up" if gave_up else "requested"
            command(dispatcher, commands.Handoff(reason, {"case_kind": kind, **collected}))
        else:
            dispatcher.utter_message(text=say("cancelled", lang))
            command(dispatcher, commands.Forget())  # nothing is filed: Rasa keeps none of it either
        # Identity never stays in the dialogue state longer than needed.
        return [*_reset(intake.INTAKE_SLOTS), *_reset(BOOKKEEPING), SlotSet("lang", lang)]


# ------------------------------------------------------------------- case status
class ActionStartCaseStatus(Action):
    def name(self) -> Text:
        return "action_start_case_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        dispatcher.utter_message(text=say("status_start", lang))
        code, pin = intake.split_code_pin((tracker.latest_message or {}).get("text") or "")
        events: List[EventType] = [
            *_reset(STATUS_SLOTS),
            *_reset(BOOKKEEPING),
            SlotSet("lang", lang),
        ]
        if code and is_valid_code(code):  # "查询案件 118016483006" fills the code at once
            events.append(SlotSet("case_code", code))
            if pin:
                events.append(SlotSet("case_pin", pin))
        elif code:
            dispatcher.utter_message(text=say("err_case_code", lang))
        return events


class ValidateCaseStatusForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_case_status_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        requested = tracker.get_slot("requested_slot")
        code, pin = tracker.get_slot("case_code"), tracker.get_slot("case_pin")
        retries = int(tracker.get_slot("retries") or 0)
        intent, confidence = _intent(tracker)
        text = (tracker.latest_message or {}).get("text") or ""
        events: List[EventType] = [
            SlotSet("lang", lang),
            SlotSet("form_turn", int(tracker.get_slot("form_turn") or 0) + 1),
        ]
        if requested is not None:
            if (intent == "cancel" and confidence >= 0.6) or intake.is_cancel(text):
                return [*events, SlotSet("outcome", "cancelled"), SlotSet("requested_slot", None)]
            if (intent == "request_human" and confidence >= 0.6) or intake.wants_human(text):
                return [*events, SlotSet("outcome", "handoff"), SlotSet("requested_slot", None)]
            found_code, found_pin = intake.split_code_pin(text)
            if not any(ch.isdigit() for ch in text) and intent == "case_status":
                pass  # "check my case" again while we are asking: just ask once more
            elif requested == "case_code":
                if found_code and is_valid_code(found_code):
                    code, pin, retries = found_code, found_pin or pin, 0
                else:
                    retries += 1
                    if retries < intake.MAX_RETRIES:
                        dispatcher.utter_message(text=say("err_case_code", lang))
            elif requested == "case_pin":
                if found_pin and is_valid_pin(found_pin):
                    pin, retries = found_pin, 0
                else:
                    retries += 1
                    if retries < intake.MAX_RETRIES:
                        dispatcher.utter_message(text=say("err_case_pin", lang))
            if retries >= intake.MAX_RETRIES:
                return [*events, SlotSet("outcome", "gave_up"), SlotSet("requested_slot", None)]
        events += [
            SlotSet("case_code", code),
            SlotSet("case_pin", pin),
            SlotSet("retries", retries),
        ]
        nxt = "case_code" if code is None else "case_pin" if pin is None else None
        if nxt is None:
            events.append(SlotSet("outcome", "lookup"))
        events.append(SlotSet("requested_slot", nxt))
        return events


class ActionAskCaseCode(Action):
    def name(self) -> Text:
        return "action_ask_case_code"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        dispatcher.utter_message(text=say("ask_case_code", lang_of(tracker)))
        return []


class ActionAskCasePin(Action):
    def name(self) -> Text:
        return "action_ask_case_pin"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        command(dispatcher, commands.ExpectSensitive())  # the PIN never sits in the transcript
        dispatcher.utter_message(text=say("ask_case_pin", lang_of(tracker)))
        return []


class ActionFinishCaseStatus(Action):
    def name(self) -> Text:
        return "action_finish_case_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        lang = lang_of(tracker)
        outcome = tracker.get_slot("outcome")
        code, pin = tracker.get_slot("case_code"), tracker.get_slot("case_pin")
        if outcome == "lookup" and code and pin:
            command(dispatcher, commands.CaseStatus(code, pin))
        elif outcome == "handoff":
            dispatcher.utter_message(text=say("handoff", lang))
            command(dispatcher, commands.Handoff("requested"))
        elif outcome == "gave_up":
            dispatcher.utter_message(
                text=say("status_gave_up", lang),
                buttons=[button("btn_human", lang, "/request_human")],
            )
        else:
            dispatcher.utter_message(text=say("cancelled", lang))
        if outcome != "lookup":  # a lookup purges via the hub; other endings purge here
            command(dispatcher, commands.Forget())
        return [*_reset(STATUS_SLOTS), *_reset(BOOKKEEPING), SlotSet("lang", lang)]
