"""Who is the same citizen: contacts on several channels joined into one person.

A ``Contact`` is a citizen as one channel knows them (a browser, a phone number, a
mailbox, a Telegram chat). Contacts that share ``person_id`` are one person, and the
agent's screen pop and the ACD's caller history (``earlier_conversations``) span them.

Contacts join a person three ways, each recorded in ``contact_link`` and audited:

* ``phone``: a contact on a channel whose address is a phone number (voice, SMS) joins
  the person of another phone contact with the same number, when it opens a
  conversation. It is implied by the number, so it needs no proof.
* ``proof``: the citizen types ``/link <email or phone>`` (``link …``, ``绑定 …``) in a
  conversation with the bot; a 6-digit code goes to that address through the channel
  that sends notices there (``hotline.ports.Notifier``), and typing it back in the same
  conversation joins the two contacts. Email and Telegram identities join only this way
  or by a supervisor.
* ``supervisor``: staff link two contacts through the API.

Any link can be undone by staff (``unlink``). An undone ``phone`` link is remembered:
the contact is kept apart from the automatic join from then on, so the number does not
silently redo what a person undid; a proof or a supervisor can still link it again.

Addresses and codes never reach a log or the audit trail: codes are kept as an HMAC, a
proof's address only until the proof is settled, and replies show addresses masked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from hotline.audit import record
from hotline.channels import ChannelRegistry
from hotline.lang import Lang
from hotline.messages import Button, Inbound
from hotline.ports import Channel, Notifier
from hotline.store.models import (
    AuthorKind,
    Contact,
    ContactLink,
    ContactProof,
    Conversation,
    Message,
    new_id,
    utcnow,
)
from hotline.texts import say

log = logging.getLogger(__name__)

CODE_TTL = dt.timedelta(minutes=15)
MAX_TRIES = 5  # wrong codes before a proof is dead
MAX_CODES = 3  # codes one contact may ask for per CODE_WINDOW
CODE_WINDOW = dt.timedelta(hours=1)

_COMMAND = re.compile(r"^\s*(?:/link|link|绑定)[\s\u3000]+(\S+)\s*$", re.IGNORECASE)
_CODE = re.compile(r"^\d{6}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$")
_NUMBER = re.compile(r"^\+?\d{3,20}$")
_MAINLAND = re.compile(r"^(?:0086|86)(1\d{10})$")
_PHONE_ARG = re.compile(r"^\+?[\d\s()-]{7,30}$")


def phone_key(raw: str) -> str | None:
    """A phone number as contacts on every phone channel are matched by; None for what
    is not a number (a withheld caller id).

    Mainland mobiles lose the country code (``+8613800000001`` and ``13800000001`` are
    one number, as the SMS channel keys them); other numbers are their digits.
    """
    value = re.sub(r"[\s()-]", "", raw)
    if not _NUMBER.match(value):
        return None
    digits = value.lstrip("+")
    mainland = _MAINLAND.match(digits)
    return mainland.group(1) if mainland else digits


@dataclass(frozen=True)
class Address:
    """An address a citizen claims: its kind (as ``Notifier.notice_address``) and value."""

    kind: str
    value: str

    def masked(self) -> str:
        """What replies show: enough to recognise it, not enough to read it off a screen."""
        if self.kind == "email":
            local, _, domain = self.value.partition("@")
            return f"{local[:1]}***@{domain}"
        return self.value[:3] + "****" + self.value[-4:] if len(self.value) > 7 else "****"


def parse_address(text: str) -> Address | None:
    """An email address or a phone number, normalised; None for anything else."""
    if _EMAIL.fullmatch(text):  # lower-cased whole, as the email channel keys senders
        return Address("email", text.lower())
    if _PHONE_ARG.fullmatch(text):
        key = phone_key(text)
        if key is not None and len(key) >= 7:
            return Address("phone", key)
    return None


def person_contacts(contact_id: str) -> Any:
    """SQL: the ids of the contacts that are the same citizen as ``contact_id`` (itself
    included), for ``Conversation.contact_id.in_(...)``."""
    own = aliased(Contact)
    person = select(own.person_id).where(own.id == contact_id).scalar_subquery()
    return select(Contact.id).where(
        or_(
            Contact.id == contact_id,
            and_(Contact.person_id.is_not(None), Contact.person_id == person),
        )
    )


class Emit(Protocol):
    """How the link command answers: the hub's ``emit`` (stored, then delivered)."""

    async def __call__(
        self,
        conversation: Conversation,
        author: AuthorKind,
        text: str,
        buttons: tuple[Button, ...] = (),
        *,
        stored_text: str | None = None,
    ) -> None: ...


class AlreadyLinked(Exception):
    """The two contacts are one person already (or one contact)."""


class ContactLinks:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: ChannelRegistry,
        secret_key: bytes,
        emit: Emit,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._key = hmac.new(secret_key, b"contact-proof", hashlib.sha256).digest()
        self._emit = emit

    # ------------------------------------------------------------- phone join
    async def opened(self, conversation: Conversation) -> None:
        """A conversation was opened: a contact on a phone channel joins the person of
        the other phone contacts with its number (unless staff undid that before)."""
        capabilities = self._channels.capabilities(conversation.channel)
        if capabilities is None or capabilities.address != "phone":
            return
        async with self._sessions() as session:
            contact = await session.get(Contact, conversation.contact_id)
            if contact is None:
                return
            if contact.phone_key is None:
                contact.phone_key = phone_key(contact.external_id)
            if await self._phone_join(session, contact):
                log.info("contact joined by number", extra={"contact_id": contact.id})
            await session.commit()

    async def _phone_join(self, session: AsyncSession, contact: Contact) -> bool:
        if contact.phone_key is None or contact.person_id is not None:
            return False
        if await _kept_apart(session, contact.id):
            return False
        candidates = list(
            (
                await session.execute(
                    select(Contact)
                    .where(
                        Contact.phone_key == contact.phone_key,
                        Contact.id != contact.id,
                        ~_undone_phone(Contact.id),
                    )
                    .order_by(Contact.person_id.is_(None), Contact.created_at, Contact.id)
                )
            ).scalars()
        )
        if not candidates:
            return False
        await self._join(session, candidates[0], contact, "phone", "system", None)
        return True

    # ------------------------------------------------------------ linking
    async def link(
        self, contact_id: str, other_id: str, *, how: str, by: str, conversation_id: str | None
    ) -> None:
        """Make two contacts one person (merging their persons); raises ``AlreadyLinked``
        or ``LookupError`` (no such contact)."""
        async with self._sessions() as session:
            contact = await session.get(Contact, contact_id)
            other = await session.get(Contact, other_id)
            if contact is None or other is None:
                raise LookupError("no such contact")
            if not await self._join(session, contact, other, how, by, conversation_id):
                raise AlreadyLinked
            await session.commit()

    async def _join(
        self,
        session: AsyncSession,
        contact: Contact,
        other: Contact,
        how: str,
        by: str,
        conversation_id: str | None,
    ) -> bool:
        """Join ``other`` to ``contact``'s person (in the session, audited); False if they
        are one person already."""
        if contact.id == other.id or (
            contact.person_id is not None and contact.person_id == other.person_id
        ):
            return False
        now = utcnow()
        person = contact.person_id or other.person_id or new_id()

        def new_row(member: Contact) -> None:
            session.add(
                ContactLink(
                    contact_id=member.id,
                    person_id=person,
                    how=how,
                    by=by,
                    at=now,
                    conversation_id=conversation_id,
                )
            )

        if contact.person_id is not None and other.person_id is not None:
            # Two persons become one: the other's members move over as they were linked;
            # the contact just linked gets a row saying how it was this time.
            old = other.person_id
            await session.execute(
                update(Contact).where(Contact.person_id == old).values(person_id=person)
            )
            await session.execute(
                update(ContactLink)
                .where(ContactLink.person_id == old, ContactLink.ended.is_(None))
                .values(person_id=person)
            )
            await _end_row(session, other.id, "merged", by, now)
            other.person_id = person
            new_row(other)
        else:
            for member in (contact, other):
                if member.person_id is None:
                    member.person_id = person
                    new_row(member)
        await session.flush()
        record(
            session,
            by,
            "contact.link",
            "contact",
            other.id,
            other=contact.id,
            how=how,
            person=person,
            conversation_id=conversation_id,
        )
        return True

    async def unlink(self, contact_id: str, *, by: str) -> bool:
        """Take the contact out of its person (audited); False if it was in none. The
        last contact left in a person is a person of its own again."""
        async with self._sessions() as session:
            contact = await session.get(Contact, contact_id)
            if contact is None or contact.person_id is None:
                return False
            now = utcnow()
            person = contact.person_id
            how = await _end_row(session, contact.id, "undone", by, now)
            contact.person_id = None
            await session.flush()
            rest = list(
                (
                    await session.execute(select(Contact).where(Contact.person_id == person))
                ).scalars()
            )
            if len(rest) == 1:
                await _end_row(session, rest[0].id, "alone", by, now)
                rest[0].person_id = None
            record(session, by, "contact.unlink", "contact", contact.id, how=how, person=person)
            await session.commit()
        log.info("contact unlinked", extra={"contact_id": contact_id})
        return True

    async def links_of(self, session: AsyncSession, contact: Contact) -> list[dict[str, Any]]:
        """The person's other contacts and how each was linked (for the screen pop): no
        addresses, only channels."""
        if contact.person_id is None:
            return []
        rows = (
            await session.execute(
                select(Contact, ContactLink)
                .outerjoin(
                    ContactLink,
                    and_(ContactLink.contact_id == Contact.id, ContactLink.ended.is_(None)),
                )
                .where(Contact.person_id == contact.person_id, Contact.id != contact.id)
                .order_by(Contact.created_at, Contact.id)
            )
        ).all()
        return [
            {
                "contact_id": member.id,
                "channel": member.channel,
                "how": row.how if row else None,
                "at": row.at.isoformat() if row else None,
                "by": row.by if row else None,
            }
            for member, row in rows
        ]

    # ------------------------------------------------------------ the command
    async def take(self, conversation: Conversation, inbound: Inbound, lang: Lang) -> bool:
        """Answer ``/link <address>`` or ``/link <code>`` (and ``link``, ``绑定``) typed in
        a conversation with the bot; False for any other message."""
        if inbound.payload is not None:
            return False
        found = _COMMAND.fullmatch(inbound.text)
        if found is None:
            return False
        argument = found.group(1)
        if _CODE.fullmatch(argument):
            await self._redact(conversation, inbound, say("pin_placeholder", lang))
            await self._confirm(conversation, argument, lang)
            return True
        address = parse_address(argument)
        if address is not None:
            await self._redact(conversation, inbound, address.masked())
            await self._start(conversation, address, lang)
        else:
            await self._reply(conversation, "link_bad_address", lang)
        return True

    async def _reply(self, conversation: Conversation, key: str, lang: Lang, **values: Any) -> None:
        await self._emit(conversation, AuthorKind.SYSTEM, say(key, lang, **values))

    async def _redact(self, conversation: Conversation, inbound: Inbound, shown: str) -> None:
        """The transcript keeps the command, not the code or the address it carried."""
        async with self._sessions() as session:
            await session.execute(
                update(Message)
                .where(
                    Message.conversation_id == conversation.id,
                    Message.client_id == inbound.client_id,
                    Message.sealed.is_(None),
                )
                .values(text=f"/link {shown}")
            )
            await session.commit()

    def _notifier(self, kind: str) -> Channel | None:
        """The channel that sends notices to addresses of ``kind`` (SMS for phones, the
        email channel for mailboxes), if one is running."""
        for channel in self._channels:
            if isinstance(channel, Notifier) and channel.notice_address == kind:
                return channel
        return None

    def _digest(self, proof_id: str, code: str) -> str:
        return hmac.new(self._key, f"{proof_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def _start(self, conversation: Conversation, address: Address, lang: Lang) -> None:
        masked = address.masked()
        channel = self._notifier(address.kind)
        if channel is None:
            await self._reply(
                conversation, "link_no_channel", lang, kind=say(f"link_kind_{address.kind}", lang)
            )
            return
        now = utcnow()
        code = f"{secrets.randbelow(1_000_000):06d}"
        async with self._sessions() as session:
            contact = await session.get(Contact, conversation.contact_id)
            if contact is None:
                return
            recent = await session.scalar(
                select(func.count())
                .select_from(ContactProof)
                .where(
                    ContactProof.contact_id == contact.id,
                    ContactProof.created_at > now - CODE_WINDOW,
                )
            )
            if (recent or 0) >= MAX_CODES:
                minutes = int(CODE_WINDOW.total_seconds() // 60)
                await self._reply(conversation, "link_rate_limited", lang, minutes=minutes)
                return
            target = await _find_target(session, channel.name, address)
            if target is not None and (
                target.id == contact.id
                or (target.person_id is not None and target.person_id == contact.person_id)
            ):
                await self._reply(conversation, "link_already", lang, address=masked)
                return
            await session.execute(
                update(ContactProof)
                .where(ContactProof.contact_id == contact.id, ContactProof.state == "open")
                .values(state="replaced", address=None, code_hash=None)
            )
            proof = ContactProof(
                id=new_id(),
                contact_id=contact.id,
                conversation_id=conversation.id,
                kind=address.kind,
                channel=channel.name,
                address=address.value,
                tries=0,
                state="open",
                created_at=now,
                expires_at=now + CODE_TTL,
            )
            proof.code_hash = self._digest(proof.id, code)
            session.add(proof)
            await session.commit()
        minutes = int(CODE_TTL.total_seconds() // 60)
        assert isinstance(channel, Notifier)
        text = say("link_code_notice", lang, code=code, minutes=minutes)
        try:
            sent = await channel.send_notice(address.value, text)
        except Exception as exc:  # the message may name the address: only its type is logged
            log.warning(
                "link code not sent", extra={"proof_id": proof.id, "error": type(exc).__name__}
            )
            sent = False
        if not sent:
            await self._settle(proof.id, "failed")
            await self._reply(conversation, "link_send_failed", lang, address=masked)
            return
        log.info(
            "link code sent",
            extra={"conversation_id": conversation.id, "proof_id": proof.id, "kind": address.kind},
        )
        await self._reply(conversation, "link_code_sent", lang, address=masked, minutes=minutes)

    async def _settle(self, proof_id: str, state: str) -> None:
        async with self._sessions() as session:
            proof = await session.get(ContactProof, proof_id)
            if proof is not None:
                proof.state, proof.address, proof.code_hash = state, None, None
                await session.commit()

    async def _confirm(self, conversation: Conversation, code: str, lang: Lang) -> None:
        now = utcnow()
        async with self._sessions() as session:
            proof = await session.scalar(
                select(ContactProof)
                .where(ContactProof.conversation_id == conversation.id)
                .order_by(ContactProof.created_at.desc(), ContactProof.id)
                .limit(1)
            )
            if proof is None or proof.state not in ("open", "exhausted", "expired"):
                await self._reply(conversation, "link_no_pending", lang)
                return
            if proof.state == "exhausted":
                await self._reply(conversation, "link_too_many", lang)
                return
            if proof.state == "expired" or now >= proof.expires_at:
                proof.state, proof.address, proof.code_hash = "expired", None, None
                await session.commit()
                await self._reply(conversation, "link_expired", lang)
                return
            good = proof.code_hash is not None and hmac.compare_digest(
                self._digest(proof.id, code), proof.code_hash
            )
            if not good:
                proof.tries += 1
                left = MAX_TRIES - proof.tries
                if left <= 0:
                    proof.state, proof.address, proof.code_hash = "exhausted", None, None
                await session.commit()
                log.info("wrong link code", extra={"proof_id": proof.id, "tries": proof.tries})
                if left <= 0:
                    await self._reply(conversation, "link_too_many", lang)
                else:
                    await self._reply(conversation, "link_wrong_code", lang, left=left)
                return
            assert proof.address is not None
            address = Address(proof.kind, proof.address)
            contact = await session.get(Contact, proof.contact_id)
            target = await _find_target(session, proof.channel, address)
            if target is None:
                target = Contact(
                    id=new_id(),
                    channel=proof.channel,
                    external_id=address.value,
                    phone_key=address.value if address.kind == "phone" else None,
                )
                session.add(target)
                await session.flush()
            await self._phone_join(session, target)
            proof.state, proof.address, proof.code_hash = "linked", None, None
            if contact is not None:
                await self._join(session, contact, target, "proof", "citizen", conversation.id)
            await session.commit()
        log.info("contacts linked by proof", extra={"proof_id": proof.id})
        await self._reply(conversation, "link_done", lang, address=address.masked())


async def _find_target(session: AsyncSession, channel: str, address: Address) -> Contact | None:
    """The contact the address is on the notifying channel, if it exists yet."""
    match = Contact.external_id == address.value
    if address.kind == "phone":
        match = or_(match, Contact.phone_key == address.value)
    return await session.scalar(
        select(Contact)
        .where(Contact.channel == channel, match)
        .order_by(Contact.created_at)
        .limit(1)
    )


def _undone_phone(contact_id: Any) -> Any:
    """SQL: staff undid this contact's phone link once (keep it apart from the number)."""
    return exists().where(
        ContactLink.contact_id == contact_id,
        ContactLink.how == "phone",
        ContactLink.ended == "undone",
    )


async def _kept_apart(session: AsyncSession, contact_id: str) -> bool:
    return bool(await session.scalar(select(_undone_phone(contact_id))))


async def _end_row(
    session: AsyncSession, contact_id: str, why: str, by: str, now: dt.datetime
) -> str | None:
    """End the contact's open link row; returns how it had been linked."""
    row = await session.scalar(
        select(ContactLink).where(ContactLink.contact_id == contact_id, ContactLink.ended.is_(None))
    )
    if row is None:
        return None
    row.ended, row.ended_at, row.ended_by = why, now, by
    return row.how
