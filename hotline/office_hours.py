"""Office hours: when agents answer the phone, e.g. ``mon-fri 08:30-17:30``.

The spec is comma-separated ranges of ``DAYS HH:MM-HH:MM`` (days ``mon``..``sun``, a
single day or a range); ``always`` means around the clock. Holidays (``HOTLINE_HOLIDAYS``)
are closed all day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    start: int  # minutes after midnight
    end: int  # exclusive; 1440 is midnight


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    value = int(hours) * 60 + int(minutes)
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and 0 <= value <= 1440):
        raise ValueError(f"{hhmm!r} is not a time like 08:30")
    return value


def parse(spec: str) -> tuple[Window, ...]:
    """Raises ``ValueError`` with what to write instead."""
    if spec.strip().lower() == "always":
        return (Window(frozenset(range(7)), 0, 1440),)
    windows = []
    for part in spec.lower().split(","):
        try:
            days, times = part.split()
            first, _, last = days.partition("-")
            a, b = DAYS.index(first), DAYS.index(last or first)
            start, end = (_minutes(t) for t in times.split("-"))
        except ValueError as exc:
            raise ValueError(
                f"{part.strip()!r}: write office hours like 'mon-fri 08:30-17:30' or 'always'"
            ) from exc
        if start >= end:
            raise ValueError(f"{part.strip()!r}: the end must come after the start")
        span = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
        windows.append(Window(frozenset(span), start, end))
    return tuple(windows)


def is_open(
    windows: tuple[Window, ...], zone: str, holidays: frozenset[str], now: dt.datetime
) -> bool:
    local = now.astimezone(ZoneInfo(zone))
    if local.date().isoformat() in holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(local.weekday() in w.days and w.start <= minute < w.end for w in windows)
