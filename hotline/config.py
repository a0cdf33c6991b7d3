"""Settings: read once at start from ``HOTLINE_*`` variables and an optional TOML file.

Every value is validated here into typed objects, so a bad setting fails fast with a
message naming it instead of surfacing later as an odd runtime error.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotline.clientip import TrustedProxies, parse_networks

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one hotline process tree."""

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    database_url: str = ""
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: str = ""
    rasa_timeout: float = 5.0
    rasa_tracker_url: str = ""
    actions_url: str = "http://127.0.0.1:5055"
    secret_key: bytes = b""
    var_dir: Path = PROJECT_ROOT / "var"
    rasa_venv: Path = PROJECT_ROOT / ".venv-rasa"
    models_dir: Path = PROJECT_ROOT / "models"
    allowed_origins: tuple[str, ...] = ()
    ws_max_frame_bytes: int = 65536
    max_text_chars: int = 2000
    ws_messages_per_minute: int = 30
    # Flood control: new chat conversations per client address (0: no limit) per window,
    # the proxies whose X-Forwarded-For is believed, and how the hub queues bot turns.
    new_conversations_per_address: int = 20
    new_conversations_window: float = 60.0
    trusted_proxies: TrustedProxies = ()
    rasa_concurrency: int = 8  # Rasa calls in flight at once (0: no limit)
    bot_max_waiting: int = 200  # turns waiting for a slot; more are handed to a person
    bot_max_wait: float = 15.0  # seconds a turn may wait for a slot before a handoff
    log_level: str = "INFO"
    log_file: Path | None = None
    holidays: frozenset[str] = field(default_factory=frozenset)
    # Agent console sign-in.
    admin_password: str = ""
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    cookie_secure: bool = False
    login_attempts: int = 5
    login_lock_minutes: int = 15
    # ACD.
    timezone: str = "Asia/Shanghai"
    acd_tick_seconds: float = 1.0
    # Voice: Asterisk (embedded root or an existing server) and its ARI.
    # auto: embedded Asterisk when it can run here; external: the Asterisk at ari_url; off.
    voice: str = "auto"
    voice_enabled: bool = False  # set by `hotline run` once an Asterisk answers
    asterisk_root: Path | None = None
    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "hotline"
    ari_password: str = ""
    ari_app: str = "hotline"
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    sip_trunk_password: str = ""
    ivr_number: str = "12309"
    rtp_start: int = 10000
    office_hours: str = "always"  # e.g. "mon-fri 08:30-17:30"; after hours callers leave a message
    sip_outbound_endpoint: str = "trunk"  # where transfers to outside numbers are dialled
    vosk_models: tuple[tuple[str, Path], ...] = ()  # (language, model folder) pairs
    # Channels: the folders of channel_connectors/ to load, and each one's raw settings
    # (HOTLINE_<NAME>_<KEY> or a [<name>] table), validated by the channel at start.
    channels: tuple[str, ...] = ("webchat", "sms", "email")
    channel_sections: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        """SQLite mode: one machine, secrets may be generated under ``var/``."""
        return self.database_url.startswith("sqlite")

    @property
    def public_origin(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"


def int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def float_between(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


def parse_section(
    channel: str,
    section: Mapping[str, str],
    parsers: Mapping[str, Callable[[str], Any]],
    *,
    prefix: str = "",
    secrets: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A channel's settings section (the keys that start with ``prefix``) through
    ``parsers``; a bad or unknown key fails naming ``HOTLINE_<CHANNEL>_<KEY>``."""
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        setting = f"HOTLINE_{channel.upper()}_{key.upper()}"
        parser = parsers.get(name)
        if parser is None:
            raise ConfigError(f"{setting}: unknown setting")
        try:
            values[name] = parser(str(raw).strip())
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if name in secrets else repr(raw)
            raise ConfigError(f"{setting}: {exc} (got {shown})") from exc
    return values


def _float_pos(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 600:
        raise ValueError("must be a number of seconds between 0 and 600")
    return value


def one_of(*options: str) -> Callable[[str], str]:
    """A parser for a setting that takes one of ``options``."""

    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError("must be " + ", ".join(options[:-1]) + " or " + options[-1])
        return raw

    return parse


def describe_settings(settings: Any, hidden: frozenset[str]) -> dict[str, str]:
    """A channel's settings dataclass as ``hotline config`` prints it: secrets as
    ``<set>``/``<unset>``, everything else as text."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in hidden:
            out[f.name] = "<set>" if value else "<unset>"
        else:
            out[f.name] = str(value)
    return out


def http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def _database_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0]
    if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    return raw


def _tracker_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0]
    if scheme not in ("sqlite", "postgresql"):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    return raw


def host_name(raw: str) -> str:
    if not raw or any(c.isspace() for c in raw):
        raise ValueError("must be a host name or IP address")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"{item!r} is not an origin like https://example.org")
        out.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(out)


def _level(raw: str) -> str:
    value = raw.upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def _key(raw: str) -> bytes:
    raw = raw.strip()
    try:
        key = bytes.fromhex(raw) if len(raw) == 64 else base64.urlsafe_b64decode(raw + "==")
    except ValueError as exc:
        raise ValueError("must be 32 bytes, as 64 hex digits or base64") from exc
    if len(key) != 32:
        raise ValueError("must be 32 bytes, as 64 hex digits or base64")
    return key


def _token(raw: str) -> str:
    if len(raw) < 16 or any(c.isspace() for c in raw):
        raise ValueError("must be at least 16 characters without spaces")
    return raw


def _dates(raw: str) -> frozenset[str]:
    import datetime as dt

    days = [d.strip() for d in raw.split(",") if d.strip()]
    for day in days:
        dt.date.fromisoformat(day)
    return frozenset(days)


def _voice_mode(raw: str) -> str:
    if raw not in ("auto", "external", "off"):
        raise ValueError("must be auto, external or off")
    return raw


def _digits(raw: str) -> str:
    if not raw.isdigit() or len(raw) > 20:
        raise ValueError("must be a number of at most 20 digits")
    return raw


def _admin_password(raw: str) -> str:
    if len(raw) < 12:
        raise ValueError("must be at least 12 characters")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _office_hours(raw: str) -> str:
    from hotline.office_hours import parse

    parse(raw)
    return raw


def _vosk_models(raw: str) -> tuple[tuple[str, Path], ...]:
    pairs = []
    for item in raw.split(","):
        lang, sep, folder = item.strip().partition("=")
        if not sep or lang not in ("zh", "en") or not folder:
            raise ValueError("write it as zh=/path/to/vosk-model-cn,en=/path/to/vosk-model-en")
        pairs.append((lang, Path(folder)))
    return tuple(pairs)


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone like Asia/Shanghai") from exc
    return raw


_CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def _channels(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    for name in names:
        if not _CHANNEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a channel name (a folder of channel_connectors/)")
    return names


_PARSERS: dict[str, Callable[[str], Any]] = {
    "http_host": host_name,
    "http_port": int_between(1, 65535),
    "database_url": _database_url,
    "rasa_url": http_url,
    "rasa_token": _token,
    "rasa_timeout": _float_pos,
    "rasa_tracker_url": _tracker_url,
    "actions_url": http_url,
    "secret_key": _key,
    "var_dir": Path,
    "rasa_venv": Path,
    "models_dir": Path,
    "allowed_origins": _origins,
    "ws_max_frame_bytes": int_between(1024, 1 << 24),
    "max_text_chars": int_between(1, 100_000),
    "ws_messages_per_minute": int_between(1, 10_000),
    "new_conversations_per_address": int_between(0, 100_000),
    "new_conversations_window": _float_pos,
    "trusted_proxies": parse_networks,
    "rasa_concurrency": int_between(0, 64),
    "bot_max_waiting": int_between(0, 100_000),
    "bot_max_wait": _float_pos,
    "log_level": _level,
    "log_file": Path,
    "holidays": _dates,
    "admin_password": _admin_password,
    "session_idle_minutes": int_between(1, 24 * 60),
    "session_absolute_hours": int_between(1, 24 * 7),
    "cookie_secure": _bool,
    "login_attempts": int_between(1, 100),
    "login_lock_minutes": int_between(1, 24 * 60),
    "timezone": _timezone,
    "acd_tick_seconds": _float_pos,
    "voice": _voice_mode,
    "voice_enabled": _bool,
    "asterisk_root": Path,
    "ari_url": http_url,
    "ari_user": host_name,
    "ari_password": _token,
    "ari_app": host_name,
    "sip_host": host_name,
    "sip_port": int_between(1, 65535),
    "sip_trunk_password": _token,
    "ivr_number": _digits,
    "rtp_start": int_between(1024, 64000),
    "office_hours": _office_hours,
    "sip_outbound_endpoint": host_name,
    "vosk_models": _vosk_models,
    "channels": _channels,
}


SECRET_KEYS = frozenset(
    {"secret_key", "rasa_token", "admin_password", "ari_password", "sip_trunk_password"}
)


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_toml(path: Path) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The core settings and the channels' sections (``[hotline.sms]`` or ``[sms]``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"HOTLINE_CONFIG: cannot read {path}: {exc}") from exc
    section = data.get("hotline", data)
    out: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    tables = [(k, v) for k, v in data.items() if k != "hotline" and isinstance(v, dict)]
    for key, value in list(section.items()) + (tables if section is not data else []):
        if isinstance(value, dict):
            if not _CHANNEL_NAME.match(key):
                raise ConfigError(f"{path}: [{key}] is not a channel section")
            sections[key] = {str(k): _flat(v) for k, v in value.items()}
            continue
        if key not in _PARSERS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        out[key] = _flat(value)
    return out, sections


def secret_file(path: Path, make: Callable[[], str], what: str) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    log.warning("generated %s at %s; set it explicitly in production", what, path)
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, *, generate_secrets: bool = True
) -> Settings:
    """Build :class:`Settings` from the environment (and ``HOTLINE_CONFIG`` TOML file).

    Environment variables win over the file. Missing secrets are generated under
    ``var/`` in embedded (SQLite) mode only.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    sections: dict[str, dict[str, str]] = {}
    config_path = env.get("HOTLINE_CONFIG")
    if config_path:
        core, sections = _read_toml(Path(config_path))
        raw.update(core)
    for key in _PARSERS:
        value = env.get(f"HOTLINE_{key.upper()}")
        if value is not None and value != "":
            raw[key] = value

    values: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            values[key] = _PARSERS[key](text)
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if key in SECRET_KEYS else repr(text)
            raise ConfigError(f"HOTLINE_{key.upper()}: {exc} (got {shown})") from exc

    channels = values.setdefault("channels", Settings.channels)
    for name in channels:
        prefix = f"HOTLINE_{name.upper()}_"
        section = sections.setdefault(name, {})
        for key, value in env.items():
            if key.startswith(prefix) and value != "":
                section[key[len(prefix) :].lower()] = value
    values["channel_sections"] = {n: dict(sections.get(n, {})) for n in channels}

    var_dir: Path = values.setdefault("var_dir", Settings.var_dir)
    values.setdefault("database_url", f"sqlite+aiosqlite:///{var_dir / 'hotline.db'}")
    embedded = values["database_url"].startswith("sqlite")
    if "rasa_tracker_url" not in values:
        if embedded:
            values["rasa_tracker_url"] = f"sqlite:///{var_dir / 'rasa-tracker.db'}"
        else:
            url = values["database_url"].replace("postgresql+asyncpg://", "postgresql://", 1)
            values["rasa_tracker_url"] = url
    if "rasa_token" not in values:
        if not generate_secrets:
            raise ConfigError("HOTLINE_RASA_TOKEN: not set")
        values["rasa_token"] = secret_file(
            var_dir / "rasa-token", lambda: secrets.token_urlsafe(32), "the Rasa API token"
        )
    values.setdefault("asterisk_root", var_dir / "asterisk-root")
    for name, what in (
        ("ari_password", "the ARI password"),
        ("sip_trunk_password", "the SIP trunk password"),
    ):
        if name not in values and generate_secrets:
            values[name] = secret_file(
                var_dir / name.replace("_", "-"), lambda: secrets.token_urlsafe(24), what
            )
    if "secret_key" not in values:
        if not embedded:
            raise ConfigError(
                "HOTLINE_SECRET_KEY: required with PostgreSQL; generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        if not generate_secrets:
            raise ConfigError("HOTLINE_SECRET_KEY: not set")
        values["secret_key"] = _key(
            secret_file(
                var_dir / "secret.key",
                lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "the identity encryption key",
            )
        )
    return Settings(**values)
