"""Agents' phones: one PJSIP endpoint per agent, rendered from the user table.

An agent's softphone or desk phone registers as ``agent_<username>`` with a password that
is shown once when an admin issues it. Only the digest HA1 (MD5 of
``endpoint:realm:password``) is stored: it is what Asterisk's ``md5_cred`` needs and it
does not give the password away.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.store.models import User

REALM = "hotline"
AGENTS_FILE = "pjsip_agents.conf"
_UNSAFE = re.compile(r"[^a-z0-9_.-]")


def endpoint_name(username: str) -> str:
    """The agent's SIP user and endpoint id (safe in a PJSIP section name)."""
    return "agent_" + _UNSAFE.sub("_", username.lower())[:48]


def digest_ha1(endpoint: str, password: str) -> str:
    return hashlib.md5(f"{endpoint}:{REALM}:{password}".encode()).hexdigest()  # noqa: S324


def new_password() -> str:
    return secrets.token_urlsafe(15)


@dataclass(frozen=True)
class Phone:
    endpoint: str
    ha1: str


async def phones(session: AsyncSession) -> list[Phone]:
    """Every active user who has been issued a phone."""
    users = (
        await session.execute(
            select(User).where(User.active.is_(True), User.sip_ha1.is_not(None)).order_by(User.id)
        )
    ).scalars()
    return [Phone(endpoint_name(u.username), u.sip_ha1 or "") for u in users]


async def endpoint_of(session: AsyncSession, agent_id: str) -> str | None:
    """The endpoint that rings the agent's phone; ``None`` if they were issued none."""
    user = await session.get(User, agent_id)
    if user is None or user.sip_ha1 is None:
        return None
    return endpoint_name(user.username)


def render(entries: list[Phone]) -> str:
    """The endpoints, auths and AORs; agents' phones may only be called, not call out."""
    parts = ["; Rendered by hotline from the user table (one phone per agent).\n"]
    for phone in entries:
        name = phone.endpoint
        parts.append(
            f"""
[{name}]
type = endpoint
context = agent-phones
disallow = all
allow = ulaw,alaw
auth = {name}
aors = {name}
dtmf_mode = rfc4733
direct_media = no
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes

[{name}]
type = auth
auth_type = md5
realm = {REALM}
username = {name}
md5_cred = {phone.ha1}

[{name}]
type = aor
max_contacts = 1
remove_existing = yes
qualify_frequency = 0
"""
        )
    return "".join(parts)


def write(etc_dir: Path, text: str) -> bool:
    """Write the agents' file (0600) if it changed; says whether it did."""
    target = etc_dir / AGENTS_FILE
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    etc_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    return True
