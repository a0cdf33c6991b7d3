"""What the IVR says, in Mandarin and English. Written to be heard, not read."""

from __future__ import annotations

from typing import Any

from hotline.lang import Lang

PROMPTS: dict[str, dict[Lang, str]] = {
    "welcome": {
        "zh": "您好，欢迎致电12309检察服务热线。普通话请按1，For English, press 2.",
        "en": "Welcome to the 12309 procuratorate hotline. For Mandarin press 1. For English, press 2.",
    },
    "menu": {
        "zh": "举报请按1，控告或申诉请按2，查询案件进度请按3，法律咨询请按4，人工服务请按0。",
        "en": "To make a report, press 1. For a complaint or appeal, press 2. To check a case, "
        "press 3. For legal questions, press 4. To speak to a member of staff, press 0.",
    },
    "enter_code": {
        "zh": "请输入12位案件编号，以井号键结束。",
        "en": "Please key in your 12 digit case code, then press the hash key.",
    },
    "enter_pin": {
        "zh": "请输入6位查询密码，以井号键结束。",
        "en": "Please key in your 6 digit PIN, then press the hash key.",
    },
    "status_found": {
        "zh": "您的案件当前状态是：{status}。程序性答复期限是{reply_due}。",
        "en": "Your case status is: {status}. A procedural reply is due by {reply_due}.",
    },
    "status_no_match": {
        "zh": "案件编号或查询密码不正确。您还可以尝试{left}次。",
        "en": "The case code or PIN is not correct. You have {left} more tries.",
    },
    "status_locked": {
        "zh": "查询失败次数过多，请在北京时间{until}以后再试。",
        "en": "Too many failed tries. Please try again after {until}, China Standard Time.",
    },
    "not_by_phone_yet": {
        "zh": "抱歉，电话暂时无法办理此项业务。请登录12309中国检察网或使用在线服务。",
        "en": "Sorry, this service is not yet available by phone. Please use the 12309 "
        "website or our online chat.",
    },
    "blacklisted": {
        "zh": "抱歉，我们暂时无法为您提供服务。如有紧急情况，请拨打110。再见。",
        "en": "Sorry, we cannot take your call. In an emergency, call 110. Goodbye.",
    },
    "goodbye": {"zh": "感谢您的来电，再见。", "en": "Thank you for calling. Goodbye."},
    "connecting": {
        "zh": "正在为您转接人工服务，请稍候。",
        "en": "Please hold while we connect you to a member of staff.",
    },
    "position": {
        "zh": "您前面还有{ahead}位来电，请耐心等候。",
        "en": "There are {ahead} callers ahead of you. Thank you for holding.",
    },
    "position_next": {
        "zh": "您是下一位，请稍候。",
        "en": "You are next in line. Please hold.",
    },
    "survey": {
        "zh": "请对本次服务进行评价：非常满意请按1，满意请按2，不满意请按3。",
        "en": "Please rate our service. Very satisfied, press 1. Satisfied, press 2. "
        "Dissatisfied, press 3.",
    },
    "survey_thanks": {"zh": "感谢您的评价，再见。", "en": "Thank you for your rating. Goodbye."},
    "leave_message": {
        "zh": "{why}请在提示音后留言，说明您要反映的问题，留言结束请按井号键。",
        "en": "{why}Please leave a message after the tone, telling us what you want to report. "
        "Press the hash key when you are done.",
    },
    "transfer_failed": {
        "zh": "抱歉，您要转接的号码未能接通，请稍后再拨。再见。",
        "en": "Sorry, the number we transferred you to could not be reached. Please call "
        "again later. Goodbye.",
    },
    "nobody_free": {
        "zh": "抱歉，目前没有工作人员可以接听。",
        "en": "Sorry, nobody is free to take your call.",
    },
    "after_hours": {
        "zh": "现在是非工作时间。",
        "en": "Our office is closed now.",
    },
    "message_saved": {
        "zh": "您的留言已登记。您的案件编号是{code}，查询密码是{pin}。请记下。重复一遍，"
        "案件编号{code}，查询密码{pin}。",
        "en": "Your message has been registered. Your case code is {code}, and your PIN is "
        "{pin}. Please write them down. Again: case code {code}, PIN {pin}.",
    },
    "spoken_message": {
        "zh": "（电话留言，{seconds}秒，请听录音）",
        "en": "(Spoken message, {seconds} seconds: listen to the recording.)",
    },
    "bot_hint": {
        "zh": "您可以直接说出您的问题。任何时候按0转人工服务，按星号键重听。",
        "en": "You can speak to me. Press 0 at any time for a member of staff, or star to "
        "hear this again.",
    },
    "chose_report_crime": {"zh": "我要举报（电话菜单）", "en": "Make a report (phone menu)"},
    "chose_file_complaint": {
        "zh": "我要控告或申诉（电话菜单）",
        "en": "A complaint or appeal (phone menu)",
    },
    "ask_question": {
        "zh": "请说出您想咨询的法律问题。",
        "en": "Please ask your legal question.",
    },
    "anything_else": {
        "zh": "还有其他问题吗？请直接说出，或按0转人工服务。",
        "en": "Is there anything else? Just say it, or press 0 for a member of staff.",
    },
    "press_for": {"zh": "{title}请按{n}。", "en": "For {title}, press {n}."},
    "key_in": {
        "zh": "请用电话按键输入，以井号键结束。",
        "en": "Please key it in on your phone, then press the hash key.",
    },
    "staff_takes_details": {
        "zh": "这一项需要由工作人员为您记录。",
        "en": "A member of staff will take down these details.",
    },
    "message_empty": {
        "zh": "没有录到您的留言。",
        "en": "We did not hear a message.",
    },
}


def prompt(key: str, lang: Lang, **values: Any) -> str:
    return PROMPTS[key][lang].format(**values)


def spell(digits: str, lang: Lang) -> str:
    """Digits one by one, as a code must be read out ("1 2 3", not "one hundred ...")."""
    return ("，" if lang == "zh" else ", ").join(
        " ".join(digits[i : i + 4]) for i in range(0, len(digits), 4)
    )
