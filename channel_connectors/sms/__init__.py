"""SMS through Kannel (bearerbox + smsbox): see README.md in this folder.

Settings (``HOTLINE_SMS_<KEY>`` or a ``[sms]`` TOML table) are validated by
:func:`load_settings`; :func:`setup` adds the inbound webhook, the delivery-report
route and the staff endpoints, and returns the channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from channel_connectors.sms import campaigns
from channel_connectors.sms.connector import SmsChannel, make_channel
from channel_connectors.sms.settings import SmsSettings, load
from hotline.config import Settings
from hotline.ports import ChannelContext

NAME = "sms"


def load_settings(section: Mapping[str, str], core: Settings) -> SmsSettings:
    """The channel's keys, and the group sends' ``campaign_*`` keys (``campaigns/``)."""
    group_sends = campaigns.load_settings(section)
    return replace(load(campaigns.without(section), core), campaign=group_sends)


def setup(context: ChannelContext, settings: SmsSettings) -> SmsChannel:
    channel = make_channel(settings, context.core, context.inbox)
    channel.add_routes(context.app)
    if settings.campaign is not None:
        channel.group_sends = campaigns.setup(context, settings, settings.campaign)
    return channel
