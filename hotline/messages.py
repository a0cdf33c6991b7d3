"""The message types every channel shares: one inbound shape, one outbound shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from hotline.lang import Lang
from hotline.store.models import AuthorKind


@dataclass(frozen=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True)
class Inbound:
    """A citizen's message as any connector hands it to the hub."""

    conversation_id: str
    client_id: str  # unique per conversation: the hub stores a resend only once
    text: str
    payload: str | None = None  # a button's payload, sent to the bot instead of the text
    lang: Lang | None = None  # the channel's hint, e.g. the widget's language toggle


@dataclass(frozen=True)
class Outbound:
    conversation_id: str
    author: AuthorKind
    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    message_id: int | None = None  # the stored transcript line (a channel may report on it)


@dataclass(frozen=True)
class Accepted:
    """The result of storing an inbound message."""

    message_id: int
    duplicate: bool
