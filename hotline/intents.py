"""Intent names, read once from the Rasa domain (``nlu/domain.yml``).

Code that names an intent takes it from here, so a renamed or removed intent fails at
import rather than silently never matching.
"""

from __future__ import annotations

from pathlib import Path

import yaml

DOMAIN = Path(__file__).resolve().parent.parent / "nlu" / "domain.yml"


def load_intents(domain: Path = DOMAIN) -> frozenset[str]:
    data = yaml.safe_load(domain.read_text(encoding="utf-8"))
    names = [i if isinstance(i, str) else next(iter(i)) for i in data.get("intents") or []]
    return frozenset(str(n) for n in names)


INTENTS = load_intents()


def _known(name: str) -> str:
    if name not in INTENTS:
        raise RuntimeError(f"intent {name!r} is not in {DOMAIN}")
    return name


GREET = _known("greet")
GOODBYE = _known("goodbye")
AFFIRM = _known("affirm")
DENY = _known("deny")
CANCEL = _known("cancel")
SKIP = _known("skip")
REQUEST_HUMAN = _known("request_human")
CASE_STATUS = _known("case_status")
REPORT_CRIME = _known("report_crime")
FILE_COMPLAINT = _known("file_complaint")
LEGAL_CONSULT = _known("legal_consult")
NLU_FALLBACK = "nlu_fallback"  # Rasa's FallbackClassifier, not a domain intent

# The hub's own button payloads (the survey); they never reach Rasa.
RATINGS = frozenset({"rate_1", "rate_2", "rate_3"})
# What a button may carry: typed text never becomes an intent payload.
BUTTON_INTENTS = INTENTS | RATINGS
# Intents that say nothing about what the citizen came for.
META_INTENTS = frozenset({REQUEST_HUMAN, AFFIRM, DENY, GREET, GOODBYE, CANCEL, SKIP, NLU_FALLBACK})


def payload(name: str) -> str:
    """A button payload that triggers ``name``."""
    return "/" + _known(name)
