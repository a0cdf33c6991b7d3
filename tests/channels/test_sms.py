"""The SMS channel end to end: real Kannel (bearerbox, smsbox, the fake SMSC) in front of
the real hub and real Rasa, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from channel_connectors.sms import conf, store
from channel_connectors.sms.kannel import segments, split
from channel_connectors.sms.settings import load
from hotline.appkeys import HUB, NOTICES, SESSIONS
from hotline.config import ConfigError, Settings
from hotline.store.models import AuthorKind, Blacklist, Contact, Conversation, Message
from hotline.web import create_app
from tests.channels.kannel import (
    SECRET,
    Kannel,
    Phone,
    case_code_and_pin,
    channel_of,
    joined,
    new_number,
    post_inbound,
)
from tests.chat import ChatClient
from tests.conftest import ROOT, free_port
from tests.staff import StaffClient

pytestmark = pytest.mark.rasa
ADMIN_PASSWORD = "admin-password-for-tests"


# ------------------------------------------------------------------ pure parts
def test_segment_counts() -> None:
    assert segments("").segments == 0
    assert (segments("a" * 160).segments, segments("a" * 161).segments) == (1, 2)
    assert (segments("a" * 306).segments, segments("a" * 307).segments) == (2, 3)
    assert segments("{" * 80).units == 160 and segments("{" * 81).segments == 2
    zh = segments("举" * 70)
    assert (zh.encoding, zh.segments) == ("ucs2", 1)
    assert segments("举" * 71).segments == 2 and segments("举" * 134).segments == 2
    assert segments("举" * 135).segments == 3
    assert segments("é").encoding == "gsm7" and segments("ê").encoding == "ucs2"
    pieces = split("你好。" * 400, 670)
    assert all(len(p) <= 670 for p in pieces) and "".join(pieces) == "你好。" * 400
    assert all(segments(p).segments <= 10 for p in pieces)


def test_settings_are_validated_and_secrets_hidden(base_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_SMS_BOGUS"):
        load({"bogus": "1"}, base_settings)
    with pytest.raises(ConfigError, match="HOTLINE_SMS_MEDIA"):
        load({"media": "realtime"}, base_settings)
    with pytest.raises(ConfigError, match="HOTLINE_SMS_SENDSMS_URL"):
        load({"kannel": "external"}, base_settings)
    sms = load({"kannel": "embedded", "smsbox": "/nonexistent/smsbox"}, base_settings)
    assert sms.kannel == "off" and "not installed" in sms.off_reason
    sms = load({"kannel": "embedded", "inbound_secret": SECRET, "media": "chat"}, base_settings)
    shown = sms.describe()
    assert shown["inbound_secret"] == "<set>" and SECRET not in json.dumps(shown)
    assert sms.media == "chat" and sms.max_chars == 670
    from channel_connectors import sms as package

    with_sends = package.load_settings(
        {"campaign_rate": "5", "inbound_secret": SECRET}, base_settings
    )
    assert with_sends.describe()["campaign_rate"] == "5.0"
    with pytest.raises(ConfigError, match="HOTLINE_SMS_CAMPAIGN_BOGUS"):
        package.load_settings({"campaign_bogus": "1"}, base_settings)
    rendered = conf.render(sms, base_settings.var_dir / "log")
    assert "max-messages = 0" in rendered and "smsc = fake" in rendered
    assert "/channels/sms/inbound?from=%p" in rendered and "%I" in rendered


# ----------------------------------------------------------------- end to end
async def stored(server: TestServer, number: str) -> list[Message]:
    async with server.app[SESSIONS]() as session:
        return list(
            (
                await session.execute(
                    select(Message)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .join(Contact, Contact.id == Conversation.contact_id)
                    .where(Contact.channel == "sms", Contact.external_id == number)
                    .order_by(Message.id)
                )
            ).scalars()
        )


async def test_kb_answer_persist_first_and_redelivery_deduplicated(
    sms_hub: TestServer, kannel: Kannel
) -> None:
    async with Phone(sms_hub, kannel) as phone:
        replies = await phone.say("举报人的身份会被泄露吗？")
        assert "《" in joined(replies)  # a knowledge base article, in Mandarin
        rows = await stored(sms_hub, phone.number)
        citizen = [m for m in rows if m.author == AuthorKind.CITIZEN.value]
        assert [m.text for m in citizen] == ["举报人的身份会被泄露吗？"] and citizen[0].handled
        assert citizen[0].client_id and citizen[0].client_id.startswith("k-")
        # Kannel retries a post whose answer it did not get: same message id, same body.
        status, body = await post_inbound(
            sms_hub,
            phone.number,
            "举报人的身份会被泄露吗？".encode("utf-16-be"),
            coding="2",
            charset="UTF-16BE",
            msg_id=citizen[0].client_id[2:],
        )
        assert (status, body["duplicate"]) == (200, True)
        await sms_hub.app[HUB].drain()
        assert len(await stored(sms_hub, phone.number)) == len(rows)
        assert await phone.sent_count() == len(phone.received)  # nothing answered twice


async def test_mandarin_ucs2_concatenated_round_trip_and_delivery_report(
    sms_hub: TestServer, kannel: Kannel
) -> None:
    async with Phone(sms_hub, kannel) as phone:
        await phone.say("举报人的身份会被泄露吗？")
        long = next(e for e in phone.received if len(e["text"]) > 70)
        assert long["parts"] == segments(long["text"]).segments > 1
        bot = [m.text for m in await stored(sms_hub, phone.number) if m.author == "bot"]
        assert any(t in long["text"] or long["text"] in t for t in bot), (long, bot)
        table = store.sms_outbound
        async with sms_hub.app[SESSIONS]() as session:
            sent = (
                (
                    await session.execute(
                        select(table).where(table.c.number == phone.number).order_by(table.c.id)
                    )
                )
                .mappings()
                .all()
            )
        assert all(r["encoding"] == "ucs2" and r["status"] == "sent" for r in sent)
        await channel_of(sms_hub).wait_report(sent[-1]["id"], "delivered")


async def test_report_by_sms_then_case_status_through_a_numbered_button(
    sms_hub: TestServer, kannel: Kannel
) -> None:
    async with Phone(sms_hub, kannel) as phone:
        for text in (
            "I want to report a corrupt official",
            "don't know",
            "City Land Bureau",
            "skip",
            "He demanded cash from farmers before approving land permits",
            "last summer",
            "skip",
            "none",
        ):
            await phone.say(text)
        summary = joined(await phone.say("I want to stay anonymous"))
        assert "anonymous" in summary and "City Land Bureau" in summary  # English in, out
        code, pin = case_code_and_pin(joined(await phone.say("confirm")))

        greeting = joined(await phone.say("你好"))  # Mandarin in, Mandarin out
        assert "您好" in greeting and "\n1. " in greeting and "\n2. " in greeting
        bot = [m for m in await stored(sms_hub, phone.number) if m.buttons]
        payloads = [b["payload"] for b in bot[-1].buttons or []]
        digit = str(payloads.index("/case_status") + 1)
        asked = joined(await phone.say(digit))  # the digit picks the button
        assert "案件编号" in asked
        citizen = [m for m in await stored(sms_hub, phone.number) if m.author == "citizen"]
        assert citizen[-1].text == digit
        assert "查询密码" in joined(await phone.say(code))
        found = joined(await phone.say(pin))
        assert code in found and "已登记" in found


# ------------------------------------------------- Rasa down: handoff, errors, limits
@pytest.fixture
def down_settings(sms_settings: Settings, kannel: Kannel) -> Settings:
    return replace(
        sms_settings,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
        admin_password=ADMIN_PASSWORD,
        acd_tick_seconds=0.2,
        channel_sections={"webchat": {}, "sms": kannel.section(rate_limit="3")},
    )


@pytest.fixture
async def down_hub(down_settings: Settings) -> Any:
    server = TestServer(create_app(down_settings), host="127.0.0.1", port=down_settings.http_port)
    await server.start_server()
    yield server
    await server.close()


async def test_rasa_down_handoff_and_agent_reply_by_sms(
    down_hub: TestServer, kannel: Kannel
) -> None:
    from tests.test_handoff import make_agent

    base = str(down_hub.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    agent = await make_agent(admin, base, "smsagent")
    await agent.post("/api/agents/me/status", {"status": "ready"})
    async with Phone(down_hub, kannel) as phone:
        replies = await phone.say("我要找人工")
        assert "智能助手暂时无法回复" in joined(replies)  # "bot unavailable", by SMS
        offer = await agent.wait("offer")
        cid = offer["conversation_id"]
        await agent.post(f"/api/conversations/{cid}/accept")
        await agent.post(
            f"/api/conversations/{cid}/messages", {"text": "您好，我是值班检察官"}, expect=201
        )
        while (await phone.receive())["text"] != "您好，我是值班检察官":
            pass
        shown = await agent.get(f"/api/channels/sms/conversations/{cid}/deliveries")
        mine = [d for d in shown["deliveries"] if d["author"] == "agent"]
        assert mine and mine[0]["status"] == "sent" and mine[0]["encoding"] == "ucs2"
        # Each piece names the transcript line it carries.
        lines = (await agent.get(f"/api/conversations/{cid}"))["transcript"]
        said = [m["id"] for m in lines if m["text"] == "您好，我是值班检察官"]
        assert [d["message_id"] for d in mine] == said
        author_of = {m["id"]: m["from"] for m in lines}
        system = [d for d in shown["deliveries"] if d["author"] == "system"]  # "bot is down"
        assert system and all(author_of[d["message_id"]] == "system" for d in system)
        await channel_of(down_hub).wait_report(mine[0]["id"], "delivered")
        shown = await agent.get(f"/api/channels/sms/conversations/{cid}/deliveries")
        assert [d["dlr_state"] for d in shown["deliveries"] if d["author"] == "agent"] == [
            "delivered"
        ]
        count = await agent.get("/api/channels/sms/segments?text=" + "举" * 71)
        assert (count["encoding"], count["segments"]) == ("ucs2", 2)
        # A draft too long for a URL is posted: 1,500 Chinese characters, 3 messages.
        long = await agent.post("/api/channels/sms/segments", {"text": "举" * 1500})
        assert (long["chars"], long["messages"], long["segments"]) == (1500, 3, 23)
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(f"{base}/api/channels/sms/conversations/{cid}/deliveries") as resp,
        ):
            assert resp.status == 401
    for client in (agent, admin):
        await client.close()


async def test_bad_requests_are_refused_and_lose_nothing(down_hub: TestServer) -> None:
    number = new_number()
    status, body = await post_inbound(down_hub, number, "第一条".encode(), msg_id="good-1")
    assert (status, body["status"]) == (200, "accepted")
    cases = [
        ({"body": b"x", "headers": {}}, 401, "unauthorized"),
        (
            {"body": b"x", "headers": {"Authorization": "Basic a2FubmVsOndyb25n"}},
            401,
            "unauthorized",
        ),
        ({"body": "你好".encode("utf-16-be")[:-1], "coding": "2"}, 400, "bad_coding"),
        ({"body": b"\xff\xfe\xfd"}, 400, "bad_encoding"),
        ({"body": b"\x05\x00binary", "coding": "1"}, 415, "binary_sms"),
        ({"body": b"a" * 9000}, 413, "too_large"),
        ({"body": "举".encode("utf-16-be") * 2100, "coding": "2"}, 413, "text_too_long"),
        ({"body": b"   "}, 400, "empty_text"),
        ({"body": b"bell\x07"}, 400, "bad_text"),
    ]
    for kwargs, want_status, want_code in cases:
        body_bytes = kwargs.pop("body")
        status, body = await post_inbound(down_hub, number, body_bytes, **kwargs)  # type: ignore[arg-type]
        assert (status, body["error"]) == (want_status, want_code), kwargs
    status, body = await post_inbound(down_hub, "not-a-number", b"hi")
    assert (status, body["error"]) == (400, "bad_sender")
    channel = channel_of(down_hub)
    allowed = channel.settings
    channel.settings = replace(
        allowed, inbound_allow=(__import__("ipaddress").ip_network("10.0.0.0/8"),)
    )
    status, body = await post_inbound(down_hub, number, b"hi")
    assert (status, body["error"]) == (403, "forbidden_peer")
    channel.settings = allowed
    await down_hub.app[HUB].drain()
    rows = await stored(down_hub, number)
    assert [m.text for m in rows if m.author == "citizen"] == ["第一条"]
    assert all(m.handled for m in rows)  # the accepted one was answered ("bot unavailable")


async def test_opt_out_is_honoured_until_the_citizen_opts_back_in(
    down_hub: TestServer, kannel: Kannel
) -> None:
    async with Phone(down_hub, kannel) as phone:
        confirmation = await phone.say(" td ")
        assert confirmation == [confirmation[0]] and "退订" in confirmation[0]
        conversation_id = (await stored(down_hub, phone.number))[0].conversation_id
        await down_hub.app[HUB].post(conversation_id, AuthorKind.AGENT, "您还在吗？")
        _, body = await post_inbound(down_hub, phone.number, "退订".encode(), msg_id="again-1")
        assert body["status"] == "opted_out"
        table = store.sms_outbound
        async with down_hub.app[SESSIONS]() as session:
            kinds = (
                await session.execute(
                    select(table.c.kind, table.c.status).where(table.c.number == phone.number)
                )
            ).all()
            optout = (await session.execute(select(store.sms_optout))).all()
        assert sorted(kinds) == [("notice", "sent"), ("reply", "suppressed")]  # one confirmation
        assert phone.number in {r.number for r in optout}
        back = await phone.say("开通")
        assert "恢复" in back[0]  # the suppressed reply never arrived before it
        async with down_hub.app[SESSIONS]() as session:
            assert (
                await session.execute(
                    select(store.sms_optout).where(store.sms_optout.c.number == phone.number)
                )
            ).first() is None
        texts = [m.text for m in await stored(down_hub, phone.number) if m.author == "citizen"]
        assert texts == [" td ", "退订", "开通"]


async def test_rate_limit_and_blacklist(down_hub: TestServer, kannel: Kannel) -> None:
    async with Phone(down_hub, kannel) as phone:
        results = []
        for i in range(5):
            status, body = await post_inbound(
                down_hub, phone.number, f"消息{i}".encode(), msg_id=f"rl-{i}"
            )
            results.append(body["status"])
        assert results == ["accepted"] * 3 + ["rate_limited"] * 2
        texts = await phone.settle()
        assert sum("过于频繁" in t for t in texts) == 1  # one polite notice per window
        rows = [m for m in await stored(down_hub, phone.number) if m.author == "citizen"]
        assert [m.text for m in rows] == [f"消息{i}" for i in range(5)]  # all stored
        assert all(m.handled for m in rows)

    blocked = new_number()
    async with down_hub.app[SESSIONS]() as session:
        contact = Contact(id=f"c-{blocked}", channel="sms", external_id=blocked)
        session.add(contact)
        await session.flush()
        session.add(Blacklist(contact_id=contact.id, reason="abuse", created_by="test"))
        await session.commit()
    status, body = await post_inbound(down_hub, blocked, b"hello", msg_id="bl-1")
    assert (status, body["status"]) == (200, "refused")
    assert await stored(down_hub, blocked) == []


# ------------------------------------------------------------ hotline simulate sms
async def simulate(settings: Settings, kannel: Kannel, *args: str) -> tuple[int, list[str]]:
    env = {
        **os.environ,
        "HOTLINE_VAR_DIR": str(settings.var_dir),
        "HOTLINE_RASA_TOKEN": settings.rasa_token,
        "HOTLINE_SECRET_KEY": settings.secret_key.hex(),
        "HOTLINE_CHANNELS": "webchat,sms",
        **{f"HOTLINE_SMS_{k.upper()}": v for k, v in kannel.section().items()},
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "hotline"),
        "simulate",
        "sms",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _err = await proc.communicate()
    return proc.returncode or 0, out.decode().splitlines()


async def test_hotline_simulate_sms(
    sms_hub: TestServer, sms_settings: Settings, kannel: Kannel
) -> None:
    number = new_number()
    code, lines = await simulate(
        sms_settings, kannel, "--from", number, "--text", "我要举报", "--wait", "20"
    )
    assert code == 0 and lines
    replies = [json.loads(line) for line in lines]
    assert all(r["channel"] == "sms" and r["text"] for r in replies)
    assert "被举报人" in joined([r["text"] for r in replies])
    code, lines = await simulate(
        sms_settings, kannel, "--from", number, "--text", "王大明", "--wait", "20"
    )
    assert code == 0 and lines
    rows = await stored(sms_hub, number)
    assert len({m.conversation_id for m in rows}) == 1  # the same conversation continues
    assert [m.text for m in rows if m.author == "citizen"] == ["我要举报", "王大明"]

    blocked = new_number()
    async with sms_hub.app[SESSIONS]() as session:
        session.add(Contact(id=f"c-{blocked}", channel="sms", external_id=blocked))
        await session.flush()
        session.add(Blacklist(contact_id=f"c-{blocked}", reason="abuse", created_by="test"))
        await session.commit()
    code, lines = await simulate(
        sms_settings, kannel, "--from", blocked, "--text", "hello", "--wait", "3"
    )
    assert (code, lines) == (1, [])  # nothing answers


async def test_embedded_kannel_is_started_and_stopped_by_the_channel(
    base_settings: Settings, tmp_path: Path
) -> None:
    """``hotline run``'s path: the channel renders kannel.conf and runs the boxes itself."""
    var = tmp_path / "var"
    section = {
        "kannel": "embedded",
        **{
            key: str(free_port()) for key in ("admin_port", "box_port", "sendsms_port", "fake_port")
        },
        "public_url": f"http://127.0.0.1:{base_settings.http_port}",
    }
    settings = replace(
        base_settings,
        var_dir=var,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}",
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
        channels=("sms",),
        channel_sections={"sms": section},
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    try:
        channel = channel_of(server)
        assert (await channel.health()).status == "ok"
        conf_text = (var / "kannel" / "kannel.conf").read_text()
        assert (var / "kannel" / "kannel.conf").stat().st_mode & 0o777 == 0o600
        assert channel.settings.inbound_secret in conf_text  # generated into var/
        assert (var / "sms-inbound-secret").exists()
        procs = channel._procs
        assert procs is not None and len(procs.procs) == 3
        pids = [p.popen.pid for p in procs.procs if p.popen]
        async with Phone(server, Kannel(channel.settings)) as phone:
            replies = await phone.say("hello")
            assert "assistant can't answer" in joined(replies)
    finally:
        await server.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (await channel.health()).status == "down"


async def test_a_channel_that_cannot_start_is_down_and_the_rest_serves(
    base_settings: Settings, tmp_path: Path
) -> None:
    """bearerbox dies at once (here: it is /bin/false): the hub starts, web chat works."""
    section = {
        "kannel": "embedded",
        "bearerbox": "/bin/false",
        **{k: str(free_port()) for k in ("admin_port", "box_port", "sendsms_port", "fake_port")},
    }
    settings = replace(
        base_settings,
        var_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}",
        rasa_url=f"http://127.0.0.1:{free_port()}",
        rasa_timeout=1.0,
        channels=("webchat", "sms"),
        channel_sections={"webchat": {}, "sms": section},
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/healthz")) as resp:
                components = (await resp.json())["components"]
        assert components["channel:sms"]["status"] == "down"
        assert "failed to start" in components["channel:sms"]["detail"]
        assert components["channel:webchat"]["status"] == "ok"
        chat = ChatClient(str(server.make_url("/")))
        await chat.connect()
        assert chat.conversation_id
        await chat.close()
    finally:
        await server.close()


def test_every_sms_setting_is_in_the_readme() -> None:
    from channel_connectors.sms.campaigns import KEYS as CAMPAIGN_KEYS
    from channel_connectors.sms.settings import KEYS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    channel_readme = (ROOT / "channel_connectors/sms/README.md").read_text(encoding="utf-8")
    keys = (*KEYS, *CAMPAIGN_KEYS)
    assert [k for k in keys if f"HOTLINE_SMS_{k.upper()}" not in readme] == []
    assert "smsc = smpp" in channel_readme and "max-messages = 0" in channel_readme


async def test_a_named_reporter_who_asked_gets_a_notice_when_the_case_changes(
    down_hub: TestServer, kannel: Kannel
) -> None:
    """Only a prompt to look the case up: no report content; the phone is revealed audited."""
    from hotline.store.models import AuditLog, Ticket, TicketKind
    from hotline.vault import Identity
    from tests.test_handoff import make_agent

    base = str(down_hub.make_url("")).rstrip("/")
    admin = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    agent = await make_agent(admin, base, "caseagent")
    await agent.post("/api/agents/me/status", {"status": "ready"})
    tickets = down_hub.app[HUB].tickets
    async with Phone(down_hub, kannel) as citizen, Phone(down_hub, kannel) as reporter:
        await citizen.say("我要找人工")
        cid = (await agent.wait("offer"))["conversation_id"]
        await agent.post(f"/api/conversations/{cid}/accept")
        for wants in (True, False):
            case = await tickets.create(
                kind=TicketKind.REPORT,
                fields={"details": "挪用扶贫资金的秘密细节"},
                identity=Identity("赵六", reporter.number),
                conversation_id=cid,
                channel="sms",
                language="zh",
                notify_reporter=wants,
            )
            path = f"/api/conversations/{cid}/ticket"
            await agent.call("PATCH", path, {"status": "under_review"})
            if wants:
                notice = (await reporter.receive())["text"]
                assert case.case_code in notice and "查询密码" in notice
                assert "挪用" not in notice and "赵六" not in notice
                # The same status again is no change: no second notice.
                await agent.call("PATCH", path, {"status": "under_review"})
            async with down_hub.app[SESSIONS]() as session:
                await session.delete(await session.get(Ticket, case.ticket_id))
                await session.commit()
        async with down_hub.app[SESSIONS]() as session:
            actions = [
                (a.action, a.actor)
                for a in (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars()
                if a.action in ("identity.reveal", "ticket.notice")
            ]
        # One reveal, for the one notice that was asked for: none for the reporter who wasn't.
        assert actions == [("identity.reveal", "system"), ("ticket.notice", "system")]
        assert await reporter.sent_count() == 1
        # A reporter who opted out by SMS hears nothing more, notices included.
        assert "退订" in (await reporter.say("TD"))[0]
        case = await tickets.create(
            kind=TicketKind.REPORT,
            fields={"details": "x"},
            identity=Identity("赵六", reporter.number),
            conversation_id=None,
            channel="sms",
            language="zh",
            notify_reporter=True,
        )
        notices = down_hub.app[NOTICES]
        assert await notices.case_changed(case.ticket_id, status="accepted") is False
        assert await reporter.sent_count() == 2  # the notice and the opt-out confirmation
    for client in (agent, admin):
        await client.close()


def test_bearerbox_status_and_access_log_are_read(tmp_path: Path) -> None:
    """What group sends settle unknown rows from (``campaigns/reconcile.py``)."""
    from channel_connectors.sms.kannel import parse_status, read_access_log

    status = """<gateway><status>running</status>
	<sms>
		<received><total>0</total><queued>3</queued></received>
		<sent><total>1</total><queued>0</queued></sent>
		<storesize>0</storesize>
	</sms>
	<dlr><queued>5</queued></dlr>
<boxes><box><type>smsbox</type><queue>0</queue></box></boxes>
<smscs><count>1</count><smsc><id>fake</id><queued>0</queued><sms><sent>1</sent></sms></smsc>
</smscs></gateway>"""
    assert parse_status(status).idle  # inbound queued and DLRs pending are not outbound
    busy_link = status.replace("<queued>0</queued><sms>", "<queued>2</queued><sms>")
    assert not parse_status(busy_link).idle
    assert not parse_status(status.replace("<storesize>0", "<storesize>1")).idle
    assert not parse_status(status.replace("<queue>0</queue>", "<queue>1</queue>")).idle
    assert not parse_status(
        status.replace("<total>1</total><queued>0", "<total>1</total><queued>4")
    ).idle
    with pytest.raises(ValueError):
        parse_status("<html>not bearerbox</html>")

    log = tmp_path / "access.log"
    log.write_text(
        "2026-12-03 13:39:27 Log begins\n"
        "2026-12-03 13:39:31 2026-12-03 13:39:31 Sent SMS [SMSC:fake] [BINF:1.aa] [FID:]\n"
        "2026-12-03 13:39:32 Sent SMS [SMSC:fake] [SVC:x] [ACT:] [BINF:2.bb] [to:1]\n"
        "2026-12-03 13:39:33 Sent SMS [SMSC:fake] [BINF:3.cc] [FID:]\n"
        "2026-12-03 13:39:33 Failed SMS [SMSC:fake] [BINF:3.cc] [FID:]\n"
        "2026-12-03 13:39:34 Receive DLR [SMSC:fake] [BINF:] [FID:x] [flags:-1:-1:-1:-1:8]\n"
        "2026-12-03 13:39:35 Sent SMS [SMSC:fake] [BINF:9.zz] [FID:]\n",
        encoding="utf-8",
    )
    told = read_access_log(log, {"1.aa", "2.bb", "3.cc", "4.dd"})
    assert told.outcomes == {"1.aa": "sent", "2.bb": "sent", "3.cc": "failed"}
    assert told.since is not None and told.since.tzinfo is not None
    assert told.since.astimezone().strftime("%Y-%m-%d %H:%M:%S") == "2026-12-03 13:39:27"
