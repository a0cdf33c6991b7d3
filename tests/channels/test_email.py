"""The email channel against the real mail system: Dovecot (IMAP, LMTP) and the SMTP
relay (tests/channels/mail_fixtures.py). A citizen's letter goes in over SMTP; the test
reads the hotline's reply from the citizen's own mailbox over IMAP.

The shared behaviour (a report, case status, handoff, ...) is also the contract
suite's; these are the channel's own: threading, quoted history, HTML, attachments
sealed at rest and audited, no reply loops, the per-sender limit, redelivery, bad mail,
``/healthz`` and ``hotline simulate email`` on the embedded mail system.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from channel_connectors.email import store
from channel_connectors.email.parse import key_of, new_text, read_letter
from hotline.appkeys import HUB
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AuditLog, AuthorKind, Conversation, Message, Ticket
from hotline.web import create_app
from tests.channels.mail_fixtures import PASSWORD, email_settings, new_address
from tests.conftest import ROOT, free_port
from tests.mail import CitizenMailbox, MailSystemThread, letter, send_mail, wait_taken
from tests.staff import StaffClient

ADMIN_PASSWORD = "admin-password-for-tests"
CASE = re.compile(r"(?:案件编号|Case code)[:：]\s*(\d{12})")
PIN = re.compile(r"(?:查询密码|PIN)[:：]\s*(\d{6})")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


class Hotline:
    """The hub with the email channel, and a citizen writing to it."""

    def __init__(self, server: TestServer, settings: Settings, mail: MailSystemThread) -> None:
        self.server = server
        self.settings = settings
        self.mail = mail
        self.address = settings.channel_sections["email"]["address"]
        self.citizen = new_address("citizen")
        self.box = CitizenMailbox(mail.imap_port, self.citizen, PASSWORD)

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def write(self, text: str, subject: str = "", **extra: Any) -> EmailMessage:
        sender = extra.pop("frm", self.citizen)
        message = letter(sender, self.address, subject, text, **extra)
        await send_mail(self.mail.smtp_port, message)
        return message

    async def reply(
        self, timeout: float = 30, *, says: str | None = None, **match: str
    ) -> EmailMessage:
        """The next mail in the citizen's mailbox (whose headers contain ``match``, whose
        text contains ``says``)."""

        def wanted(m: EmailMessage) -> bool:
            if says is not None and says not in m.get_content():
                return False
            return all(value in str(m.get(name, "")) for name, value in match.items())

        return await self.box.next_message(timeout, wanted)

    async def settle(self) -> None:
        """Wait until the channel took every letter and the hub answered them."""
        await wait_taken(self.mail.imap_port, self.address, PASSWORD)
        await self.server.app[HUB].drain()

    async def rows(self, query: Any) -> list[Any]:
        engine = make_engine(self.settings.database_url)
        try:
            async with sessionmaker(engine)() as session:
                return list((await session.execute(query)).scalars())
        finally:
            await engine.dispose()

    async def conversation_of(self, message: EmailMessage) -> str:
        mid = str(message["Message-ID"]).strip().strip("<>")
        table = store.email_message
        found = await self.rows(select(table.c.conversation_id).where(table.c.key == key_of(mid)))
        assert found, "the letter was not taken"
        return str(found[0])

    async def said(self, conversation_id: str) -> list[str]:
        rows = await self.rows(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
        )
        return [m.text for m in rows if m.author == AuthorKind.CITIZEN.value]


@pytest.fixture
async def hotline(
    settings: Settings, mail_system: MailSystemThread, request: pytest.FixtureRequest
) -> AsyncIterator[Hotline]:
    extra = getattr(request, "param", {})
    configured = replace(
        email_settings(settings, mail_system, **extra),
        admin_password=ADMIN_PASSWORD,
        acd_tick_seconds=0.2,
    )
    server = TestServer(create_app(configured), host="127.0.0.1", port=configured.http_port)
    await server.start_server()
    line = Hotline(server, configured, mail_system)
    await line.box.connect()
    yield line
    await line.box.close()
    await server.close()


def message_id(message: EmailMessage) -> str:
    return str(message["Message-ID"]).strip()


# ---------------------------------------------------------------- pure parsing
def test_quoted_history_and_signatures_are_cut() -> None:
    assert new_text("补充一点情况。\n\n张三\n-- \n张三 138\n") == "补充一点情况。\n\n张三"
    chinese = "补充材料已附上。\n\n在 2026年12月1日 10:00，热线 <h@x> 写道：\n> 旧内容\n> 更旧\n"
    assert new_text(chinese) == "补充材料已附上。"
    english = "More detail.\n\nOn Tue, 1 Dec 2026 at 10:00, Hotline <h@x> wrote:\n> old\n"
    assert new_text(english) == "More detail."
    outlook = "Hello\n\n-----Original Message-----\nFrom: x\nSubject: y\n\nold"
    assert new_text(outlook) == "Hello"


def test_loop_markers_make_a_letter_automatic() -> None:
    own = "hotline@hotline.test"
    cases = {
        "auto_submitted": {"Auto-Submitted": "auto-replied"},
        "precedence": {"Precedence": "bulk"},
        "mailing_list": {"List-Id": "<news.example.test>"},
    }
    for why, headers in cases.items():
        raw = letter("a@example.test", own, "s", "t", headers=headers).as_bytes()
        assert read_letter(raw, own_address=own).automatic == why
    robot = letter("MAILER-DAEMON@example.test", own, "Undelivered", "t").as_bytes()
    assert read_letter(robot, own_address=own).automatic == "robot_sender"
    person = letter("a@example.test", own, "s", "t", headers={"Auto-Submitted": "no"})
    assert read_letter(person.as_bytes(), own_address=own).automatic is None


# ------------------------------------------------------------------ the channel
@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_a_question_is_answered_in_the_same_thread_and_a_reply_continues_it(
    hotline: Hotline,
) -> None:
    sent = await hotline.write("举报之后多久会有答复？", subject="咨询")
    answer = await hotline.reply()
    assert "7个工作日" in answer.get_content()
    assert answer["In-Reply-To"].strip() == message_id(sent)
    assert str(answer["Subject"]) == "Re: 咨询"
    assert hotline.address in str(answer["From"])
    assert answer["Auto-Submitted"] == "auto-replied"  # no auto-responder answers it
    cid = await hotline.conversation_of(sent)
    # The citizen answers the reply, quoting it, with a signature: same conversation,
    # and only the new text reaches the transcript.
    quoted = "\n".join("> " + line for line in answer.get_content().splitlines())
    body = (
        f"我想再问一下怎么查询进度\n\n-- \n张三\n\n在 2026年12月3日 10:00，热线 写道：\n{quoted}\n"
    )
    follow = await hotline.write(
        body,
        subject="Re: 咨询",
        in_reply_to=message_id(answer),
        references=[message_id(sent), message_id(answer)],
    )
    second = await hotline.reply()
    assert await hotline.conversation_of(follow) == cid
    assert second["In-Reply-To"].strip() == message_id(follow)
    assert message_id(sent) in str(second["References"])
    assert await hotline.said(cid) == ["咨询\n\n举报之后多久会有答复？", "我想再问一下怎么查询进度"]


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_a_report_becomes_a_ticket_and_its_files_are_sealed_shown_and_audited(
    hotline: Hotline,
) -> None:
    text = (
        "我要举报某县国土局局长收受开发商贿赂，利用职权为其违规办理土地审批，"
        "涉及金额巨大。相关转账记录见附件。"
    )
    sent = await hotline.write(
        text,
        subject="举报",
        attachments=[
            ("转账记录.pdf", PDF, "application/pdf"),
            ("run.exe", b"MZ\x90\x00" + b"\x00" * 64, "application/octet-stream"),
        ],
    )
    answer = await hotline.reply(timeout=45, Subject="Re: 举报", says="案件编号")
    body = answer.get_content()
    code, pin = CASE.search(body), PIN.search(body)
    assert code and pin, body
    refused = await hotline.reply(timeout=15)  # the .exe: named, with the reason
    assert "run.exe" in refused.get_content() and "不接收此类文件" in refused.get_content()
    cid = await hotline.conversation_of(sent)
    tickets = await hotline.rows(select(Ticket).where(Ticket.case_code == code.group(1)))
    assert tickets[0].kind == "report" and tickets[0].channel == "email"
    assert tickets[0].conversation_id == cid and "国土局" in tickets[0].fields["details"]
    transcript = await hotline.rows(select(Message).where(Message.conversation_id == cid))
    assert not any(pin.group(1) in m.text for m in transcript)  # shown once, never stored
    assert any("📎 转账记录.pdf" in m.text for m in transcript)

    admin = await StaffClient(hotline.base).login("admin", ADMIN_PASSWORD)
    listed = await admin.get(f"/api/channels/email/conversations/{cid}/attachments")
    files = listed["attachments"]
    assert [(f["filename"], f["content_type"], f["size"]) for f in files] == [
        ("转账记录.pdf", "application/pdf", len(PDF))
    ]
    async with admin.http.get(hotline.base + files[0]["url"]) as response:
        assert response.status == 200
        assert await response.read() == PDF
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    sealed = hotline.settings.var_dir / "attachments" / f"{files[0]['id']}.sealed"
    assert PDF[:20] not in sealed.read_bytes()  # encrypted at rest
    actions = [
        a.action
        for a in await hotline.rows(select(AuditLog).where(AuditLog.actor == admin.user["id"]))
    ]
    assert "attachment.list" in actions and "attachment.download" in actions
    status, _ = await admin.call("GET", "/api/channels/email/attachments/not-an-id", expect=None)
    assert status == 404
    await admin.close()
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(hotline.base + files[0]["url"]) as response:
            assert response.status == 401


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_html_mail_becomes_text_and_the_same_letter_twice_is_taken_once(
    hotline: Hotline,
) -> None:
    html = "<html><body><p>举报之后多久<b>会有答复</b>？</p><script>x()</script></body></html>"
    sent = await hotline.write("", html=html)
    first = await hotline.reply()
    # The mail system hands the same letter over again (a crash before \\Seen, a
    # resend by the citizen's client): the same Message-ID is stored and answered once.
    await send_mail(hotline.mail.smtp_port, sent)
    await hotline.settle()
    cid = await hotline.conversation_of(sent)
    said = await hotline.said(cid)
    assert len(said) == 1 and "<" not in said[0] and "会有答复" in said[0], said
    assert "7个工作日" in first.get_content()
    with pytest.raises(TimeoutError):
        await hotline.box.next_message(1)


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_auto_replies_bounces_and_lists_get_no_answer(hotline: Hotline) -> None:
    sent = await hotline.write("你好", subject="你好")
    greeting = await hotline.reply()
    cid = await hotline.conversation_of(sent)
    # The citizen's out-of-office answers the bot, in the thread: kept, not answered.
    await hotline.write(
        "I am out of the office.",
        subject="Auto: Re: 你好",
        headers={"Auto-Submitted": "auto-replied"},
        in_reply_to=message_id(greeting),
    )
    for headers, frm in (
        ({"Precedence": "bulk"}, None),
        ({"List-Id": "<news.example.test>", "List-Unsubscribe": "<mailto:x@y.test>"}, None),
        ({}, new_address("MAILER-DAEMON")),
        ({"Auto-Submitted": "auto-generated"}, None),
    ):
        await hotline.write(
            "Automatic mail", subject="Notice", headers=headers, **({"frm": frm} if frm else {})
        )
    await hotline.settle()
    with pytest.raises(TimeoutError):
        await hotline.box.next_message(1)
    assert await hotline.said(cid) == ["你好\n\n你好", "I am out of the office."]
    conversations = await hotline.rows(select(Conversation.id))
    assert conversations == [cid]  # automatic mail outside a thread opens nothing


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
@pytest.mark.parametrize("hotline", [{"rate_limit": "2", "rate_window": "3600"}], indirect=True)
async def test_a_sender_over_the_rate_is_kept_but_not_answered(hotline: Hotline) -> None:
    for n in range(4):
        await hotline.write(f"举报之后多久会有答复？第{n}封", subject=f"第{n}封")
    await hotline.settle()
    replies = []
    with pytest.raises(TimeoutError):
        while True:
            replies.append(await hotline.box.next_message(2))
    texts = [r.get_content() for r in replies]
    assert sum("7个工作日" in t for t in texts) == 2
    assert sum("较多邮件" in t for t in texts) == 1  # one notice per window
    stored = await hotline.rows(
        select(Message.text).where(Message.author == AuthorKind.CITIZEN.value)
    )
    assert len(stored) == 4  # nothing a citizen sent is lost


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_an_agent_replies_from_the_console_in_the_same_thread(hotline: Hotline) -> None:
    admin = await StaffClient(hotline.base).login("admin", ADMIN_PASSWORD)
    await admin.post(
        "/api/users",
        {"username": "mailagent", "password": "agent-password-123", "role": "agent"},
        expect=201,
    )
    agent = await StaffClient(hotline.base).login("mailagent", "agent-password-123")
    await agent.connect()
    await agent.post("/api/agents/me/status", {"status": "ready"})
    sent = await hotline.write("请转人工，我要和工作人员谈", subject="求助")
    received = await hotline.reply()
    assert "转人工" in received.get_content()
    cid = await hotline.conversation_of(sent)
    offer = await agent.wait("offer", timeout=30)
    assert offer["conversation_id"] == cid and offer["media"] == "deferred"
    await agent.post(f"/api/conversations/{cid}/accept")
    detail = await agent.get(f"/api/conversations/{cid}")
    assert detail["conversation"]["capabilities"]["attachments"] is True
    await agent.post(
        f"/api/conversations/{cid}/messages", {"text": "您好，我是工作人员，请讲"}, expect=201
    )
    answer = await hotline.reply(Subject="Re: 求助", says="我是工作人员")
    assert answer.get_content().strip() == "您好，我是工作人员，请讲"
    assert answer["In-Reply-To"].strip() == message_id(sent)
    assert answer["Auto-Submitted"] is None  # a person wrote it
    for client in (agent, admin):
        await client.close()


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_bad_mail_is_refused_with_a_clear_error_and_the_channel_goes_on(
    hotline: Hotline,
) -> None:
    raw = (
        (
            f"From: {hotline.citizen}\r\nTo: {hotline.address}\r\nSubject: x\r\n"
            "Message-ID: <bad-utf8@example.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + "举报".encode()
        + b"\xed\xa0\x80 lone surrogate\r\n"
    )
    import aiosmtplib

    await aiosmtplib.send(
        raw,
        sender=hotline.citizen,
        recipients=[hotline.address],
        hostname="127.0.0.1",
        port=hotline.mail.smtp_port,
        start_tls=False,
    )
    refused = await hotline.reply()
    assert "无效字符" in refused.get_content() and "not valid" in refused.get_content()
    empty = await hotline.write("", subject="")
    told = await hotline.reply()
    assert "没有我们能读取的文字" in told.get_content()
    garbage = b"this is not a mail at all\r\n\r\n\x00\x01"
    await aiosmtplib.send(
        garbage,
        sender=hotline.citizen,
        recipients=[hotline.address],
        hostname="127.0.0.1",
        port=hotline.mail.smtp_port,
        start_tls=False,
    )
    with pytest.raises(aiosmtplib.SMTPResponseException) as too_big:
        await hotline.write("长" * (3 * 1024 * 1024))
    assert too_big.value.code == 552
    ok = await hotline.write("我想查一下我的案件进度")
    assert "案件编号" in (await hotline.reply()).get_content()
    await hotline.settle()
    stored = await hotline.rows(
        select(Message.text).where(Message.author == AuthorKind.CITIZEN.value)
    )
    assert stored == ["我想查一下我的案件进度"]
    assert message_id(ok) and empty["Message-ID"]
    health = await hotline.server.app[HUB].channels.get("email").health()
    assert health.status == "ok"


async def test_healthz_says_when_the_mailbox_cannot_be_reached(
    settings: Settings, mail_system: MailSystemThread
) -> None:
    dead = email_settings(settings, mail_system, imap_port=str(free_port()))
    server = TestServer(create_app(dead), host="127.0.0.1", port=dead.http_port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(str(server.make_url("/healthz"))) as response:
                    checks = (await response.json())["components"]
                if checks["channel:email"]["status"] == "down":
                    break
                await asyncio.sleep(0.1)
        assert checks["channel:email"]["status"] == "down"
        assert "IMAP" in checks["channel:email"]["detail"]
        assert checks["channel:webchat"]["status"] == "ok"  # the rest serves
    finally:
        await server.close()


@pytest.mark.rasa
@pytest.mark.usefixtures("rasa_stack")
async def test_make_run_embeds_a_mail_system_and_simulate_email_gets_the_reply(
    settings: Settings,
) -> None:
    """``make run``'s default: no mail server set and Dovecot installed, so the channel
    starts its own; ``hotline simulate email`` writes in over SMTP and reads the answer
    from the citizen's mailbox over IMAP."""
    var = Path(tempfile.mkdtemp(prefix="hotline-var-"))
    var.chmod(0o755)  # Dovecot's mail processes must reach var/mail
    section = {"server": "embedded", "imap_port": str(free_port()), "smtp_port": str(free_port())}
    embedded = replace(
        settings,
        var_dir=var,
        channels=(*settings.channels, "email"),
        channel_sections={**settings.channel_sections, "email": section},
    )
    server = TestServer(create_app(embedded), host="127.0.0.1", port=embedded.http_port)
    await server.start_server()
    try:
        env = {
            **os.environ,
            "HOTLINE_VAR_DIR": str(var),
            "HOTLINE_EMAIL_IMAP_PORT": section["imap_port"],
            "HOTLINE_EMAIL_SMTP_PORT": section["smtp_port"],
            "HOTLINE_EMAIL_SERVER": "embedded",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hotline.cli",
            "simulate",
            "email",
            "--from",
            "citizen@example.test",
            "--subject",
            "咨询",
            "--text",
            "举报之后多久会有答复？",
            "--wait",
            "60",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert lines[0]["channel"] == "email" and lines[0]["subject"] == "Re: 咨询"
        assert "7个工作日" in lines[0]["text"]
    finally:
        await server.close()
        shutil.rmtree(var, ignore_errors=True)


async def test_a_telegram_user_proves_their_mailbox_by_a_code_sent_there(
    settings: Settings, mail_system: MailSystemThread
) -> None:
    """One citizen across channels: a Telegram user asks to link their email address,
    the code goes out as a letter through the real email channel, and typed back in
    Telegram it joins the two contacts; the link is audited."""
    from hotline.store.models import Contact
    from tests.channels.test_telegram import Telegram, new_token, new_user, telegram_settings
    from tests.channels.test_telegram import section as telegram_section

    bot = Telegram(new_token())
    both = telegram_settings(
        email_settings(settings, mail_system), telegram_section(bot.token, "webhook")
    )
    server = TestServer(create_app(both), host="127.0.0.1", port=both.http_port)
    await server.start_server()
    mailbox = new_address("citizen")
    box = await CitizenMailbox(mail_system.imap_port, mailbox, PASSWORD).connect()
    line = Hotline(server, both, mail_system)
    try:
        user = new_user()
        await bot.send(user, f"/link {mailbox}")
        await server.app[HUB].drain()
        asked = [m["text"] for m in await bot.chat(user["id"], wait=5)]
        assert any("发送了6位验证码" in t for t in asked), asked
        notice = await box.next_message(30)
        assert notice["Auto-Submitted"] == "auto-replied"
        code = re.search(r"验证码为(\d{6})", notice.get_content())
        assert code, notice.get_content()
        await bot.send(user, f"绑定 {code.group(1)}")
        await server.app[HUB].drain()
        done = [m["text"] for m in await bot.chat(user["id"], after=len(asked), wait=5)]
        assert any("关联成功" in t for t in done), done
        contacts = await line.rows(select(Contact))
        telegram = next(c for c in contacts if c.channel == "telegram")
        mail = next(c for c in contacts if c.channel == "email")
        assert mail.external_id == mailbox
        assert telegram.person_id is not None and telegram.person_id == mail.person_id
        linked = await line.rows(select(AuditLog).where(AuditLog.action == "contact.link"))
        assert [a.detail["how"] for a in linked] == ["proof"]
    finally:
        await box.close()
        await bot.close()
        await server.close()
