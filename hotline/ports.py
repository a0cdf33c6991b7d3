"""The seam between the core and the channels.

A channel (``channel_connectors/<name>/``) turns its transport into ``Inbound`` messages
for the ``Inbox`` and delivers ``Outbound`` ones; it never sees the hub or the ORM's
conversation tables. It declares ``Capabilities``, and the core (ACD, console) branches
on those, never on a channel's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from hotline.lang import Lang
from hotline.messages import Accepted, Button, Inbound, Outbound
from hotline.store.models import ConversationState

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from hotline.config import Settings

# realtime: a call, one at a time per agent; chat: a live text session, several per
# agent up to the chat capacity; deferred: work that waits (email, SMS threads) and
# does not count against the chat capacity.
MediaKind = Literal["realtime", "chat", "deferred"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("realtime", "chat", "deferred")

# The kind of address a channel knows a citizen by. Contacts with the same phone
# address are one citizen on every phone channel (a caller who also texts); other
# kinds are joined only by a proof or by a supervisor (hotline.contacts).
AddressKind = Literal["phone", "email", "telegram", "browser"]


class InvalidInput(ValueError):
    """A citizen's message breaks a rule; ``code`` goes back to the sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Capabilities:
    """What a channel can carry; the ACD routes and the console renders by these."""

    media: MediaKind
    buttons: bool  # native buttons; otherwise they arrive as numbered lines
    attachments: bool = False
    max_length: int | None = None  # the longest text one outbound message may carry
    segmented: bool = False  # text goes out in billed segments (SMS): show the count
    delivery_reports: bool = False  # per-message delivery states, at
    # GET /api/channels/<name>/conversations/<id>/deliveries
    address: AddressKind = "browser"  # what the contact's external id is
    # Each message is a letter (an email): the whole matter at once. The bot reads it
    # once (hotline.letters) and answers from the knowledge base, files a report with
    # its case code and PIN, or leaves it to a person; it holds no dialogue by letter.
    letters: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "media": self.media,
            "buttons": self.buttons,
            "attachments": self.attachments,
            "max_length": self.max_length,
            "segmented": self.segmented,
            "delivery_reports": self.delivery_reports,
            "address": self.address,
            "letters": self.letters,
        }


@dataclass(frozen=True)
class Opened:
    """A conversation as the ``Inbox`` opened or found it for a channel."""

    conversation_id: str
    state: ConversationState
    lang: Lang
    resumed: bool
    resume_token: str | None = None  # only for a new conversation; only its hash is kept


@dataclass(frozen=True)
class HistoryItem:
    """One line of the transcript as the citizen may see it (no staff notes)."""

    author: str
    text: str
    at: str
    buttons: tuple[dict[str, str], ...] = ()
    client_id: str | None = None


@dataclass(frozen=True)
class Handling:
    """Where a conversation stands, for a channel that follows it (a caller on hold)."""

    state: ConversationState
    reason: str | None = None  # why it went to a person (the handoff reason)
    queue_id: str | None = None  # the queue it waits in, or was answered from


@dataclass(frozen=True)
class CaseAnswer:
    """The answer to a case-status lookup: the reply every channel gives
    (``hotline.replies.case_status``); a channel may render it (a phone speaks it)."""

    outcome: str  # found, no_match or locked
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Filed:
    """A citizen's message filed as a ``message`` ticket: what they follow it up with."""

    ticket_id: int
    case_code: str
    pin: str


@dataclass(frozen=True)
class Health:
    status: Literal["ok", "down", "off"]
    detail: str


class Inbox(Protocol):
    """What a channel may ask of the core. The core does all the writing."""

    async def open(
        self,
        channel: str,
        lang: Lang,
        *,
        address: str | None = None,
        org_unit: str | None = None,
        intent: str | None = None,
    ) -> Opened:
        """Start a new conversation (``address``: the citizen's number, mail, chat id).

        ``intent``: a topic the citizen chose before any dialogue (a phone menu's choice);
        it routes the conversation if it goes to a person.
        """
        ...

    async def resume(self, token: str) -> Opened | None:
        """The conversation a resume token belongs to, if any."""
        ...

    async def current(self, channel: str, address: str, lang: Lang) -> Opened:
        """The address's conversation on ``channel``: the open one, else a new one.

        For channels keyed on an address (SMS by phone number): every message from
        the same number continues the same conversation until it is closed.
        """
        ...

    async def address(self, conversation_id: str) -> str | None:
        """The citizen's address on the conversation's channel (where replies go)."""
        ...

    async def accept(self, inbound: Inbound) -> Accepted:
        """Validate and store a citizen's message; nothing is acted on before this.

        Raises ``InvalidInput`` (with a ``code``) for what no channel may send.
        """
        ...

    def dispatch(self, inbound: Inbound, accepted: Accepted) -> None:
        """Answer a stored message in the background, in order per conversation."""
        ...

    async def record(self, inbound: Inbound) -> Accepted:
        """Store a citizen's message that needs no answer (an opt-out, one over a rate
        limit): it is kept in the transcript and marked handled, so nothing replays it."""
        ...

    async def submit(self, inbound: Inbound) -> Accepted:
        """``accept`` then ``dispatch``."""
        ...

    def greet(self, conversation_id: str) -> None:
        """Have the bot open a new conversation with its greeting."""
        ...

    def position(self, conversation_id: str) -> tuple[int, int] | None:
        """(place in line, expected wait in seconds) while queued for a person."""
        ...

    async def history(self, conversation_id: str) -> Sequence[HistoryItem]:
        """The citizen's view of the transcript."""
        ...

    async def set_language(self, conversation_id: str, lang: Lang) -> None: ...

    # For channels that run part of the dialogue themselves (the phone's menus and
    # voicemail); what they need is still done by the core, as for the bot.
    async def blocked(self, channel: str, address: str) -> bool:
        """Whether staff blacklisted the citizen at ``address`` (a channel may turn them
        away at the door; the ACD refuses them a person in any case)."""
        ...

    async def awaiting(self, conversation_id: str) -> str | None:
        """The form field the bot just asked for, if any (a phone takes numbers by keys)."""
        ...

    async def state(self, conversation_id: str) -> Handling | None:
        """Where the conversation stands: its state, handoff reason and queue."""
        ...

    async def hand_off(self, conversation_id: str, reason: str) -> None:
        """Queue the conversation for a person with ``reason`` (the citizen asked, or the
        channel cannot carry on with the bot), through the hub and the ACD as the bot's
        handoff is. One already queued keeps its reason (the ACD takes it once); one with
        a person, or closed, stays as it is."""
        ...

    async def lookup_case(self, code: str, pin: str, *, key: str, lang: Lang) -> CaseAnswer:
        """Check a case code and PIN, throttled per code and per ``key`` (who asks: a
        conversation, a call), and give the status reply every channel gives."""
        ...

    async def leave_message(self, conversation_id: str, details: str) -> Filed:
        """File the citizen's message (nobody free, after hours) as a ``message`` ticket
        of the conversation; the channel tells the citizen its case code and PIN."""
        ...

    async def rate(self, conversation_id: str, rating: int) -> None:
        """Store the citizen's rating (1-3) of a closed conversation, for a channel that
        asks for it itself (the phone's survey)."""
        ...

    async def end(self, conversation_id: str, disposition: str, *, by: str) -> bool:
        """The citizen left (a caller hung up): close the conversation with
        ``disposition``, through the ACD (which frees an agent holding it and forgets the
        contact), unless it is closed already; ``True`` if it was open."""
        ...


class Channel(ABC):
    """A channel's output side, as the hub delivers through it.

    Every method but ``deliver`` has a default, so a text-only channel stays small.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @abstractmethod
    async def deliver(self, message: Outbound) -> None:
        """Send ``message``; it is already stored, so a failed delivery loses nothing."""

    async def state_changed(self, conversation_id: str, state: ConversationState) -> None:
        """Tell the citizen the conversation changed hands (queued, assigned, ...)."""

    async def queue_position(self, conversation_id: str, position: int, eta_seconds: int) -> None:
        """Tell a waiting citizen their place in the queue and the expected wait."""

    async def busy(self, conversation_id: str, busy: bool) -> None:
        """Show or hide a typing indicator; ``busy=False`` also marks the end of a turn."""

    async def start(self, runtime: ChannelRuntime) -> None:
        """Begin work that needs the running core (pollers, schedulers, servers)."""

    async def stop(self) -> None:
        """Stop what ``start`` began; called before the core shuts down."""

    async def health(self) -> Health:
        """How the channel's transport is doing, for ``/healthz``."""
        return Health("ok", "ok")

    def how_to_try(self, origin: str) -> str | None:
        """One line ``make run`` prints: how a newcomer reaches the hotline this way."""
        return None

    @staticmethod
    def as_text(message: Outbound) -> str:
        """Fallback for channels without buttons: buttons become numbered lines."""
        if not message.buttons:
            return message.text
        lines = [f"{i}. {b.title}" for i, b in enumerate(message.buttons, 1)]
        return "\n".join([message.text, *lines])


@runtime_checkable
class CallControl(Protocol):
    """What a realtime channel lets staff do to a live call (optional for a channel)."""

    def call_state(self, conversation_id: str) -> str | None:
        """``queued``, ``ringing``, ``talking`` ... while the call lasts; None once it ended."""
        ...

    async def hang_up(self, conversation_id: str, by: str) -> bool:
        """End the agent's side; False if the call had already ended."""
        ...

    async def transfer_out(self, conversation_id: str, number: str, by: str) -> bool:
        """Blind-transfer the caller to an outside number; False if the call had ended."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """A channel that can send a one-off notice to an address it may not have heard from
    (optional for a channel): e.g. SMS to a reporter's phone when their case changes."""

    notice_address: ClassVar[str]  # the kind of address it reaches: "phone", "email"

    async def send_notice(self, address: str, text: str) -> bool:
        """Send ``text``; False when the address opted out or the send failed."""
        ...


@dataclass(frozen=True)
class PhoneCredentials:
    endpoint: str
    password: str
    digest_ha1: str  # the only part that is stored
    realm: str


class PhoneDesk(Protocol):
    """The phone line as the staff API uses it: agents' phones and call recordings."""

    @property
    def sip_server(self) -> str:
        """``host:port`` where agents' phones register."""
        ...

    def endpoint_of(self, username: str) -> str: ...

    def new_phone(self, username: str) -> PhoneCredentials: ...

    async def phone_online(self, endpoint: str) -> bool: ...

    async def phones_changed(self) -> None:
        """Re-render the agents' endpoints from the user table (a phone was issued)."""
        ...

    def recording_file(self, file: str | None, recording_id: str) -> tuple[Path, bytes]:
        """Where a sealed recording lies and the key that opens it."""
        ...

    def speech_summary(self) -> str: ...


@dataclass(frozen=True)
class ChannelContext:
    """What a channel gets when the application is built (before it starts)."""

    inbox: Inbox
    core: Settings
    app: web.Application  # for the channel's own routes


@dataclass(frozen=True)
class ChannelRuntime:
    """What a channel gets once the core runs.

    ``sessions`` is for the channel's *own* tables (delivery reports, opt-outs, sends);
    conversations, contacts and messages are the core's, written through the ``Inbox``.
    """

    sessions: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    extra: Mapping[str, Any] = field(default_factory=dict)


class ChannelModule(Protocol):
    """What ``channel_connectors/<name>/__init__.py`` exports."""

    NAME: str

    def load_settings(self, section: Mapping[str, str], core: Settings) -> Any:
        """Validate the channel's settings section; raise ``ConfigError`` naming the key."""
        ...

    def setup(self, context: ChannelContext, settings: Any) -> Channel:
        """Build the channel: add its routes, return its output side."""
        ...
