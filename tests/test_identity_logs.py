"""A reporter's identity never reaches a log: plant a canary, then grep every log."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from aiohttp.test_utils import TestServer

from hotline.config import Settings
from hotline.logs import JsonFormatter, redact
from tests.chat import ChatClient, texts

pytestmark = [pytest.mark.rasa, pytest.mark.usefixtures("rasa_stack")]

CANARY_NAME = "金丝雀甲乙"
CANARY_PHONE = "13912345678"
CANARY_ID = "11010519491231002X"


async def test_canary_identity_never_logged(
    hub_server: TestServer, base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = ChatClient(str(hub_server.make_url("/")), "zh")
    await client.connect()
    steps = [
        "我要举报",
        "孙九",
        "县税务局",
        "副局长",
        "他利用职务便利为企业违规减免税款并收取好处费",
        "前年",
        "跳过",
        "跳过",
    ]
    for step in steps:
        await client.say(step)
    await client.say("实名", payload="/affirm")
    await client.say(CANARY_NAME)
    await client.say(CANARY_PHONE)
    await client.say("不需要", payload="/deny")  # no SMS notices
    await client.say(CANARY_ID)
    done = texts(await client.say("确认"))
    assert "案件编号" in done
    await client.close()

    # Rasa's tracker store no longer holds the dialogue that carried the identity.
    tracker_db = base_settings.rasa_tracker_url.split(":///", 1)[1]
    with sqlite3.connect(tracker_db) as db:
        mine = db.execute(
            "SELECT count(*) FROM events WHERE sender_id = ?", (client.conversation_id,)
        ).fetchone()[0]
        everything = "\n".join(row[0] for row in db.execute("SELECT data FROM events"))
    assert mine == 0
    for canary in (CANARY_NAME, CANARY_PHONE, CANARY_ID):
        assert canary not in everything

    formatter = JsonFormatter()
    hub_logs = "\n".join(formatter.format(r) for r in caplog.records)
    assert "message stored" in hub_logs  # the hub did log this conversation
    logs = {"hub": hub_logs}
    for path in (base_settings.var_dir / "log").glob("*.log"):
        logs[path.name] = path.read_text(encoding="utf-8", errors="replace")
    assert {"rasa.log", "actions.log"} <= set(logs)
    for name, text in logs.items():
        for canary in (CANARY_NAME, CANARY_PHONE, CANARY_ID):
            assert canary not in text, f"{canary!r} leaked into {name}"


def test_redaction_masks_phone_and_id_shapes() -> None:
    assert CANARY_PHONE not in redact(f"call {CANARY_PHONE} now")
    assert CANARY_ID not in redact(f"id={CANARY_ID}")
    assert redact("case 118016483006") == "case 118016483006"  # case codes stay readable
