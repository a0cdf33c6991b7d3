"""The whole text spine against the real Rasa server with the trained model.

Each test drives the hub's web chat like a citizen's browser would, on SQLite and on
PostgreSQL. Rasa and the action server are real processes (``rasa_stack``).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hotline.appkeys import SETTINGS
from hotline.config import Settings
from hotline.store.db import make_engine, sessionmaker
from hotline.store.models import Conversation, Message, ReporterIdentity, Ticket
from hotline.supervisor import Child, wait_ready
from hotline.vault import IdentityVault
from hotline.web import create_app
from tests.chat import ChatClient, texts
from tests.conftest import SECRET

pytestmark = [pytest.mark.rasa, pytest.mark.usefixtures("rasa_stack")]


@pytest.fixture
async def hub(hub_server: TestServer) -> TestServer:
    return hub_server


async def chat(server: TestServer, lang: str = "zh") -> ChatClient:
    client = ChatClient(str(server.make_url("/")), lang)
    await client.connect()
    return client


async def db_rows(settings: Settings, model: Any, **where: Any) -> list[Any]:
    engine = make_engine(settings.database_url)
    async with sessionmaker(engine)() as session:
        query = select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        rows = list((await session.execute(query)).scalars().all())
    await engine.dispose()
    return rows


# (language, what the citizen says, something the answer must contain)
INTENT_CASES = [
    ("zh", "你好", "12309"),
    ("en", "hello there", "12309"),
    ("zh", "好的谢谢，再见", "再见"),
    ("en", "ok bye, thanks", "Goodbye"),
    ("zh", "是的", "还有什么可以帮您"),
    ("en", "yes", "anything else"),
    ("zh", "不是", "还有什么可以帮您"),
    ("en", "no", "anything else"),
    ("zh", "我要举报我们镇长收受贿赂", "登记举报"),
    ("en", "I want to report a corrupt official who takes bribes", "take your report"),
    ("zh", "派出所民警把我打伤了，我要控告他们", "登记控告"),
    ("en", "The police beat me during interrogation and I want to file a complaint", "complaint"),
    ("zh", "我对法院的判决不服，想申诉", "登记申诉"),
    ("en", "I want to appeal against the court's verdict in my case", "appeal"),
    ("zh", "我被错误羁押了三个月，想申请国家赔偿", "国家赔偿"),
    ("en", "I was wrongly detained and want to claim state compensation", "compensation"),
    ("zh", "我想查一下我的案件进度", "查询案件进度"),
    ("en", "I want to check the status of my case", "check your case"),
    ("zh", "举报之后多久会有答复？", "答复"),
    ("en", "How long does it take to get a reply after I file a report?", "7"),
    ("zh", "我是律师，想预约阅卷", "律师"),
    ("en", "I'm a defense lawyer and want to book a time to review the case file", "lawyer"),
    ("zh", "转人工", "人工"),
    ("en", "I want to talk to a real person", "staff"),
    ("zh", "明天天气怎么样", "受理范围"),
    ("en", "can you recommend a good pizza place", "outside"),
]


@pytest.mark.parametrize(("lang", "text", "expected"), INTENT_CASES)
async def test_every_intent_in_both_languages(
    hub: TestServer, lang: str, text: str, expected: str
) -> None:
    client = await chat(hub, lang)
    replies = await client.say(text)
    await client.close()
    answer = texts(replies)
    assert expected.lower() in answer.lower(), answer
    if lang == "en":  # replies follow the language of the citizen's message
        assert not re.search(r"[\u4e00-\u9fff]{4,}", answer.split("\n")[0]), answer


async def test_new_conversation_is_greeted_in_its_language(hub: TestServer) -> None:
    zh = await chat(hub, "zh")
    assert "12309" in texts(zh.greeting) and "您好" in texts(zh.greeting)
    assert {b["payload"] for b in zh.greeting[0]["buttons"]} >= {"/report_crime", "/case_status"}
    await zh.close()
    en = await chat(hub, "en")
    assert "Hello" in texts(en.greeting)
    await en.close()


async def test_reply_language_follows_latest_message(hub: TestServer) -> None:
    client = await chat(hub, "zh")
    assert "您好" in texts(await client.say("你好"))
    assert "Hello" in texts(await client.say("hello"))
    await client.close()


CASE = re.compile(r"(?:案件编号|Case code)[:：]\s*(\d{12})")
PIN = re.compile(r"(?:查询密码|PIN)[:：]\s*(\d{6})")


async def test_named_report_with_correction_and_question(
    hub: TestServer, settings: Settings
) -> None:
    client = await chat(hub, "zh")
    start = await client.say("我要举报县财政局的局长受贿")
    assert "被举报人的姓名" in texts(start)
    await client.say("王大明")
    await client.say("县财政局")
    await client.say("局长")
    await client.say("他收受开发商贿赂二十万元，帮对方拿到了县里的道路工程")
    await client.say("去年三月")
    corrected = await client.say("单位说错了，是县交通局")
    assert "已更正：单位 → 县交通局" in texts(corrected)
    assert "什么地点" in texts(corrected)  # the form resumes where it was
    answer = await client.say("举报人的身份会被泄露吗？")
    assert "《" in texts(answer) and "我们继续" in texts(answer)
    assert "什么地点" in texts(answer)
    await client.say("县政府大院")
    await client.say("有银行转账记录和证人")
    ask_name = await client.say("实名", payload="/affirm")
    assert "您的姓名" in texts(ask_name)
    await client.say("李四")
    wrong = await client.say("138001")
    assert "电话号码格式不对" in texts(wrong)
    ask_notify = texts(await client.say("13800138000"))
    assert "短信提醒" in ask_notify and "不含举报内容" in ask_notify
    assert "请回答" in texts(await client.say("随便"))
    await client.say("需要", payload="/affirm")
    summary = texts(await client.say("跳过", payload="/skip"))
    assert "单位：县交通局" in summary and "王大明" in summary
    assert "短信提醒：需要" in summary
    assert "李*" in summary and "138****8000" in summary and "13800138000" not in summary
    done = texts(await client.say("确认"))
    code, pin = CASE.search(done).group(1), PIN.search(done).group(1)  # type: ignore[union-attr]
    assert "7个工作日" in done and "3个月" in done

    [ticket] = await db_rows(settings, Ticket, case_code=code)
    assert ticket.kind == "report" and ticket.status == "received" and ticket.notify_reporter
    assert ticket.fields["unit"] == "县交通局" and ticket.fields["person"] == "王大明"
    assert "李四" not in str(ticket.fields) and "13800138000" not in str(ticket.fields)
    [identity] = await db_rows(settings, ReporterIdentity, id=ticket.identity_id)
    engine = make_engine(settings.database_url)
    async with sessionmaker(engine)() as session:
        revealed = await IdentityVault(SECRET).reveal(
            session, identity.id, actor="test", reason="check"
        )
        await session.commit()
    await engine.dispose()
    assert (revealed.name, revealed.phone) == ("李四", "13800138000")
    # The transcript holds neither the identity nor the PIN in clear.
    stored = [
        m.text for m in await db_rows(settings, Message, conversation_id=client.conversation_id)
    ]
    joined = "\n".join(stored)
    assert "李四" not in joined and "13800138000" not in joined and pin not in joined
    assert code in joined and "******" in joined

    status = texts(await client.say(f"查询案件 {code}"))
    assert "查询密码" in status
    found = texts(await client.say(pin))
    assert code in found and "已登记" in found and "7个工作日" in found
    await client.close()


async def test_english_anonymous_report(hub: TestServer, settings: Settings) -> None:
    client = await chat(hub, "en")
    await client.say("I want to report a corrupt official")
    await client.say("don't know")
    await client.say("City Land Bureau")
    await client.say("skip")
    await client.say("He demanded cash from farmers before approving land permits")
    await client.say("last summer")
    await client.say("skip")
    await client.say("none")
    summary = texts(await client.say("I want to stay anonymous"))
    assert "anonymous" in summary and "City Land Bureau" in summary
    done = texts(await client.say("confirm"))
    code = CASE.search(done).group(1)  # type: ignore[union-attr]
    assert "7 working days" in done
    [ticket] = await db_rows(settings, Ticket, case_code=code)
    assert ticket.identity_id is None and ticket.language == "en"
    assert "person" not in ticket.fields
    await client.close()


async def test_cancel_mid_form_files_nothing(hub: TestServer, settings: Settings) -> None:
    client = await chat(hub, "zh")
    await client.say("我要举报村支书贪污扶贫款")
    await client.say("赵六")
    cancelled = texts(await client.say("取消"))
    assert "已取消" in cancelled
    assert await db_rows(settings, Ticket) == []
    tracker_db = settings.rasa_tracker_url.split(":///", 1)[1]
    with sqlite3.connect(tracker_db) as db:
        left = db.execute(
            "SELECT count(*) FROM events WHERE sender_id = ?", (client.conversation_id,)
        ).fetchone()[0]
    assert left == 0  # the cancelled intake is gone from Rasa's tracker store too
    after = texts(await client.say("你好"))  # the bot is back to normal
    assert "12309" in after
    await client.close()


async def test_complaint_short_form(hub: TestServer, settings: Settings) -> None:
    client = await chat(hub, "zh")
    first = texts(await client.say("派出所民警非法扣押我的车，我要控告"))
    assert "登记控告" in first and "合法权益" in first
    await client.say("上个月派出所的两名民警没有任何手续就把我的货车扣了，至今不还")
    await client.say("上个月十号")
    await client.say("县城东派出所")
    await client.say("匿名")
    done = texts(await client.say("确认"))
    code = CASE.search(done).group(1)  # type: ignore[union-attr]
    [ticket] = await db_rows(settings, Ticket, case_code=code)
    assert ticket.kind == "complaint" and "货车" in ticket.fields["details"]
    await client.close()


async def test_reasks_are_capped_then_a_person_takes_over(
    hub: TestServer, settings: Settings
) -> None:
    client = await chat(hub, "zh")
    await client.say("我要申请国家赔偿")
    await client.say("我在2019年被错误逮捕，关押了一年后检察院决定不起诉")
    await client.say("2019年")
    await client.say("看守所")
    await client.say("实名")
    await client.say("周七")
    await client.say("abc")
    await client.say("12")
    last = texts(await client.say("电话没有"))
    assert "转接人工服务" in last
    [conversation] = await db_rows(settings, Conversation, id=client.conversation_id)
    assert conversation.state == "queued" and conversation.handoff_reason == "bot_gave_up"
    await client.close()


async def test_request_human_marks_the_conversation_queued(
    hub: TestServer, settings: Settings
) -> None:
    client = await chat(hub, "zh")
    await client.say("我要找人工客服")
    assert {"type": "state", "state": "queued"} in client.frames
    [conversation] = await db_rows(settings, Conversation, id=client.conversation_id)
    assert conversation.state == "queued" and conversation.handoff_reason == "requested"
    await client.close()


async def test_case_status_wrong_pin_and_lockout(hub: TestServer, settings: Settings) -> None:
    client = await chat(hub, "zh")
    await client.say("我要举报")
    for answer in (
        "钱八",
        "县水利局",
        "跳过",
        "他挪用防汛资金五十万元用于个人炒股",
        "跳过",
        "跳过",
        "跳过",
        "匿名",
    ):
        await client.say(answer)
    done = texts(await client.say("确认"))
    code, pin = CASE.search(done).group(1), PIN.search(done).group(1)  # type: ignore[union-attr]
    wrong = "000000" if pin != "000000" else "111111"
    bad_code = texts(await client.say(f"查询案件 {code[:-1]}{(int(code[-1]) + 1) % 10}"))
    assert "校验位" in bad_code
    await client.say("取消")
    lookups = []
    for _ in range(5):
        await client.say("查询案件进度")
        await client.say(code)
        lookups.append(texts(await client.say(wrong)))
    assert "还可以尝试4次" in lookups[0] and "还可以尝试1次" in lookups[3]
    assert "暂时锁定" in lookups[4]
    await client.say("查询案件进度")
    await client.say(code)
    assert "暂时锁定" in texts(await client.say(pin))  # even the right PIN, while locked
    # Another conversation is locked out of this case code too.
    other = await chat(hub, "en")
    await other.say("check my case")
    await other.say(code)
    assert "locked" in texts(await other.say(pin))
    await other.close()
    await client.close()


async def test_slow_rasa_times_out_without_losing_the_message(settings: Settings) -> None:
    impatient = replace(settings, rasa_timeout=0.001)
    server = TestServer(create_app(impatient), host="127.0.0.1", port=impatient.http_port)
    await server.start_server()
    try:
        client = await chat(server, "en")
        replies = await client.say("I want to report a bribe")
        assert "can't answer right now" in texts(replies)
        [conversation] = await db_rows(settings, Conversation, id=client.conversation_id)
        assert conversation.state == "queued"
        [message] = await db_rows(
            settings, Message, conversation_id=client.conversation_id, author="citizen"
        )
        assert message.text == "I want to report a bribe"
        await client.close()
    finally:
        await server.close()


async def test_hub_restart_loses_nothing(settings: Settings) -> None:
    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    client = await chat(server, "en")
    await client.say("I want to report an official for embezzlement")
    for answer in (
        "don't know",
        "Harbor Authority",
        "skip",
        "He moved port maintenance funds into his brother's company",
        "skip",
        "skip",
        "skip",
        "anonymous",
    ):
        await client.say(answer)
    done = texts(await client.say("confirm"))
    code, pin = CASE.search(done).group(1), PIN.search(done).group(1)  # type: ignore[union-attr]
    token, conversation_id = client.resume, client.conversation_id
    await client.close()
    await server.close()

    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    try:
        again = ChatClient(str(server.make_url("/")), "en")
        welcome = await again.connect(resume=token)
        assert welcome["conversation_id"] == conversation_id and welcome["resumed"]
        history = await again.recv()
        said = [m["text"] for m in history["messages"] if m["from"] == "citizen"]
        assert said[0] == "I want to report an official for embezzlement" and len(said) == 10
        assert any(code in m["text"] for m in history["messages"])
        await again.say("check my case")
        await again.say(code)
        assert "registered" in texts(await again.say(pin))
        await again.close()
    finally:
        await server.close()


async def test_healthz_all_green(hub: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.make_url("/healthz")) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    voice = body["components"].pop("asterisk")
    assert voice["status"] == "off"  # this hub runs without voice; test_voice covers it
    assert {c["status"] for c in body["components"].values()} == {"ok"}


async def test_form_survives_a_rasa_restart(hub: TestServer, rasa_stack: list[Child]) -> None:
    """The tracker store is SQL, so a restarted Rasa picks the form up where it was."""
    client = await chat(hub, "zh")
    await client.say("我要举报县林业局有人受贿")
    await client.say("郑十一")
    asks_position = texts(await client.say("县林业局"))
    assert "职务" in asks_position
    rasa = next(c for c in rasa_stack if c.name == "rasa")
    rasa.stop()
    down = texts(await client.say("科长"))  # Rasa is down: stored, and the citizen is told
    assert "暂时无法回复" in down
    rasa.start()
    await wait_ready([rasa])
    # The hub queued the conversation while Rasa was away; a person would take it from
    # here. Put it back to the bot, as an agent would, to check the dialogue state.
    engine = make_engine(hub.app[SETTINGS].database_url)
    async with sessionmaker(engine)() as session:
        conversation = await session.get(Conversation, client.conversation_id)
        assert conversation is not None
        conversation.state = "bot"
        await session.commit()
    await engine.dispose()
    resumed = texts(await client.say("科长"))
    assert "发生了什么事" in resumed  # the next question of the same form
    await client.close()
