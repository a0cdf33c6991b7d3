"""Sending mail by SMTP submission (aiosmtplib).

``SmtpSubmission.send()`` opens one connection per message (replies are rare next to
the cost of a held connection going stale) and raises ``SendError``: ``permanent`` when
the server refused the message itself with a 5xx (sender, recipients, content), which
retrying cannot fix; otherwise (no connection, timeouts, 4xx, authentication or TLS
problems, which a fixed configuration or a later try can cure) it is temporary. Reasons
carry the reply codes only, never an address or content.
"""

from __future__ import annotations

import email.message
import re
import socket
from typing import Literal

import aiosmtplib

Tls = Literal["none", "starttls", "tls"]
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


class SendError(Exception):
    """A message was not sent; ``permanent`` says whether trying again is pointless."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


def _code_text(code: int, message: str) -> str:
    """``550 5.1.1`` from a reply, without the server's free text (it may echo addresses)."""
    m = _ENHANCED.match(message or "")
    return f"{code} {m.group(1)}" if m else str(code)


class SmtpSubmission:
    """An SMTP submission server to send through, with optional AUTH and TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        *,
        tls: Tls,
        timeout: float,
        helo: str | None = None,
    ) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"tls must be none, starttls or tls, not {tls!r}")
        if (user is None) != (password is None):
            raise ValueError("give both the SMTP user and password, or neither")
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.tls: Tls = tls
        self.timeout = timeout
        # socket.getfqdn() (aiosmtplib's default) may wait on DNS; the host name does not.
        self.helo = helo or socket.gethostname() or "localhost"

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.user,
            password=self.password,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",
            local_hostname=self.helo,
            timeout=self.timeout,
        )

    async def send(self, message: email.message.EmailMessage) -> None:
        """Send one message to the recipients in its To/Cc/Bcc headers."""
        client = self._client()
        try:
            async with client:
                refused, _ = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendError(
                "recipients refused: "
                + ", ".join(_code_text(r.code, r.message) for r in exc.recipients[:5]),
                permanent=bool(codes) and all(500 <= c < 600 for c in codes),
            ) from None
        except (
            aiosmtplib.SMTPSenderRefused,
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            stage = {
                aiosmtplib.SMTPSenderRefused: "sender refused",
                aiosmtplib.SMTPRecipientRefused: "recipient refused",
            }.get(type(exc), "message refused")
            raise SendError(
                f"{stage}: {_code_text(exc.code, exc.message)}",
                permanent=500 <= exc.code < 600,
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SendError(
                f"authentication failed: {_code_text(exc.code, exc.message)}", permanent=False
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SendError(
                f"server refused: {_code_text(exc.code, exc.message)}", permanent=False
            ) from None
        except aiosmtplib.SMTPNotSupported:
            raise SendError(
                "the server lacks a needed extension (STARTTLS?)", permanent=False
            ) from None
        except aiosmtplib.SMTPTimeoutError:
            raise SendError("timed out", permanent=False) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"connection failed: {type(exc).__name__}", permanent=False) from None
        except ValueError:
            # aiosmtplib found no sender or no recipient in the headers.
            raise SendError("the message has no sender or no recipient", permanent=True) from None
        if refused:
            codes = [r.code for r in refused.values()]
            raise SendError(
                f"{len(refused)} recipient(s) refused: "
                + ", ".join(_code_text(r.code, r.message) for r in list(refused.values())[:5]),
                permanent=all(500 <= c < 600 for c in codes),
            )
