"""Group-send settings: ``HOTLINE_SMS_CAMPAIGN_<KEY>`` in the SMS channel's section.

The SMS channel's ``load_settings`` hands its section here (``load(section)``) and
leaves the keys in ``KEYS`` to this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hotline.config import float_between, int_between, parse_section

PREFIX = "campaign_"


@dataclass(frozen=True)
class CampaignSettings:
    rate: float = 10.0  # messages per second handed to Kannel, across all sends
    inflight: int = 8  # sendsms calls under way at once (~ rate x Kannel's answer time)
    preview: int = 5  # rendered messages a preview shows
    bulk_max: int = 1000  # members one bulk-add request may carry
    group_max: int = 100_000  # members one group may hold
    poll: float = 1.0  # seconds between looks for due sends when nothing wakes the scheduler


_PARSERS: dict[str, Callable[[str], Any]] = {
    "rate": float_between(0.01, 10_000),
    "inflight": int_between(1, 64),
    "preview": int_between(1, 50),
    "bulk_max": int_between(1, 10_000),
    "group_max": int_between(1, 1_000_000),
    "poll": float_between(0.05, 60),
}
KEYS = tuple(PREFIX + k for k in _PARSERS)


def load(section: Mapping[str, str]) -> CampaignSettings:
    """The ``campaign_*`` keys of the SMS section (others are the channel's business)."""
    values = parse_section("sms", section, _PARSERS, prefix=PREFIX)
    return CampaignSettings(**values)


def without(section: Mapping[str, str]) -> dict[str, str]:
    """``section`` minus the group-send keys: what the channel's own parser should see."""
    return {k: v for k, v in section.items() if not k.startswith(PREFIX)}
