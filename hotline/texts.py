"""What the hub itself says to citizens, in Mandarin and English.

The bot's own lines live in ``bots/texts.py``; these are the hub's: results of the
commands the bot asks the hub to carry out, and what it says when the bot is away.
"""

from __future__ import annotations

from typing import Any

from hotline.lang import Lang

TEXTS: dict[str, dict[Lang, str]] = {
    "bot_unavailable": {
        "zh": "抱歉，智能助手暂时无法回复。您的消息已保存，我们已为您转接人工服务，请稍候。",
        "en": "Sorry, our assistant can't answer right now. Your message is saved and we have "
        "passed your conversation to a member of staff. Please wait.",
    },
    "ticket_created": {
        "zh": "您的{kind}已登记。\n案件编号：{code}\n查询密码：{pin}\n"
        "请记下并妥善保存，查询密码不会再次显示。我们将在{reply_due}前（7个工作日内）作出程序性答复，"
        "并在{result_due}前（3个月内）告知办理进展或结果。\n"
        "查询进度时，请说“查询案件”，然后输入案件编号和查询密码；电话查询时也可以用按键输入。",
        "en": "Your {kind} is registered.\nCase code: {code}\nPIN: {pin}\n"
        "Write both down and keep them safe: the PIN will not be shown again. You will get a "
        "procedural reply by {reply_due} (within 7 working days) and news of progress or the "
        "result by {result_due} (within 3 months).\n"
        'To check progress, say "check my case" and give the case code and PIN; on the phone '
        "you can key them in.",
    },
    "ticket_failed": {
        "zh": "抱歉，系统暂时无法登记您的材料。您填写的内容已保存，工作人员会尽快与您联系。",
        "en": "Sorry, we could not register your case just now. What you told us is saved and a "
        "member of staff will follow up.",
    },
    "status_found": {
        "zh": "案件编号 {code}（{kind}）\n当前状态：{status}\n登记日期：{created}\n"
        "程序性答复期限：{reply_due}（7个工作日内）\n办理进展或结果答复期限：{result_due}（3个月内）",
        "en": "Case {code} ({kind})\nStatus: {status}\nRegistered: {created}\n"
        "Procedural reply due: {reply_due} (within 7 working days)\n"
        "Progress or result due: {result_due} (within 3 months)",
    },
    "status_no_match": {
        "zh": "案件编号或查询密码不正确，请核对后重试。您还可以尝试{left}次。",
        "en": "The case code or PIN is not correct. Please check them and try again. "
        "You have {left} more tries.",
    },
    "status_locked": {
        "zh": "查询失败次数过多，查询已暂时锁定。请在{until}（北京时间）之后再试，或转人工服务。",
        "en": "Too many failed tries, so lookups are locked for now. Please try again after "
        "{until} (China Standard Time), or ask for a member of staff.",
    },
    "error_text_too_long": {
        "zh": "消息太长了，请分成几条发送（每条不超过{limit}字）。",
        "en": "That message is too long. Please send it in parts of at most {limit} characters.",
    },
    "error_rate_limited": {
        "zh": "发送太快了，请稍等几秒再发。您的消息会自动重发。",
        "en": "You're sending too fast. Please wait a few seconds; your message will be resent.",
    },
    "error_empty_text": {"zh": "不能发送空消息。", "en": "You can't send an empty message."},
    "kb_answer": {"zh": "《{title}》\n{body}", "en": "{title}\n\n{body}"},
    "kb_clarify": {
        "zh": "我找到了几篇可能相关的说明，您想了解的是哪一个？",
        "en": "I found a few articles that may help. Which one do you mean?",
    },
    "kb_weak": {
        "zh": "抱歉，我没有找到确切的答案。您可以换一种说法再问，或者转人工服务。",
        "en": "Sorry, I couldn't find a clear answer. You can rephrase the question, or talk "
        "to a member of staff.",
    },
    "fallback": {
        "zh": "抱歉，我没有理解您的意思。我可以帮您：",
        "en": "Sorry, I didn't understand. I can help you with:",
    },
    "btn_human": {"zh": "转人工服务", "en": "Talk to a person"},
    "btn_report": {"zh": "我要举报", "en": "Make a report"},
    "btn_status": {"zh": "查询案件进度", "en": "Check my case"},
    "btn_consult": {"zh": "受理范围", "en": "What you handle"},
    "sealed_placeholder": {
        "zh": "［身份信息，已加密保存］",
        "en": "[identity information, stored encrypted]",
    },
    "pin_placeholder": {"zh": "******", "en": "******"},
    "kind_report": {"zh": "举报", "en": "report"},
    "kind_complaint": {"zh": "控告", "en": "complaint"},
    "kind_appeal": {"zh": "申诉", "en": "appeal"},
    "kind_compensation": {"zh": "国家赔偿申请", "en": "state compensation claim"},
    "kind_message": {"zh": "留言", "en": "message"},
    "gave_up_handoff": {
        "zh": "抱歉，我没能帮上忙。正在为您转接人工服务，请稍候。",
        "en": "Sorry, I couldn't help with that. I'm passing you to a member of staff; please wait.",
    },
    "agent_joined": {
        "zh": "人工客服{name}已接入，请问有什么可以帮您？",
        "en": "{name} from our staff has joined. How can I help you?",
    },
    "agent_left": {
        "zh": "您的会话已转给其他工作人员，请稍候。",
        "en": "Your conversation has been passed to another member of staff. Please wait.",
    },
    "rate_question": {
        "zh": "本次服务已结束。请您对本次服务进行评价：",
        "en": "This conversation has ended. Please rate our service:",
    },
    "rate_1": {"zh": "1 非常满意", "en": "1 Very satisfied"},
    "rate_2": {"zh": "2 满意", "en": "2 Satisfied"},
    "rate_3": {"zh": "3 不满意", "en": "3 Dissatisfied"},
    "rate_thanks": {
        "zh": "感谢您的评价！如还有其他问题，可以随时留言。",
        "en": "Thank you for your rating! Write again any time if you need more help.",
    },
    "leave_message": {
        "zh": "抱歉，目前没有工作人员可以接听。请直接留言说明您的问题，我们会登记并尽快回复您。",
        "en": "Sorry, no member of staff is free right now. Please leave a message describing "
        "your question; we will register it and get back to you.",
    },
    "message_registered": {
        "zh": "您的留言已登记。\n案件编号：{code}\n查询密码：{pin}\n请妥善保存，查询密码不会再次显示。",
        "en": "Your message is registered.\nCase code: {code}\nPIN: {pin}\nKeep them safe: the "
        "PIN will not be shown again.",
    },
    "blacklisted": {
        "zh": "抱歉，我们暂时无法为您转接人工服务。如有紧急情况，请拨打110。",
        "en": "Sorry, we cannot put you through to a member of staff. In an emergency, call 110.",
    },
}


def say(key: str, lang: Lang, **values: Any) -> str:
    return TEXTS[key][lang].format(**values)
