"""A conversation that has ended is never queued, even by a request already on its way.

The hub queues a conversation the bot handed off right after the bot's turn; a caller
who hangs up at that moment has the IVR close it through the ACD meanwhile. Whichever
comes first, the ACD must not end up holding a closed conversation (a "ghost" that rings
agents for nobody). Real hub, real SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import ACD
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AcdContact, Contact, Conversation, ConversationState


async def queued_conversation(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            contact = Contact(channel="voice", external_id="13400000001")
            session.add(contact)
            await session.flush()
            conversation = Conversation(
                contact_id=contact.id, channel="voice", state=ConversationState.QUEUED.value
            )
            session.add(conversation)
            await session.commit()
            return conversation.id
    finally:
        await engine.dispose()


async def after(settings: Settings, conversation_id: str) -> tuple[Conversation, list[str]]:
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            held = list((await session.execute(select(AcdContact.conversation_id))).scalars())
            return conversation, held
    finally:
        await engine.dispose()


async def test_a_closed_conversation_is_not_queued(
    hub_server: TestServer, settings: Settings
) -> None:
    acd = hub_server.app[ACD]
    conversation_id = await queued_conversation(settings)
    await acd.close(conversation_id, "abandoned", by="caller")
    await acd.enqueue(conversation_id)
    conversation, held = await after(settings, conversation_id)
    assert (conversation.state, conversation.disposition) == ("closed", "abandoned")
    assert conversation.queue_id is None and held == []
    assert acd.contact_view(conversation_id) is None


async def test_a_queue_request_racing_the_close_leaves_nothing_queued(
    hub_server: TestServer, settings: Settings
) -> None:
    """The close has ended the contact and recorded the disposition, and is telling the
    hub, when the queue request gets the ACD's lock: it must see the conversation closed."""
    acd = hub_server.app[ACD]
    conversation_id = await queued_conversation(settings)
    await asyncio.gather(
        acd.close(conversation_id, "abandoned", by="caller"), acd.enqueue(conversation_id)
    )
    conversation, held = await after(settings, conversation_id)
    assert conversation.state == "closed" and conversation.queue_id is None and held == []
    assert acd.contact_view(conversation_id) is None
