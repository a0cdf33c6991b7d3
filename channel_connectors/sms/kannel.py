"""Kannel's interfaces: ``sendsms`` out, delivery report codes, bearerbox's status and
access log, and SMS arithmetic.

``segments()`` is pure: how many SMS a text takes on the air. GSM-7 text (the GSM 03.38
alphabet; extension characters take two septets) fits 160 septets in one SMS and 153
per part when concatenated; anything else goes as UCS-2: 70 UTF-16 units, 67 per part.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
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

    def params(
        self, to: str, text: str, dlr_url: str | None, binfo: str | None = None
    ) -> dict[str, str | bytes]:
        params: dict[str, str | bytes] = {
            "username": self._user,
            "password": self._password,
            "from": self._sender,
            "to": to,
        }
        if binfo is not None:  # bearerbox writes it in its access log ([BINF:...])
            params["binfo"] = binfo
        if is_gsm7(text):
            params.update(text=text, coding="0", charset="UTF-8")
        else:
            params.update(text=text.encode("utf-16-be"), coding="2", charset="UTF-16BE")
        if segments(text).segments > self._max_segments:
            raise SendError(f"text needs more than {self._max_segments} SMS; split it first")
        if dlr_url is not None:
            params.update({"dlr-mask": str(DLR_MASK), "dlr-url": dlr_url})
        return params

    async def send(
        self, to: str, text: str, dlr_url: str | None = None, *, binfo: str | None = None
    ) -> str:
        """Hand one (possibly concatenated) SMS to Kannel; returns Kannel's answer."""
        query = urlencode(self.params(to, text, dlr_url, binfo))
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


# ---------------------------------------------------------------- bearerbox
@dataclass(frozen=True)
class Queues:
    """What bearerbox still holds: messages not yet handed to (or taken by) an SMSC."""

    outbound: int  # <sms><sent><queued>
    store: int  # <storesize>: messages not yet acknowledged (-1 without a store)
    links: int  # the SMSC links' own queues (an SMPP window awaiting answers)
    boxes: int  # what the boxes (smsbox) have not yet taken

    @property
    def idle(self) -> bool:
        return self.outbound <= 0 and self.store <= 0 and self.links <= 0 and self.boxes <= 0


_SMS_SENT_QUEUED = re.compile(
    r"<sms>\s*<received>.*?</received>\s*<sent>.*?<queued>(-?\d+)</queued>", re.S
)
_STORE_SIZE = re.compile(r"<storesize>(-?\d+)</storesize>")
_SMSCS = re.compile(r"<smscs>(.*?)</smscs>", re.S)
_BOXES = re.compile(r"<boxes>(.*?)</boxes>", re.S)


def parse_status(xml: str) -> Queues:
    """bearerbox's ``status.xml`` (read with patterns: it is plain, and no XML parser
    need be trusted with what a network answer holds)."""
    sent = _SMS_SENT_QUEUED.search(xml)
    if sent is None:
        raise ValueError("no <sms><sent><queued> in bearerbox's status")
    store = _STORE_SIZE.search(xml)
    smscs = _SMSCS.search(xml)
    boxes = _BOXES.search(xml)
    return Queues(
        outbound=int(sent.group(1)),
        store=int(store.group(1)) if store else 0,
        links=sum(map(int, re.findall(r"<queued>(-?\d+)</queued>", smscs.group(1))))
        if smscs
        else 0,
        boxes=sum(map(int, re.findall(r"<queue>(-?\d+)</queue>", boxes.group(1)))) if boxes else 0,
    )


class KannelAdmin:
    """bearerbox's admin HTTP interface (the status password suffices)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, password: str) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._password = password

    async def queues(self) -> Queues:
        query = urlencode({"password": self._password})
        timeout = aiohttp.ClientTimeout(total=5)
        async with self._http.get(f"{self._url}/status.xml?{query}", timeout=timeout) as resp:
            body = await resp.text(errors="replace")
            if resp.status != 200:
                raise SendError(f"bearerbox status answered {resp.status}")
        try:
            return parse_status(body)
        except ValueError as exc:
            raise SendError("bearerbox status is not the XML expected") from exc


# The access log lines the hub's own format (conf.ACCESS_LOG_FORMAT) and Kannel's default
# both give: "<date> <time> Sent SMS [SMSC:x] ... [BINF:<binfo>] ...".
_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
_LOG_LINE = re.compile(  # a format starting with %t stamps the line twice
    rf"^({_STAMP}) (?:{_STAMP} )?(Sent SMS|Failed SMS|DISCARDED SMS)\b.*?\[BINF:([^\]]*)\]"
)
_LOG_BEGINS = re.compile(rf"^({_STAMP}) Log begins")


@dataclass(frozen=True)
class AccessLog:
    """What bearerbox's access log says of messages by their ``binfo``."""

    since: dt.datetime | None  # when the log (this file) begins, UTC
    outcomes: dict[str, str]  # binfo -> "sent" | "failed" (a failed part wins)


def read_access_log(path: Path, wanted: Collection[str]) -> AccessLog:
    """Scan ``path`` (bearerbox's access log, local time) for the ``wanted`` binfos.

    Blocking (run it in a thread); reads line by line, so a large log costs time only.
    """
    outcomes: dict[str, str] = {}
    since: dt.datetime | None = None
    keys = set(wanted)
    with path.open("r", encoding="utf-8", errors="replace") as log:
        for line in log:
            if since is None:
                begins = _LOG_BEGINS.match(line)
                if begins:
                    since = _local(begins.group(1))
            if "[BINF:" not in line:
                continue
            match = _LOG_LINE.match(line)
            if match is None or match.group(3) not in keys:
                continue
            if since is None:
                since = _local(match.group(1))
            outcome = "sent" if match.group(2) == "Sent SMS" else "failed"
            if outcomes.get(match.group(3)) != "failed":
                outcomes[match.group(3)] = outcome
    return AccessLog(since, outcomes)


def _local(stamp: str) -> dt.datetime:
    """Kannel's log time (the machine's local time) in UTC."""
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").astimezone(dt.UTC)
