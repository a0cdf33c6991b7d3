"""The intake dialogue logic on its own (the Rasa-backed tests drive it for real)."""

from __future__ import annotations

import pytest

from bots import intake


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("单位说错了，是县财政局", ("unit", "县财政局")),
        ("时间写错了，应该是去年三月", ("when", "去年三月")),
        ("电话不对，应为13800138000", ("reporter_phone", "13800138000")),
        (
            "Sorry, the organization should be County Finance Bureau",
            ("unit", "County Finance Bureau"),
        ),
        ("the place is wrong, it should be Harbin", ("place", "Harbin")),
        ("他收受了二十万元", None),
        ("局长", None),
    ],
)
def test_corrections(text: str, expected: tuple[str, str] | None) -> None:
    assert intake.parse_correction(text) == expected


@pytest.mark.parametrize(
    ("slot", "text", "value", "error"),
    [
        ("reporter_phone", "138 0013 8000", "13800138000", None),
        ("reporter_phone", "+86 138-0013-8000", "13800138000", None),
        ("reporter_phone", "010-12345678", "01012345678", None),
        ("reporter_phone", "12345", None, "err_phone"),
        ("reporter_id", "11010519491231002X", "11010519491231002X", None),
        ("reporter_id", "110105194912310021", None, "err_id_number"),
        ("reporter_id", "跳过", intake.SKIPPED, None),
        ("details", "他受贿", None, "err_too_short"),
        ("details", "他收受开发商贿赂二十万元", "他收受开发商贿赂二十万元", None),
        ("details", "跳过", None, "err_required"),
        ("unit", "？？？", None, "err_empty"),
        ("unit", "啊啊啊啊啊", None, "err_empty"),
        ("position", "skip", intake.SKIPPED, None),
        ("reporter_name", "张三3", None, "err_name"),
        ("anonymous", "我要匿名", "anonymous", None),
        ("anonymous", "I'll give my name", "named", None),
        ("anonymous", "随便", None, "err_anonymous"),
        ("details", "x" * 2001, None, "err_too_long"),
    ],
)
def test_validation(slot: str, text: str, value: str | None, error: str | None) -> None:
    assert intake.validate(slot, text, "zh") == (value, error)


def test_plan_asks_identity_only_when_named() -> None:
    assert "reporter_name" not in intake.plan("report", {"anonymous": "anonymous"})
    assert intake.plan("report", {"anonymous": "named"})[-5:] == [
        "reporter_name",
        "reporter_phone",
        "notify_sms",
        "reporter_id",
        "confirm",
    ]
    assert intake.plan("complaint", {})[0] == "details"


def test_retries_are_capped_with_a_handoff() -> None:
    retries = 0
    outcomes = []
    for _ in range(3):
        turn = intake.step(
            "report", "reporter_phone", {}, "abc", "out_of_scope", 0.9, retries, "zh"
        )
        retries = turn.retries
        outcomes.append(turn.outcome)
    assert outcomes == [None, None, "handoff"]


def test_too_long_answer_says_the_limit() -> None:
    turn = intake.step("report", "unit", {}, "局" * 300, "report_crime", 0.9, 0, "zh")
    assert turn.say == [("err_too_long", {"limit": "200"})]


def test_question_mid_form_does_not_fill_the_slot() -> None:
    turn = intake.step(
        "report", "unit", {}, "举报人的身份会保密吗？", "legal_consult", 0.95, 0, "zh"
    )
    assert turn.ask_kb and not turn.slots and turn.outcome is None


@pytest.mark.parametrize(
    ("text", "code", "pin"),
    [
        ("118016483006 503815", "118016483006", "503815"),
        ("1180 1648 3006", "118016483006", None),
        ("密码 503815", None, "503815"),
        ("118016483006503815", "118016483006", "503815"),
    ],
)
def test_code_and_pin_extraction(text: str, code: str | None, pin: str | None) -> None:
    assert intake.split_code_pin(text) == (code, pin)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("需要", "yes"),
        ("要", "yes"),
        ("好的", "yes"),
        ("yes please", "yes"),
        ("不需要", "no"),
        ("不要", "no"),
        ("不用了", "no"),
        ("no", "no"),
        ("跳过", "no"),
        ("no thanks", "no"),
    ],
)
def test_notify_answers(text: str, value: str) -> None:
    assert intake.validate(intake.NOTIFY, text, "zh") == (value, None)


def test_notify_needs_a_yes_or_no() -> None:
    assert intake.validate(intake.NOTIFY, "随便", "zh") == (None, "err_notify")
