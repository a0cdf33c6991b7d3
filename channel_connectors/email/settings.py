"""The email channel's settings: ``HOTLINE_EMAIL_<KEY>`` or an ``[email]`` table.

``server``: ``external`` reads the organisation's mailbox (``imap_host`` ...) and sends
through its submission server (``smtp_host`` ...); ``embedded`` starts a local mail
system (Dovecot and an SMTP relay, channel_connectors/email/mailsystem.py) so a newcomer
can try email; ``auto`` (the default) is external when ``imap_host`` is set, else
embedded when Dovecot is installed, else off with the reason.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hotline.config import (
    ConfigError,
    Settings,
    describe_settings,
    host_name,
    int_between,
    one_of,
    parse_section,
    secret_file,
)

Server = Literal["embedded", "external", "off"]
Tls = Literal["none", "starttls", "tls"]
EMBEDDED_DOMAIN = "hotline.test"
PASSWORD_FILE = "email/password"  # noqa: S105 (a file name)
_ADDRESS = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")


@dataclass(frozen=True)
class EmailSettings:
    """Validated settings; ``describe()`` is what ``hotline config`` prints."""

    server: Server
    off_reason: str
    address: str  # the hotline's own mailbox: From of every reply
    from_name: str
    imap_host: str
    imap_port: int
    imap_user: str
    imap_password: str
    imap_tls: Tls
    imap_folder: str
    smtp_host: str
    smtp_port: int
    smtp_user: str  # empty: no AUTH
    smtp_password: str
    smtp_tls: Tls
    poll_seconds: int  # the poll interval without IDLE; with IDLE, how long one IDLE lasts
    max_attachment_bytes: int
    max_attachments: int
    rate_limit: int  # letters per sender ...
    rate_window: int  # ... per this many seconds, then kept without an automatic reply

    SECRETS = frozenset({"imap_password", "smtp_password"})

    @property
    def enabled(self) -> bool:
        return self.server != "off"

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    def describe(self) -> dict[str, str]:
        return describe_settings(self, self.SECRETS)


def _address(raw: str) -> str:
    if not _ADDRESS.match(raw):
        raise ValueError("must be a mail address like hotline@example.org")
    return raw.lower()


def _text(raw: str) -> str:
    if not raw or len(raw) > 100 or any(c in raw for c in '\r\n\x00<>"'):
        raise ValueError("must be 1-100 characters on one line, without <, > or quotes")
    return raw


_PARSERS: dict[str, Callable[[str], Any]] = {
    "server": one_of("auto", "embedded", "external", "off"),
    "address": _address,
    "from_name": _text,
    "imap_host": host_name,
    "imap_port": int_between(1, 65535),
    "imap_user": _text,
    "imap_password": str,
    "imap_tls": one_of("none", "starttls", "tls"),
    "imap_folder": _text,
    "smtp_host": host_name,
    "smtp_port": int_between(1, 65535),
    "smtp_user": _text,
    "smtp_password": str,
    "smtp_tls": one_of("none", "starttls", "tls"),
    "poll_seconds": int_between(5, 1740),  # IDLE must be renewed within 29 minutes
    "max_attachment_bytes": int_between(1024, 100 * 1024 * 1024),
    "max_attachments": int_between(0, 50),
    "rate_limit": int_between(1, 10_000),
    "rate_window": int_between(1, 86_400),
}
KEYS = tuple(_PARSERS)


def load(
    section: Mapping[str, str], core: Settings, *, dovecot_missing: str | None
) -> EmailSettings:
    values = parse_section("email", section, _PARSERS, secrets=EmailSettings.SECRETS)
    server = values.get("server", "auto")
    off_reason = ""
    if server == "auto":
        if "imap_host" in values:
            server = "external"
        elif dovecot_missing is None:
            server = "embedded"
        else:
            server, off_reason = "off", dovecot_missing
    elif server == "embedded" and dovecot_missing is not None:
        server, off_reason = "off", dovecot_missing
    elif server == "off":
        off_reason = "email is off (HOTLINE_EMAIL_SERVER=off)"
    embedded = server == "embedded"
    if server == "external":
        for key in ("imap_host", "smtp_host", "address"):
            if key not in values:
                raise ConfigError(
                    f"HOTLINE_EMAIL_{key.upper()}: required when HOTLINE_EMAIL_SERVER=external"
                )
    address = values.get("address", f"hotline@{EMBEDDED_DOMAIN}")
    password = ""
    if embedded:
        password = secret_file(
            core.var_dir / PASSWORD_FILE,
            lambda: secrets.token_urlsafe(24),
            "the embedded mail system's password",
        )
    default_tls: Tls = "none" if embedded else "tls"
    return EmailSettings(
        server=server,
        off_reason=off_reason,
        address=address,
        from_name=values.get("from_name", "12309 Hotline 检察服务热线"),
        imap_host=values.get("imap_host", "127.0.0.1"),
        imap_port=values.get("imap_port", 1143 if embedded else 993),
        imap_user=values.get("imap_user", address),
        imap_password=values.get("imap_password", password),
        imap_tls=values.get("imap_tls", default_tls),
        imap_folder=values.get("imap_folder", "INBOX"),
        smtp_host=values.get("smtp_host", "127.0.0.1"),
        smtp_port=values.get("smtp_port", 2525 if embedded else 587),
        smtp_user=values.get("smtp_user", ""),
        smtp_password=values.get("smtp_password", ""),
        smtp_tls=values.get("smtp_tls", "none" if embedded else "starttls"),
        poll_seconds=values.get("poll_seconds", 60),
        max_attachment_bytes=values.get("max_attachment_bytes", 10 * 1024 * 1024),
        max_attachments=values.get("max_attachments", 10),
        rate_limit=values.get("rate_limit", 10),
        rate_window=values.get("rate_window", 3600),
    )
