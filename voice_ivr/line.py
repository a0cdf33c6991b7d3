"""The phone line as the hub starts it: the ARI connection with the IVR listening on it."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker

from hotline.config import Settings
from hotline.tickets import TicketService
from voice_ivr.ari import AriClient
from voice_ivr.ivr import Ivr
from voice_ivr.tts import EspeakTts


class VoiceLine:
    def __init__(self, ari: AriClient, ivr: Ivr) -> None:
        self.ari, self.ivr = ari, ivr

    @classmethod
    def start(
        cls,
        settings: Settings,
        http: aiohttp.ClientSession,
        sessions: async_sessionmaker[Any],
        tickets: TicketService,
    ) -> VoiceLine:
        """Connect the IVR to ARI; the events socket reconnects by itself."""
        ari = AriClient(
            http, settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app
        )
        root = settings.asterisk_root
        if root is not None and not root.exists():
            root = None  # an external Asterisk: prompts live in var/ (see asterisk/README.md)
        prompts = root / "var/lib/hotline/prompts" if root else settings.var_dir / "prompts"
        ivr = Ivr(ari, sessions, tickets, EspeakTts(prompts), root=root)
        ari.listen(ivr.on_event, ivr.reconcile)
        return cls(ari, ivr)

    async def close(self) -> None:
        await self.ari.close()
        await self.ivr.close()
