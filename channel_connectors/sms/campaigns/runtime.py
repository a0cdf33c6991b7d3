"""What the SMS channel holds for group sends: routes, the scheduler, start and stop."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channel_connectors.sms.campaigns.scheduler import CampaignScheduler, Link
from channel_connectors.sms.campaigns.settings import CampaignSettings
from hotline.config import Settings
from hotline.ports import ChannelRuntime


class Campaigns:
    """Group sends for one hub: its routes are added when the app is built (the SMS
    channel's ``setup``), ``start(runtime)`` / ``stop()`` with the channel."""

    def __init__(self, core: Settings, link: Link, settings: CampaignSettings) -> None:
        self.core = core
        self.link = link
        self.settings = settings
        self.scheduler = CampaignScheduler(settings, link, core.timezone)

    @classmethod
    def from_sms(cls, core: Settings, sms: Any, settings: CampaignSettings) -> Campaigns:
        """From the SMS channel's ``SmsSettings``."""
        return cls(core, Link.from_sms(sms), settings)

    async def start(self, runtime: ChannelRuntime) -> None:
        await self.scheduler.start(runtime.sessions, runtime.http)

    async def stop(self) -> None:
        await self.scheduler.stop()


CAMPAIGNS = web.AppKey("sms_campaigns", Campaigns)
