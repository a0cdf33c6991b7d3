"""SMS group sends (群发): templates, contact groups (客户分组), immediate and scheduled
sends (定时发送) through Kannel at the link's rate, with delivery reports.

The SMS channel wires it (``channel_connectors/sms/__init__.py``): ``load_settings``
takes the ``campaign_*`` keys of its section (``without`` leaves the rest to the
channel), ``setup`` adds the routes, and the channel's ``start(runtime)`` / ``stop()``
start and stop the scheduler. See the SMS README, "Group sends".
"""

from __future__ import annotations

from typing import Any

from channel_connectors.sms.campaigns import handlers
from channel_connectors.sms.campaigns.runtime import CAMPAIGNS, Campaigns
from channel_connectors.sms.campaigns.settings import KEYS, CampaignSettings, without
from channel_connectors.sms.campaigns.settings import load as load_settings
from hotline.ports import ChannelContext

__all__ = [
    "CAMPAIGNS",
    "KEYS",
    "CampaignSettings",
    "Campaigns",
    "load_settings",
    "setup",
    "without",
]


def setup(context: ChannelContext, sms: Any, settings: CampaignSettings) -> Campaigns:
    """Build group sends for the SMS channel ``sms`` (its ``SmsSettings``); adds routes."""
    campaigns = Campaigns.from_sms(context.core, sms, settings)
    context.app[CAMPAIGNS] = campaigns
    handlers.add_routes(context.app)
    return campaigns
