"""Case codes: 12 digits, the last a Damm check digit, so callers can key them on a phone.

Damm's algorithm catches every single-digit error and every adjacent transposition,
the two mistakes people make when reading a number aloud or typing it on a keypad.
This module is pure standard library: the Rasa action server imports it too.
"""

from __future__ import annotations

import secrets

CODE_LENGTH = 12
PIN_LENGTH = 6

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_digit(digits: str) -> int:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return interim


def is_valid_code(code: str) -> bool:
    """True if ``code`` has the right length, only digits and a correct check digit."""
    return len(code) == CODE_LENGTH and code.isascii() and code.isdigit() and damm_digit(code) == 0


def new_code() -> str:
    body = "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH - 1))
    if body[0] == "0":  # a leading zero gets lost when people write the code down
        body = str(secrets.randbelow(9) + 1) + body[1:]
    return body + str(damm_digit(body))


def new_pin() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(PIN_LENGTH))


def is_valid_pin(pin: str) -> bool:
    return len(pin) == PIN_LENGTH and pin.isascii() and pin.isdigit()
