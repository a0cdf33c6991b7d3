"""The email channel's transport against the real thing: the embedded mail system
(Dovecot for IMAP and LMTP, the aiosmtpd relay) with ``ImapMailbox`` and
``SmtpSubmission`` on top. No mocks, no sleeps: IDLE says when mail has come.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiosmtplib
import pytest

from channel_connectors.email.imap import ImapMailbox, MailboxError
from channel_connectors.email.mailsystem import LocalMailSystem, MailSystemError
from channel_connectors.email.smtp import SendError, SmtpSubmission
from tests.channels.mail_fixtures import running_mail_system
from tests.conftest import free_port
from tests.mail import CitizenMailbox, MailSystemThread, letter, parse, send_mail

PASSWORD = "mail-test-password"
LIMIT = 1024 * 1024  # the relay's message size limit in these tests
HOTLINE = "hotline@12309.example.cn"


@pytest.fixture(scope="module")
def mail_system() -> Iterator[MailSystemThread]:
    """A mail system of the module's own: its tests stop and restart Dovecot."""
    with running_mail_system(PASSWORD, LIMIT) as mail:
        yield mail


def address(name: str = "citizen") -> str:
    """A fresh mailbox for each test (every address is one)."""
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def mailbox(mail: MailSystemThread, user: str, password: str = PASSWORD) -> ImapMailbox:
    return ImapMailbox("127.0.0.1", mail.imap_port, user, password, tls="none", timeout=5.0)


@pytest.fixture
async def inbox(mail_system: MailSystemThread) -> AsyncIterator[tuple[str, ImapMailbox]]:
    user = address()
    box = mailbox(mail_system, user)
    await box.connect()
    yield user, box
    await box.close()


async def until(condition: object, timeout: float = 5.0) -> None:
    """Wait for a condition some other task makes true (``condition`` is a callable)."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ delivery and IDLE
async def test_smtp_mail_arrives_and_idle_wakes(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    user, box = inbox
    assert box.idle_supported
    assert box.uidvalidity and box.uidvalidity > 0
    assert await box.fetch_unseen(10) == []
    waiting = asyncio.create_task(box.wait_for_mail(10))
    await until(lambda: box.idling)
    started = time.monotonic()
    # Addresses are case-insensitive: the upper-case spelling reaches the same mailbox.
    await send_mail(mail_system.smtp_port, letter("a@example.org", user.upper(), "Hi", "hello"))
    assert await waiting is True
    assert time.monotonic() - started < 3.0
    assert not box.idling
    [got] = await box.fetch_unseen(10)
    message = parse(got.raw)
    assert message["Subject"] == "Hi"
    assert "hotline embedded relay" in message["Received"]


async def test_wait_for_mail_times_out_and_the_connection_stays_usable(
    inbox: tuple[str, ImapMailbox],
) -> None:
    _, box = inbox
    started = time.monotonic()
    assert await box.wait_for_mail(0.3) is False
    assert 0.25 < time.monotonic() - started < 3.0
    assert await box.fetch_unseen(10) == []  # IDLE ended with DONE: commands work


async def test_the_relay_keeps_the_bytes_and_adds_a_received_header(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    user, box = inbox
    original = (
        "From: 张三 <zhang@example.org>\r\n"
        f"To: {user}\r\n"
        "Subject: =?utf-8?b?5Li+5oql?=\r\n"
        "Message-ID: <raw-1@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        ".a line that starts with a dot\r\n"
        "..and two dots\r\n"
        ".\r\n"
        "trailing spaces   \r\n"
        "中文正文，UTF-8 八位。\r\n"
    ).encode()
    await aiosmtplib.send(
        original,
        sender="zhang@example.org",
        recipients=[user],
        hostname="127.0.0.1",
        port=mail_system.smtp_port,
        start_tls=False,
        timeout=10,
    )
    [got] = await box.fetch_unseen(10)
    assert got.raw.endswith(original)
    added = got.raw[: -len(original)].decode()
    assert "Received: from " in added and "hotline embedded relay" in added
    # Only trace lines come before it (Dovecot's delivery adds Return-Path).
    for line in added.split("\r\n")[:-1]:
        assert line.startswith(("Received:", "\t", "Return-Path:")), line


async def test_fetch_unseen_does_not_mark_seen_and_mark_seen_does(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    user, box = inbox
    for n in (1, 2, 3):
        await send_mail(mail_system.smtp_port, letter("a@example.org", user, f"n{n}", "x"))
    first = await box.fetch_unseen(10)
    assert [parse(f.raw)["Subject"] for f in first] == ["n1", "n2", "n3"]
    assert await box.fetch_unseen(10) == first  # reading did not mark them seen
    assert await box.fetch_unseen(2) == first[:2]  # oldest first, up to the limit
    await box.mark_seen(first[0].uid)
    assert await box.fetch_unseen(10) == first[1:]
    # A new connection sees the same flags: \Seen is stored, not a client-side note.
    other = mailbox(mail_system, user)
    await other.connect()
    try:
        assert other.uidvalidity == box.uidvalidity
        assert [f.uid for f in await other.fetch_unseen(10)] == [f.uid for f in first[1:]]
    finally:
        await other.close()


async def test_mail_that_came_while_busy_is_not_missed(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    """Mail delivered between two fetches (its EXISTS went by during another command)
    still makes wait_for_mail return at once."""
    user, box = inbox
    await send_mail(mail_system.smtp_port, letter("a@example.org", user, "one", "x"))
    [first] = await box.fetch_unseen(10)
    await send_mail(mail_system.smtp_port, letter("a@example.org", user, "two", "x"))
    await box.mark_seen(first.uid)  # the server may report the new mail here
    started = time.monotonic()
    assert await box.wait_for_mail(10) is True
    assert time.monotonic() - started < 2.0
    [second] = await box.fetch_unseen(10)
    assert parse(second.raw)["Subject"] == "two"
    # Left unseen on purpose, it does not wake the next wait again and again.
    assert await box.wait_for_mail(0.2) is False


# ------------------------------------------------------------------ limits and text
async def test_a_message_over_the_size_limit_is_refused_with_552(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    user, box = inbox
    big = letter(
        "a@example.org",
        user,
        "big",
        "see attachment",
        attachments=[("scan.bin", os.urandom(LIMIT), "application/octet-stream")],
    )
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send_mail(mail_system.smtp_port, big)
    assert refused.value.code == 552
    submission = SmtpSubmission(
        "127.0.0.1", mail_system.smtp_port, None, None, tls="none", timeout=10
    )
    with pytest.raises(SendError) as failed:
        await submission.send(big)
    assert failed.value.permanent
    assert "552" in str(failed.value)
    assert await box.fetch_unseen(10) == []


async def test_chinese_subject_body_names_and_attachments_survive(
    mail_system: MailSystemThread,
) -> None:
    user = address()
    subject = "关于某县国土局违规审批的举报（第二次）"
    text = "检察官您好：\n我要举报……附件是照片。\n此致\n敬礼\n"
    sent = letter(
        "张三 <zhang@example.cn>",
        f"市民 <{user}>",
        subject,
        text,
        html="<p>检察官您好：我要举报</p>",
        attachments=[("现场照片.jpg", b"\xff\xd8\xff\xe0jpeg", "image/jpeg")],
        headers={"X-Case": "无"},
    )
    async with CitizenMailbox(mail_system.imap_port, user, PASSWORD) as citizen:
        await send_mail(mail_system.smtp_port, sent)
        got = await citizen.next_message(5)
    assert got["Subject"] == subject
    assert got["From"].addresses[0].display_name == "张三"
    assert got["X-Case"] == "无"
    assert got["Message-ID"] == sent["Message-ID"]
    body = got.get_body(("plain",))
    assert body is not None and body.get_content() == text
    html = got.get_body(("html",))
    assert html is not None and "我要举报" in html.get_content()
    [attachment] = list(got.iter_attachments())
    assert attachment.get_filename() == "现场照片.jpg"
    assert attachment.get_content() == b"\xff\xd8\xff\xe0jpeg"


async def test_citizen_mailbox_waits_for_the_matching_message(
    mail_system: MailSystemThread,
) -> None:
    user = address()
    async with CitizenMailbox(mail_system.imap_port, user, PASSWORD) as citizen:
        waiting = asyncio.create_task(citizen.next_message(10, lambda m: m["Subject"] == "wanted"))
        await until(lambda: citizen.box.idling)
        await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "other", "x"))
        await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "wanted", "y"))
        assert (await waiting)["Subject"] == "wanted"
        assert (await citizen.next_message(1))["Subject"] == "other"  # kept, not lost
        with pytest.raises(TimeoutError):
            await citizen.next_message(0.2)


# ------------------------------------------------------------------ submission
async def test_submission_with_and_without_auth(mail_system: MailSystemThread) -> None:
    user = address()
    plain = SmtpSubmission("127.0.0.1", mail_system.smtp_port, None, None, tls="none", timeout=10)
    authed = SmtpSubmission(
        "127.0.0.1", mail_system.smtp_port, HOTLINE, PASSWORD, tls="none", timeout=10
    )
    wrong = SmtpSubmission(
        "127.0.0.1", mail_system.smtp_port, HOTLINE, "not-it", tls="none", timeout=10
    )
    async with CitizenMailbox(mail_system.imap_port, user, PASSWORD) as citizen:
        await plain.send(letter(HOTLINE, user, "without auth", "x"))
        await authed.send(letter(HOTLINE, user, "with auth", "y"))
        with pytest.raises(SendError) as failed:
            await wrong.send(letter(HOTLINE, user, "wrong password", "z"))
        assert not failed.value.permanent and "535" in str(failed.value)
        got = {(await citizen.next_message(5))["Subject"] for _ in range(2)}
        assert got == {"without auth", "with auth"}
        with pytest.raises(TimeoutError):
            await citizen.next_message(0.2)


async def test_connection_failures_are_temporary_send_errors() -> None:
    closed = SmtpSubmission("127.0.0.1", free_port(), None, None, tls="none", timeout=5)
    with pytest.raises(SendError) as failed:
        await closed.send(letter(HOTLINE, "x@example.com", "s", "t"))
    assert not failed.value.permanent
    box = ImapMailbox("127.0.0.1", free_port(), "x@example.com", "p", tls="none", timeout=5)
    with pytest.raises(MailboxError):
        await box.connect()
    with pytest.raises(MailboxError):
        await box.fetch_unseen(1)


async def test_a_wrong_imap_password_is_a_mailbox_error(mail_system: MailSystemThread) -> None:
    box = mailbox(mail_system, address(), "wrong-password")
    with pytest.raises(MailboxError, match="login refused"):
        await box.connect()


# ------------------------------------------------------------------ Dovecot down
async def test_dovecot_down_then_restarted_after_a_crash(
    mail_system: MailSystemThread, inbox: tuple[str, ImapMailbox]
) -> None:
    user, box = inbox
    system = mail_system.system
    submission = SmtpSubmission(
        "127.0.0.1", mail_system.smtp_port, None, None, tls="none", timeout=10
    )
    pid = system.dovecot_pid
    assert pid is not None
    # A crash: every Dovecot process killed at once, leaving its pid file and sockets.
    os.killpg(pid, signal.SIGKILL)
    try:
        with pytest.raises(MailboxError):
            await box.fetch_unseen(10)
        with pytest.raises(MailboxError):
            await box.wait_for_mail(1)
        with pytest.raises(MailboxError):
            await mailbox(mail_system, user).connect()
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "lost?", "x"))
        assert 400 <= refused.value.code < 500
        with pytest.raises(SendError) as failed:
            await submission.send(letter(HOTLINE, user, "lost?", "x"))
        assert not failed.value.permanent
        assert not system.running()[0]
        assert (system.base_dir / "master.pid").exists()
    finally:
        await mail_system.call(system.start_dovecot())
    assert system.running() == (True, "running")
    assert system.dovecot_pid != pid
    await box.connect()  # the same mailbox object reconnects
    await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "after", "x"))
    [got] = await box.fetch_unseen(10)
    assert parse(got.raw)["Subject"] == "after"  # nothing refused was stored


async def test_a_clean_stop_refuses_with_4xx_and_a_second_instance_is_refused(
    mail_system: MailSystemThread,
) -> None:
    system = mail_system.system
    other = LocalMailSystem(
        system.root, imap_port=free_port(), smtp_port=free_port(), password=PASSWORD
    )
    with pytest.raises(MailSystemError, match="already runs"):
        await other.start_dovecot()
    user = address()
    await mail_system.call(system.stop_dovecot())
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "down", "x"))
        assert refused.value.code == 451
    finally:
        await mail_system.call(system.start_dovecot())
    async with CitizenMailbox(mail_system.imap_port, user, PASSWORD) as citizen:
        await send_mail(mail_system.smtp_port, letter(HOTLINE, user, "up", "x"))
        assert (await citizen.next_message(5))["Subject"] == "up"
