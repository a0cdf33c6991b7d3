"""Callers talking to the bot: the same hub and Rasa conversation as chat, channel voice.

A real Rasa (trained model, action server), a real Asterisk, SIPp callers and phones.
The caller's words are espeak-ng audio streamed into the call and recognized by
pocketsphinx with the bot's English training phrases as its grammar.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from hotline.appkeys import VOICE
from tests.audio_pcap import speak, write_rtp_pcap
from tests.staff import StaffClient
from tests.test_handoff import rows
from tests.test_phones import admin, agent_with_phone, go_ready, hub, voices
from tests.voice import call, record_of, steps

__all__ = ["admin", "hub", "voices"]  # fixtures, used by name

pytestmark = [
    pytest.mark.voice,
    pytest.mark.rasa,
    pytest.mark.usefixtures("rasa_stack"),
    pytest.mark.hub(bot=True),  # the hub on the session's Rasa
]


async def test_spoken_question_is_answered_by_the_bot(
    hub: TestServer, db_url: str, tmp_path: Path
) -> None:
    question = "how do i file a complaint"
    pcap = tmp_path / "question.pcap"
    write_rtp_pcap(speak(question, tmp_path / "question.wav"), pcap, tail_silence=1.0)
    keys: list[tuple[int, str | Path]] = [
        (2500, "2"),  # English
        (1500, "4"),  # legal questions
        (3000, pcap),  # asked over the prompt (barge-in)
        (15000, "9"),  # hear the answer; 9 means nothing
    ]
    await call(hub.app[VOICE].settings, "13600000001", keys)

    record = await record_of(db_url, "13600000001")
    path = steps(record)
    for step in [("language", "en"), ("menu", "legal"), ("bot", "legal_consult")]:
        assert step in path, (step, path)
    assert ("bot_turn", "speech") in path, path
    assert question not in str(record.ivr_path)  # what callers say stays out of the CDR
    assert record.conversation_id is not None

    conversation, messages = await rows(hub.app[VOICE].settings, record.conversation_id)
    assert conversation.channel == "voice" and conversation.language == "en"
    assert conversation.state == "closed"  # the caller hung up
    said = [(m.author, m.text) for m in messages]
    assert said[0] == ("citizen", question), said
    assert said[1][0] == "bot" and "complaint" in said[1][1].lower(), said  # the article
    assert all(m.handled for m in messages)


async def test_report_by_phone_goes_to_a_person_with_what_the_bot_collected(
    hub: TestServer, admin: StaffClient, db_url: str, voices: dict[str, Path]
) -> None:
    """A button by key ("don't know"), then a question pocketsphinx can't take down: the
    bot hands the call to an agent's phone with the transcript and the fields."""
    alice, phone = await agent_with_phone(hub, admin, "alice")
    phone.answer(voices["agent"], ring_ms=1000, talk_ms=4000)
    await go_ready(alice)
    keys: list[tuple[int, str | Path]] = [
        (2500, "2"),  # English
        (1500, "1"),  # a report
        (4000, "1"),  # "For Don't know, press 1" (the name of the person reported)
        # The survey, which starts about 24 s in and waits for a key until about 38 s.
        (21000, "1"),
    ]
    caller = asyncio.create_task(call(hub.app[VOICE].settings, "13600000002", keys, hangs_up=False))
    offer = await alice.wait("offer", timeout=60)
    assert offer["channel"] == "voice" and offer["caller"] == "13600000002"
    detail = await alice.get(f"/api/conversations/{offer['conversation_id']}")
    said = [(m["from"], m["text"]) for m in detail["transcript"]]
    assert said[0] == ("citizen", "Make a report (phone menu)"), said
    assert ("citizen", "Don't know") in said, said
    assert detail["fields"].get("case_kind") == "report", detail["fields"]
    assert detail["conversation"]["handoff_reason"] == "requested"
    await phone.done()
    await asyncio.wait_for(caller, 90)

    record = await record_of(db_url, "13600000002")
    path = steps(record)
    for step in [
        ("menu", "report"),
        ("bot", "report_crime"),
        ("bot_turn", "button"),
        ("bot_turn", "cannot_take"),
        ("handoff", "requested"),
        ("agent_answered", None),
        ("survey", "1"),
    ]:
        assert step in path, (step, record.ivr_path)
    assert record.agent_id == alice.user["id"]
    assert record.conversation_id == offer["conversation_id"]
    conversation, _ = await rows(hub.app[VOICE].settings, offer["conversation_id"])
    assert conversation.state == "closed" and conversation.rating == 1
    await alice.close()
