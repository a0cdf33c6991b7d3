from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hotline.config import ConfigError, load_settings


def test_defaults_bind_loopback_and_generate_secrets(tmp_path: Path) -> None:
    settings = load_settings({"HOTLINE_VAR_DIR": str(tmp_path)})
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.rasa_url == "http://127.0.0.1:5005"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    assert settings.rasa_tracker_url == f"sqlite:///{tmp_path / 'rasa-tracker.db'}"
    assert len(settings.secret_key) == 32
    for name in ("secret.key", "rasa-token"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, name
    # A second start reuses the generated secrets instead of replacing them.
    again = load_settings({"HOTLINE_VAR_DIR": str(tmp_path)})
    assert again.secret_key == settings.secret_key
    assert again.rasa_token == settings.rasa_token


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOTLINE_HTTP_PORT", "eighty"),
        ("HOTLINE_HTTP_PORT", "70000"),
        ("HOTLINE_DATABASE_URL", "mysql://x"),
        ("HOTLINE_RASA_URL", "ftp://rasa"),
        ("HOTLINE_SECRET_KEY", "too-short"),
        ("HOTLINE_RASA_TOKEN", "short"),
        ("HOTLINE_ALLOWED_ORIGINS", "not a url"),
        ("HOTLINE_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_value_names_the_setting(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"HOTLINE_VAR_DIR": str(tmp_path), name: value})
    assert name in str(info.value)


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"HOTLINE_VAR_DIR": str(tmp_path), "HOTLINE_SECRET_KEY": "hunter2-secret"})
    assert "hunter2" not in str(info.value)


def test_postgres_requires_an_explicit_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_SECRET_KEY"):
        load_settings(
            {
                "HOTLINE_VAR_DIR": str(tmp_path),
                "HOTLINE_DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1/db",
            }
        )


def test_toml_file_with_env_override(tmp_path: Path) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text('[hotline]\nhttp_port = 9090\nallowed_origins = ["https://example.org"]\n')
    env = {"HOTLINE_VAR_DIR": str(tmp_path), "HOTLINE_CONFIG": str(config)}
    settings = load_settings(env)
    assert settings.http_port == 9090
    assert settings.allowed_origins == ("https://example.org",)
    assert load_settings({**env, "HOTLINE_HTTP_PORT": "9191"}).http_port == 9191


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text("[hotline]\nhttp_prot = 1\n")
    with pytest.raises(ConfigError, match="http_prot"):
        load_settings({"HOTLINE_VAR_DIR": str(tmp_path), "HOTLINE_CONFIG": str(config)})


def test_channel_sections_from_toml_tables_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text(
        '[hotline]\nchannels = ["webchat"]\n\n[webchat]\nhello_timeout = 12\n\n'
        "[telegram]\ntoken = 1\n"
    )
    env = {
        "HOTLINE_VAR_DIR": str(tmp_path),
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_WEBCHAT_HELLO_TIMEOUT": "7",
        "HOTLINE_SMS_USER": "ignored: sms is not enabled",
    }
    settings = load_settings(env)
    assert settings.channels == ("webchat",)
    # The environment wins over the file; sections of channels that are off are dropped.
    assert settings.channel_sections == {"webchat": {"hello_timeout": "7"}}


def test_channel_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_CHANNELS"):
        load_settings({"HOTLINE_VAR_DIR": str(tmp_path), "HOTLINE_CHANNELS": "webchat,../etc"})
