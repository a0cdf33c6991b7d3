"""The bot ↔ hub command protocol and the intent names: one definition, both sides."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hotline import commands, intents
from hotline.config import PROJECT_ROOT

ALL = [
    commands.ExpectSensitive(),
    commands.Forget(),
    commands.Handoff("bot_gave_up", {"case_kind": "report", "unit": "县财政局"}),
    commands.CreateTicket("report", {"details": "x"}, {"name": "张三", "phone": "138"}),
    commands.CaseStatus("123456789012", "123456"),
    commands.KbAnswer("匿名举报", "fallback", "scope"),
]


@pytest.mark.parametrize("command", ALL, ids=lambda c: type(c).__name__)
def test_what_the_bot_encodes_the_hub_decodes(command: commands.Command) -> None:
    assert commands.decode(commands.encode(command)) == command


def test_a_reply_without_a_command_is_not_one() -> None:
    assert commands.decode(None) is None
    assert commands.decode({"other": 1}) is None
    assert commands.decode({"hotline": "handoff"}) is None


@pytest.mark.parametrize(
    "body",
    [
        {"cmd": "drop_tables"},
        {"cmd": None},
        {"cmd": "create_ticket", "kind": "report", "fields": []},
        {"cmd": "handoff", "fields": "everything"},
    ],
)
def test_malformed_commands_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(commands.BadCommand):
        commands.decode({"hotline": body})


def test_fields_are_bounded_and_unknown_values_fall_back() -> None:
    handoff = commands.decode(
        {"hotline": {"cmd": "handoff", "reason": "because", "fields": {"k" * 99: "v" * 9999}}}
    )
    assert isinstance(handoff, commands.Handoff)
    assert handoff.reason == "requested"
    [(key, value)] = handoff.fields.items()
    assert len(key) == 64 and len(value) == 2000
    answer = commands.decode({"hotline": {"cmd": "kb_answer", "query": "q", "mode": "rm -rf"}})
    assert answer == commands.KbAnswer("q", "consult", None)


def test_the_protocol_imports_on_rasas_python() -> None:
    """bots/ runs on Python 3.10 in .venv-rasa: the shared module must import there."""
    python = PROJECT_ROOT / ".venv-rasa" / "bin" / "python"
    code = "import hotline.commands as c; print(c.encode(c.Forget()))"
    out = subprocess.run(
        [str(python), "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert "'cmd': 'forget'" in out.stdout


def test_intents_come_from_the_domain(tmp_path: Path) -> None:
    assert intents.REQUEST_HUMAN in intents.INTENTS
    assert intents.BUTTON_INTENTS == intents.INTENTS | intents.RATINGS
    domain = tmp_path / "domain.yml"
    domain.write_text("intents:\n  - greet\n  - {request_human: {use_entities: []}}\n")
    assert intents.load_intents(domain) == {"greet", "request_human"}
