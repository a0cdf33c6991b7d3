"""Telling a named reporter their case changed, on the channel that reaches their phone.

The notice says only that there is news and how to look it up (case code, PIN): never
what the report said or what was decided. The phone number is revealed from the vault
(audited) only when the reporter asked for notices, and only to send one.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.audit import record
from hotline.channels import ChannelRegistry
from hotline.lang import parse
from hotline.ports import Notifier
from hotline.store.models import Ticket
from hotline.texts import say
from hotline.vault import IdentityVault

log = logging.getLogger(__name__)


class CaseNotices:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: IdentityVault,
        channels: ChannelRegistry,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._channels = channels

    def _phone_channel(self) -> Notifier | None:
        for channel in self._channels:
            if isinstance(channel, Notifier) and channel.notice_address == "phone":
                return channel
        return None

    async def case_changed(self, ticket_id: int, *, status: str) -> bool:
        """Send the reporter a notice if they asked for one; True if it went out."""
        channel = self._phone_channel()
        async with self._sessions() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None or not ticket.notify_reporter or ticket.identity_id is None:
                return False
            if channel is None:
                log.warning("no channel reaches phones: case notice not sent")
                return False
            identity = await self._vault.reveal(
                session, ticket.identity_id, actor="system", reason="case_notice"
            )
            await session.commit()  # the reveal's audit row, before anything is sent
            lang = parse(ticket.language) or "zh"
            text = say("case_notice", lang, code=ticket.case_code)
        # Outside the transaction: the channel records its send in its own tables.
        sent = bool(identity.phone) and await channel.send_notice(identity.phone, text)
        async with self._sessions() as session:
            record(
                session, "system", "ticket.notice", "ticket", ticket_id, sent=sent, status=status
            )
            await session.commit()
        return sent
