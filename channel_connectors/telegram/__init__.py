"""Telegram through the Bot API (aiogram 3): see README.md in this folder.

Settings (``HOTLINE_TELEGRAM_<KEY>`` or a ``[telegram]`` TOML table) are validated by
:func:`load_settings`; :func:`setup` adds the webhook route (webhook mode) and returns
the channel, which starts polling or sets the webhook when the core runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from channel_connectors.telegram.connector import TelegramChannel, make_channel
from channel_connectors.telegram.settings import TelegramSettings, load
from hotline.config import Settings
from hotline.ports import ChannelContext

NAME = "telegram"


def load_settings(section: Mapping[str, str], core: Settings) -> TelegramSettings:
    return load(section, core)


def setup(context: ChannelContext, settings: TelegramSettings) -> TelegramChannel:
    channel = make_channel(settings, context.core, context.inbox)
    channel.add_routes(context.app)
    return channel
