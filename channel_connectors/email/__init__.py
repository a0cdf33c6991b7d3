"""Email through IMAP and SMTP submission: see README.md in this folder.

Settings (``HOTLINE_EMAIL_<KEY>`` or an ``[email]`` TOML table) are validated by
:func:`load_settings`; :func:`setup` adds the staff routes for attachments and returns
the channel, which starts the embedded mail system (if so set) and the mailbox reader
when the core runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from channel_connectors.email.connector import EmailChannel, make_channel
from channel_connectors.email.mailsystem import unavailable
from channel_connectors.email.settings import EmailSettings, load
from hotline.config import Settings
from hotline.ports import ChannelContext

NAME = "email"


def load_settings(section: Mapping[str, str], core: Settings) -> EmailSettings:
    return load(section, core, dovecot_missing=unavailable())


def setup(context: ChannelContext, settings: EmailSettings) -> EmailChannel:
    channel = make_channel(settings, context.core, context.inbox)
    channel.add_routes(context.app)
    return channel
