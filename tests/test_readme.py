"""The README is the front door: every setting the code reads is in it."""

from __future__ import annotations

from hotline.config import _PARSERS, PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
INTERNAL = {"voice_enabled"}  # set by `hotline run` once an Asterisk answers


def test_every_core_setting_is_documented() -> None:
    missing = [
        f"HOTLINE_{key.upper()}"
        for key in _PARSERS
        if key not in INTERNAL and f"HOTLINE_{key.upper()}" not in README
    ]
    assert missing == []


def test_every_channel_folder_is_documented() -> None:
    folders = sorted(
        p.parent.name for p in (PROJECT_ROOT / "channel_connectors").glob("*/__init__.py")
    )
    assert folders
    for name in folders:
        assert f"channel_connectors/{name}/" in README, name


def test_every_channel_setting_is_documented() -> None:
    """Each channel's settings (``HOTLINE_<CHANNEL>_<KEY>``), as its parser reads them."""
    from channel_connectors.email import settings as email
    from channel_connectors.sms import settings as sms
    from channel_connectors.sms.campaigns import settings as campaigns
    from channel_connectors.telegram import settings as telegram

    keys = [
        *(("sms", k) for k in (*sms.KEYS, *campaigns.KEYS)),
        *(("telegram", k) for k in telegram.KEYS),
        *(("email", k) for k in email.KEYS),
    ]
    missing = [
        f"HOTLINE_{name.upper()}_{key.upper()}"
        for name, key in keys
        if f"HOTLINE_{name.upper()}_{key.upper()}" not in README
    ]
    assert missing == []
