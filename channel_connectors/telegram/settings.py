"""The Telegram channel's settings: ``HOTLINE_TELEGRAM_<KEY>`` or a ``[telegram]`` table.

Without a bot token the channel is off (with the reason), unless ``api_url`` points at a
Bot API server on this machine (a local ``telegram-bot-api`` or the test double), which
takes any well-formed token: then a fixed local one is used.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from hotline.config import (
    Settings,
    describe_settings,
    http_url,
    int_between,
    one_of,
    parse_section,
    secret_file,
)

CLOUD_API = "https://api.telegram.org"
LOCAL_TOKEN = "1000001:local-bot-api-without-a-real-token"  # noqa: S105 (no real bot)
WEBHOOK_PATH = "/channels/telegram/webhook"
SECRET_FILE = "telegram-webhook-secret"  # noqa: S105 (a file name)

Mode = Literal["webhook", "polling"]
_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$")
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


@dataclass(frozen=True)
class TelegramSettings:
    """Validated settings; ``describe()`` is what ``hotline config`` prints."""

    enabled: bool
    off_reason: str  # why the channel is off (no token)
    token: str
    api_url: str  # the Bot API server: https://api.telegram.org or a local one
    mode: Mode  # how updates arrive: webhook (the hub's own route) or long polling
    webhook_secret: str  # X-Telegram-Bot-Api-Secret-Token, webhook mode
    public_url: str  # where the Bot API server reaches the hub (setWebhook)
    poll_timeout: int  # seconds one getUpdates call may wait for updates
    rate_limit: int  # messages per chat ...
    rate_window: int  # ... per this many seconds

    SECRETS = frozenset({"token", "webhook_secret"})

    @property
    def local_api(self) -> bool:
        """The Bot API server runs on this machine (no real Telegram behind it)."""
        return is_loopback(self.api_url)

    @property
    def webhook_url(self) -> str:
        return f"{self.public_url}{WEBHOOK_PATH}"

    def describe(self) -> dict[str, str]:
        return describe_settings(self, self.SECRETS)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(raw: str) -> str:
    if not _TOKEN.match(raw):
        raise ValueError("must be a bot token from @BotFather (digits, a colon, the key)")
    return raw


def _webhook_secret(raw: str) -> str:
    if not _WEBHOOK_SECRET.match(raw):
        raise ValueError("must be 16-256 characters of A-Z, a-z, 0-9, _ and -")
    return raw


_PARSERS: dict[str, Callable[[str], Any]] = {
    "token": _token,
    "api_url": http_url,
    "mode": one_of("webhook", "polling"),
    "webhook_secret": _webhook_secret,
    "public_url": http_url,
    "poll_timeout": int_between(1, 50),
    "rate_limit": int_between(1, 10_000),
    "rate_window": int_between(1, 86_400),
}
KEYS = tuple(_PARSERS)


def load(section: Mapping[str, str], core: Settings) -> TelegramSettings:
    values = parse_section("telegram", section, _PARSERS, secrets=TelegramSettings.SECRETS)
    api_url = values.get("api_url", CLOUD_API)
    token = values.get("token", "")
    enabled, off_reason = True, ""
    if not token:
        if is_loopback(api_url):
            token = LOCAL_TOKEN
        else:
            enabled, off_reason = False, "no bot token (HOTLINE_TELEGRAM_TOKEN)"
    mode = values.get("mode", "polling")
    secret = values.get("webhook_secret", "")
    if mode == "webhook" and not secret and enabled:
        secret = secret_file(
            core.var_dir / SECRET_FILE,
            lambda: secrets.token_urlsafe(32),
            "the Telegram webhook secret",
        )
    return TelegramSettings(
        enabled=enabled,
        off_reason=off_reason,
        token=token,
        api_url=api_url,
        mode=mode,
        webhook_secret=secret,
        public_url=values.get("public_url", core.public_origin),
        poll_timeout=values.get("poll_timeout", 25),
        rate_limit=values.get("rate_limit", 30),
        rate_window=values.get("rate_window", 60),
    )
