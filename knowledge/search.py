"""BM25 over jieba tokens, with title, sample questions and tags weighted above the body.

The index is an in-memory inverted index built at start. Scores are only computed for
articles that share a term with the query, which keeps p95 latency low at 10,000
articles (see bench/kb_search.py).
"""

from __future__ import annotations

import heapq
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import jieba

from knowledge.articles import Article

jieba.setLogLevel(logging.WARNING)

_K1 = 1.2
_B = 0.75
_FIELD_WEIGHTS = (("title", 3.0), ("questions", 2.0), ("tags", 1.5), ("body", 1.0))

_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]+", re.IGNORECASE)
_STOP = frozenset(
    """
    a an and are as at be been but by can could do does for from had has have how i if in
    is it its me my of on or our please should so that the their them then there these this
    to was we what when where which who why will with would you your
    的 了 吗 呢 吧 啊 呀 我 我们 你 你们 您 是 在 和 与 及 或 也 都 就 要 想 请问 请 一下
    什么 怎么 怎么样 如何 哪些 哪里 可以 能 能不能 是否 有 没有 这个 那个 一个 个 还 会 该
    """.split()
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased terms: jieba search-mode words for Chinese, light stems for English."""
    out: list[str] = []
    for run in _WORD.findall(text.lower()):
        if run[0].isascii():
            if run not in _STOP:
                out.append(_stem(run))
        else:
            out.extend(w for w in jieba.cut_for_search(run) if w not in _STOP)
    return out


@dataclass(frozen=True)
class Hit:
    article: Article
    score: float
    coverage: float  # share of the query's IDF mass the article matched, 0..1


class KnowledgeIndex:
    def __init__(self, articles: Iterable[Article]) -> None:
        self.articles: list[Article] = list(articles)
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._lengths: list[float] = []
        for doc, article in enumerate(self.articles):
            weighted: dict[str, float] = defaultdict(float)
            fields = {
                "title": article.title,
                "questions": " ".join(article.questions),
                "tags": " ".join(article.tags),
                "body": article.body,
            }
            for name, weight in _FIELD_WEIGHTS:
                for term in tokenize(fields[name]):
                    weighted[term] += weight
            self._lengths.append(sum(weighted.values()))
            for term, tf in weighted.items():
                self._postings[term].append((doc, tf))
        n = max(len(self.articles), 1)
        self._avg_len = sum(self._lengths) / n if self._lengths else 1.0
        self._idf = {
            term: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
            for term, p in self._postings.items()
        }
        self._max_idf = math.log(1 + (n + 0.5) / 0.5)
        self._by_key = {(a.lang, a.id): a for a in self.articles}

    def get(self, lang: str, article_id: str) -> Article | None:
        return self._by_key.get((lang, article_id))

    def search(self, query: str, lang: str | None = None, limit: int = 5) -> list[Hit]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        scores: dict[int, float] = defaultdict(float)
        matched: dict[int, float] = defaultdict(float)
        total_idf = 0.0
        for term in terms:
            idf = self._idf.get(term, self._max_idf)  # unseen terms still count as missed
            total_idf += idf
            for doc, tf in self._postings.get(term, ()):
                norm = (
                    tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * self._lengths[doc] / self._avg_len))
                )
                scores[doc] += idf * norm
                matched[doc] += idf
        ranked = heapq.nlargest(
            limit,
            (d for d in scores if lang is None or self.articles[d].lang == lang),
            key=scores.__getitem__,
        )
        return [Hit(self.articles[d], scores[d], matched[d] / total_idf) for d in ranked]
