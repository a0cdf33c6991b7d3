"""The output side of a channel, and the registry the hub delivers through.

Adding a channel means registering one more ``OutputChannel``; the hub never changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hotline.messages import Outbound
from hotline.store.models import ConversationState


class OutputChannel(ABC):
    """Delivers hub messages to citizens on one channel."""

    name: str

    @abstractmethod
    async def deliver(self, message: Outbound) -> None:
        """Send ``message``; it is already stored, so a failed delivery loses nothing."""

    async def state_changed(self, conversation_id: str, state: ConversationState) -> None:
        """Tell the citizen the conversation changed hands (queued, assigned, ...)."""

    async def queue_position(self, conversation_id: str, position: int, eta_seconds: int) -> None:
        """Tell a waiting citizen their place in the queue and the expected wait."""

    async def busy(self, conversation_id: str, busy: bool) -> None:
        """Show or hide a typing indicator; ``busy=False`` also marks the end of a turn."""

    @staticmethod
    def as_text(message: Outbound) -> str:
        """Fallback for channels without buttons: buttons become numbered lines."""
        if not message.buttons:
            return message.text
        lines = [f"{i}. {b.title}" for i, b in enumerate(message.buttons, 1)]
        return "\n".join([message.text, *lines])


class ChannelRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, OutputChannel] = {}

    def register(self, channel: OutputChannel) -> None:
        if channel.name in self._channels:
            raise ValueError(f"channel {channel.name!r} registered twice")
        self._channels[channel.name] = channel

    def get(self, name: str) -> OutputChannel | None:
        return self._channels.get(name)
