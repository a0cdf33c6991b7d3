"""The ``Inbox`` the channels get: a narrow face of the hub and its conversation store.

It is bound to the hub once the core has started; channels receive it earlier, when
the application is built, and call it only while serving.
"""

from __future__ import annotations

from collections.abc import Sequence

from hotline import replies
from hotline.hub import Hub
from hotline.lang import Lang, parse
from hotline.messages import Accepted, Inbound
from hotline.ports import CaseAnswer, Filed, Handling, HistoryItem, Opened
from hotline.store.models import Conversation, ConversationState, Message


def _opened(conversation: Conversation, *, resumed: bool, token: str | None = None) -> Opened:
    return Opened(
        conversation_id=conversation.id,
        state=ConversationState(conversation.state),
        lang=parse(conversation.language) or "zh",
        resumed=resumed,
        resume_token=token,
    )


class HubInbox:
    """Implements :class:`hotline.ports.Inbox` over the running hub."""

    def __init__(self) -> None:
        self._hub: Hub | None = None

    def bind(self, hub: Hub) -> None:
        self._hub = hub

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the inbox is used before the hub started")
        return self._hub

    async def open(
        self,
        channel: str,
        lang: Lang,
        *,
        address: str | None = None,
        org_unit: str | None = None,
        intent: str | None = None,
    ) -> Opened:
        conversation, token = await self.hub.conversations.open(
            channel, lang, address, org_unit=org_unit, intent=intent
        )
        await self.hub.links.opened(conversation)  # the same number on voice and SMS
        return _opened(conversation, resumed=False, token=token)

    async def resume(self, token: str) -> Opened | None:
        conversation = await self.hub.conversations.resume(token)
        return _opened(conversation, resumed=True) if conversation is not None else None

    async def current(self, channel: str, address: str, lang: Lang) -> Opened:
        conversation = await self.hub.conversations.latest(channel, address)
        if conversation is not None:
            return _opened(conversation, resumed=True)
        return await self.open(channel, lang, address=address)

    async def address(self, conversation_id: str) -> str | None:
        return await self.hub.conversations.address(conversation_id)

    async def accept(self, inbound: Inbound) -> Accepted:
        return await self.hub.accept(inbound)

    def dispatch(self, inbound: Inbound, accepted: Accepted) -> None:
        self.hub.dispatch(inbound, accepted)

    async def record(self, inbound: Inbound) -> Accepted:
        accepted = await self.hub.accept(inbound)
        if not accepted.duplicate:
            async with self.hub.conversations.sessions() as session:
                message = await session.get(Message, accepted.message_id)
                if message is not None:
                    message.handled = True
                    await session.commit()
        return accepted

    async def submit(self, inbound: Inbound) -> Accepted:
        return await self.hub.submit(inbound)

    def greet(self, conversation_id: str) -> None:
        self.hub.greet(conversation_id)

    def position(self, conversation_id: str) -> tuple[int, int] | None:
        handoff = self.hub.handoff
        return handoff.position(conversation_id) if handoff is not None else None

    async def history(self, conversation_id: str) -> Sequence[HistoryItem]:
        rows = await self.hub.conversations.history(conversation_id, citizen_view=True)
        return [
            HistoryItem(
                author=m.author,
                text=m.text,
                at=m.created_at.isoformat(),
                buttons=tuple(m.buttons or ()),
                client_id=m.client_id,
            )
            for m in rows
        ]

    async def set_language(self, conversation_id: str, lang: Lang) -> None:
        await self.hub.conversations.set_language(conversation_id, lang)

    async def blocked(self, channel: str, address: str) -> bool:
        return await self.hub.conversations.blocked(channel, address)

    async def awaiting(self, conversation_id: str) -> str | None:
        return await self.hub.awaiting(conversation_id)

    async def state(self, conversation_id: str) -> Handling | None:
        conversation = await self.hub.conversations.get(conversation_id)
        if conversation is None:
            return None
        return Handling(
            ConversationState(conversation.state),
            conversation.handoff_reason,
            conversation.queue_id,
        )

    async def hand_off(self, conversation_id: str, reason: str) -> None:
        await self.hub.request_person(conversation_id, reason)

    async def lookup_case(self, code: str, pin: str, *, key: str, lang: Lang) -> CaseAnswer:
        result = await self.hub.tickets.lookup(code, pin, key)
        said = replies.case_status(result, lang)
        return CaseAnswer(result.outcome.value, said.text, said.buttons)

    async def leave_message(self, conversation_id: str, details: str) -> Filed:
        case = await self.hub.leave_message(conversation_id, details)
        return Filed(case.ticket_id, case.case_code, case.pin)

    async def rate(self, conversation_id: str, rating: int) -> None:
        await self.hub.rate(conversation_id, rating)

    async def end(self, conversation_id: str, disposition: str, *, by: str) -> bool:
        conversation = await self.hub.conversations.get(conversation_id)
        if conversation is None or conversation.state == ConversationState.CLOSED.value:
            return False
        if self.hub.handoff is None:  # no ACD (some tests): nobody else holds it
            await self.hub.set_state(conversation_id, ConversationState.CLOSED)
        else:
            await self.hub.handoff.close(conversation_id, disposition, by=by)
        return True
