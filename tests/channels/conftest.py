from tests.channels.kannel import kannel, sms_hub, sms_settings  # noqa: F401
