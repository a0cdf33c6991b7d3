"""Group-send settings: ``HOTLINE_SMS_CAMPAIGN_<KEY>`` in the SMS channel's section.

The SMS channel's ``load_settings`` hands its section here (``load(section)``) and
leaves the keys in ``KEYS`` to this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hotline.config import ConfigError

PREFIX = "campaign_"


@dataclass(frozen=True)
class CampaignSettings:
    rate: float = 10.0  # messages per second handed to Kannel, across all sends
    inflight: int = 8  # sendsms calls under way at once (~ rate x Kannel's answer time)
    preview: int = 5  # rendered messages a preview shows
    bulk_max: int = 1000  # members one bulk-add request may carry
    group_max: int = 100_000  # members one group may hold
    poll: float = 1.0  # seconds between looks for due sends when nothing wakes the scheduler


def _number(lo: float, hi: float, cast: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = cast(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "rate": _number(0.01, 10_000, float),
    "inflight": _number(1, 64, int),
    "preview": _number(1, 50, int),
    "bulk_max": _number(1, 10_000, int),
    "group_max": _number(1, 1_000_000, int),
    "poll": _number(0.05, 60, float),
}
KEYS = tuple(PREFIX + k for k in _PARSERS)


def load(section: Mapping[str, str]) -> CampaignSettings:
    """The ``campaign_*`` keys of the SMS section (others are the channel's business)."""
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        parser = _PARSERS.get(name)
        if parser is None:
            raise ConfigError(f"HOTLINE_SMS_{key.upper()}: unknown setting")
        try:
            values[name] = parser(str(raw).strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"HOTLINE_SMS_{key.upper()}: {exc} (got {raw!r})") from exc
    return CampaignSettings(**values)


def without(section: Mapping[str, str]) -> dict[str, str]:
    """``section`` minus the group-send keys: what the channel's own parser should see."""
    return {k: v for k, v in section.items() if not k.startswith(PREFIX)}
