"""Knowledge answers: the best article, a clarifying question, or an offer of a person.

A match is strong when it covers most of the query's weight and stands clear of the
runner-up; close runners-up become buttons so the citizen can say which they meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hotline import intents
from hotline.lang import Lang
from hotline.messages import Button
from hotline.texts import say
from knowledge.articles import Article
from knowledge.search import Hit, KnowledgeIndex

STRONG_COVERAGE = 0.6
WEAK_COVERAGE = 0.3
CLEAR_LEAD = 1.3

_MD = re.compile(r"^#{1,6}\s*|\*\*|__|`", re.MULTILINE)


@dataclass(frozen=True)
class Answer:
    text: str
    buttons: tuple[Button, ...] = ()
    article: Article | None = None
    missed: bool = False  # the bot had nothing useful to say; repeated misses hand off


class KnowledgeAnswers:
    def __init__(self, index: KnowledgeIndex) -> None:
        self.index = index

    def answer(
        self, query: str, lang: Lang, mode: str = "consult", topic: str | None = None
    ) -> Answer:
        """Answer ``query``; ``mode`` is consult, fallback (NLU unsure) or a named topic."""
        if topic:
            article = self.index.get(lang, topic)
            if article is not None:
                return self._article(article, lang)
        hits = self.index.search(query, lang=lang, limit=3)
        human = Button(say("btn_human", lang), intents.payload(intents.REQUEST_HUMAN))
        if hits and self._strong(hits):
            return self._article(hits[0].article, lang)
        close = [h for h in hits if h.coverage >= WEAK_COVERAGE]
        if len(close) >= 2 and mode != "fallback":
            buttons = tuple(
                Button(h.article.title, f'/legal_consult{{"kb_article":"{h.article.id}"}}')
                for h in close
            )
            return Answer(say("kb_clarify", lang), (*buttons, human))
        if close and mode != "fallback":
            return self._article(close[0].article, lang, extra=(human,))
        if mode == "fallback":
            return Answer(
                say("fallback", lang),
                (
                    Button(say("btn_report", lang), "/report_crime"),
                    Button(say("btn_status", lang), intents.payload(intents.CASE_STATUS)),
                    Button(say("btn_consult", lang), '/legal_consult{"kb_article":"scope"}'),
                    human,
                ),
                missed=True,
            )
        return Answer(say("kb_weak", lang), (human,), missed=True)

    @staticmethod
    def _strong(hits: list[Hit]) -> bool:
        top = hits[0]
        if top.coverage < STRONG_COVERAGE:
            return False
        return len(hits) == 1 or top.score >= CLEAR_LEAD * hits[1].score or top.coverage >= 0.9

    @staticmethod
    def _article(article: Article, lang: Lang, extra: tuple[Button, ...] = ()) -> Answer:
        body = _MD.sub("", article.body).strip()
        return Answer(say("kb_answer", lang, title=article.title, body=body), extra, article)
