"""Staff endpoints for group sends (supervisors and admins), and Kannel's reports.

``/api/sms/...`` sits under the staff prefix, so the session cookie and the CSRF header
are checked by ``hotline.auth`` before a handler runs; each handler then asks for the
supervisor or admin role (agents get 403) and keeps to the user's org units (anything
outside is 404). ``/channels/sms/campaign-dlr`` is Kannel's: HTTP basic credentials
``kannel:<HOTLINE_SMS_INBOUND_SECRET>`` from an allowed address, as for the channel's
own callbacks.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import ipaddress
import re
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from channel_connectors.sms.campaigns import service, templates
from channel_connectors.sms.campaigns.models import (
    MessageState,
    SendState,
    SmsGroup,
    SmsGroupMember,
    SmsSend,
    SmsSendMessage,
    SmsTemplate,
)
from channel_connectors.sms.campaigns.runtime import CAMPAIGNS, Campaigns
from channel_connectors.sms.campaigns.scheduler import DLR_PATH
from hotline.api.errors import Fields, bad_request, json_error, read_json
from hotline.appkeys import SESSIONS
from hotline.audit import record
from hotline.auth import CurrentUser, require_user
from hotline.roles import SUPERVISING
from hotline.store.models import utcnow

MAX_TEMPLATE_TEXT = 1000
MAX_GROUPS_PER_SEND = 20
_UNIT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SEND_ID = re.compile(r"^[0-9a-f-]{36}$")
_TOKEN = re.compile(r"^[0-9a-f]{16}$")


def _campaigns(request: web.Request) -> Campaigns:
    return request.app[CAMPAIGNS]


def _fail(exc: service.CampaignError) -> web.HTTPException:
    return json_error(exc.status, exc.code, exc.message, exc.message_zh)


def _not_found(what: str = "record", what_zh: str = "记录") -> web.HTTPException:
    return json_error(404, "not_found", f"no such {what}", f"{what_zh}不存在")


def _int_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info.get(name, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise _not_found()
    return int(raw)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _body(request: web.Request, allowed: set[str], max_bytes: int = 64 * 1024) -> Fields:
    return Fields(await read_json(request, max_bytes), allowed)


async def _unit(session: AsyncSession, me: CurrentUser, f: Fields) -> str:
    unit = f.opt_text("org_unit_id", max_len=64, pattern=_UNIT) or me.org_unit_id
    if unit not in me.units:
        raise bad_request("org_unit_id: no such org unit")
    return unit


# ------------------------------------------------------------------ templates
def template_json(tpl: SmsTemplate) -> dict[str, Any]:
    texts = service.texts_of(tpl)
    return {
        "id": tpl.id,
        "org_unit_id": tpl.org_unit_id,
        "name": tpl.name,
        "text_zh": tpl.text_zh,
        "text_en": tpl.text_en,
        "placeholders": sorted({p for t in texts.values() for p in templates.placeholders(t)}),
        "created_by": tpl.created_by,
        "updated_at": _iso(tpl.updated_at),
    }


def _template_text(f: Fields, key: str) -> str | None:
    value = f.opt_text(key, max_len=MAX_TEMPLATE_TEXT, multiline=True, blank_is_none=True)
    if value is None:
        return None
    try:
        templates.placeholders(value)
    except templates.TemplateError as exc:
        raise json_error(
            400, "bad_placeholder", f"{key}: {exc}", f"{key}：模板占位符有误（{exc}）"
        ) from exc
    return value


async def get_config(request: web.Request) -> web.Response:
    """What the console needs to know: placeholders, time zone, the link's limits."""
    require_user(request, *SUPERVISING)
    c = _campaigns(request)
    return web.json_response(
        {
            "placeholders": list(templates.PLACEHOLDERS),
            "timezone": c.core.timezone,
            "rate": c.settings.rate,
            "max_segments": c.link.max_segments,
            "bulk_max": c.settings.bulk_max,
        }
    )


async def list_templates(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        rows = await session.scalars(
            select(SmsTemplate)
            .where(SmsTemplate.org_unit_id.in_(me.units))
            .order_by(SmsTemplate.name, SmsTemplate.id)
        )
        return web.json_response({"templates": [template_json(t) for t in rows]})


async def create_template(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = await _body(request, {"name", "text_zh", "text_en", "org_unit_id"})
    name = f.text("name", max_len=100)
    text_zh, text_en = _template_text(f, "text_zh"), _template_text(f, "text_en")
    if not text_zh and not text_en:
        raise bad_request("give text_zh, text_en or both")
    async with request.app[SESSIONS]() as session:
        unit = await _unit(session, me, f)
        tpl = SmsTemplate(
            org_unit_id=unit, name=name, text_zh=text_zh, text_en=text_en, created_by=me.username
        )
        session.add(tpl)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise json_error(409, "exists", "a template has this name", "已有同名模板") from exc
        record(session, me.username, "sms_template.create", "sms_template", tpl.id)
        await session.commit()
    return web.json_response({"template": template_json(tpl)}, status=201)


async def update_template(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    tid = _int_id(request)
    f = await _body(request, {"name", "text_zh", "text_en"})
    async with request.app[SESSIONS]() as session:
        try:
            tpl = await service.scoped_template(session, me.units, tid)
        except service.CampaignError as exc:
            raise _fail(exc) from exc
        if f.has("name"):
            tpl.name = f.text("name", max_len=100)
        for key in ("text_zh", "text_en"):
            if f.has(key):
                setattr(tpl, key, _template_text(f, key))
        if not tpl.text_zh and not tpl.text_en:
            raise bad_request("a template needs text_zh, text_en or both")
        tpl.updated_at = utcnow()
        try:
            await session.flush()
        except IntegrityError as exc:
            raise json_error(409, "exists", "a template has this name", "已有同名模板") from exc
        record(session, me.username, "sms_template.update", "sms_template", tpl.id)
        await session.commit()
    return web.json_response({"template": template_json(tpl)})


async def delete_template(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    tid = _int_id(request)
    async with request.app[SESSIONS]() as session:
        try:
            tpl = await service.scoped_template(session, me.units, tid)
        except service.CampaignError as exc:
            raise _fail(exc) from exc
        # Sends keep their own copy of the text; they just lose the link.
        await session.execute(
            update(SmsSend).where(SmsSend.template_id == tid).values(template_id=None)
        )
        await session.delete(tpl)
        record(session, me.username, "sms_template.delete", "sms_template", tid)
        await session.commit()
    return web.json_response({"ok": True})


# ------------------------------------------------------------------ groups
def group_json(group: SmsGroup, members: int) -> dict[str, Any]:
    return {
        "id": group.id,
        "org_unit_id": group.org_unit_id,
        "name": group.name,
        "members": members,
        "created_by": group.created_by,
        "created_at": _iso(group.created_at),
    }


def member_json(m: SmsGroupMember) -> dict[str, Any]:
    return {
        "phone": m.phone,
        "name": m.name,
        "language": m.language,
        "fields": m.fields if isinstance(m.fields, dict) else {},
    }


async def _scoped_group(session: AsyncSession, me: CurrentUser, gid: int) -> SmsGroup:
    try:
        return await service.scoped_group(session, me.units, gid)
    except service.CampaignError as exc:
        raise _fail(exc) from exc


async def list_groups(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        groups = list(
            await session.scalars(
                select(SmsGroup)
                .where(SmsGroup.org_unit_id.in_(me.units))
                .order_by(SmsGroup.name, SmsGroup.id)
            )
        )
        counts = await service.member_counts(session, [g.id for g in groups])
        return web.json_response({"groups": [group_json(g, counts.get(g.id, 0)) for g in groups]})


async def create_group(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = await _body(request, {"name", "org_unit_id"})
    name = f.text("name", max_len=100)
    async with request.app[SESSIONS]() as session:
        unit = await _unit(session, me, f)
        group = SmsGroup(org_unit_id=unit, name=name, created_by=me.username)
        session.add(group)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise json_error(409, "exists", "a group has this name", "已有同名分组") from exc
        record(session, me.username, "sms_group.create", "sms_group", group.id)
        await session.commit()
    return web.json_response({"group": group_json(group, 0)}, status=201)


async def get_group(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    async with request.app[SESSIONS]() as session:
        group = await _scoped_group(session, me, gid)
        counts = await service.member_counts(session, [gid])
        return web.json_response({"group": group_json(group, counts.get(gid, 0))})


async def rename_group(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    f = await _body(request, {"name"})
    name = f.text("name", max_len=100)
    async with request.app[SESSIONS]() as session:
        group = await _scoped_group(session, me, gid)
        group.name = name
        try:
            await session.flush()
        except IntegrityError as exc:
            raise json_error(409, "exists", "a group has this name", "已有同名分组") from exc
        record(session, me.username, "sms_group.rename", "sms_group", gid)
        await session.commit()
        counts = await service.member_counts(session, [gid])
    return web.json_response({"group": group_json(group, counts.get(gid, 0))})


async def delete_group(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    async with request.app[SESSIONS]() as session:
        group = await _scoped_group(session, me, gid)
        await session.execute(delete(SmsGroupMember).where(SmsGroupMember.group_id == gid))
        await session.delete(group)
        record(session, me.username, "sms_group.delete", "sms_group", gid)
        await session.commit()
    return web.json_response({"ok": True})


def _member_fields(f: Fields) -> dict[str, Any]:
    """One member from a body: phone (validated), name, language, placeholder values."""
    raw = f.text("phone", max_len=40)
    phone = service.normalize_phone(raw)
    if phone is None:
        raise bad_request(f"{f.name('phone')} is not a phone number (digits, optional +)")
    values = f.text_map("fields", max_items=len(templates.PLACEHOLDERS), max_len=200) or {}
    for key in values:
        if key not in templates.PLACEHOLDERS or key == "name":
            raise bad_request(
                f"{f.name('fields')}: unknown placeholder {{{key[:40]}}} (known: "
                + ", ".join(p for p in templates.PLACEHOLDERS if p != "name")
                + ")"
            )
    language = f.opt_choice("language", service.LANGUAGES) or "zh"
    return {
        "phone": phone,
        "name": f.opt_text("name", max_len=100, blank_is_none=True),
        "language": language,
        "fields": {k: v.strip() for k, v in values.items() if v.strip()},
    }


_MEMBER_KEYS = {"phone", "name", "language", "fields"}


async def list_members(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    limit, offset = _paging(request, 100, 1000)
    async with request.app[SESSIONS]() as session:
        await _scoped_group(session, me, gid)
        total = await session.scalar(
            select(func.count()).select_from(SmsGroupMember).where(SmsGroupMember.group_id == gid)
        )
        rows = await session.scalars(
            select(SmsGroupMember)
            .where(SmsGroupMember.group_id == gid)
            .order_by(SmsGroupMember.id)
            .limit(limit)
            .offset(offset)
        )
        return web.json_response({"members": [member_json(m) for m in rows], "total": total or 0})


async def add_member(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    member = _member_fields(await _body(request, _MEMBER_KEYS))
    settings = _campaigns(request).settings
    async with request.app[SESSIONS]() as session:
        await _scoped_group(session, me, gid)
        count = (await service.member_counts(session, [gid])).get(gid, 0)
        if count >= settings.group_max:
            raise bad_request(f"a group holds at most {settings.group_max} members")
        row = SmsGroupMember(group_id=gid, **member)
        session.add(row)
        try:
            await session.flush()
        except IntegrityError as exc:
            raise json_error(
                409, "exists", "this number is already in the group", "该号码已在分组中"
            ) from exc
        record(session, me.username, "sms_group.member_add", "sms_group", gid)
        await session.commit()
    return web.json_response({"member": member_json(row), "members": count + 1}, status=201)


async def bulk_add_members(request: web.Request) -> web.Response:
    """Add (or update, by number) up to ``bulk_max`` members at once; all or nothing."""
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    settings = _campaigns(request).settings
    f = await _body(request, {"members"}, max_bytes=settings.bulk_max * 600 + 1024)
    items = f.data.get("members")
    if not isinstance(items, list) or not items or len(items) > settings.bulk_max:
        raise bad_request(f"members must be a list of 1 to {settings.bulk_max} members")
    members: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        m = _member_fields(Fields(item, _MEMBER_KEYS, where=f"members[{i}]"))
        members[m["phone"]] = m  # a number given twice: the last one counts
    async with request.app[SESSIONS]() as session:
        await _scoped_group(session, me, gid)
        existing: dict[str, SmsGroupMember] = {}
        phones = list(members)
        for i in range(0, len(phones), 500):
            rows = await session.scalars(
                select(SmsGroupMember).where(
                    SmsGroupMember.group_id == gid, SmsGroupMember.phone.in_(phones[i : i + 500])
                )
            )
            existing.update({r.phone: r for r in rows})
        count = (await service.member_counts(session, [gid])).get(gid, 0)
        new = [m for p, m in members.items() if p not in existing]
        if count + len(new) > settings.group_max:
            raise bad_request(f"a group holds at most {settings.group_max} members")
        for phone, row in existing.items():
            m = members[phone]
            row.name, row.language, row.fields = m["name"], m["language"], m["fields"]
        if new:
            now = utcnow()
            await session.execute(
                insert(SmsGroupMember), [{"group_id": gid, "created_at": now, **m} for m in new]
            )
        record(
            session,
            me.username,
            "sms_group.member_bulk",
            "sms_group",
            gid,
            added=len(new),
            updated=len(existing),
        )
        try:
            await session.commit()
        except IntegrityError as exc:  # someone added the same number meanwhile
            raise json_error(409, "conflict", "the group changed meanwhile; try again") from exc
    return web.json_response(
        {"added": len(new), "updated": len(existing), "members": count + len(new)}
    )


async def remove_member(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    gid = _int_id(request)
    phone = service.normalize_phone(request.match_info.get("phone", ""))
    if phone is None:
        raise _not_found("member", "成员")
    async with request.app[SESSIONS]() as session:
        await _scoped_group(session, me, gid)
        result = await session.execute(
            delete(SmsGroupMember).where(
                SmsGroupMember.group_id == gid, SmsGroupMember.phone == phone
            )
        )
        if not getattr(result, "rowcount", 0):
            raise _not_found("member", "成员")
        record(session, me.username, "sms_group.member_remove", "sms_group", gid)
        await session.commit()
        count = (await service.member_counts(session, [gid])).get(gid, 0)
    return web.json_response({"ok": True, "members": count})


# ------------------------------------------------------------------ sends
def _paging(request: web.Request, default: int, most: int) -> tuple[int, int]:
    raw_limit = request.query.get("limit", str(default))
    raw_offset = request.query.get("offset", "0")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= most:
        raise bad_request(f"limit must be 1-{most}")
    if not raw_offset.isdigit() or int(raw_offset) > 10_000_000:
        raise bad_request("offset must be a whole number")
    return int(raw_limit), int(raw_offset)


def _when(f: Fields, tz: str) -> tuple[dt.datetime, bool]:
    """(when, scheduled?): ``scheduled_at`` in the hotline's time zone unless it has an
    offset; absent or null means now."""
    now = utcnow()
    raw = f.opt_text("scheduled_at", max_len=40, blank_is_none=True)
    if raw is None:
        return now, False
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise bad_request("scheduled_at must be a date and time like 2026-12-03T18:30") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    value = value.astimezone(dt.UTC)
    if value < now - dt.timedelta(minutes=1):
        raise bad_request("scheduled_at is in the past")
    if value > now + dt.timedelta(days=366):
        raise bad_request("scheduled_at is more than a year ahead")
    return max(value, now), value > now


def _group_ids(f: Fields) -> list[int]:
    value = f.data.get("group_ids")
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_GROUPS_PER_SEND
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise bad_request(f"group_ids must be a list of 1 to {MAX_GROUPS_PER_SEND} group ids")
    return list(dict.fromkeys(value))


async def _plan(
    request: web.Request, session: AsyncSession, me: CurrentUser, f: Fields
) -> tuple[SmsTemplate, list[int], dt.datetime, bool, service.Plan]:
    c = _campaigns(request)
    template_id = f.integer("template_id", 1, 2**31)
    group_ids = _group_ids(f)
    when, scheduled = _when(f, c.core.timezone)
    try:
        tpl = await service.scoped_template(session, me.units, template_id)
        texts = service.texts_of(tpl)
        plan = await service.plan(
            session, me.units, texts, group_ids, when, c.core.timezone, c.link.max_segments
        )
    except service.CampaignError as exc:
        raise _fail(exc) from exc
    return tpl, group_ids, when, scheduled, plan


_SEND_KEYS = {"template_id", "group_ids", "scheduled_at"}


async def preview(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = await _body(request, _SEND_KEYS)
    c = _campaigns(request)
    async with request.app[SESSIONS]() as session:
        _tpl, _groups, when, scheduled, plan = await _plan(request, session, me, f)
    body = plan.summary(c.settings.preview)
    body["scheduled_at"] = when.isoformat() if scheduled else None
    body["rate"] = c.settings.rate
    body["max_segments"] = c.link.max_segments
    body["seconds"] = round(len(plan.recipients) / c.settings.rate, 1)
    return web.json_response({"preview": body})


def send_json(send: SmsSend, progress: dict[str, int]) -> dict[str, Any]:
    local = send.scheduled_at.astimezone(ZoneInfo(send.timezone))
    return {
        "id": send.id,
        "org_unit_id": send.org_unit_id,
        "template_id": send.template_id,
        "template_name": send.template_name,
        "group_ids": list(send.group_ids or []),
        "state": send.state,
        "scheduled_at": _iso(send.scheduled_at),
        "scheduled_local": local.replace(tzinfo=None).isoformat(timespec="minutes"),
        "timezone": send.timezone,
        "total": send.total,
        "excluded": send.excluded,
        "created_by": send.created_by,
        "created_at": _iso(send.created_at),
        "started_at": _iso(send.started_at),
        "finished_at": _iso(send.finished_at),
        "progress": progress,
    }


async def create_send(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    f = await _body(request, _SEND_KEYS)
    c = _campaigns(request)
    async with request.app[SESSIONS]() as session:
        tpl, group_ids, when, _scheduled, plan = await _plan(request, session, me, f)
        if not plan.recipients:
            raise json_error(
                400,
                "no_recipients",
                "no one to send to in these groups",
                "所选分组中没有可发送的号码",
            )
        if plan.missing:
            name, n = next(iter(plan.missing.items()))
            raise json_error(
                400,
                "missing_values",
                f"{n} recipients have no value for {{{name}}}",
                f"{n} 个号码缺少占位符 {{{name}}} 的值",
                missing=plan.missing,
            )
        if plan.too_long:
            raise json_error(
                400,
                "too_long",
                f"{plan.too_long} messages need more than {c.link.max_segments} SMS",
                f"{plan.too_long} 条短信超过 {c.link.max_segments} 条的长度上限",
            )
        send = SmsSend(
            org_unit_id=tpl.org_unit_id,
            template_id=tpl.id,
            template_name=tpl.name,
            group_ids=group_ids,
            text_zh=tpl.text_zh,
            text_en=tpl.text_en,
            state=SendState.SCHEDULED.value,
            scheduled_at=when,
            timezone=c.core.timezone,
            total=len(plan.recipients),
            excluded=plan.members - len(plan.recipients),
            created_by=me.username,
        )
        session.add(send)
        await session.flush()
        rows = [
            {
                "send_id": send.id,
                "phone": r.phone,
                "name": r.name,
                "text": r.text,
                "segments": r.segments.segments,
                "state": MessageState.QUEUED.value,
            }
            for r in plan.recipients
        ]
        for i in range(0, len(rows), 1000):
            await session.execute(insert(SmsSendMessage), rows[i : i + 1000])
        record(session, me.username, "sms_send.create", "sms_send", send.id, recipients=len(rows))
        await session.commit()
        progress = (await service.progress(session, [send.id]))[send.id]
    c.scheduler.wake()
    return web.json_response({"send": send_json(send, progress)}, status=201)


async def list_sends(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    limit, offset = _paging(request, 50, 200)
    async with request.app[SESSIONS]() as session:
        sends = list(
            await session.scalars(
                select(SmsSend)
                .where(SmsSend.org_unit_id.in_(me.units))
                .order_by(SmsSend.created_at.desc(), SmsSend.id)
                .limit(limit)
                .offset(offset)
            )
        )
        progress = await service.progress(session, [s.id for s in sends])
    return web.json_response({"sends": [send_json(s, progress[s.id]) for s in sends]})


async def _scoped_send(session: AsyncSession, me: CurrentUser, request: web.Request) -> SmsSend:
    send_id = request.match_info.get("id", "")
    if not _SEND_ID.fullmatch(send_id):
        raise _not_found("send", "群发任务")
    send = await session.get(SmsSend, send_id)
    if send is None or send.org_unit_id not in me.units:
        raise _not_found("send", "群发任务")
    return send


def message_json(m: SmsSendMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "phone": m.phone,
        "name": m.name,
        "state": m.state,
        "segments": m.segments,
        "report": m.report,
        "sent_at": _iso(m.sent_at),
        "report_at": _iso(m.report_at),
        "error": m.error,
    }


async def get_send(request: web.Request) -> web.Response:
    me = require_user(request, *SUPERVISING)
    limit, offset = _paging(request, 100, 1000)
    state = request.query.get("state")
    if state is not None and state not in service.PROGRESS_STATES:
        raise bad_request("state must be one of " + ", ".join(service.PROGRESS_STATES))
    async with request.app[SESSIONS]() as session:
        send = await _scoped_send(session, me, request)
        query = select(SmsSendMessage).where(SmsSendMessage.send_id == send.id)
        if state is not None:
            query = query.where(SmsSendMessage.state == state)
        rows = await session.scalars(query.order_by(SmsSendMessage.id).limit(limit).offset(offset))
        messages = [message_json(m) for m in rows]
        progress = (await service.progress(session, [send.id]))[send.id]
    body = send_json(send, progress)
    body["text_zh"], body["text_en"] = send.text_zh, send.text_en
    return web.json_response({"send": body, "messages": messages})


async def cancel_send(request: web.Request) -> web.Response:
    """Stop a scheduled send, or what is left of one under way."""
    me = require_user(request, *SUPERVISING)
    async with request.app[SESSIONS]() as session:
        send = await _scoped_send(session, me, request)
        result = await session.execute(
            update(SmsSend)
            .where(
                SmsSend.id == send.id,
                SmsSend.state.in_([SendState.SCHEDULED.value, SendState.SENDING.value]),
            )
            .values(state=SendState.CANCELLED.value, cancelled_by=me.username, finished_at=utcnow())
        )
        if not getattr(result, "rowcount", 0):
            raise json_error(
                409, "not_cancellable", "this send is already finished", "该群发已结束，无法取消"
            )
        await session.execute(
            update(SmsSendMessage)
            .where(
                SmsSendMessage.send_id == send.id,
                SmsSendMessage.state == MessageState.QUEUED.value,
            )
            .values(state=MessageState.CANCELLED.value)
        )
        record(session, me.username, "sms_send.cancel", "sms_send", send.id)
        await session.commit()
        await session.refresh(send)
        progress = (await service.progress(session, [send.id]))[send.id]
    _campaigns(request).scheduler.wake()
    return web.json_response({"send": send_json(send, progress)})


# ------------------------------------------------------------------ Kannel's reports
def _kannel_allowed(request: web.Request, c: Campaigns) -> bool:
    try:
        remote = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if c.link.allow and not any(remote in net for net in c.link.allow):
        return False
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = f"kannel:{c.link.secret}".encode()
    return bool(c.link.secret) and hmac.compare_digest(f"{user}:{secret}".encode(), expected)


async def campaign_dlr(request: web.Request) -> web.Response:
    c = _campaigns(request)
    if not _kannel_allowed(request, c):
        return web.Response(
            status=401, text="unauthorized", headers={"WWW-Authenticate": 'Basic realm="kannel"'}
        )
    q = request.query
    raw_id, token, raw_code = q.get("m", ""), q.get("k", ""), q.get("s", "")
    if not (raw_id.isdigit() and len(raw_id) <= 12 and _TOKEN.fullmatch(token)):
        return web.Response(status=400, text="bad report")
    if not (raw_code.isdigit() and len(raw_code) <= 3):
        return web.Response(status=400, text="bad report")
    matched = await c.scheduler.report(int(raw_id), token, int(raw_code))
    return web.Response(status=200 if matched else 404, text="ok" if matched else "no such message")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/sms/config", get_config)
    r.add_get("/api/sms/templates", list_templates)
    r.add_post("/api/sms/templates", create_template)
    r.add_patch("/api/sms/templates/{id}", update_template)
    r.add_delete("/api/sms/templates/{id}", delete_template)
    r.add_get("/api/sms/groups", list_groups)
    r.add_post("/api/sms/groups", create_group)
    r.add_get("/api/sms/groups/{id}", get_group)
    r.add_patch("/api/sms/groups/{id}", rename_group)
    r.add_delete("/api/sms/groups/{id}", delete_group)
    r.add_get("/api/sms/groups/{id}/members", list_members)
    r.add_post("/api/sms/groups/{id}/members", add_member)
    r.add_post("/api/sms/groups/{id}/members/bulk", bulk_add_members)
    r.add_delete("/api/sms/groups/{id}/members/{phone}", remove_member)
    r.add_post("/api/sms/preview", preview)
    r.add_get("/api/sms/sends", list_sends)
    r.add_post("/api/sms/sends", create_send)
    r.add_get("/api/sms/sends/{id}", get_send)
    r.add_post("/api/sms/sends/{id}/cancel", cancel_send)
    r.add_get(DLR_PATH, campaign_dlr)
    r.add_post(DLR_PATH, campaign_dlr)
