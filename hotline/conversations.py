"""Conversation and message persistence, shared by every channel."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.contacts import person_contacts
from hotline.lang import Lang
from hotline.orgs import ROOT_UNIT
from hotline.store.models import (
    AuthorKind,
    Blacklist,
    Contact,
    Conversation,
    ConversationState,
    Message,
    OrgUnit,
    new_id,
)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ConversationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def open(
        self,
        channel: str,
        lang: Lang,
        external_id: str | None = None,
        *,
        org_unit: str | None = None,
        intent: str | None = None,
    ) -> tuple[Conversation, str]:
        """Start a conversation; returns it with a fresh resume token (only its hash is kept).

        ``org_unit`` (e.g. from the site that embeds the widget) routes it to that unit's
        queues; an unknown unit falls back to the root unit. ``intent``: a topic chosen
        before any dialogue (a phone menu's choice), for routing.
        """
        token = secrets.token_urlsafe(32)
        async with self.sessions() as session:
            if org_unit is not None and await session.get(OrgUnit, org_unit) is None:
                org_unit = None
            contact = None
            if external_id is not None:
                contact = (
                    await session.execute(
                        select(Contact).where(
                            Contact.channel == channel, Contact.external_id == external_id
                        )
                    )
                ).scalar_one_or_none()
            if contact is None:
                contact = Contact(id=new_id(), channel=channel, external_id=external_id or new_id())
                session.add(contact)
            conversation = Conversation(
                id=new_id(),
                contact_id=contact.id,
                channel=channel,
                language=lang,
                state=ConversationState.BOT.value,
                resume_token_hash=_token_hash(token),
                org_unit_id=org_unit or ROOT_UNIT,
                intent=intent,
            )
            session.add(conversation)
            await session.commit()
        return conversation, token

    async def resume(self, token: str) -> Conversation | None:
        """The conversation a resume token belongs to (looked up by hash)."""
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(Conversation).where(Conversation.resume_token_hash == _token_hash(token))
                )
            ).scalar_one_or_none()

    async def latest(self, channel: str, external_id: str) -> Conversation | None:
        """The contact's newest conversation on ``channel`` unless it is over.

        A closed conversation still waiting for its rating counts as current, so the
        citizen's "1"/"2"/"3" rates it rather than opening a new one.
        """
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(Conversation)
                    .join(Contact, Contact.id == Conversation.contact_id)
                    .where(
                        Contact.channel == channel,
                        Contact.external_id == external_id,
                        Conversation.channel == channel,
                        (Conversation.state != ConversationState.CLOSED.value)
                        | Conversation.awaiting_rating.is_(True),
                    )
                    .order_by(Conversation.created_at.desc(), Conversation.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def blocked(self, channel: str, external_id: str) -> bool:
        """Whether the contact at this address on ``channel`` is on the blacklist."""
        async with self.sessions() as session:
            found = await session.execute(
                select(Blacklist.contact_id)
                .join(Contact, Contact.id == Blacklist.contact_id)
                .where(Contact.channel == channel, Contact.external_id == external_id)
                .limit(1)
            )
            return found.first() is not None

    async def address(self, conversation_id: str) -> str | None:
        """The contact's address on the conversation's channel (a number, a mailbox)."""
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(Contact.external_id)
                    .join(Conversation, Conversation.contact_id == Contact.id)
                    .where(Conversation.id == conversation_id)
                )
            ).scalar_one_or_none()

    async def get(self, conversation_id: str) -> Conversation | None:
        async with self.sessions() as session:
            return await session.get(Conversation, conversation_id)

    async def history(
        self, conversation_id: str, limit: int = 200, *, citizen_view: bool = False
    ) -> Sequence[Message]:
        """The last ``limit`` messages; the citizen's view leaves out staff notes."""
        query = select(Message).where(Message.conversation_id == conversation_id)
        if citizen_view:
            query = query.where(Message.author != AuthorKind.NOTE.value)
        async with self.sessions() as session:
            rows = (
                (await session.execute(query.order_by(Message.id.desc()).limit(limit)))
                .scalars()
                .all()
            )
        return list(reversed(rows))

    async def set_language(self, conversation_id: str, lang: Lang) -> None:
        async with self.sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is not None and conversation.language != lang:
                conversation.language = lang
                await session.commit()

    async def expect_sensitive(self, conversation_id: str) -> None:
        """The citizen's next message is an identity answer or a PIN: seal it on arrival."""
        async with self.sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is not None:
                conversation.expect_sensitive = True
                await session.commit()

    async def add_message(self, session: AsyncSession, message: Message) -> Message | None:
        """Insert ``message``; None if its client id was already stored (a resend)."""
        try:
            async with session.begin_nested():
                session.add(message)
        except IntegrityError:
            return None
        return message


async def earlier_conversations(
    session: AsyncSession, conversation: Conversation, limit: int
) -> list[Conversation]:
    """The same citizen's other conversations, newest first (caller history, sticky
    agent): the contact's, and those of the contacts linked with it (``hotline.contacts``)."""
    return list(
        (
            await session.execute(
                select(Conversation)
                .where(
                    Conversation.contact_id.in_(person_contacts(conversation.contact_id)),
                    Conversation.id != conversation.id,
                )
                .order_by(Conversation.created_at.desc())
                .limit(limit)
            )
        ).scalars()
    )
