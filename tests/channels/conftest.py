from tests.channels.kannel import kannel, sms_hub, sms_settings  # noqa: F401
from tests.channels.mail_fixtures import mail_system  # noqa: F401
