from __future__ import annotations

import datetime as dt

from hotline import casecode
from hotline.deadlines import add_months, add_working_days, due_dates


def test_new_codes_are_valid_digits() -> None:
    codes = {casecode.new_code() for _ in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert len(code) == 12 and code.isdigit() and code[0] != "0"
        assert casecode.is_valid_code(code)


def test_check_digit_catches_typos_and_transpositions() -> None:
    code = casecode.new_code()
    for i in range(12):
        for d in "0123456789":
            if d != code[i]:
                assert not casecode.is_valid_code(code[:i] + d + code[i + 1 :])
    for i in range(11):
        if code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            assert not casecode.is_valid_code(swapped)


def test_pins() -> None:
    pin = casecode.new_pin()
    assert casecode.is_valid_pin(pin)
    assert not casecode.is_valid_pin("12345")
    assert not casecode.is_valid_pin("12345a")


def test_working_days_skip_weekends_and_holidays() -> None:
    friday = dt.date(2026, 11, 27)
    assert add_working_days(friday, 7) == dt.date(2026, 12, 8)
    assert add_working_days(friday, 1, {"2026-11-30"}) == dt.date(2026, 12, 1)


def test_three_months_clamps_month_end() -> None:
    assert add_months(dt.date(2026, 11, 30), 3) == dt.date(2027, 2, 28)
    assert due_dates(dt.date(2026, 1, 5)) == (dt.date(2026, 1, 14), dt.date(2026, 4, 5))
