"""Render ``kannel.conf`` for embedded mode (bearerbox + smsbox on loopback).

The SMSC link is the carrier's SMPP when ``SMPP_HOST`` is set, else Kannel's fake SMSC
(``smsc = fake``) which the handset network (``handset.py``) connects to.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from channel_connectors.sms.settings import ACCESS_LOG, SmsSettings

INBOUND_PATH = "/channels/sms/inbound"
DLR_PATH = "/channels/sms/dlr"
# Kannel's escapes: %p sender, %P receiver, %T unix time, %I Kannel's message id,
# %F the SMSC's message id, %c coding (0 GSM-7/text, 1 binary, 2 UCS-2), %C charset.
INBOUND_QUERY = "from=%p&to=%P&time=%T&id=%I&fid=%F&coding=%c&charset=%C"
# bearerbox's access log (it stamps each line with the time itself): what happened to
# each message and its binfo (the group sends' row and claim, campaigns/reconcile.py),
# never a phone number or a message's text.
ACCESS_LOG_FORMAT = "%l [SMSC:%i] [BINF:%B] [FID:%F] [flags:%m:%c:%M:%C:%d] [length:%L]"
# smsbox retries a callback (inbound SMS, delivery report) the hub did not take: every
# HTTP_QUEUE_DELAY seconds, HTTP_RETRIES times (a restarting hub misses nothing).
HTTP_RETRIES = 150
HTTP_QUEUE_DELAY = 2


def with_secret(url: str, secret: str) -> str:
    """``url`` with HTTP basic credentials ``kannel:<secret>`` (Kannel sends them)."""
    parts = urlsplit(url)
    netloc = f"kannel:{secret}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def inbound_url(settings: SmsSettings) -> str:
    return with_secret(
        f"{settings.public_url}{INBOUND_PATH}?{INBOUND_QUERY}", settings.inbound_secret
    )


def _q(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError("kannel.conf values may not contain quotes or newlines")
    return f'"{value}"'


def render(settings: SmsSettings, log_dir: Path) -> str:
    s = settings
    store = s.kannel_dir / "kannel.store"
    core = f"""group = core
admin-port = {s.admin_port}
admin-interface = 127.0.0.1
admin-password = {_q(s.admin_password)}
status-password = {_q(s.admin_password)}
admin-allow-ip = "127.0.0.1"
smsbox-port = {s.box_port}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = {_q(str(log_dir / "kannel-bearerbox.log"))}
log-level = 1
access-log = {_q(str(log_dir / ACCESS_LOG))}
access-log-format = {_q(ACCESS_LOG_FORMAT)}
store-type = file
store-location = {_q(str(store))}
dlr-storage = internal
"""
    if s.smpp_host:
        smsc = f"""
group = smsc
smsc = smpp
smsc-id = carrier
host = {s.smpp_host}
port = {s.smpp_port}
transceiver-mode = true
smsc-username = {_q(s.smpp_user)}
smsc-password = {_q(s.smpp_password)}
system-type = ""
source-addr-ton = 0
source-addr-npi = 1
dest-addr-ton = 1
dest-addr-npi = 1
enquire-link-interval = 30
reconnect-delay = 10
"""
    else:
        smsc = f"""
group = smsc
smsc = fake
smsc-id = fake
port = {s.fake_port}
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"
"""
    box = f"""
group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {s.box_port}
sendsms-port = {s.sendsms_port}
sendsms-interface = 127.0.0.1
log-file = {_q(str(log_dir / "kannel-smsbox.log"))}
log-level = 1
http-request-retry = {HTTP_RETRIES}
http-queue-delay = {HTTP_QUEUE_DELAY}
max-pending-requests = 512

group = sendsms-user
username = {_q(s.sendsms_user)}
password = {_q(s.sendsms_password)}
user-allow-ip = "127.0.0.1"
max-messages = {s.max_segments}
concatenation = true

group = sms-service
keyword = default
catch-all = true
concatenation = true
# Our HTTP answer must never go back to the citizen as an SMS.
max-messages = 0
post-url = {_q(inbound_url(s))}
"""
    return core + smsc + box


def write(settings: SmsSettings, log_dir: Path) -> Path:
    """Write ``var/kannel/kannel.conf`` (mode 0600: it holds the passwords)."""
    settings.kannel_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = settings.kannel_dir / "kannel.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render(settings, log_dir))
    return path
