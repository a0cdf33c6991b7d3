"""The session's mail system (Dovecot + the SMTP relay), shared by every email test,
and a hub's email settings pointed at it with a mailbox of the test's own."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from channel_connectors.email.mailsystem import unavailable
from hotline.config import Settings
from tests.mail import MailSystemThread

PASSWORD = "mail-test-password"
LIMIT = 2 * 1024 * 1024  # the relay's message size limit in these tests


@contextmanager
def running_mail_system(password: str, limit: int) -> Iterator[MailSystemThread]:
    """A mail system (Dovecot + the relay) on its own loop, removed afterwards."""
    reason = unavailable()
    if reason:
        pytest.fail(reason)
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, and Dovecot's mail processes
    # run as the dovecot user, who must reach the mail root.
    top = Path(tempfile.mkdtemp(prefix="hotline-mail-"))
    top.chmod(0o755)
    mail = MailSystemThread(top / "mail", password=password, max_message_bytes=limit)
    try:
        mail.start()
        yield mail
    finally:
        mail.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_system() -> Iterator[MailSystemThread]:
    """The session's mail system, shared by every test that does not stop it."""
    with running_mail_system(PASSWORD, LIMIT) as mail:
        yield mail


def new_address(name: str, domain: str = "example.test") -> str:
    """A fresh mailbox (every address is one on the embedded system)."""
    return f"{name}-{uuid.uuid4().hex[:10]}@{domain}"


def email_settings(settings: Settings, mail: MailSystemThread, **extra: str) -> Settings:
    """The hub with the email channel reading a mailbox of its own on ``mail``."""
    section = {
        "server": "external",
        "address": new_address("hotline", "hotline.test"),
        "imap_host": "127.0.0.1",
        "imap_port": str(mail.imap_port),
        "imap_password": PASSWORD,
        "imap_tls": "none",
        "smtp_host": "127.0.0.1",
        "smtp_port": str(mail.smtp_port),
        "smtp_tls": "none",
        "poll_seconds": "30",
        **extra,
    }
    channels = settings.channels if "email" in settings.channels else (*settings.channels, "email")
    sections = {**settings.channel_sections, "email": section}
    return replace(settings, channels=channels, channel_sections=sections)
