"""SMS group sends (群发): templates, contact groups, preview, immediate and scheduled
sends through a real Kannel with its fake SMSC, delivery reports, a hub killed with
SIGKILL mid-send, and the console page in Chromium.

Every storage test runs on SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from channel_connectors.sms.campaigns import (
    CAMPAIGNS,
    Campaigns,
    CampaignSettings,
    handlers,
    service,
)
from channel_connectors.sms.campaigns.scheduler import Link
from channel_connectors.sms.handset import HandsetClient
from channel_connectors.sms.settings import load as load_sms
from hotline.appkeys import HTTP, SESSIONS
from hotline.config import Settings
from hotline.ports import ChannelRuntime
from hotline.store.models import Blacklist, Contact
from hotline.web import create_app
from tests.channels.kannel import SECRET as KANNEL_SECRET
from tests.channels.kannel import Kannel
from tests.conftest import ROOT, free_port
from tests.staff import StaffClient

ADMIN_PASSWORD = "admin-password-for-tests"
PASSWORD = "staff-password-123"
SECRET = "campaign-test-secret-0123456789"


def link_for(
    sendsms_port: int, hub_port: int, *, user: str = "hotline", password: str = ""
) -> Link:
    return Link(
        sendsms_url=f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms",
        user=user,
        password=password or "sendsms-password-0123456789",
        sender="12309",
        max_segments=5,
        public_url=f"http://127.0.0.1:{hub_port}",
        secret=SECRET,
    )


def with_campaigns(app: web.Application, campaigns: Campaigns) -> web.Application:
    """What the SMS channel's setup/start/stop do, for a hub without the channel."""
    app[CAMPAIGNS] = campaigns
    handlers.add_routes(app)

    async def run(app: web.Application) -> AsyncIterator[None]:
        await campaigns.start(ChannelRuntime(sessions=app[SESSIONS], http=app[HTTP]))
        yield
        await campaigns.stop()

    app.cleanup_ctx.append(run)
    return app


@dataclass
class Hub:
    base: str
    server: TestServer
    campaigns: Campaigns
    settings: Settings


@pytest.fixture
async def start_hub(settings: Settings) -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(
        link: Link | None = None, campaign: CampaignSettings | None = None, port: int | None = None
    ) -> Hub:
        port = port or free_port()
        core = replace(settings, admin_password=ADMIN_PASSWORD, http_port=port)
        campaigns = Campaigns(
            core,
            link or link_for(free_port(), port),
            campaign or CampaignSettings(rate=50, poll=0.1),
        )
        app = with_campaigns(create_app(core), campaigns)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        return Hub(str(server.make_url("")).rstrip("/"), server, campaigns, core)

    yield start
    for server in reversed(servers):
        await server.close()


async def staff(hub: Hub) -> tuple[StaffClient, StaffClient, StaffClient]:
    """(admin, supervisor, agent), signed in."""
    admin = await StaffClient(hub.base).login("admin", ADMIN_PASSWORD)
    for name, role in (("wang.sup", "supervisor"), ("li.agent", "agent")):
        await admin.post(
            "/api/users", {"username": name, "password": PASSWORD, "role": role}, expect=201
        )
    sup = await StaffClient(hub.base).login("wang.sup", PASSWORD)
    agent = await StaffClient(hub.base).login("li.agent", PASSWORD)
    return admin, sup, agent


async def close_all(*clients: StaffClient) -> None:
    for c in clients:
        await c.close()


# ------------------------------------------------------------------ real Kannel
# The SMS channel's session Kannel (tests/channels/kannel.py): bearerbox, smsbox and the
# handset network on the fake SMSC link. Kannel calls back the hub on the session's
# port, so every hub here that sends listens on ``settings.http_port``.


class Handsets:
    """Every SMS the fake SMSC puts on the air, by number: the handset network's
    subscription to "*" (concatenated parts arrive joined)."""

    def __init__(self, socket_path: Path) -> None:
        self.client = HandsetClient(socket_path)
        self.received: dict[str, list[str]] = {}
        self.arrivals: list[float] = []  # time.monotonic() of each message
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def messages(self) -> int:
        return len(self.arrivals)

    async def start(self) -> Handsets:
        await self.client.connect()
        await self.client.subscribe("*")
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        while True:
            event = await self.client.receive(3600)
            self.received.setdefault(str(event["to"]), []).append(str(event["text"]))
            self.arrivals.append(time.monotonic())
            self._changed.set()

    async def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until at least ``count`` messages have arrived (since this was started)."""
        async with asyncio.timeout(timeout):
            while self.messages < count:
                self._changed.clear()
                await self._changed.wait()

    async def quiet(self, seconds: float) -> None:
        """Until nothing new has arrived for ``seconds`` (before counting duplicates)."""
        while True:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), seconds)
            except TimeoutError:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()


@pytest.fixture
async def handsets(kannel: Kannel) -> AsyncIterator[Handsets]:
    phones = await Handsets(kannel.sms.handset_socket).start()
    yield phones
    await phones.stop()


def kannel_link(kannel: Kannel, core: Settings) -> Link:
    """How the hub reaches the session's Kannel, as the SMS channel would load it."""
    return Link.from_sms(load_sms(kannel.section(), core))


class HubProcess:
    """``hotline run --no-rasa`` with the SMS channel (and its group sends) in its own
    process, so a test can SIGKILL it mid-send."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 90) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hotline.cli",
                "run",
                "--no-rasa",
                env=self.env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"the hub exited before it was ready; see {self.log}")
                if line.startswith(b"[run] agent console:"):  # printed once it serves
                    self._drain = asyncio.create_task(self._discard(self.proc.stdout))
                    return

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight stays as it was."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def hub_env(
    core: Settings, kannel: Kannel, var: Path, rate: float, inflight: int = 8
) -> dict[str, str]:
    """Environment for a ``HubProcess`` on ``core``'s database and port, using ``kannel``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(
        {
            "HOTLINE_VAR_DIR": str(var),
            "HOTLINE_DATABASE_URL": core.database_url,
            "HOTLINE_SECRET_KEY": core.secret_key.hex(),
            "HOTLINE_RASA_URL": core.rasa_url,
            "HOTLINE_ACTIONS_URL": core.actions_url,
            "HOTLINE_RASA_TOKEN": core.rasa_token,
            "HOTLINE_HTTP_PORT": str(core.http_port),
            "HOTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "HOTLINE_TIMEZONE": core.timezone,
            "HOTLINE_VOICE": "off",
            "HOTLINE_LOG_LEVEL": "WARNING",
            "HOTLINE_CHANNELS": "webchat,sms",
            "HOTLINE_SMS_CAMPAIGN_RATE": str(rate),
            "HOTLINE_SMS_CAMPAIGN_INFLIGHT": str(inflight),
            "HOTLINE_SMS_CAMPAIGN_POLL": "0.2",
        }
    )
    env.update({f"HOTLINE_SMS_{k.upper()}": v for k, v in kannel.section().items()})
    return env


# ------------------------------------------------------------------ API
async def test_templates_groups_members_and_roles(start_hub: Any) -> None:
    hub = await start_hub()
    admin, sup, agent = await staff(hub)
    try:
        # Agents may not touch group sends at all.
        for method, path in (
            ("GET", "/api/sms/templates"),
            ("POST", "/api/sms/templates"),
            ("GET", "/api/sms/groups"),
            ("POST", "/api/sms/preview"),
            ("GET", "/api/sms/sends"),
        ):
            status, body = await agent.call(
                method, path, {} if method == "POST" else None, expect=None
            )
            assert (status, body["error"]) == (403, "forbidden"), (method, path)
        # Without the CSRF header a change is refused.
        async with sup.http.post(f"{hub.base}/api/sms/groups", json={"name": "x"}) as resp:
            assert resp.status == 403

        # Templates: placeholders are checked; an unknown one is named.
        status, body = await sup.call(
            "POST", "/api/sms/templates", {"name": "t", "text_zh": "您好 {nmae}"}, expect=400
        )
        assert body["error"] == "bad_placeholder" and "{nmae}" in body["message"]
        status, body = await sup.call(
            "POST", "/api/sms/templates", {"name": "t", "text_en": "a { b"}, expect=400
        )
        assert "brace" in body["message"]
        await sup.post("/api/sms/templates", {"name": "t"}, expect=400)  # no text at all
        tpl = (
            await sup.post(
                "/api/sms/templates",
                {
                    "name": "案件受理通知",
                    "text_zh": "{name}您好，您的案件 {case_code} 已于 {date} 受理。{{12309}}",
                    "text_en": "Dear {name}, case {case_code} was accepted on {date}.",
                },
                expect=201,
            )
        )["template"]
        assert tpl["placeholders"] == ["case_code", "date", "name"]
        await sup.post("/api/sms/templates", {"name": "案件受理通知", "text_zh": "x"}, expect=409)
        status, body = await sup.call(
            "PATCH", f"/api/sms/templates/{tpl['id']}", {"text_en": "Hi {who}"}, expect=400
        )
        assert "{who}" in body["message"]
        _, body = await sup.call(
            "PATCH", f"/api/sms/templates/{tpl['id']}", {"text_en": None}, expect=200
        )
        assert body["template"]["text_en"] is None
        await sup.call("PATCH", f"/api/sms/templates/{tpl['id']}", {"text_zh": None}, expect=400)
        listed = (await sup.get("/api/sms/templates"))["templates"]
        assert [t["name"] for t in listed] == ["案件受理通知"]
        # An admin sees it too (same unit); delete, then it is gone.
        extra = (await admin.post("/api/sms/templates", {"name": "x", "text_zh": "x"}, expect=201))[
            "template"
        ]
        await admin.call("DELETE", f"/api/sms/templates/{extra['id']}")
        await admin.call("DELETE", f"/api/sms/templates/{extra['id']}", expect=404)

        # Groups and members.
        group = (await sup.post("/api/sms/groups", {"name": "回访名单"}, expect=201))["group"]
        await sup.post("/api/sms/groups", {"name": "回访名单"}, expect=409)
        gid = group["id"]
        _, body = await sup.call("PATCH", f"/api/sms/groups/{gid}", {"name": "回访名单-12月"})
        assert body["group"]["name"] == "回访名单-12月"
        members = f"/api/sms/groups/{gid}/members"
        _, body = await sup.call("POST", members, {"phone": "12345abc"}, expect=400)
        assert "phone" in body["message"]
        _, body = await sup.call(
            "POST", members, {"phone": "13800000001", "fields": {"pin": "1"}}, expect=400
        )
        assert "{pin}" in body["message"]
        one = await sup.post(
            members,
            {"phone": "138 0000 0001", "name": "张三", "fields": {"case_code": "320100000001"}},
            expect=201,
        )
        assert one["member"]["phone"] == "13800000001" and one["members"] == 1
        await sup.post(members, {"phone": "13800000001"}, expect=409)
        # Bulk: all or nothing, the bad one named; bounded.
        _, body = await sup.call(
            "POST",
            members + "/bulk",
            {"members": [{"phone": "13800000002"}, {"phone": "nope"}]},
            expect=400,
        )
        assert "members[1].phone" in body["message"]
        bulk = [
            {"phone": f"1390000{i:04d}", "name": f"用户{i}", "fields": {"case_code": f"C{i}"}}
            for i in range(50)
        ]
        bulk.append({"phone": "13800000001", "name": "张三丰", "fields": {"case_code": "X1"}})
        result = await sup.post(members + "/bulk", {"members": bulk})
        assert (result["added"], result["updated"], result["members"]) == (50, 1, 51)
        _, body = await sup.call(
            "POST", members + "/bulk", {"members": [{"phone": "13800000003"}] * 1001}, expect=400
        )
        assert "1000" in body["message"]
        page = await sup.get(members + "?limit=10")
        assert page["total"] == 51 and len(page["members"]) == 10
        assert page["members"][0] == {
            "phone": "13800000001",
            "name": "张三丰",
            "language": "zh",
            "fields": {"case_code": "X1"},
        }
        await sup.call("DELETE", members + "/13900000049")
        await sup.call("DELETE", members + "/13900000049", expect=404)
        groups = (await sup.get("/api/sms/groups"))["groups"]
        assert [(g["name"], g["members"]) for g in groups] == [("回访名单-12月", 50)]
        await sup.call("GET", "/api/sms/groups/999999", expect=404)
        await sup.call("DELETE", f"/api/sms/groups/{gid}")
        assert (await sup.get("/api/sms/groups"))["groups"] == []
    finally:
        await close_all(admin, sup, agent)


async def blacklist_number(hub: Hub, phone: str) -> None:
    from hotline.store.db import make_engine, sessionmaker

    engine = make_engine(hub.settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            contact = Contact(channel="sms", external_id=phone)
            session.add(contact)
            await session.flush()
            session.add(Blacklist(contact_id=contact.id, reason="abusive", created_by="admin"))
            await session.commit()
    finally:
        await engine.dispose()


async def opt_out(hub: Hub, phone: str) -> None:
    """What the SMS channel records when the number texts TD / 退订."""
    from sqlalchemy import insert

    from channel_connectors.sms import store
    from hotline.store.db import make_engine, sessionmaker

    engine = make_engine(hub.settings.database_url)
    try:
        async with sessionmaker(engine)() as session:
            await session.execute(
                insert(store.sms_optout).values(
                    number=phone, keyword="退订", opted_out_at=dt.datetime.now(dt.UTC)
                )
            )
            await session.commit()
    finally:
        await engine.dispose()


async def test_preview_schedule_and_cancel(start_hub: Any) -> None:
    hub = await start_hub()
    admin, sup, agent = await staff(hub)
    try:
        tpl = (
            await sup.post(
                "/api/sms/templates",
                {
                    "name": "提醒",
                    "text_zh": "{name}您好，案件{case_code}将于{date} {time}开庭。",
                    "text_en": "Dear {name}, case {case_code}: hearing on {date} at {time}. "
                    + "Reply STOP to opt out.",
                },
                expect=201,
            )
        )["template"]
        g1 = (await sup.post("/api/sms/groups", {"name": "g1"}, expect=201))["group"]["id"]
        g2 = (await sup.post("/api/sms/groups", {"name": "g2"}, expect=201))["group"]["id"]
        await sup.post(
            f"/api/sms/groups/{g1}/members/bulk",
            {
                "members": [
                    {"phone": "13800000001", "name": "张三", "fields": {"case_code": "A1"}},
                    {"phone": "13800000002", "name": "李四", "fields": {"case_code": "A2"}},
                    {
                        "phone": "+447700900123",
                        "name": "Ann",
                        "language": "en",
                        "fields": {"case_code": "A3"},
                    },
                ]
            },
        )
        # g2 repeats a number of g1 (sent once) and adds one that is blacklisted.
        await sup.post(
            f"/api/sms/groups/{g2}/members/bulk",
            {
                "members": [
                    {"phone": "13800000002", "name": "李四", "fields": {"case_code": "A2"}},
                    {"phone": "13800000009", "name": "坏人", "fields": {"case_code": "A9"}},
                    {"phone": "+86 138 0000 0010", "name": "退订", "fields": {"case_code": "A10"}},
                ]
            },
        )
        await blacklist_number(hub, "13800000009")
        await opt_out(hub, "13800000010")  # stored as the channel keys it: without +86
        tz = ZoneInfo(hub.settings.timezone)
        at_local = (dt.datetime.now(tz) + dt.timedelta(days=2)).replace(
            hour=9, minute=30, second=0, microsecond=0, tzinfo=None
        )
        body = {
            "template_id": tpl["id"],
            "group_ids": [g1, g2],
            "scheduled_at": at_local.isoformat(timespec="minutes"),
        }
        preview = (await sup.post("/api/sms/preview", body))["preview"]
        assert preview["members"] == 5
        assert preview["recipients"] == 3
        assert preview["excluded"] == {"opted_out": 1, "blacklisted": 1}
        assert preview["missing"] == {}
        samples = {s["phone"]: s for s in preview["samples"]}
        date = at_local.strftime("%Y-%m-%d")
        assert samples["13800000001"]["text"] == f"张三您好，案件A1将于{date} 09:30开庭。"
        assert samples["13800000001"]["segments"]["encoding"] == "ucs2"
        en = samples["+447700900123"]
        assert en["language"] == "en" and en["text"].startswith("Dear Ann, case A3")
        assert en["segments"]["encoding"] == "gsm7" and en["segments"]["segments"] == 1
        assert preview["segments"]["total"] == 3

        await sup.call("POST", "/api/sms/preview", {**body, "group_ids": [99999]}, expect=404)
        _, err = await sup.call(
            "POST", "/api/sms/preview", {**body, "scheduled_at": "2001-01-01T00:00"}, expect=400
        )
        assert "past" in err["message"]

        send = (await sup.post("/api/sms/sends", body, expect=201))["send"]
        assert send["state"] == "scheduled"
        assert send["scheduled_local"] == at_local.isoformat(timespec="minutes")
        assert send["timezone"] == hub.settings.timezone
        assert send["total"] == 3 and send["excluded"] == 2
        assert send["progress"]["queued"] == 3
        listed = (await sup.get("/api/sms/sends"))["sends"]
        assert [s["id"] for s in listed] == [send["id"]]
        detail = await sup.get(f"/api/sms/sends/{send['id']}")
        assert sorted(m["phone"] for m in detail["messages"]) == [
            "+447700900123",
            "13800000001",
            "13800000002",
        ]
        assert {m["state"] for m in detail["messages"]} == {"queued"}

        cancelled = (await sup.post(f"/api/sms/sends/{send['id']}/cancel"))["send"]
        assert cancelled["state"] == "cancelled"
        assert cancelled["progress"]["cancelled"] == 3 and cancelled["progress"]["queued"] == 0
        await sup.post(f"/api/sms/sends/{send['id']}/cancel", expect=409)

        # A member without a value for a placeholder the text uses: refused, named.
        await sup.post(f"/api/sms/groups/{g1}/members", {"phone": "13800000005"}, expect=201)
        _, err = await sup.call("POST", "/api/sms/sends", body, expect=400)
        assert err["error"] == "missing_values" and err["missing"] == {"case_code": 1, "name": 1}
        await agent.call("POST", f"/api/sms/sends/{send['id']}/cancel", {}, expect=403)
    finally:
        await close_all(admin, sup, agent)


# ------------------------------------------------------------------ delivery
async def wait_send(
    client: StaffClient, send_id: str, done: Any, timeout: float = 60
) -> dict[str, Any]:
    """Poll the send until ``done(send)``; the API is the only view a client has."""
    async with asyncio.timeout(timeout):
        while True:
            send = (await client.get(f"/api/sms/sends/{send_id}"))["send"]
            if done(send):
                return send
            await asyncio.sleep(0.1)


async def test_group_send_through_kannel_reaches_delivered(
    start_hub: Any, settings: Settings, kannel: Kannel, handsets: Handsets
) -> None:
    hub = await start_hub(
        link=kannel_link(kannel, settings),
        campaign=CampaignSettings(rate=40, poll=0.1),
        port=settings.http_port,
    )
    admin, sup, agent = await staff(hub)
    try:
        tpl = (
            await sup.post(
                "/api/sms/templates",
                {
                    "name": "回访",
                    "text_zh": "{name}您好，您的案件{case_code}已办结。长文本" + "测试" * 40,
                    "text_en": "Dear {name}, case {case_code} is closed.",
                },
                expect=201,
            )
        )["template"]
        gid = (await sup.post("/api/sms/groups", {"name": "g"}, expect=201))["group"]["id"]
        members = [
            {
                "phone": f"1380000{i:04d}",
                "name": f"用户{i}" if i % 2 else f"User{i}",
                "language": "zh" if i % 2 else "en",
                "fields": {"case_code": f"3201{i:08d}"},
            }
            for i in range(20)
        ]
        await sup.post(f"/api/sms/groups/{gid}/members/bulk", {"members": members})
        body = {"template_id": tpl["id"], "group_ids": [gid]}
        preview = (await sup.post("/api/sms/preview", body))["preview"]
        assert preview["recipients"] == 20
        assert preview["segments"]["max"] == 2  # the Chinese text takes two UCS-2 parts
        send = (await sup.post("/api/sms/sends", body, expect=201))["send"]
        await handsets.wait_for(20)
        final = await wait_send(
            sup, send["id"], lambda s: s["progress"]["delivered"] == 20 and s["state"] == "done"
        )
        assert final["progress"]["failed"] == 0 and final["progress"]["unknown"] == 0
        got = handsets.received
        assert sorted(got) == sorted(m["phone"] for m in members)
        assert all(len(texts) == 1 for texts in got.values())
        assert got["13800000001"] == ["用户1您好，您的案件320100000001已办结。长文本" + "测试" * 40]
        assert got["13800000002"] == ["Dear User2, case 320100000002 is closed."]
        detail = await sup.get(f"/api/sms/sends/{send['id']}")
        assert {m["state"] for m in detail["messages"]} == {"delivered"}
        assert all(m["report"] == "delivered" and m["sent_at"] for m in detail["messages"])
    finally:
        await close_all(admin, sup, agent)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_campaign_dlr_needs_kannels_secret(start_hub: Any) -> None:
    hub = await start_hub()
    async with aiohttp.ClientSession() as http:
        url = f"{hub.base}/channels/sms/campaign-dlr?m=1&k=0123456789abcdef&s=1"
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers=basic("kannel", "wrong-secret")) as resp:
            assert resp.status == 401
        async with http.get(url, headers=basic("kannel", SECRET)) as resp:
            assert resp.status == 404  # no such message / claim


# ------------------------------------------------------------------ crash
async def setup_send(client: StaffClient, members: int, prefix: str = "1390") -> dict[str, Any]:
    """A template and one group of ``members`` numbers; returns the created send."""
    tpl = (
        await client.post(
            "/api/sms/templates",
            {"name": "通知", "text_en": "Dear {name}, case {case_code}: please call 12309."},
            expect=201,
        )
    )["template"]
    gid = (await client.post("/api/sms/groups", {"name": "all"}, expect=201))["group"]["id"]
    width = 11 - len(prefix)
    numbers = [f"{prefix}{i:0{width}d}" for i in range(members)]
    for start in range(0, members, 1000):
        chunk = numbers[start : start + 1000]
        await client.post(
            f"/api/sms/groups/{gid}/members/bulk",
            {"members": [{"phone": n, "name": "C", "fields": {"case_code": n}} for n in chunk]},
        )
    body = {"template_id": tpl["id"], "group_ids": [gid]}
    return dict((await client.post("/api/sms/sends", body, expect=201))["send"])


async def test_sigkill_mid_send_sends_each_member_exactly_once(
    settings: Settings, kannel: Kannel, handsets: Handsets, tmp_path: Path
) -> None:
    members = 120
    hub = HubProcess(hub_env(settings, kannel, tmp_path / "hub", rate=30), tmp_path / "hub.log")
    await hub.start()
    client: StaffClient | None = None
    try:
        client = await StaffClient(f"http://127.0.0.1:{settings.http_port}").login(
            "admin", ADMIN_PASSWORD
        )
        send = await setup_send(client, members)
        await handsets.wait_for(members // 3)
        await hub.kill()
        at_kill = handsets.messages
        assert at_kill < members
        await client.close()

        await hub.start()
        client = await StaffClient(f"http://127.0.0.1:{settings.http_port}").login(
            "admin", ADMIN_PASSWORD
        )

        def finished(s: dict[str, Any]) -> bool:
            return s["state"] == "done" and s["progress"]["delivered"] == members

        final = await wait_send(client, send["id"], finished, timeout=90)
        assert final["progress"]["unknown"] == 0, final["progress"]
        await handsets.wait_for(members)
        got = handsets.received
        # Every member got it, none twice: not across the kill, not after the restart.
        assert {p: len(t) for p, t in got.items() if len(t) != 1} == {}
        assert len(got) == members
        print(f"\nkill after {at_kill}/{members} on the air; progress {final['progress']}")
    finally:
        if client is not None:
            await client.close()
        await hub.stop()


class HoldingKannel:
    """A sendsms port in front of the real Kannel that never answers the hub: the hub is
    killed while its claims are in the middle of an HTTP call, the one window where a
    message may or may not have reached Kannel. The first ``forward`` requests do reach
    Kannel, without their delivery-report URL (as if every report were lost), so only
    Kannel's access log can tell they went; the others never reach it."""

    def __init__(self, target: str, forward: int) -> None:
        self.port = free_port()
        self.target = target
        self.forward = forward
        self.forwarded: list[str] = []
        self.held = 0
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _hold(self, request: web.Request) -> web.Response:
        if len(self.forwarded) < self.forward:
            self.forwarded.append(request.query["to"])
            query = request.raw_path.partition("?")[2]  # as sent: UCS-2 text stays bytes
            raw = "&".join(p for p in query.split("&") if not p.startswith("dlr-"))
            async with aiohttp.ClientSession() as http:
                async with http.get(URL(f"{self.target}?{raw}", encoded=True)) as resp:
                    assert resp.status == 202, await resp.text()
        self.held += 1
        self.arrived.set()
        await self._release.wait()  # never, while the hub lives
        raise web.HTTPServiceUnavailable()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", self._hold)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def wait_for(self, n: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while self.held < n:
                self.arrived.clear()
                await self.arrived.wait()

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def kill_mid_call(
    settings: Settings, kannel: Kannel, tmp_path: Path, members: int, forward: int, **section: str
) -> tuple[HubProcess, StaffClient, dict[str, Any], HoldingKannel]:
    """A send whose first two claims are inside their sendsms calls when the hub is
    SIGKILLed; then the same hub (``section`` overriding its SMS settings) restarted on
    the real Kannel. Returns the hub, a client logged in to it, the send and the proxy."""
    inflight = 2
    holding = HoldingKannel(kannel.sms.sendsms_url, forward)
    await holding.start()
    env = hub_env(settings, kannel, tmp_path / "hub", rate=50, inflight=inflight)
    env.update({f"HOTLINE_SMS_{k.upper()}": v for k, v in section.items()})
    for key, value in section.items():
        if not value:
            del env[f"HOTLINE_SMS_{key.upper()}"]
    sendsms = f"http://127.0.0.1:{holding.port}/cgi-bin/sendsms"
    hub = HubProcess(dict(env, HOTLINE_SMS_SENDSMS_URL=sendsms), tmp_path / "hub.log")
    await hub.start()
    base = f"http://127.0.0.1:{settings.http_port}"
    client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    send = await setup_send(client, members, prefix="1391")
    await holding.wait_for(inflight)
    await hub.kill()
    await client.close()
    await holding.stop()
    hub.env = env  # the same hub, now reaching the real Kannel
    await hub.start()
    return hub, await StaffClient(base).login("admin", ADMIN_PASSWORD), send, holding


async def test_rows_in_flight_at_a_kill_are_settled_from_kannels_log_and_sent_once(
    settings: Settings, kannel: Kannel, handsets: Handsets, tmp_path: Path
) -> None:
    """One claim reached Kannel (its reports lost), one did not: the first is ``sent``
    by Kannel's access log, the second goes again; every member gets exactly one SMS."""
    members = 10
    hub, client, send, holding = await kill_mid_call(settings, kannel, tmp_path, members, forward=1)
    try:
        final = await wait_send(
            client,
            send["id"],
            lambda s: s["state"] == "done" and s["progress"]["delivered"] == members - 1,
        )
        assert (final["progress"]["sent"], final["progress"]["unknown"]) == (1, 0)
        detail = await client.get(f"/api/sms/sends/{send['id']}")
        sent = [m["phone"] for m in detail["messages"] if m["state"] == "sent"]
        assert sent == holding.forwarded  # the one Kannel took, known only from its log
        await handsets.wait_for(members)
        got = handsets.received
        assert len(got) == members and all(len(t) == 1 for t in got.values())
    finally:
        await client.close()
        await hub.stop()


async def test_without_kannels_log_rows_in_flight_stay_unknown_and_are_never_resent(
    settings: Settings, kannel: Kannel, handsets: Handsets, tmp_path: Path
) -> None:
    """An external Kannel whose status and log the hub cannot read: a row caught
    mid-call is ``unknown`` for good, unless a delivery report settles it."""
    from sqlalchemy import select

    from channel_connectors.sms.campaigns.models import SmsSendMessage
    from hotline.store.db import make_engine, sessionmaker

    members, inflight = 10, 2
    hub, client, send, _ = await kill_mid_call(
        settings, kannel, tmp_path, members, forward=0, admin_url="", access_log=""
    )
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        final = await wait_send(
            client,
            send["id"],
            lambda s: s["state"] == "done" and s["progress"]["delivered"] == members - inflight,
        )
        assert final["progress"]["unknown"] == inflight
        detail = await client.get(f"/api/sms/sends/{send['id']}")
        unknown = [m for m in detail["messages"] if m["state"] == "unknown"]
        assert all("not sent again" in m["error"] for m in unknown)
        await handsets.wait_for(members - inflight)
        got = handsets.received
        assert all(len(t) == 1 for t in got.values())
        assert not {m["phone"] for m in unknown} & set(got)  # never re-sent

        # Had Kannel taken one, its report would settle it: replay one with its claim.
        engine = make_engine(settings.database_url)
        try:
            async with sessionmaker(engine)() as session:
                row = await session.get(SmsSendMessage, unknown[0]["id"])
                assert row is not None and row.claim_token
                token = row.claim_token
                assert (
                    await session.scalar(
                        select(SmsSendMessage.state).where(SmsSendMessage.id == row.id)
                    )
                ) == "unknown"
        finally:
            await engine.dispose()
        url = f"{base}/channels/sms/campaign-dlr?m={unknown[0]['id']}&k={token}&s=1"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers=basic("kannel", KANNEL_SECRET)) as resp:
                assert resp.status == 200
        settled = (await client.get(f"/api/sms/sends/{send['id']}"))["send"]["progress"]
        assert (settled["delivered"], settled["unknown"]) == (members - inflight + 1, inflight - 1)
    finally:
        await client.close()
        await hub.stop()


# ------------------------------------------------------------------ console
def test_sms_page_keys_exist_and_nothing_is_parsed_as_html() -> None:
    from tests.test_console_static import _HTML_KEY, HTML_SINKS, STATIC, _i18n_tables, _keys_used

    tables = _i18n_tables()
    js = (STATIC / "sms.js").read_text(encoding="utf-8")
    html = (STATIC / "sms.html").read_text(encoding="utf-8")
    used = _keys_used(js) | set(_HTML_KEY.findall(html))
    assert len(used) > 40
    assert {lang: sorted(used - keys) for lang, keys in tables.items()} == {"zh": [], "en": []}
    for prefix, values in (
        ("smsState_", ("scheduled", "sending", "done", "cancelled")),
        ("smsMsg_", service.PROGRESS_STATES),
        ("smsReport_", ("delivered", "failed", "buffered", "smsc_ack", "smsc_reject")),
    ):
        for lang, keys in tables.items():
            assert sorted(prefix + v for v in values if prefix + v not in keys) == [], lang
    assert [line for line in js.splitlines() if HTML_SINKS.search(line)] == []
    assert 'href="/console/sms"' in (STATIC / "supervisor.html").read_text(encoding="utf-8")


@pytest.mark.browser
async def test_console_page_creates_previews_sends_and_sees_delivered(
    start_hub: Any, settings: Settings, kannel: Kannel, handsets: Handsets
) -> None:
    from playwright.async_api import expect

    from tests.test_browser import CHROMIUM_ARGS

    hub = await start_hub(
        link=kannel_link(kannel, settings),
        campaign=CampaignSettings(rate=20, poll=0.1),
        port=settings.http_port,
    )
    admin, sup, agent = await staff(hub)
    await close_all(sup, agent)
    from playwright.async_api import async_playwright

    errors: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            page = await browser.new_page(locale="zh-CN")
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
            await page.goto(hub.base + "/console/sms")
            await page.get_by_test_id("login-username").fill("wang.sup")
            await page.get_by_test_id("login-password").fill(PASSWORD)
            await page.get_by_test_id("login-submit").click()
            await expect(page.get_by_test_id("sms-placeholders")).to_contain_text("{case_code}")
            await expect(page.get_by_test_id("sms-timezone")).to_contain_text(hub.settings.timezone)

            # A template; an unknown placeholder is refused with its name.
            await page.get_by_test_id("sms-template-name").fill("受理通知<b>x</b>")
            await page.get_by_test_id("sms-template-zh").fill("{name}您好，案件{case_no}已受理。")
            await page.get_by_test_id("sms-template-save").click()
            await expect(page.get_by_test_id("sms-template-error")).to_contain_text("{case_no}")
            await page.get_by_test_id("sms-template-zh").fill("{name}您好，案件{case_code}已受理。")
            await page.get_by_test_id("sms-template-en").fill("Dear {name}, case {case_code}.")
            await page.get_by_test_id("sms-template-save").click()
            row = page.get_by_test_id("sms-template")
            await expect(row).to_have_count(1)
            await expect(row.get_by_test_id("sms-template-name-cell")).to_have_text(
                "受理通知<b>x</b>"
            )
            assert await page.locator("[data-testid=sms-templates] b").count() == 0

            # A group with three members, added in bulk.
            await page.get_by_test_id("sms-group-name").fill("回访")
            await page.get_by_test_id("sms-group-create").click()
            await expect(page.get_by_test_id("sms-members")).to_be_visible()
            await page.get_by_test_id("sms-bulk").fill(
                "13800000001,张三,A1\n13800000002,李四,A2\n13800000003,王五,A3"
            )
            await page.get_by_test_id("sms-bulk-add").click()
            await expect(page.get_by_test_id("sms-bulk-result")).to_contain_text("3")
            await expect(page.get_by_test_id("sms-member")).to_have_count(3)
            await expect(page.get_by_test_id("sms-group-count")).to_have_text("3")

            # Preview: the count, the rendered text; then send.
            await page.get_by_test_id("sms-send-template").select_option(label="受理通知<b>x</b>")
            await page.get_by_test_id("sms-send-group").check()
            await expect(page.get_by_test_id("sms-send")).to_be_disabled()
            await page.get_by_test_id("sms-preview").click()
            await expect(page.get_by_test_id("sms-preview-count")).to_have_text("3")
            await expect(page.get_by_test_id("sms-preview-sample").first).to_contain_text(
                "张三您好，案件A1已受理。"
            )
            await page.get_by_test_id("sms-send").click()
            send_row = page.get_by_test_id("sms-send-row")
            await expect(send_row).to_have_count(1)
            await expect(send_row.get_by_test_id("sms-send-delivered")).to_have_text(
                "3", timeout=30_000
            )
            await expect(send_row).to_have_attribute("data-state", "done")
            await expect(page.get_by_test_id("sms-message")).to_have_count(3)
            await expect(
                page.locator("[data-testid=sms-message][data-state=delivered]")
            ).to_have_count(3)
            # English follows the switch.
            await page.get_by_test_id("lang-toggle").click()
            await expect(send_row.get_by_test_id("sms-send-state")).to_have_text("done")
            await browser.close()
        got = handsets.received
        assert got == {
            "13800000001": ["张三您好，案件A1已受理。"],
            "13800000002": ["李四您好，案件A2已受理。"],
            "13800000003": ["王五您好，案件A3已受理。"],
        }
        assert errors == []
    finally:
        await admin.close()


async def test_scheduled_send_survives_a_restart_goes_at_its_time_once_and_skips_opt_outs(
    settings: Settings, kannel: Kannel, handsets: Handsets, tmp_path: Path
) -> None:
    from sqlalchemy import insert

    from channel_connectors.sms import store
    from hotline.store.db import make_engine, sessionmaker

    hub = HubProcess(hub_env(settings, kannel, tmp_path / "hub", rate=50), tmp_path / "hub.log")
    await hub.start()
    base = f"http://127.0.0.1:{settings.http_port}"
    client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
    try:
        tpl = (
            await client.post(
                "/api/sms/templates",
                {"name": "t", "text_en": "{name}: hearing {date} {time}"},
                expect=201,
            )
        )["template"]
        gid = (await client.post("/api/sms/groups", {"name": "g"}, expect=201))["group"]["id"]
        numbers = [f"1392000000{i}" for i in range(6)]
        await client.post(
            f"/api/sms/groups/{gid}/members/bulk",
            {"members": [{"phone": n, "name": f"P{i}"} for i, n in enumerate(numbers)]},
        )
        tz = ZoneInfo(settings.timezone)
        at = (dt.datetime.now(tz) + dt.timedelta(seconds=6)).replace(microsecond=0)
        local = at.replace(tzinfo=None).isoformat()  # local wall time, no offset
        send = (
            await client.post(
                "/api/sms/sends",
                {"template_id": tpl["id"], "group_ids": [gid], "scheduled_at": local},
                expect=201,
            )
        )["send"]
        assert send["state"] == "scheduled" and send["total"] == 6
        # The hub dies before the time; a number opts out (SMS "TD") meanwhile.
        await hub.kill()
        await client.close()
        engine = make_engine(settings.database_url)
        try:
            async with sessionmaker(engine)() as session:
                await session.execute(
                    insert(store.sms_optout).values(
                        number=numbers[0], keyword="td", opted_out_at=dt.datetime.now(dt.UTC)
                    )
                )
                await session.commit()
        finally:
            await engine.dispose()
        await hub.start()
        client = await StaffClient(base).login("admin", ADMIN_PASSWORD)
        final = await wait_send(
            client,
            send["id"],
            lambda s: s["state"] == "done" and s["progress"]["delivered"] == 5,
            timeout=60,
        )
        assert final["progress"]["skipped"] == 1
        assert dt.datetime.fromisoformat(final["started_at"]) >= at
        await handsets.wait_for(5)
        await handsets.quiet(1.0)  # a second copy of anything would arrive by now
        got = handsets.received
        assert sorted(got) == numbers[1:]
        assert all(len(t) == 1 for t in got.values())
        date, clock = at.strftime("%Y-%m-%d"), at.strftime("%H:%M")
        assert got[numbers[1]] == [f"P1: hearing {date} {clock}"]
        detail = await client.get(f"/api/sms/sends/{send['id']}")
        skipped = [m for m in detail["messages"] if m["state"] == "skipped"]
        assert [m["phone"] for m in skipped] == [numbers[0]]
    finally:
        await client.close()
        await hub.stop()
