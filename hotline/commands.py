"""The bot ↔ hub command protocol, one definition for both sides.

The Rasa actions (``bots/``, run by rasa-sdk on Python 3.10) never write anything: when
the dialogue needs a side effect they send one of these commands as a custom payload
``{"hotline": {"cmd": ..., ...}}``, and the hub carries it out. ``encode`` is the bot's
half, ``decode`` the hub's: it validates and bounds every field, since a payload is
input like any other.

Keep this module importable on Python 3.10 (Rasa's) with the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HANDOFF_REASONS = frozenset(
    {"requested", "bot_unavailable", "bot_overloaded", "bot_gave_up", "intake_failed"}
)
KB_MODES = frozenset({"consult", "fallback"})
_MAX_FIELDS = 40
_MAX_KEY = 64
_MAX_VALUE = 2000


@dataclass(frozen=True)
class ExpectSensitive:
    """The citizen's next message is an identity answer or a PIN: store it sealed."""


@dataclass(frozen=True)
class Forget:
    """The bot dropped an intake or lookup: purge what Rasa's tracker kept of it."""


@dataclass(frozen=True)
class Handoff:
    reason: str = "requested"
    fields: dict[str, str] = field(default_factory=dict)  # collected before slots reset


@dataclass(frozen=True)
class CreateTicket:
    kind: str
    fields: dict[str, Any]
    identity: dict[str, str] | None = None  # name, phone, id_number: sealed in the vault
    notify: bool = False  # the named reporter wants an SMS when the case changes


@dataclass(frozen=True)
class CaseStatus:
    code: str
    pin: str


@dataclass(frozen=True)
class KbAnswer:
    query: str
    mode: str = "consult"
    topic: str | None = None


Command = ExpectSensitive | Forget | Handoff | CreateTicket | CaseStatus | KbAnswer

_NAMES: dict[type, str] = {
    ExpectSensitive: "expect_sensitive",
    Forget: "forget",
    Handoff: "handoff",
    CreateTicket: "create_ticket",
    CaseStatus: "case_status",
    KbAnswer: "kb_answer",
}


class BadCommand(ValueError):
    """A payload that claims to be a command but is not a valid one."""


def encode(command: Command) -> dict[str, Any]:
    """The custom payload the bot sends (``dispatcher.utter_message(json_message=...)``)."""
    body: dict[str, Any] = {"cmd": _NAMES[type(command)]}
    body.update({k: v for k, v in command.__dict__.items()})
    return {"hotline": body}


def _str_map(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadCommand(f"{what} must be an object")
    return {str(k)[:_MAX_KEY]: str(v)[:_MAX_VALUE] for k, v in list(raw.items())[:_MAX_FIELDS]}


def decode(payload: Any) -> Command | None:
    """The command in a bot reply's ``custom`` payload; None if it carries none.

    Raises ``BadCommand`` for a malformed or unknown one.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("hotline"), dict):
        return None
    body = payload["hotline"]
    name = body.get("cmd")
    if name == "expect_sensitive":
        return ExpectSensitive()
    if name == "forget":
        return Forget()
    if name == "handoff":
        reason = str(body.get("reason") or "requested")
        return Handoff(
            reason if reason in HANDOFF_REASONS else "requested",
            _str_map(body.get("fields"), "fields"),
        )
    if name == "create_ticket":
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise BadCommand("create_ticket: fields must be an object")
        identity = body.get("identity")
        return CreateTicket(
            kind=str(body.get("kind")),
            fields=fields,
            identity=_str_map(identity, "identity") if identity is not None else None,
            notify=body.get("notify") is True,
        )
    if name == "case_status":
        return CaseStatus(str(body.get("code", ""))[:64], str(body.get("pin", ""))[:64])
    if name == "kb_answer":
        mode = str(body.get("mode", "consult"))
        topic = body.get("topic")
        return KbAnswer(
            query=str(body.get("query", "")),
            mode=mode if mode in KB_MODES else "consult",
            topic=str(topic)[:_MAX_KEY] if topic else None,
        )
    raise BadCommand(f"unknown command {str(name)[:40]!r}")
