"""Web chat: the citizen page, ``widget.js`` and the ``/ws/chat`` connector.

Its frame size, message rate and allowed origins are core settings
(``HOTLINE_WS_*``, ``HOTLINE_ALLOWED_ORIGINS``); its own section holds the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from channel_connectors.webchat.connector import WebChatChannel
from hotline.config import Settings, float_between, parse_section
from hotline.ports import ChannelContext

NAME = "webchat"


@dataclass(frozen=True)
class WebChatSettings:
    core: Settings
    hello_timeout: float = 30.0  # seconds a new socket may stay open without a hello

    def describe(self) -> dict[str, str]:
        return {"hello_timeout": f"{self.hello_timeout:g}"}


def load_settings(section: Mapping[str, str], core: Settings) -> WebChatSettings:
    parsers = {"hello_timeout": float_between(0.1, 600)}
    return WebChatSettings(core, **parse_section(NAME, section, parsers))


def setup(context: ChannelContext, settings: WebChatSettings) -> WebChatChannel:
    channel = WebChatChannel(settings.core, context.inbox, hello_timeout=settings.hello_timeout)
    channel.add_routes(context.app)
    return channel
