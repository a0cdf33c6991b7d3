"""Group sends: who gets what. Recipients, exclusions, rendering, and progress.

Everything here runs inside a session the caller owns; the staff API and the
scheduler both use it. Scope is by org unit: staff see their unit and the units below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from channel_connectors.sms import kannel, store
from channel_connectors.sms.campaigns import templates
from channel_connectors.sms.campaigns.models import (
    MessageState,
    SmsGroup,
    SmsGroupMember,
    SmsSend,
    SmsSendMessage,
    SmsTemplate,
)
from channel_connectors.sms.connector import BadRequest, normalize_number
from hotline.store.models import Blacklist, Contact

_CHUNK = 500
LANGUAGES = ("zh", "en")


class CampaignError(Exception):
    """A request the data does not allow; the handler turns it into a JSON error."""

    def __init__(self, status: int, code: str, message: str, message_zh: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.message_zh = message_zh


def normalize_phone(raw: str) -> str | None:
    """The number as the SMS channel keys it (mainland mobiles without +86), or None
    when the channel would refuse it."""
    try:
        return normalize_number(raw)
    except BadRequest:
        return None


# ------------------------------------------------------------------ exclusions
@dataclass
class Exclusions:
    opted_out: set[str] = field(default_factory=set)
    blacklisted: set[str] = field(default_factory=set)

    def __contains__(self, phone: object) -> bool:
        return phone in self.opted_out or phone in self.blacklisted

    def counts(self) -> dict[str, int]:
        return {
            "opted_out": len(self.opted_out),
            "blacklisted": len(self.blacklisted - self.opted_out),
        }


async def exclusions(session: AsyncSession, phones: Iterable[str]) -> Exclusions:
    """Which of ``phones`` must not get a group send: opted out (the SMS channel's
    ``sms_optout``) or blacklisted (the core ``blacklist``, by SMS contact)."""
    out = Exclusions()
    numbers = list(dict.fromkeys(phones))
    optout = store.sms_optout.c.number
    for i in range(0, len(numbers), _CHUNK):
        chunk = numbers[i : i + _CHUNK]
        rows = await session.execute(
            select(Contact.external_id)
            .join(Blacklist, Blacklist.contact_id == Contact.id)
            .where(Contact.channel == "sms", Contact.external_id.in_(chunk))
        )
        out.blacklisted.update(r[0] for r in rows)
        rows = await session.execute(select(optout).where(optout.in_(chunk)))
        out.opted_out.update(str(r[0]) for r in rows)
    return out


# ------------------------------------------------------------------ scope
async def scoped_template(session: AsyncSession, units: frozenset[str], tid: int) -> SmsTemplate:
    tpl = await session.get(SmsTemplate, tid)
    if tpl is None or tpl.org_unit_id not in units:
        raise CampaignError(404, "not_found", "no such template", "模板不存在")
    return tpl


async def scoped_group(session: AsyncSession, units: frozenset[str], gid: int) -> SmsGroup:
    group = await session.get(SmsGroup, gid)
    if group is None or group.org_unit_id not in units:
        raise CampaignError(404, "not_found", "no such group", "分组不存在")
    return group


async def member_counts(session: AsyncSession, group_ids: Sequence[int]) -> dict[int, int]:
    if not group_ids:
        return {}
    rows = await session.execute(
        select(SmsGroupMember.group_id, func.count())
        .where(SmsGroupMember.group_id.in_(group_ids))
        .group_by(SmsGroupMember.group_id)
    )
    return {int(g): int(n) for g, n in rows}


# ------------------------------------------------------------------ planning a send
@dataclass(frozen=True)
class Recipient:
    phone: str
    name: str | None
    language: str
    text: str
    segments: kannel.SegmentInfo


@dataclass
class Plan:
    members: int  # distinct numbers in the groups
    recipients: list[Recipient]
    excluded: Exclusions
    missing: dict[str, int]  # placeholder -> members without a value
    too_long: int  # rendered texts longer than the link allows

    def summary(self, preview: int) -> dict[str, Any]:
        segs = [r.segments.segments for r in self.recipients]
        return {
            "members": self.members,
            "recipients": len(self.recipients),
            "excluded": self.excluded.counts(),
            "missing": self.missing,
            "too_long": self.too_long,
            "segments": {"max": max(segs, default=0), "total": sum(segs)},
            "samples": [
                {
                    "phone": r.phone,
                    "name": r.name,
                    "language": r.language,
                    "text": r.text,
                    "segments": r.segments.as_dict(),
                }
                for r in self.recipients[:preview]
            ],
        }


def local_values(when: dt.datetime, tz: str) -> dict[str, str]:
    local = when.astimezone(ZoneInfo(tz))
    return {"date": local.strftime("%Y-%m-%d"), "time": local.strftime("%H:%M")}


def texts_of(tpl: SmsTemplate | SmsSend) -> dict[str, str]:
    return {lang: txt for lang, txt in (("zh", tpl.text_zh), ("en", tpl.text_en)) if txt}


def pick_text(texts: Mapping[str, str], language: str) -> tuple[str, str]:
    """The member's language if the template has it, else the other one."""
    if language in texts:
        return language, texts[language]
    other = next(iter(texts))
    return other, texts[other]


async def plan(
    session: AsyncSession,
    units: frozenset[str],
    texts: Mapping[str, str],
    group_ids: Sequence[int],
    when: dt.datetime,
    tz: str,
    max_segments: int,
) -> Plan:
    """Render the send for every distinct number of the groups, minus exclusions."""
    for gid in group_ids:
        await scoped_group(session, units, gid)
    rows = await session.execute(
        select(SmsGroupMember)
        .where(SmsGroupMember.group_id.in_(group_ids))
        .order_by(SmsGroupMember.group_id, SmsGroupMember.id)
    )
    by_phone: dict[str, SmsGroupMember] = {}
    order = {gid: i for i, gid in enumerate(group_ids)}
    for member in sorted(rows.scalars(), key=lambda m: (order[m.group_id], m.id)):
        by_phone.setdefault(member.phone, member)  # the first group that names it
    excluded = await exclusions(session, by_phone)
    defaults = local_values(when, tz)
    missing: dict[str, int] = {}
    too_long = 0
    out: list[Recipient] = []
    for phone, member in by_phone.items():
        if phone in excluded:
            continue
        fields = member.fields if isinstance(member.fields, dict) else {}
        values = {**defaults, **{k: str(v) for k, v in fields.items() if v}}
        if member.name:
            values["name"] = member.name
        language, body = pick_text(texts, member.language)
        for name in templates.missing(body, values):
            missing[name] = missing.get(name, 0) + 1
        rendered = templates.render(body, values)
        info = kannel.segments(rendered)
        if info.segments > max_segments:
            too_long += 1
        out.append(Recipient(phone, member.name, language, rendered, info))
    return Plan(len(by_phone), out, excluded, missing, too_long)


# ------------------------------------------------------------------ progress
PROGRESS_STATES = tuple(s.value for s in MessageState)


async def progress(session: AsyncSession, send_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {sid: dict.fromkeys(PROGRESS_STATES, 0) for sid in send_ids}
    if not send_ids:
        return out
    rows = await session.execute(
        select(SmsSendMessage.send_id, SmsSendMessage.state, func.count())
        .where(SmsSendMessage.send_id.in_(send_ids))
        .group_by(SmsSendMessage.send_id, SmsSendMessage.state)
    )
    for sid, state, n in rows:
        out[sid][state] = int(n)
    return out
