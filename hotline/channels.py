"""The registry the hub delivers through: one ``Channel`` per channel name.

Adding a channel means registering one more ``Channel``; the hub never changes.
"""

from __future__ import annotations

from collections.abc import Iterator

from hotline.ports import Capabilities, Channel


class ChannelRegistry:
    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}

    def register(self, channel: Channel) -> None:
        if channel.name in self._channels:
            raise ValueError(f"channel {channel.name!r} registered twice")
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def capabilities(self, name: str) -> Capabilities | None:
        channel = self._channels.get(name)
        return channel.capabilities if channel is not None else None

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self._channels.values()))
