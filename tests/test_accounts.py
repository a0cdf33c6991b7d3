"""Staff sign-in: passwords, session cookies, CSRF, timeouts, throttling and the bootstrap.

Everything goes through the real app on a real port; rows are aged or inspected
directly in the database. Runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from argon2 import PasswordHasher
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import AuditLog, LookupThrottle, User, UserSession, utcnow
from hotline.web import create_app

ADMIN_PASSWORD = "admin-password-for-tests"
COOKIE = "hotline_session"


@pytest.fixture
def staff_settings(settings: Settings) -> Settings:
    return replace(settings, admin_password=ADMIN_PASSWORD)


Start = Callable[[Settings], Awaitable[str]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start the hub with given settings; returns its base URL. Stopped after the test."""
    servers: list[TestServer] = []

    async def run(settings: Settings) -> str:
        server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield run
    for server in servers:
        await server.close()


@pytest.fixture
async def base(start: Start, staff_settings: Settings) -> str:
    return await start(staff_settings)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def db_run(settings: Settings, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run ``work`` in a committed session on the test database."""
    engine = make_engine(settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


async def login(
    http: aiohttp.ClientSession, base: str, username: str = "admin", password: str = ADMIN_PASSWORD
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(
        f"{base}/api/login", json={"username": username, "password": password}
    ) as resp:
        return resp.status, await resp.json(), resp


def cookie_value(http: aiohttp.ClientSession) -> str:
    return next(c.value for c in http.cookie_jar if c.key == COOKIE)


async def test_login_sets_a_hardened_cookie_and_me_returns_the_csrf(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    status, body, resp = await login(http, base)
    assert status == 200
    assert body["user"]["username"] == "admin" and body["user"]["role"] == "admin"
    assert body["user"]["org_unit_id"] == "default"
    assert set(body["user"]) == {"id", "username", "role", "org_unit_id", "display_name"}
    header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "="))
    attrs = {part.strip().split("=")[0].lower(): part for part in header.split(";")}
    assert "httponly" in attrs
    assert attrs["samesite"].strip() == "SameSite=Strict"
    assert attrs["path"].strip() == "Path=/"
    assert attrs["max-age"].strip() == f"Max-Age={12 * 3600}"
    assert "secure" not in attrs  # HOTLINE_COOKIE_SECURE is off by default
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 200
        me = await resp.json()
    assert me["csrf"] == body["csrf"] and me["user"] == body["user"]

    # Only the SHA-256 of the cookie is stored.
    token = cookie_value(http)
    rows = await db_run(
        staff_settings, lambda s: _all(s, select(UserSession.token_hash, UserSession.csrf_token))
    )
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), body["csrf"])]


async def _all(session: AsyncSession, query: Any) -> list[Any]:
    return [tuple(row) for row in (await session.execute(query)).all()]


async def test_secure_cookie_when_configured(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(replace(staff_settings, cookie_secure=True))
    status, _, resp = await login(http, base)
    assert status == 200
    header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(COOKIE + "="))
    assert "Secure" in header


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("admin", "wrong-password-123"),
        ("nobody", ADMIN_PASSWORD),
        ("ADMIN\x00", "x"),
        ("\ud800admin", "\udfff" * 12),  # lone surrogates: valid JSON, invalid UTF-8
        ("x" * 10_000, "y" * 10_000),
    ],
)
async def test_bad_credentials(
    base: str, http: aiohttp.ClientSession, username: str, password: str
) -> None:
    status, body, _ = await login(http, base, username, password)
    assert status == 401 and body["error"] == "bad_credentials"
    assert body["message_zh"]
    assert COOKIE not in {c.key for c in http.cookie_jar}
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthenticated"


async def test_username_is_case_insensitive(base: str, http: aiohttp.ClientSession) -> None:
    status, _, _ = await login(http, base, " Admin ", ADMIN_PASSWORD)
    assert status == 200


async def test_csrf_is_required_on_mutations(base: str, http: aiohttp.ClientSession) -> None:
    _, body, _ = await login(http, base)
    async with http.post(f"{base}/api/logout") as resp:
        assert resp.status == 403
        assert (await resp.json())["error"] == "csrf"
    async with http.post(f"{base}/api/logout", headers={"X-CSRF-Token": "forged"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"] == "csrf"
    for method in ("PUT", "PATCH", "DELETE"):
        async with http.request(method, f"{base}/api/users/x", json={}) as resp:
            assert resp.status == 403, method
    async with http.get(f"{base}/api/me") as resp:  # reads need no token
        assert resp.status == 200
    async with http.post(f"{base}/api/logout", headers={"X-CSRF-Token": body["csrf"]}) as resp:
        assert resp.status == 200


async def test_mutation_without_session_is_401(base: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{base}/api/users", json={}, headers={"X-CSRF-Token": "x"}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "unauthenticated"
    async with http.get(f"{base}/api/kb/search?q=test") as resp:  # still public
        assert resp.status == 200


async def test_logout_invalidates_the_session_server_side(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    _, body, _ = await login(http, base)
    token = cookie_value(http)
    async with http.post(f"{base}/api/logout", headers={"X-CSRF-Token": body["csrf"]}) as resp:
        assert resp.status == 200
    assert await db_run(staff_settings, lambda s: _all(s, select(UserSession.token_hash))) == []
    # Replaying the old cookie (as a stolen copy would) is refused.
    async with aiohttp.ClientSession() as other:
        async with other.get(f"{base}/api/me", headers={"Cookie": f"{COOKIE}={token}"}) as resp:
            assert resp.status == 401


async def test_a_new_login_replaces_the_browsers_old_session(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    await login(http, base)
    first = cookie_value(http)
    await login(http, base)
    assert cookie_value(http) != first
    rows = await db_run(staff_settings, lambda s: _all(s, select(UserSession.token_hash)))
    assert rows == [(hashlib.sha256(cookie_value(http).encode()).hexdigest(),)]


async def _age_sessions(settings: Settings, **values: dt.datetime) -> None:
    async def work(session: AsyncSession) -> None:
        await session.execute(update(UserSession).values(**values))

    await db_run(settings, work)


async def test_idle_timeout(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    await login(http, base)
    # Just inside the idle window: still valid, and the request refreshes last_seen_at.
    await _age_sessions(staff_settings, last_seen_at=utcnow() - dt.timedelta(minutes=29))
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 200
    seen = await db_run(staff_settings, lambda s: s.scalar(select(UserSession.last_seen_at)))
    assert utcnow() - seen < dt.timedelta(seconds=30)
    await _age_sessions(staff_settings, last_seen_at=utcnow() - dt.timedelta(minutes=31))
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 401
    # Expired rows are deleted when seen.
    assert await db_run(staff_settings, lambda s: _all(s, select(UserSession.token_hash))) == []


async def test_last_seen_is_written_at_most_once_a_minute(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    await login(http, base)
    marker = utcnow() - dt.timedelta(seconds=20)
    await _age_sessions(staff_settings, last_seen_at=marker)
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 200
    seen = await db_run(staff_settings, lambda s: s.scalar(select(UserSession.last_seen_at)))
    assert abs((seen - marker).total_seconds()) < 1


async def test_absolute_timeout(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    await login(http, base)
    await _age_sessions(
        staff_settings,
        created_at=utcnow() - dt.timedelta(hours=12, minutes=1),
        last_seen_at=utcnow(),
    )
    async with http.get(f"{base}/api/me") as resp:
        assert resp.status == 401
    assert await db_run(staff_settings, lambda s: _all(s, select(UserSession.token_hash))) == []


async def test_login_lock_per_username_then_right_password_is_refused(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(replace(staff_settings, login_attempts=3, login_lock_minutes=15))
    assert (await login(http, base, "admin", "wrong-password-1"))[0] == 401
    assert (await login(http, base, "admin", "wrong-password-2"))[0] == 401
    status, body, resp = await login(http, base, "admin", "wrong-password-3")
    assert (status, body["error"]) == (429, "too_many_attempts")
    assert 14 * 60 < int(resp.headers["Retry-After"]) <= 15 * 60
    status, body, resp = await login(http, base)
    assert status == 429 and int(resp.headers["Retry-After"]) > 0
    # Forget the address counter: the user name alone still holds the lock.
    await db_run(
        staff_settings,
        lambda s: s.execute(delete(LookupThrottle).where(LookupThrottle.key.like("login-ip:%"))),
    )
    assert (await login(http, base))[0] == 429
    # Once the lock has passed, the right password works again.
    await db_run(
        staff_settings,
        lambda s: s.execute(
            update(LookupThrottle).values(locked_until=utcnow() - dt.timedelta(seconds=1))
        ),
    )
    assert (await login(http, base))[0] == 200


async def test_login_lock_per_client_address(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(replace(staff_settings, login_attempts=3))
    for name in ("alice", "bob", "carol"):  # three names, one address
        await login(http, base, name, "wrong-password-x")
    status, body, _ = await login(http, base)
    assert (status, body["error"]) == (429, "too_many_attempts")


async def test_success_resets_the_username_counter(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(replace(staff_settings, login_attempts=3))
    await login(http, base, "admin", "wrong-password-1")
    await login(http, base, "admin", "wrong-password-2")
    assert (await login(http, base))[0] == 200
    rows = dict(
        await db_run(
            staff_settings, lambda s: _all(s, select(LookupThrottle.key, LookupThrottle.failures))
        )
    )
    assert not any(k.startswith("login-u:") for k in rows)
    assert [v for k, v in rows.items() if k.startswith("login-ip:")] == [2]


async def test_unknown_user_costs_the_same_argon2_time(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(replace(staff_settings, login_attempts=100))

    async def timed(username: str) -> float:
        began = time.perf_counter()
        assert (await login(http, base, username, "wrong-password-9"))[0] == 401
        return time.perf_counter() - began

    known = statistics.median([await timed("admin") for _ in range(5)])
    unknown = statistics.median([await timed("no-such-user") for _ in range(5)])
    # Without the dummy hash an unknown name would answer in a few ms (ratio ~0.03);
    # the bounds are loose because other work may share the CPU.
    assert 0.33 < unknown / known < 3, (known, unknown)


async def test_passwords_are_argon2id_and_rehashed_when_parameters_change(
    base: str, http: aiohttp.ClientSession, staff_settings: Settings
) -> None:
    stored = await db_run(staff_settings, lambda s: s.scalar(select(User.password_hash)))
    assert stored.startswith("$argon2id$")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(ADMIN_PASSWORD)
    await db_run(staff_settings, lambda s: s.execute(update(User).values(password_hash=weak)))
    assert (await login(http, base))[0] == 200
    rehashed = await db_run(staff_settings, lambda s: s.scalar(select(User.password_hash)))
    assert rehashed != weak and rehashed.startswith("$argon2id$") and "t=1," not in rehashed


async def test_bootstrap_admin_from_the_environment_only_once(
    start: Start, staff_settings: Settings, http: aiohttp.ClientSession
) -> None:
    base = await start(staff_settings)
    assert (await login(http, base))[0] == 200
    audit = await db_run(staff_settings, lambda s: _all(s, select(AuditLog.action)))
    assert ("user.create",) in audit
    # A later start with another password does not touch the existing admin.
    again = await start(
        replace(staff_settings, admin_password="another-password-42", http_port=_port())
    )
    assert (await login(http, again, "admin", "another-password-42"))[0] == 401
    assert (await login(http, again))[0] == 200


def _port() -> int:
    from tests.conftest import free_port

    return free_port()


async def test_bootstrap_without_a_password(
    start: Start,
    settings: Settings,
    http: aiohttp.ClientSession,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Embedded: a generated password in var/admin-password (0600). PostgreSQL: nobody."""
    caplog.set_level(logging.INFO)
    configured = replace(settings, admin_password="", var_dir=tmp_path)
    base = await start(configured)
    secret = tmp_path / "admin-password"
    if configured.embedded:
        assert secret.exists() and (os.stat(secret).st_mode & 0o777) == 0o600
        password = secret.read_text().strip()
        assert len(password) >= 12
        assert str(secret) in caplog.text and password not in caplog.text
        assert (await login(http, base, "admin", password))[0] == 200
    else:
        assert not secret.exists()
        assert "HOTLINE_ADMIN_PASSWORD" in caplog.text
        assert await db_run(configured, lambda s: _all(s, select(User.id))) == []
        assert (await login(http, base, "admin", "admin"))[0] == 401


async def test_passwords_and_tokens_never_reach_the_logs_or_the_audit(
    base: str,
    http: aiohttp.ClientSession,
    staff_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    agent_password = "agent-secret-password-1"
    typo = "fat-fingered-password-in-the-name-field"
    await login(http, base, typo, "whatever-it-was-12")
    await login(http, base, "admin", "wrong-admin-password")
    _, body, _ = await login(http, base)
    headers = {"X-CSRF-Token": body["csrf"]}
    async with http.post(
        f"{base}/api/users",
        json={"username": "agent7", "password": agent_password, "role": "agent"},
        headers=headers,
    ) as resp:
        assert resp.status == 201
        user_id = (await resp.json())["user"]["id"]
    new_password = "agent-new-password-2"
    async with http.patch(
        f"{base}/api/users/{user_id}", json={"password": new_password}, headers=headers
    ) as resp:
        assert resp.status == 200
    token = cookie_value(http)
    audit = await db_run(
        staff_settings, lambda s: _all(s, select(AuditLog.actor, AuditLog.action, AuditLog.detail))
    )
    actions = [a for _, a, _ in audit]
    assert {"login", "login_failed", "user.create", "user.update"} <= set(actions)
    for secret in (ADMIN_PASSWORD, agent_password, new_password, typo, token, body["csrf"]):
        assert secret not in repr(audit)
    for secret in (ADMIN_PASSWORD, agent_password, new_password, typo, token):
        assert secret not in caplog.text
    # aiosqlite's DEBUG tracing echoes every bound SQL parameter (the CSRF token is one);
    # everything else must not mention it.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiosqlite")
    assert body["csrf"] not in ours
