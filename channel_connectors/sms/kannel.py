"""Kannel's HTTP interfaces: ``sendsms`` out, delivery report codes, and SMS arithmetic.

``segments()`` is pure: how many SMS a text takes on the air. GSM-7 text (the GSM 03.38
alphabet; extension characters take two septets) fits 160 septets in one SMS and 153
per part when concatenated; anything else goes as UCS-2: 70 UTF-16 units, 67 per part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

import aiohttp

Encoding = Literal["gsm7", "ucs2"]

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = "^{}\\[~]|€\f"
GSM_BASIC = frozenset(_GSM_BASIC)
GSM_EXTENDED = frozenset(_GSM_EXTENDED)

# dlr-mask bits, and what each report code means (Kannel's %d).
DLR_MASK = 1 | 2 | 4 | 8 | 16
DLR_STATES = {1: "delivered", 2: "failed", 4: "buffered", 8: "smsc_ack", 16: "smsc_reject"}
FINAL_STATES = frozenset({"delivered", "failed", "smsc_reject"})


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # capacity of one part of this message

    def as_dict(self) -> dict[str, object]:
        return {
            "encoding": self.encoding,
            "units": self.units,
            "segments": self.segments,
            "per_segment": self.per_segment,
        }


def is_gsm7(text: str) -> bool:
    return all(c in GSM_BASIC or c in GSM_EXTENDED for c in text)


def segments(text: str) -> SegmentInfo:
    """How many SMS ``text`` takes, and in which encoding."""
    if is_gsm7(text):
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        single, part = 160, 153
        encoding: Encoding = "gsm7"
    else:
        units = len(text.encode("utf-16-be")) // 2
        single, part = 70, 67
        encoding = "ucs2"
    if units <= single:
        return SegmentInfo(encoding, units, 1 if units else 0, single)
    return SegmentInfo(encoding, units, math.ceil(units / part), part)


def split(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, at a line or a space if
    one is near the end of a piece (never inside a surrogate pair)."""
    out: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = limit
        if rest[cut - 1] >= "\ud800" and rest[cut - 1] <= "\udbff":
            cut -= 1
        window = rest[max(0, cut - limit // 4) : cut]
        for sep in ("\n", "。", ". ", "，", " "):
            at = window.rfind(sep)
            if at > 0:
                cut = cut - len(window) + at + len(sep)
                break
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not out:
        out.append(rest)
    return out


class SendError(Exception):
    pass


class KannelClient:
    """``sendsms`` on smsbox, with user and password; UCS-2 when the text is not GSM-7."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        user: str,
        password: str,
        *,
        sender: str,
        max_segments: int,
        timeout: float = 5.0,
    ) -> None:
        self._http = http
        self._url = url
        self._user = user
        self._password = password
        self._sender = sender
        self._max_segments = max_segments
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def params(self, to: str, text: str, dlr_url: str | None) -> dict[str, str | bytes]:
        params: dict[str, str | bytes] = {
            "username": self._user,
            "password": self._password,
            "from": self._sender,
            "to": to,
        }
        if is_gsm7(text):
            params.update(text=text, coding="0", charset="UTF-8")
        else:
            params.update(text=text.encode("utf-16-be"), coding="2", charset="UTF-16BE")
        if segments(text).segments > self._max_segments:
            raise SendError(f"text needs more than {self._max_segments} SMS; split it first")
        if dlr_url is not None:
            params.update({"dlr-mask": str(DLR_MASK), "dlr-url": dlr_url})
        return params

    async def send(self, to: str, text: str, dlr_url: str | None = None) -> str:
        """Hand one (possibly concatenated) SMS to Kannel; returns Kannel's answer."""
        query = urlencode(self.params(to, text, dlr_url))
        try:
            async with self._http.get(f"{self._url}?{query}", timeout=self._timeout) as resp:
                body = (await resp.text(errors="replace")).strip()
                if resp.status not in (200, 202):
                    raise SendError(f"kannel answered {resp.status}: {body[:200]}")
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"kannel unreachable: {type(exc).__name__}") from exc

    async def probe(self) -> tuple[bool, str]:
        """Is smsbox answering? (any HTTP answer counts; a request without a user is refused)"""
        try:
            async with self._http.get(self._url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                await resp.read()
                return True, f"smsbox answers ({resp.status})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"smsbox unreachable: {type(exc).__name__}"
