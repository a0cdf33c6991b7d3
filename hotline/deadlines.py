"""Statutory clocks: a procedural reply within 7 working days, a result within 3 months."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Container

REPLY_WORKING_DAYS = 7
RESULT_MONTHS = 3


def add_working_days(start: dt.date, days: int, holidays: Container[str] = ()) -> dt.date:
    """The date ``days`` working days after ``start`` (weekends and holidays skipped).

    ``holidays`` holds ISO dates of public holidays. Make-up working weekends (调休)
    are not modelled yet; configure them as needed when they matter.
    """
    day = start
    left = days
    while left:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day.isoformat() not in holidays:
            left -= 1
    return day


def add_months(start: dt.date, months: int) -> dt.date:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def due_dates(received: dt.date, holidays: Container[str] = ()) -> tuple[dt.date, dt.date]:
    """(procedural reply due, result due) for something received on ``received``."""
    return (
        add_working_days(received, REPLY_WORKING_DAYS, holidays),
        add_months(received, RESULT_MONTHS),
    )
