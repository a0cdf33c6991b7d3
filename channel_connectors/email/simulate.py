"""``hotline simulate email``: a citizen who writes to the hotline's mailbox.

The letter goes in over SMTP (the embedded mail system's, or the one set), exactly as
a mail client would send it; the replies are read over IMAP from the citizen's own
mailbox on the embedded mail system, where the hub's answers arrive. Each reply is one
JSON line with its subject; the exit code is 0 when at least one came within
``--wait``, else 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import sys
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from channel_connectors.email.imap import ImapMailbox, MailboxError
from channel_connectors.email.mailsystem import unavailable
from channel_connectors.email.settings import load
from channel_connectors.email.smtp import SendError, SmtpSubmission
from hotline.config import ConfigError, Settings

HELP = "write to the hotline's mailbox as a citizen (through the embedded mail system)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="sender", required=True, help="the citizen's address")
    parser.add_argument("--subject", default="", help="the letter's subject")
    parser.add_argument("--text", required=True, help="the letter's text")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for replies")
    parser.add_argument(
        "--quiet", type=float, default=3.0, help="stop this many seconds after the last reply"
    )


async def run(args: argparse.Namespace, core: Settings) -> int:
    try:
        mail = load(core.channel_sections.get("email", {}), core, dovecot_missing=unavailable())
    except ConfigError as exc:
        print(f"simulate email: {exc}", file=sys.stderr)
        return 2
    if mail.server != "embedded":
        print(
            "simulate email: needs the embedded mail system (HOTLINE_EMAIL_SERVER=embedded or "
            f"auto with Dovecot installed); now: {mail.server} {mail.off_reason}".rstrip(),
            file=sys.stderr,
        )
        return 2
    if "@" not in args.sender or any(c.isspace() for c in args.sender):
        print("simulate email: --from must be a mail address", file=sys.stderr)
        return 2
    letter = EmailMessage()
    letter["From"] = args.sender
    letter["To"] = mail.address
    letter["Subject"] = args.subject
    letter["Date"] = formatdate(localtime=True)
    letter["Message-ID"] = make_msgid(domain=args.sender.rsplit("@", 1)[1])
    letter.set_content(args.text)
    mailbox = ImapMailbox(
        mail.imap_host, mail.imap_port, args.sender, mail.imap_password, tls="none", timeout=30.0
    )
    replies = 0
    try:
        await mailbox.connect()
        seen = {f.uid for f in await mailbox.fetch_unseen(1000)}
        await SmtpSubmission(
            mail.smtp_host, mail.smtp_port, None, None, tls="none", timeout=30.0
        ).send(letter)
        deadline = time.monotonic() + args.wait
        while (left := deadline - time.monotonic()) > 0:
            fresh = [f for f in await mailbox.fetch_unseen(1000) if f.uid not in seen]
            for item in fresh:
                seen.add(item.uid)
                await mailbox.mark_seen(item.uid)
                reply = email.message_from_bytes(item.raw, policy=email.policy.default)
                assert isinstance(reply, EmailMessage)
                body = reply.get_body(preferencelist=("plain",))
                text = body.get_content() if isinstance(body, EmailMessage) else ""
                subject = str(reply.get("Subject", ""))
                line = {"channel": "email", "subject": subject, "text": text.strip()}
                print(json.dumps(line, ensure_ascii=False), flush=True)
                replies += 1
            if not fresh:
                if not await mailbox.wait_for_mail(min(left, args.quiet) if replies else left):
                    if replies:
                        break
    except (MailboxError, SendError, OSError) as exc:
        print(
            f"simulate email: the mail system did not answer ({exc}); is `make run` running?",
            file=sys.stderr,
        )
        return 1
    except asyncio.CancelledError:
        raise
    finally:
        await mailbox.close()
    return 0 if replies else 1
