"""Staff accounts: argon2 passwords, sessions, login throttling, the admin bootstrap.

Sessions are random cookie values of which only the SHA-256 is stored, so a copy of
the database does not let anyone sign in. Sign-in is throttled per user name and per
client address on ``lookup_throttle`` rows; an unknown user name costs the same
argon2 time as a known one, so timing does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import math
import os
import re
import secrets
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.audit import record
from hotline.clientip import bucket
from hotline.config import Settings
from hotline.orgs import ROOT_UNIT
from hotline.roles import TAKES_CONTACTS
from hotline.store.models import (
    AgentStatus,
    LookupThrottle,
    OrgUnit,
    Queue,
    QueueMember,
    Role,
    User,
    UserSession,
    utcnow,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "hotline_session"
USERNAME_RE = re.compile(r"^[a-z0-9_.-]{3,32}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes anything; there is no reason to hash a megabyte
MAX_DISPLAY_NAME = 100
CAPACITY_RANGE = (1, 10)
# last_seen_at is refreshed at most this often, so a busy console is not a write per request.
TOUCH_EVERY = dt.timedelta(seconds=60)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
_ROLES = frozenset(r.value for r in Role)

# argon2id with the library's defaults (RFC 9106 low-memory profile). Changing these
# makes ``login`` rehash each password the next time it is used.
_hasher = PasswordHasher()
# Verified against when the user name is unknown, so both cases cost the same.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(18))


class AccountError(ValueError):
    """An account request is invalid; ``field`` names the culprit, ``code`` the API error."""

    def __init__(self, field: str, message: str, code: str = "bad_request") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code


# ------------------------------------------------------------------ passwords
def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError("password", f"must be at most {MAX_PASSWORD} characters")


def _secret_bytes(password: str) -> bytes:
    # JSON can carry lone surrogates; plain UTF-8 would raise on them. Identical bytes
    # to strict UTF-8 for every proper string, so existing hashes stay valid.
    return password.encode("utf-8", "surrogatepass")


async def hash_password(password: str) -> str:
    """An argon2id hash (``$argon2id$…``), computed off the event loop."""
    return str(await asyncio.to_thread(_hasher.hash, _secret_bytes(password)))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, _secret_bytes(password)))
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash (unknown user) spend the same time and say no."""
    ok = await asyncio.to_thread(_verify, password_hash or _DUMMY_HASH, password[:MAX_PASSWORD])
    return ok and password_hash is not None and len(password) <= MAX_PASSWORD


def needs_rehash(password_hash: str) -> bool:
    try:
        return bool(_hasher.check_needs_rehash(password_hash))
    except (InvalidHashError, ValueError):
        return True


# ------------------------------------------------------------------ accounts
async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role | str,
    org_unit_id: str = ROOT_UNIT,
    display_name: str | None = None,
    capacity: int = 3,
) -> User:
    """Validate and add a user (flushed, not committed); agents join the default queues.

    Raises :class:`AccountError` (code ``exists`` for a taken user name).
    """
    if not USERNAME_RE.fullmatch(username):
        raise AccountError("username", "must be 3-32 characters of a-z, 0-9, _ . -")
    check_password_rules(password)
    try:
        role = Role(role)
    except ValueError as exc:
        raise AccountError("role", "must be one of " + ", ".join(r.value for r in Role)) from exc
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
        raise AccountError("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if not CAPACITY_RANGE[0] <= capacity <= CAPACITY_RANGE[1]:
        raise AccountError("capacity", "must be between {} and {}".format(*CAPACITY_RANGE))
    if await session.get(OrgUnit, org_unit_id) is None:
        raise AccountError("org_unit", "no such org unit")
    taken = await session.scalar(select(User.id).where(User.username == username))
    if taken is not None:
        raise AccountError("username", "is taken", code="exists")
    user = User(
        username=username,
        password_hash=await hash_password(password),
        role=role.value,
        org_unit_id=org_unit_id,
        display_name=display_name,
        capacity=capacity,
        active=True,
    )
    session.add(user)
    await session.flush()
    if role in TAKES_CONTACTS:  # a presence row, and the default queues
        await ensure_agent(session, user)
    return user


async def ensure_agent(session: AsyncSession, user: User) -> None:
    """Give an agent or supervisor a presence row (offline) and join the default queues."""
    if await session.get(AgentStatus, user.id) is None:
        session.add(AgentStatus(user_id=user.id, presence="offline", since=utcnow()))
    defaults = (await session.execute(select(Queue.id).where(Queue.is_default))).scalars()
    for queue_id in list(defaults):
        if await session.get(QueueMember, (user.id, queue_id)) is not None:
            continue
        last = await session.scalar(
            select(func.max(QueueMember.position)).where(QueueMember.queue_id == queue_id)
        )
        session.add(
            QueueMember(
                user_id=user.id,
                queue_id=queue_id,
                penalty=0,
                schedule=None,
                position=0 if last is None else last + 1,
            )
        )
    await session.flush()


async def set_password(
    session: AsyncSession, user: User, password: str, *, keep_session: str | None = None
) -> None:
    """Change a password and sign the user out everywhere except ``keep_session``."""
    check_password_rules(password)
    user.password_hash = await hash_password(password)
    await drop_sessions(session, user.id, except_hash=keep_session)


async def deactivate_user(session: AsyncSession, user: User) -> None:
    """Refuse further sign-ins, end every session and take the agent offline."""
    user.active = False
    await drop_sessions(session, user.id)
    status = await session.get(AgentStatus, user.id)
    if status is not None and status.presence != "offline":
        status.presence, status.reason, status.since = "offline", "deactivated", utcnow()


async def drop_sessions(
    session: AsyncSession, user_id: str, *, except_hash: str | None = None
) -> None:
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if except_hash is not None:
        query = query.where(UserSession.token_hash != except_hash)
    await session.execute(query)


# ------------------------------------------------------------------ sessions
@dataclass(frozen=True, slots=True)
class NewSession:
    """A fresh session: ``token`` goes into the cookie once and is never stored."""

    token: str
    csrf: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A valid session as resolved from a cookie."""

    user: User
    csrf: str
    token_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(session: AsyncSession, user: User) -> NewSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        UserSession(
            token_hash=token_hash(token),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
        )
    )
    await session.flush()
    return NewSession(token, csrf)


def _limits(settings: Settings) -> tuple[dt.timedelta, dt.timedelta]:
    return (
        dt.timedelta(minutes=settings.session_idle_minutes),
        dt.timedelta(hours=settings.session_absolute_hours),
    )


async def resolve_session(
    sessions: async_sessionmaker[Any], settings: Settings, token: str
) -> SessionInfo | None:
    """The session behind a cookie value, or None; expired sessions are deleted here."""
    if not _TOKEN_RE.fullmatch(token):
        return None
    digest = token_hash(token)
    idle, absolute = _limits(settings)
    now = utcnow()
    async with sessions() as session:
        row = (
            await session.execute(
                select(UserSession, User)
                .join(User, User.id == UserSession.user_id)
                .where(UserSession.token_hash == digest)
            )
        ).one_or_none()
        if row is None:
            return None
        stored, user = row
        if (
            not user.active
            or now - stored.last_seen_at > idle
            or now - stored.created_at > absolute
            or user.role not in _ROLES
        ):
            await session.delete(stored)
            await session.commit()
            return None
        if now - stored.last_seen_at >= TOUCH_EVERY:
            stored.last_seen_at = now
            await session.commit()
        return SessionInfo(user, stored.csrf_token, digest)


async def close_session(sessions: async_sessionmaker[Any], token: str, *, actor: str) -> bool:
    """Sign out: delete the session behind a cookie value (audited). False if none."""
    if not _TOKEN_RE.fullmatch(token):
        return False
    async with sessions() as session:
        stored = await session.get(UserSession, token_hash(token))
        if stored is None:
            return False
        await session.delete(stored)
        record(session, actor, "logout", "user", stored.user_id)
        await session.commit()
        return True


async def _purge_expired(session: AsyncSession, settings: Settings) -> None:
    idle, absolute = _limits(settings)
    now = utcnow()
    await session.execute(
        delete(UserSession).where(
            or_(UserSession.last_seen_at < now - idle, UserSession.created_at < now - absolute)
        )
    )


# ------------------------------------------------------------------ sign-in
@dataclass(frozen=True, slots=True)
class LoginOk:
    user: User
    session: NewSession


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """Wrong name or password: deliberately one answer for both."""


@dataclass(frozen=True, slots=True)
class LoginLocked:
    retry_after: int  # seconds


LoginResult = LoginOk | LoginFailed | LoginLocked


def throttle_keys(username: str, ip: str | None) -> tuple[str, str]:
    """The ``lookup_throttle`` keys of a sign-in: per user name, per client address.

    ``ip`` is the client's address as ``hotline.clientip`` found it (the auth middleware
    resolves trusted proxies); an IPv6 client counts per /64, like every per-address limit.
    """
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"login-u:{digest}", f"login-ip:{bucket(ip)}"


class _KeyLocks:
    """In-process locks per throttle key, so parallel guesses are counted one by one.

    ``SELECT … FOR UPDATE`` does the same across processes on PostgreSQL; SQLite has
    no row locks, and the hub is one process, so this closes the gap there.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, keys: Sequence[str]) -> AsyncIterator[None]:
        locks = []
        for key in sorted(keys):
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = asyncio.Lock()
            locks.append(lock)
        for lock in locks:
            await lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()


_key_locks = _KeyLocks()


async def login(
    sessions: async_sessionmaker[Any],
    settings: Settings,
    username: str,
    password: str,
    ip: str | None,
) -> LoginResult:
    """Check credentials under the throttle; on success open a session (committed)."""
    name = username.strip().lower()
    keys = throttle_keys(name, ip)
    async with _key_locks.hold(keys):
        for _attempt in range(3):
            try:
                return await _login(sessions, settings, name, password, ip, keys)
            except IntegrityError:  # a parallel process created the same throttle row
                continue
    raise RuntimeError("sign-in throttle kept conflicting")


async def _login(
    sessions: async_sessionmaker[Any],
    settings: Settings,
    name: str,
    password: str,
    ip: str | None,
    keys: tuple[str, str],
) -> LoginResult:
    now = utcnow()
    lock_for = dt.timedelta(minutes=settings.login_lock_minutes)
    async with sessions() as session:
        rows = [await session.get(LookupThrottle, key, with_for_update=True) for key in keys]
        locked = [r.locked_until for r in rows if r and r.locked_until and r.locked_until > now]
        if locked:
            await session.commit()
            return LoginLocked(_seconds(max(locked) - now))
        user = None
        if USERNAME_RE.fullmatch(name):  # anything else can't exist; don't send it to SQL
            user = await session.scalar(select(User).where(User.username == name))
        ok = await verify_password(user.password_hash if user else None, password)
        if user is not None and ok and user.active:
            user_row = rows[0]
            if user_row is not None:
                await session.delete(user_row)
            if needs_rehash(user.password_hash):
                user.password_hash = await hash_password(password)
            await _purge_expired(session, settings)
            new = await open_session(session, user)
            record(session, user.username, "login", "user", user.id, ip=ip)
            await session.commit()
            return LoginOk(user, new)

        lock_until = None
        for i, key in enumerate(keys):
            row = rows[i]
            if row is None:
                row = LookupThrottle(key=key, failures=0)
                session.add(row)
            if row.last_failure is not None and now - row.last_failure > lock_for:
                row.failures = 0
            row.failures = (row.failures or 0) + 1
            row.last_failure = now
            if row.failures >= settings.login_attempts:
                row.failures, row.locked_until = 0, now + lock_for
                lock_until = row.locked_until
                log.warning("sign-in locked", extra={"by": key.split(":", 1)[0]})
        # A typed-in password sometimes lands in the name field: only log known names.
        actor = user.username if user is not None else "?" + keys[0].split(":", 1)[1][:12]
        record(session, actor, "login_failed", "user", user.id if user else "-", ip=ip)
        await session.commit()
        if lock_until is not None:
            return LoginLocked(_seconds(lock_until - now))
        return LoginFailed()


def _seconds(delta: dt.timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


# ------------------------------------------------------------------ bootstrap
ADMIN_USERNAME = "admin"
GENERATED_ADMIN_FILE = "admin-password"


def _generated_password(path: Path) -> str:
    """Read the generated admin password, creating it (mode 0600) on first use."""
    if path.exists():
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= MIN_PASSWORD:
            return value
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    return value


async def bootstrap_admin(sessions: async_sessionmaker[Any], settings: Settings) -> None:
    """Create ``admin`` when no user exists yet, so a fresh install can be signed into.

    The password is ``HOTLINE_ADMIN_PASSWORD``; without it an embedded (SQLite) install
    generates one into ``var/admin-password``, and a PostgreSQL install creates nobody
    (there are no default credentials). An existing admin's password is never changed.
    """
    async with sessions() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return
        password = settings.admin_password
        if not password:
            if not settings.embedded:
                log.warning(
                    "no staff account exists and HOTLINE_ADMIN_PASSWORD is not set: "
                    "nobody can sign in to the console until it is"
                )
                return
            path = settings.var_dir / GENERATED_ADMIN_FILE
            password = await asyncio.to_thread(_generated_password, path)
            log.warning("created console user 'admin' with a generated password; it is in %s", path)
        user = await create_user(
            session,
            username=ADMIN_USERNAME,
            password=password,
            role=Role.ADMIN,
            org_unit_id=ROOT_UNIT,
            display_name="Administrator",
        )
        record(session, "system", "user.create", "user", user.id, username=ADMIN_USERNAME)
        try:
            await session.commit()
        except IntegrityError:  # another process bootstrapped at the same moment
            await session.rollback()
            return
    log.info("bootstrap admin created", extra={"user_id": user.id})
