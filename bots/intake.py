"""The intake dialogue as pure functions: which question comes next, and what an answer means.

Kept free of rasa-sdk so it can be unit-tested directly. The form validation action in
``bots.actions`` is a thin shell around :func:`step`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

SKIPPED = "<skipped>"
MAX_RETRIES = 3
MAX_LEN = {"details": 2000, "evidence": 1000}
DEFAULT_MAX = 200

KINDS = ("report", "complaint", "appeal", "compensation")
IDENTITY_SLOTS = ("reporter_name", "reporter_phone", "reporter_id")
NOTIFY = "notify_sms"  # a named reporter's yes/no to an SMS when the case changes
NAMED_SLOTS = ("reporter_name", "reporter_phone", NOTIFY, "reporter_id")
INTAKE_SLOTS = (
    "person",
    "unit",
    "position",
    "details",
    "when",
    "place",
    "evidence",
    "anonymous",
    *NAMED_SLOTS,
    "confirm",
)
OPTIONAL = frozenset({"person", "position", "when", "place", "evidence", "reporter_id"})
SENSITIVE = frozenset(IDENTITY_SLOTS)

_REPORT_PLAN = ("person", "unit", "position", "details", "when", "place", "evidence")
_CLAIM_PLAN = ("details", "when", "place")


def plan(kind: str, slots: Dict[str, Optional[str]]) -> List[str]:
    """The questions for this kind of case, in order; identity only when named."""
    steps = list(_REPORT_PLAN if kind == "report" else _CLAIM_PLAN)
    steps.append("anonymous")
    if slots.get("anonymous") == "named":
        steps.extend(NAMED_SLOTS)
    steps.append("confirm")
    return steps


def next_slot(kind: str, slots: Dict[str, Optional[str]]) -> Optional[str]:
    for name in plan(kind, slots):
        if slots.get(name) is None:
            return name
    return None


# ------------------------------------------------------------------ recognizers
_CANCEL = re.compile(
    r"^\s*(取消|不举报了|不办了|不弄了|算了|退出|不想继续|停止|不用了|cancel|stop|quit|abort|"
    r"never ?mind|forget it)\b",
    re.IGNORECASE,
)
_HUMAN = re.compile(
    r"(转人工|人工服务|人工客服|真人|接线员|agent|human|operator|real person)", re.I
)
_SKIP = re.compile(
    r"^\s*(跳过|不知道|不清楚|不记得|记不清|没有|无|暂无|不详|略|skip|pass|don'?t know|no idea|"
    r"not sure|none|n/?a|no)\s*[。.!！]?\s*$",
    re.IGNORECASE,
)
_YES = re.compile(
    r"^\s*(确认|确定|是的?|对|没错|无误|提交|好的?|可以|yes|yep|yeah|y|ok|okay|"
    r"confirm|correct|submit|right|sure)\s*[。.!！]?\s*$",
    re.IGNORECASE,
)
_NO = re.compile(
    r"^\s*(不对|不是|修改|需要修改|有误|错了|不|否|no|nope|change|edit|wrong)\b", re.IGNORECASE
)
_NAMED = re.compile(
    r"(实名|留名|留下.*(名字|姓名|信息)|愿意.*(名|身份)|\bnamed\b|my name|real name|"
    r"give (you )?my name|identify myself)",
    re.IGNORECASE,
)
_ANON = re.compile(
    r"(匿名|不留|不愿|不想.*(名|身份)|anonym|without (my )?name|no name|stay anonymous)",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"([?？]|吗\s*$|什么|怎么|如何|多久|多长时间|哪里|哪些|能不能|可不可以|是否|会不会|"
    r"^\s*(what|how|when|where|why|can|could|will|is|are|do|does|should)\b)",
    re.IGNORECASE,
)
_WANT = re.compile(r"^\s*(需要|要|行|希望|please|sure|yes please)", re.IGNORECASE)
_DONT_WANT = re.compile(r"(不需要|不用|不要|别发|no thanks|don'?t)", re.IGNORECASE)
_LETTER = re.compile(r"[A-Za-z\u3400-\u9fff]")
_REPEAT = re.compile(r"^(.)\1{3,}$")

FIELD_WORDS: Dict[str, str] = {
    "person": r"被举报人|举报对象|被举报的人|那个人的名字|对方姓名|person reported|"
    r"official'?s name|"
    r"name of the (official|person)",
    "unit": r"单位|部门|机关|工作单位|unit|organi[sz]ation|department|agency|employer|office",
    "position": r"职务|职位|官职|position|job title|rank",
    "details": r"事情经过|经过|具体情况|问题描述|details|description|what happened",
    "when": r"时间|日期|什么时候|年份|\bwhen\b|\bdate\b|\btime\b",
    "place": r"地点|地方|位置|\bplace\b|location|\bwhere\b",
    "evidence": r"证据|材料|线索|evidence|proof",
    "reporter_name": r"我的名字|我的姓名|本人姓名|my name",
    "reporter_phone": r"电话|手机|号码|phone|mobile|number",
}
_FIELD_RE = {slot: re.compile(words, re.IGNORECASE) for slot, words in FIELD_WORDS.items()}
_CORRECTION = re.compile(
    r"(说错了|错了|不对|更正|改成|改为|应该是|应为|其实是|写错|搞错|弄错|"
    r"\bwrong\b|mistake|correction|\bactually\b|should be|should read|change .* to|\bmeant\b)",
    re.IGNORECASE,
)
_ZH_VALUE = re.compile(
    r"(?:应该是|应为|改成|改为|其实是|是|为)[:：\s]*([^，。,；;]+?)[。.!！]?\s*$"
)
_EN_VALUES = (
    re.compile(
        r"(?:should be|should read|is actually|change it to|meant)[:\s]+(.+?)[.!]?\s*$", re.I
    ),
    re.compile(r"(?:is|was|to)[:\s]+(.+?)[.!]?\s*$", re.I),
)


def is_cancel(text: str) -> bool:
    return bool(_CANCEL.search(text))


def wants_human(text: str) -> bool:
    return bool(_HUMAN.search(text))


def is_skip(text: str) -> bool:
    return bool(_SKIP.match(text))


def is_question(text: str) -> bool:
    return bool(_QUESTION.search(text))


def parse_correction(text: str) -> Optional[Tuple[str, str]]:
    """("unit", "县财政局") for "单位说错了，是县财政局"; None if it isn't a correction."""
    if not _CORRECTION.search(text):
        return None
    found = [(m.start(), slot) for slot, rx in _FIELD_RE.items() for m in [rx.search(text)] if m]
    if not found:
        return None
    slot = min(found)[1]
    value_match = _ZH_VALUE.search(text) or _EN_VALUES[0].search(text) or _EN_VALUES[1].search(text)
    if not value_match:
        return None
    value = value_match.group(1).strip(" \"'“”‘’")
    if not value or _FIELD_RE[slot].fullmatch(value):
        return None
    return slot, value


# ------------------------------------------------------------------ validation
_PHONE_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_PHONE_LAND = re.compile(r"^0\d{2,3}\d{7,8}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalize_phone(text: str) -> Optional[str]:
    digits = re.sub(r"[\s\-()（）]", "", text)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if _PHONE_MOBILE.match(digits) or _PHONE_LAND.match(digits):
        return digits
    return None


def valid_id_number(text: str) -> Optional[str]:
    """A mainland resident ID (18 characters, GB 11643 check character), upper-cased."""
    value = text.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return None
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS))
    return value if _ID_CHECK[total % 11] == value[17] else None


def validate(slot: str, text: str, lang: str) -> Tuple[Optional[str], Optional[str]]:
    """(value, None) when ``text`` answers ``slot``, else (None, error key)."""
    value = text.strip()
    if slot == NOTIFY:  # "不要" must not read as "要": refusals first
        if _NO.match(value) or is_skip(value) or _DONT_WANT.search(value):
            return "no", None
        if _YES.match(value) or _WANT.match(value):
            return "yes", None
        return None, "err_notify"
    if slot in OPTIONAL and is_skip(value):
        return SKIPPED, None
    if slot not in OPTIONAL and is_skip(value) and slot not in ("anonymous", "confirm"):
        return None, "err_required"
    if not value:
        return None, "err_empty"
    if len(value) > MAX_LEN.get(slot, DEFAULT_MAX):
        return None, "err_too_long"
    if slot == "reporter_phone":
        phone = normalize_phone(value)
        return (phone, None) if phone else (None, "err_phone")
    if slot == "reporter_id":
        number = valid_id_number(value)
        return (number, None) if number else (None, "err_id_number")
    if slot == "anonymous":
        if _ANON.search(value):
            return "anonymous", None
        if _NAMED.search(value):
            return "named", None
        return None, "err_anonymous"
    if not _LETTER.search(value) or _REPEAT.match(value):
        return None, "err_empty"
    if slot == "reporter_name":
        if len(value) > 40 or re.search(r"\d", value):
            return None, "err_name"
        return value, None
    if slot == "details":
        chinese = len(re.findall(r"[\u3400-\u9fff]", value))
        if chinese < 6 and len(value.split()) < 4:
            return None, "err_too_short"
    return value, None


@dataclass
class Turn:
    """What one citizen message did to the intake."""

    slots: Dict[str, Optional[str]] = field(default_factory=dict)
    say: List[Tuple[str, Dict[str, str]]] = field(default_factory=list)
    ask_kb: bool = False
    outcome: Optional[str] = None  # confirmed | cancelled | handoff
    retries: int = 0


def step(
    kind: str,
    requested: Optional[str],
    slots: Dict[str, Optional[str]],
    text: str,
    intent: str,
    confidence: float,
    retries: int,
    lang: str,
) -> Turn:
    """Decide what the latest message means for the intake form."""
    turn = Turn(retries=retries)
    if requested is None:
        return turn
    sure = confidence >= 0.6
    if (intent == "cancel" and sure) or is_cancel(text):
        turn.outcome = "cancelled"
        return turn
    if (intent == "request_human" and sure) or wants_human(text):
        turn.outcome = "handoff"
        return turn
    # A long free-text answer may mention a field and "wrong" in passing; only short
    # messages are read as corrections.
    correction = parse_correction(text) if len(text) <= 60 else None
    if correction and correction[0] in plan(kind, slots):
        target, raw = correction
        value, error = validate(target, raw, lang)
        if value is not None and target != "anonymous":
            turn.slots[target] = value
            turn.say.append(("corrected", {"label": f"label_{target}", "value": raw}))
            return turn
    if requested == "confirm":
        if intent == "affirm" or _YES.match(text):
            turn.outcome = "confirmed"
        elif intent == "deny" or _NO.match(text):
            turn.say.append(("confirm_which", {}))
        elif intent == "legal_consult" and is_question(text):
            turn.ask_kb = True
        else:
            return _retry(turn, "err_confirm")
        return turn
    if intent == "legal_consult" and confidence >= 0.7 and is_question(text):
        turn.ask_kb = True
        return turn
    if requested == "anonymous" and intent in ("affirm", "deny") and text.startswith("/"):
        turn.slots["anonymous"] = "named" if intent == "affirm" else "anonymous"
        turn.retries = 0
        return turn
    if requested == NOTIFY and intent in ("affirm", "deny") and text.startswith("/"):
        turn.slots[NOTIFY] = "yes" if intent == "affirm" else "no"
        turn.retries = 0
        return turn
    if intent == "skip" and text.startswith("/"):
        text = "skip"
    value, error = validate(requested, text, lang)
    if value is None:
        limit = {"limit": str(MAX_LEN.get(requested, DEFAULT_MAX))}
        return _retry(turn, error or "err_empty", limit if error == "err_too_long" else {})
    turn.slots[requested] = value
    turn.retries = 0
    return turn


def _retry(turn: Turn, error: str, values: Optional[Dict[str, str]] = None) -> Turn:
    turn.retries += 1
    if turn.retries >= MAX_RETRIES:
        turn.outcome = "handoff"
        return turn
    turn.say.append((error, values or {}))
    return turn


# ------------------------------------------------------------------ case status
def split_code_pin(text: str) -> Tuple[Optional[str], Optional[str]]:
    """(12-digit code, 6-digit PIN) found in ``text``, either possibly None.

    Separate runs are read first ("118016483006 503815"); if none fits, all digits are
    joined, so a code keyed in groups ("1180 1648 3006") still counts.
    """
    runs = re.findall(r"\d+", text)
    code = next((r for r in runs if len(r) == 12), None)
    pin = next((r for r in runs if len(r) == 6), None)
    if code is None and pin is None:
        joined = "".join(runs)
        if len(joined) == 12:
            code = joined
        elif len(joined) == 18:
            code, pin = joined[:12], joined[12:]
        elif len(joined) == 6:
            pin = joined
    return code, pin


def mask_name(name: str) -> str:
    return name[:1] + "*" * max(len(name) - 1, 1)


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"
