"""What the bot says, in Mandarin and English."""

from __future__ import annotations

from typing import Any, Dict

TEXTS: Dict[str, Dict[str, str]] = {
    "greet": {
        "zh": "您好，这里是12309检察服务中心在线服务。我可以解答咨询，帮您登记举报、控告、申诉或国家赔偿申请，"
        "也可以查询案件进度。请问有什么可以帮您？",
        "en": "Hello, this is the 12309 procuratorate online service. I can answer questions, take a "
        "report, complaint, appeal or state compensation claim, and check the status of a case. "
        "How can I help?",
    },
    "goodbye": {
        "zh": "感谢您的来访，再见。如需帮助，随时可以再来。",
        "en": "Thank you for getting in touch. Goodbye, and come back any time.",
    },
    "acknowledge": {
        "zh": "好的。还有什么可以帮您？",
        "en": "All right. Is there anything else I can do?",
    },
    "nothing_to_cancel": {
        "zh": "好的，目前没有正在办理的事项。还有什么可以帮您？",
        "en": "All right, nothing is in progress. Anything else I can do?",
    },
    "handoff": {
        "zh": "好的，正在为您转接人工服务，请稍候。您之前提供的信息工作人员都能看到，无需重复。",
        "en": "Of course. I'm passing you to a member of staff; please wait. They will see what "
        "you have told me, so you won't need to repeat it.",
    },
    "out_of_scope_intro": {
        "zh": "这个问题可能不在检察服务的受理范围内。",
        "en": "That may be outside what the procuratorate service handles.",
    },
    "lawyer_intro": {
        "zh": "律师预约阅卷、约见检察官等事项说明如下：",
        "en": "Here is how lawyers book file reviews and meetings with prosecutors:",
    },
    # intake
    "intake_start_report": {
        "zh": "好的，我来帮您登记举报。接下来会逐项询问，您可以随时说“跳过”（选填项）、"
        "更正之前的回答（如“单位说错了，是县财政局”）或说“取消”。请勿在描述中填写您自己的身份信息。",
        "en": 'All right, I\'ll take your report step by step. At any point you can say "skip" '
        '(for optional questions), correct an earlier answer (e.g. "the unit should be County '
        'Finance Bureau") or say "cancel". Please don\'t put your own identity in the description.',
    },
    "intake_start_complaint": {
        "zh": "好的，我来帮您登记控告。您可以随时说“取消”。",
        "en": 'All right, I\'ll take your complaint. You can say "cancel" at any point.',
    },
    "intake_start_appeal": {
        "zh": "好的，我来帮您登记申诉。您可以随时说“取消”。",
        "en": 'All right, I\'ll take your appeal. You can say "cancel" at any point.',
    },
    "intake_start_compensation": {
        "zh": "好的，我来帮您登记国家赔偿申请。您可以随时说“取消”。",
        "en": 'All right, I\'ll take your state compensation claim. You can say "cancel" at any point.',
    },
    "ask_person": {
        "zh": "请问被举报人的姓名是？如不清楚，可以说“不知道”。",
        "en": "What is the name of the person you are reporting? If you don't know, say \"don't know\".",
    },
    "ask_unit": {
        "zh": "他/她在哪个单位工作？（例如：某某县财政局）",
        "en": "Which organization do they work for? (e.g. County Finance Bureau)",
    },
    "ask_position": {
        "zh": "他/她担任什么职务？（选填，可说“跳过”）",
        "en": 'What is their position? (optional: you can say "skip")',
    },
    "ask_details_report": {
        "zh": "请描述具体问题：发生了什么事？（例如：收受贿赂、挪用公款、滥用职权的具体情况）",
        "en": "Please describe what happened (e.g. the bribe, the misused funds, the abuse of power).",
    },
    "ask_details_complaint": {
        "zh": "请描述您的合法权益受到了怎样的侵犯：谁、在什么时候、做了什么？",
        "en": "Please describe how your rights were infringed: who did what, and when?",
    },
    "ask_details_appeal": {
        "zh": "请说明您不服的判决、裁定或决定（作出机关、文书名称或编号），以及不服的理由。",
        "en": "Please tell me which judgment, ruling or decision you disagree with (who made it, its "
        "name or number) and why.",
    },
    "ask_details_compensation": {
        "zh": "请说明申请赔偿的事由：何时被采取了什么措施（如拘留、逮捕、判刑），后来如何处理的？",
        "en": "Please describe the grounds: what measure was taken against you (detention, arrest, "
        "sentence), when, and how it ended.",
    },
    "ask_when": {
        "zh": "这件事大概发生在什么时间？（选填，可说“跳过”）",
        "en": 'Roughly when did this happen? (optional: you can say "skip")',
    },
    "ask_place": {
        "zh": "发生在什么地点？（选填，可说“跳过”）",
        "en": 'Where did it happen? (optional: you can say "skip")',
    },
    "ask_evidence": {
        "zh": "您掌握哪些证据或线索？请简要描述（如转账记录、照片、证人），不必上传原件。（选填）",
        "en": "What evidence or leads do you have? Describe them briefly (bank transfers, photos, "
        "witnesses); no need to send originals. (optional)",
    },
    "ask_anonymous": {
        "zh": "您希望实名还是匿名？实名的会优先办理并向您反馈，您的身份信息将加密保存、严格保密。"
        "匿名也会获得案件编号和查询密码，可以自行查询进度。",
        "en": "Would you like to give your name, or stay anonymous? Named reports are handled first "
        "and you get feedback; your identity is stored encrypted and kept confidential. Anonymous "
        "reporters also get a case code and PIN to check progress.",
    },
    "ask_reporter_name": {
        "zh": "请告诉我您的姓名。（将加密保存）",
        "en": "Please tell me your name. (It will be stored encrypted.)",
    },
    "ask_reporter_phone": {
        "zh": "请提供您的联系电话（手机或座机）。",
        "en": "Please give a phone number we can reach you on.",
    },
    "ask_reporter_id": {
        "zh": "请提供您的身份证号码（选填，可说“跳过”）。",
        "en": 'Please give your national ID number (optional: you can say "skip").',
    },
    "confirm_intro": {
        "zh": "请核对您提供的信息：",
        "en": "Please check what you have told me:",
    },
    "confirm_outro": {
        "zh": "确认无误请回复“确认”；需要修改请直接说明，例如“单位应为县财政局”；不想继续可说“取消”。",
        "en": 'Reply "confirm" if this is right. To change something just say so, e.g. "the unit '
        'should be County Finance Bureau". Say "cancel" to stop.',
    },
    "confirm_which": {
        "zh": "请直接告诉我需要修改的内容，例如“时间应该是去年三月”或“单位说错了，是县财政局”。",
        "en": 'Just tell me what to change, e.g. "the date should be last March" or "the unit '
        'should be County Finance Bureau".',
    },
    "corrected": {"zh": "已更正：{label} → {value}", "en": "Corrected: {label} → {value}"},
    "resume_form": {"zh": "我们继续刚才的登记。", "en": "Let's carry on where we were."},
    "cancelled": {
        "zh": "已取消，您刚才填写的内容不会提交。还有什么可以帮您？",
        "en": "Cancelled: nothing you entered will be submitted. Anything else I can do?",
    },
    "gave_up": {
        "zh": "抱歉，我没能正确记录您的回答。我为您转接人工服务，工作人员会继续帮您办理。",
        "en": "Sorry, I couldn't record your answer. I'm passing you to a member of staff, who "
        "will carry on from here.",
    },
    "submitting": {"zh": "正在提交，请稍候……", "en": "Submitting, one moment..."},
    # validation errors
    "err_required": {
        "zh": "这一项需要填写，才能登记。",
        "en": "I need this one to register your case.",
    },
    "err_empty": {
        "zh": "我没有收到有效的回答，请再说一遍。",
        "en": "I didn't get a usable answer. Please try again.",
    },
    "err_too_short": {
        "zh": "描述太简短了，请再具体一些（至少说明谁、做了什么）。",
        "en": "That's a bit short. Please say more: at least who did what.",
    },
    "err_too_long": {
        "zh": "内容太长了，请精简到{limit}字以内。",
        "en": "That's too long. Please keep it under {limit} characters.",
    },
    "err_name": {
        "zh": "这看起来不像姓名，请只输入姓名。",
        "en": "That doesn't look like a name. Please give just the name.",
    },
    "err_phone": {
        "zh": "电话号码格式不对。请输入11位手机号（如13812345678）或带区号的座机号（如010-12345678）。",
        "en": "That phone number doesn't look right. Please give an 11-digit mobile number "
        "(e.g. 13812345678) or a landline with area code (e.g. 010-12345678).",
    },
    "err_id_number": {
        "zh": "身份证号码格式或校验位不对，请核对，或说“跳过”。",
        "en": 'That ID number doesn\'t check out. Please check it, or say "skip".',
    },
    "err_anonymous": {
        "zh": "请回答“实名”或“匿名”。",
        "en": 'Please answer "named" or "anonymous".',
    },
    "err_confirm": {
        "zh": "请回复“确认”提交，或告诉我需要修改的内容，或说“取消”。",
        "en": 'Please reply "confirm" to submit, tell me what to change, or say "cancel".',
    },
    "retry_hint": {
        "zh": "（如需帮助，可以说“转人工”）",
        "en": '(Say "agent" if you\'d like help from a person.)',
    },
    # case status
    "status_start": {
        "zh": "好的，我来帮您查询案件进度。",
        "en": "All right, let's check your case.",
    },
    "ask_case_code": {
        "zh": "请输入12位案件编号（纯数字）。",
        "en": "Please enter your 12-digit case code (digits only).",
    },
    "ask_case_pin": {
        "zh": "请输入6位查询密码。",
        "en": "Please enter your 6-digit PIN.",
    },
    "err_case_code": {
        "zh": "案件编号应为12位数字，且最后一位是校验位。请核对后重新输入。",
        "en": "A case code has 12 digits, the last being a check digit. Please check it and try again.",
    },
    "err_case_pin": {
        "zh": "查询密码应为6位数字，请重新输入。",
        "en": "The PIN has 6 digits. Please try again.",
    },
    "status_gave_up": {
        "zh": "多次输入有误，查询已停止。您可以稍后再试，或转人工服务。",
        "en": "Several entries were not valid, so I've stopped the lookup. Try again later, or "
        "talk to a member of staff.",
    },
    # labels
    "label_person": {"zh": "被举报人", "en": "Person reported"},
    "label_unit": {"zh": "单位", "en": "Organization"},
    "label_position": {"zh": "职务", "en": "Position"},
    "label_details": {"zh": "事情经过", "en": "What happened"},
    "label_when": {"zh": "时间", "en": "When"},
    "label_place": {"zh": "地点", "en": "Where"},
    "label_evidence": {"zh": "证据", "en": "Evidence"},
    "label_anonymous": {"zh": "方式", "en": "Reporting as"},
    "label_reporter_name": {"zh": "您的姓名", "en": "Your name"},
    "label_reporter_phone": {"zh": "您的电话", "en": "Your phone"},
    "label_reporter_id": {"zh": "身份证号", "en": "ID number"},
    "value_named": {"zh": "实名", "en": "named"},
    "value_anonymous": {"zh": "匿名", "en": "anonymous"},
    "value_skipped": {"zh": "（未提供）", "en": "(not given)"},
    "btn_skip": {"zh": "跳过", "en": "Skip"},
    "btn_dont_know": {"zh": "不知道", "en": "Don't know"},
    "btn_named": {"zh": "实名", "en": "Give my name"},
    "btn_anonymous": {"zh": "匿名", "en": "Stay anonymous"},
    "btn_confirm": {"zh": "确认提交", "en": "Confirm"},
    "btn_change": {"zh": "需要修改", "en": "Change something"},
    "btn_cancel": {"zh": "取消", "en": "Cancel"},
    "btn_human": {"zh": "转人工服务", "en": "Talk to a person"},
    "btn_report": {"zh": "我要举报", "en": "Make a report"},
    "btn_status": {"zh": "查询案件进度", "en": "Check my case"},
    "btn_faq": {"zh": "受理范围", "en": "What you handle"},
}


def say(key: str, lang: str, **values: Any) -> str:
    text = TEXTS[key].get(lang) or TEXTS[key]["zh"]
    return text.format(**values) if values else text
