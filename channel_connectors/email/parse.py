"""A raw RFC 5322 message into a ``Letter``: who, which thread, the new text, the files.

Only what the citizen wrote this time reaches the bot and the transcript: quoted history
and signatures are cut by mail-parser-reply (plus the ``在……写道：`` line of Chinese
webmail it does not know), and HTML becomes text with inscriptis. Mail that nobody
should answer automatically (auto-replies, bounces, lists) is marked ``automatic``
with the reason, so no reply loop can start. Nothing here logs or raises with content.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.utils import getaddresses, parseaddr

from inscriptis import get_text
from mailparser_reply.parser import EmailMessage as ReplyParser

MAX_SUBJECT = 255
MAX_IDS = 30  # References kept per letter: a long thread's newest ids are enough
_ID = re.compile(r"<([^<>\s]{1,250})>")
_ZH_WROTE = re.compile(
    r"^\s*>?\s*(在|於|于)?.{0,80}\d{4}\s*年.{0,80}(写道|寫道)\s*[:：]?\s*$", re.M
)
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_ROBOTS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)([+-].*)?$")


class BadLetter(ValueError):
    """The message cannot be read as a letter (``code`` says why, without content)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # as declared; checked against the bytes by attachments.check
    data: bytes


@dataclass(frozen=True)
class Letter:
    message_id: str  # without <>; made from the bytes when the sender gave none
    sender: str  # the From address, lower-cased (where replies go)
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # what is new in this letter: no quoted history, no signature
    attachments: tuple[Attachment, ...]
    automatic: str | None  # why no automatic reply may go back (None: a person wrote)
    language: str | None  # Content-Language, a hint until the text says otherwise
    unreadable: str | None = None  # bad_text: the text cannot be stored as written

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The ids this letter answers, nearest first."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


def key_of(message_id: str) -> str:
    """The index key of a Message-ID (ids compare case-sensitively, but whitespace not)."""
    return hashlib.sha256(message_id.strip().encode("utf-8", "replace")).hexdigest()


def read_letter(raw: bytes, *, own_address: str) -> Letter:
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        sender = _sender(message)
        message_id = _ids(_header(message, "Message-ID"))
        subject = " ".join(_header(message, "Subject").split())[:MAX_SUBJECT]
        in_reply_to = _ids(_header(message, "In-Reply-To"))
        references = _ids(_header(message, "References"))[-MAX_IDS:]
        unreadable = None
        try:
            text = new_text(_body(message))
        except UnicodeError:
            text, unreadable = "", "bad_text"
        attachments = tuple(_attachments(message))
        language = _header(message, "Content-Language").split(",")[0].strip() or None
    except BadLetter:
        raise
    except Exception as exc:  # the email package raises many kinds on hostile input
        raise BadLetter(
            "unreadable", f"the message could not be parsed ({type(exc).__name__})"
        ) from None
    return Letter(
        message_id=message_id[0] if message_id else "generated-" + hashlib.sha256(raw).hexdigest(),
        sender=sender,
        subject=subject,
        in_reply_to=in_reply_to,
        references=references,
        text=text,
        attachments=attachments,
        automatic=_automatic(message, sender, own_address),
        language=language,
        unreadable=unreadable,
    )


def new_text(text: str) -> str:
    """The latest reply in ``text``: quoted history, reply headers and signature cut."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    found = _ZH_WROTE.search(text)
    if found is not None:
        text = text[: found.start()]
    # keep_hyphen_lists: a "- item" line is a list the citizen wrote, not a signature.
    replies = ReplyParser(text=text, languages=["zh", "en"], keep_hyphen_lists=True).read().replies
    body = replies[0].body if replies else text
    lines = body.split("\n")
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        lines.pop()  # a quote the parser left at the end
    return "\n".join(lines).strip()


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return str(value) if value is not None else ""


def _ids(value: str) -> tuple[str, ...]:
    return tuple(_ID.findall(value))


def _sender(message: EmailMessage) -> str:
    pairs = getaddresses([_header(message, "From")])
    address = pairs[0][1] if pairs else ""
    if not address:
        address = parseaddr(_header(message, "Sender"))[1]
    address = address.strip().lower()
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, TypeError):
        raise BadLetter("bad_sender", "the From address is not a mail address") from None
    if not parsed.username or "." not in parsed.domain or len(address) > 128:
        raise BadLetter("bad_sender", "the From address is not a mail address")
    return address


def _body(message: EmailMessage) -> str:
    """The text part, or the HTML one as text when the text part is missing or blank.

    UTF-8 that is not UTF-8 (lone surrogates, CESU-8) and NUL raise ``UnicodeError``: no
    database stores them, and guessing would change what the citizen wrote; other
    charsets are decoded leniently (Chinese mail often mislabels GBK), as clients do."""
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        if part is None:
            continue
        content = _decoded(part)
        if kind == "html":
            content = get_text(content)
        if content.strip():
            return content
    return ""


def _decoded(part: MIMEPart) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = (part.get_content_charset() or "us-ascii").lower()
    if charset in ("utf-8", "utf8", "us-ascii", "ascii"):
        content = payload.decode("utf-8")  # strict: raises UnicodeDecodeError
    else:
        try:
            content = payload.decode(charset, "replace")
        except LookupError:  # an unknown charset
            content = payload.decode("utf-8", "replace")
    if "\x00" in content:
        raise UnicodeError("NUL in the text")
    return content


def _attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for part in message.iter_attachments():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        name = part.get_filename() or "attachment"
        name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip()[:200] or "attachment"
        found.append(Attachment(name, part.get_content_type()[:100], data))
    return found


def _automatic(message: EmailMessage, sender: str, own_address: str) -> str | None:
    """Why this letter must get no automatic reply (RFC 3834 and common practice)."""
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return "auto_submitted"
    if _header(message, "Precedence").strip().lower() in _AUTO_PRECEDENCE:
        return "precedence"
    if any(k.lower().startswith("list-") for k in message.keys()):
        return "mailing_list"
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond"):
        return "auto_submitted"
    suppress = _header(message, "X-Auto-Response-Suppress").lower()
    if "all" in suppress or "oof" in suppress or "autoreply" in suppress:
        return "auto_submitted"
    if message.get_content_type() == "multipart/report":
        return "bounce"
    if _header(message, "Return-Path").strip() == "<>":
        return "bounce"
    if _ROBOTS.match(sender.split("@", 1)[0]):
        return "robot_sender"
    if sender == own_address.lower():
        return "own_address"
    return None
