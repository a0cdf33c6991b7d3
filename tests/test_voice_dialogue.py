"""The pure parts of speech turns: what the caller hears, and what their answer means."""

from __future__ import annotations

from hotline.config import PROJECT_ROOT
from voice_ivr.calls import Heard
from voice_ivr.dialogue import HUMAN, Answer, Reply, _spoken, _understand, training_phrases

BUTTONS = (("Don't know", "/skip"), ("Talk to a person", "/request_human"))


def test_replies_are_read_out_with_their_buttons_as_keys() -> None:
    replies = [
        Reply("Your case code is **202611260001**. See [the guide](https://12309.gov.cn/x)."),
        Reply("What is the name of the person you are reporting?", BUTTONS),
    ]
    text = _spoken(replies, "en")
    assert "is 2 0 2 6, 1 1 2 6, 0 0 0 1. See" in text  # digits, not "two hundred billion"
    assert "*" not in text and "https" not in text and "the guide" in text
    assert text.endswith("For Don't know, press 1. For Talk to a person, press 2.")
    assert (
        _spoken([Reply("请问姓名？", (("不知道", "/skip"),))], "zh") == "请问姓名？ 不知道请按1。"
    )


def test_keys_choose_buttons_zero_asks_for_a_person_star_repeats() -> None:
    replies = [Reply("Name?", BUTTONS)]
    assert _understand(Heard(key="1"), replies, "person") == Answer("Don't know", "/skip", "button")
    assert _understand(Heard(key="0"), replies, "person") == Answer(HUMAN, HUMAN, "agent")
    assert _understand(Heard(key="*"), replies, "person") == "repeat"
    assert _understand(Heard(key="7"), replies, "person") == "no_match"
    assert _understand(Heard(key="1"), [Reply("Anything else?")], None) == "no_match"
    assert _understand(None, replies, "person") == "no_input"


def test_speech_matching_a_button_is_that_button_else_the_words() -> None:
    replies = [Reply("Name?", BUTTONS)]
    assert _understand(Heard(text="don't know"), replies, "person") == Answer(
        "Don't know", "/skip", "button"
    )
    assert _understand(Heard(text="how do i file a complaint"), replies, None) == Answer(
        "how do i file a complaint"
    )
    assert _understand(Heard(text=""), replies, None) == "no_match"


def test_the_grammar_is_the_bots_english_training_phrases() -> None:
    phrases = training_phrases(PROJECT_ROOT / "nlu" / "data" / "nlu.yml")["en"]
    assert "how do i file a complaint" in phrases and "talk to a human" in phrases
    assert all(p.isascii() and p == p.lower() and "[" not in p for p in phrases)
    assert len(phrases) == len(set(phrases)) > 300


def test_case_status_reply_is_read_line_by_line_with_dates_and_digits() -> None:
    """The IVR speaks the hub's own status reply (``replies.case_status``), made fit to hear."""
    import datetime as dt

    from hotline.replies import case_status
    from hotline.store.models import Ticket
    from hotline.tickets import Lookup, LookupOutcome
    from voice_ivr.prompts import spoken_lines

    ticket = Ticket(
        case_code="202611260001",
        kind="report",
        status="received",
        created_at=dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC),
        reply_due=dt.date(2026, 12, 7),
        result_due=dt.date(2027, 2, 26),
    )
    said = case_status(Lookup(LookupOutcome.FOUND, ticket=ticket), "en")
    text = spoken_lines(said.text, "en")
    assert "Case 2 0 2 6, 1 1 2 6, 0 0 0 1 (" in text
    assert "December 07, 2026" in text and "2026-12-07" not in text
    assert text.count(".") >= 5 and "\n" not in text
    zh = spoken_lines(case_status(Lookup(LookupOutcome.FOUND, ticket=ticket), "zh").text, "zh")
    assert "2026年12月7日" in zh and zh.endswith("。")
