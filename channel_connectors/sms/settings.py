"""The SMS channel's settings: ``HOTLINE_SMS_<KEY>`` or a ``[sms]`` TOML table."""

from __future__ import annotations

import ipaddress
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from hotline.config import (
    ConfigError,
    Settings,
    host_name,
    http_url,
    int_between,
    one_of,
    parse_section,
    secret_file,
)

# The embedded Kannel's access log, in the hub's log directory (conf.py renders it there).
ACCESS_LOG = "kannel-access.log"

KannelMode = Literal["embedded", "external", "off"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"


@dataclass(frozen=True)
class SmsSettings:
    """Validated settings; ``describe()`` is what ``hotline config`` prints."""

    kannel: KannelMode
    off_reason: str  # why the transport is off (kannel == "off")
    sendsms_url: str  # smsbox's /cgi-bin/sendsms
    sendsms_user: str
    sendsms_password: str
    inbound_secret: str
    inbound_allow: tuple[Network, ...]
    public_url: str  # how Kannel reaches the hub (delivery reports)
    sender: str  # the hotline's number on outbound SMS
    media: Literal["deferred", "chat"]
    max_segments: int
    rate_limit: int  # inbound messages per number ...
    rate_window: int  # ... per this many seconds
    # Embedded Kannel only.
    var_dir: Path
    bearerbox: str
    smsbox: str
    admin_port: int
    box_port: int
    sendsms_port: int
    fake_port: int
    admin_password: str
    # Group sends settle what a dead hub left mid-hand-off from bearerbox's status and
    # access log; both empty (an external Kannel that gives neither): they stay unknown.
    admin_url: str
    access_log: Path | None
    smpp_host: str
    smpp_port: int
    smpp_user: str
    smpp_password: str
    campaign: Any = None  # the group sends' settings (campaigns.CampaignSettings)

    SECRETS = frozenset({"sendsms_password", "inbound_secret", "admin_password", "smpp_password"})

    @property
    def kannel_dir(self) -> Path:
        return self.var_dir / "kannel"

    @property
    def handset_socket(self) -> Path:
        """The fake handset network's control socket (``hotline simulate sms``)."""
        return self.kannel_dir / "handset.sock"

    @property
    def fake_link(self) -> bool:
        """Embedded Kannel with the test SMSC instead of a carrier's SMPP link."""
        return self.kannel == "embedded" and not self.smpp_host

    @property
    def max_chars(self) -> int:
        """The longest text one outbound message carries: max_segments of UCS-2."""
        return self.max_segments * 67

    def describe(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.SECRETS:
                out[f.name] = "<set>" if value else "<unset>"
            elif f.name == "campaign":
                for key, item in (vars(value) if value is not None else {}).items():
                    out[f"campaign_{key}"] = str(item)
                continue
            elif f.name == "inbound_allow":
                out[f.name] = ",".join(str(n) for n in value)
            else:
                out[f.name] = str(value)
        return out


def _word(raw: str) -> str:
    if not raw or any(c.isspace() or c in "\"'#" for c in raw) or len(raw) > 64:
        raise ValueError("must be 1-64 characters without spaces or quotes")
    return raw


def _secret(raw: str) -> str:
    if len(raw) < 16 or any(c.isspace() or c in "\"'#:@/" for c in raw):
        raise ValueError("must be at least 16 characters without spaces, quotes, : @ or /")
    return raw


def _networks(raw: str) -> tuple[Network, ...]:
    items = [p.strip() for p in raw.split(",") if p.strip()]
    if not items:
        raise ValueError("must list at least one address or network")
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


def _number(raw: str) -> str:
    if not raw.lstrip("+").isdigit() or len(raw) > 20:
        raise ValueError("must be a phone number or short code of at most 20 digits")
    return raw


_PARSERS: dict[str, Callable[[str], Any]] = {
    "kannel": one_of("auto", "embedded", "external", "off"),
    "sendsms_url": http_url,
    "sendsms_user": _word,
    "sendsms_password": _secret,
    "inbound_secret": _secret,
    "inbound_allow": _networks,
    "public_url": http_url,
    "sender": _number,
    "media": one_of("deferred", "chat"),
    "max_segments": int_between(1, 255),
    "rate_limit": int_between(1, 10_000),
    "rate_window": int_between(1, 86_400),
    "bearerbox": str,
    "smsbox": str,
    "admin_port": int_between(1, 65535),
    "box_port": int_between(1, 65535),
    "sendsms_port": int_between(1, 65535),
    "fake_port": int_between(1, 65535),
    "admin_password": _secret,
    "admin_url": http_url,
    "access_log": Path,
    "smpp_host": host_name,
    "smpp_port": int_between(1, 65535),
    "smpp_user": _word,
    "smpp_password": _word,
}
KEYS = tuple(_PARSERS)


def load(section: Mapping[str, str], core: Settings) -> SmsSettings:
    values = parse_section("sms", section, _PARSERS, secrets=SmsSettings.SECRETS)

    bearerbox = values.get("bearerbox", BEARERBOX)
    smsbox = values.get("smsbox", SMSBOX)
    mode = values.pop("kannel", "auto")
    off_reason = ""
    if mode == "auto":
        installed = shutil.which(bearerbox) and shutil.which(smsbox)
        if installed:
            mode = "embedded"
        elif "sendsms_url" in values:
            mode = "external"
        else:
            mode, off_reason = "off", f"Kannel is not installed ({bearerbox} not found)"
    elif mode == "embedded" and not (shutil.which(bearerbox) and shutil.which(smsbox)):
        mode, off_reason = "off", f"Kannel is not installed ({bearerbox} not found)"
    elif mode == "off":
        off_reason = "SMS is off (HOTLINE_SMS_KANNEL=off)"

    var = core.var_dir
    sendsms_port = values.get("sendsms_port", 13013)
    admin_port = values.get("admin_port", 13000)
    if mode == "external":
        for key in ("sendsms_url", "sendsms_password", "inbound_secret"):
            if key not in values:
                raise ConfigError(
                    f"HOTLINE_SMS_{key.upper()}: required with HOTLINE_SMS_KANNEL=external"
                )
    else:
        values.setdefault("sendsms_url", f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms")
        values.setdefault("admin_url", f"http://127.0.0.1:{admin_port}")
        values.setdefault("access_log", var / "log" / ACCESS_LOG)

    def generated(key: str, file: str, what: str) -> None:
        if key not in values:
            values[key] = secret_file(var / file, lambda: secrets.token_urlsafe(24), what)

    if mode == "embedded":
        generated("sendsms_password", "kannel/sendsms-password", "the Kannel sendsms password")
        generated("inbound_secret", "sms-inbound-secret", "the SMS inbound secret")
        generated("admin_password", "kannel/admin-password", "the Kannel admin password")
    if bool(values.get("smpp_host")) != bool(values.get("smpp_user")):
        raise ConfigError("HOTLINE_SMS_SMPP_USER: set both SMPP_HOST and SMPP_USER, or neither")
    return SmsSettings(
        kannel=mode,
        off_reason=off_reason,
        sendsms_url=values["sendsms_url"],
        sendsms_user=values.get("sendsms_user", "hotline"),
        sendsms_password=values.get("sendsms_password", ""),
        inbound_secret=values.get("inbound_secret", ""),
        inbound_allow=values.get("inbound_allow")
        or (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")),
        public_url=values.get("public_url", core.public_origin),
        sender=values.get("sender", core.ivr_number),
        media=values.get("media", "deferred"),
        max_segments=values.get("max_segments", 10),
        rate_limit=values.get("rate_limit", 20),
        rate_window=values.get("rate_window", 60),
        var_dir=var,
        bearerbox=bearerbox,
        smsbox=smsbox,
        admin_port=admin_port,
        box_port=values.get("box_port", 13001),
        sendsms_port=sendsms_port,
        fake_port=values.get("fake_port", 13010),  # 10000 and up is Asterisk's RTP
        admin_password=values.get("admin_password", ""),
        admin_url=values.get("admin_url", ""),
        access_log=values.get("access_log"),
        smpp_host=values.get("smpp_host", ""),
        smpp_port=values.get("smpp_port", 2775),
        smpp_user=values.get("smpp_user", ""),
        smpp_password=values.get("smpp_password", ""),
    )
