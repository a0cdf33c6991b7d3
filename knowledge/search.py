"""BM25 over jieba tokens, with title, sample questions and tags weighted above the body.

The index is an in-memory inverted index built at start. Scores are only computed for
articles that share a term with the query, which keeps p95 latency low at 10,000
articles (see bench/kb_search.py).
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import jieba
import numpy as np

from knowledge.articles import LANGS, Article

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


class _Postings:
    """One language's inverted index; BM25 weights are computed once, at build time."""

    def __init__(self, articles: list[Article]) -> None:
        self.articles = articles
        counts: list[dict[str, float]] = []
        for article in articles:
            weighted: dict[str, float] = defaultdict(float)
            fields = (
                article.title,
                " ".join(article.questions),
                " ".join(article.tags),
                article.body,
            )
            for text, (_name, weight) in zip(fields, _FIELD_WEIGHTS, strict=True):
                for term in tokenize(text):
                    weighted[term] += weight
            counts.append(weighted)
        n = max(len(articles), 1)
        lengths = np.array([sum(c.values()) for c in counts] or [1.0], dtype=np.float64)
        avg = float(lengths.mean()) or 1.0
        by_term: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for doc, weighted in enumerate(counts):
            for term, tf in weighted.items():
                by_term[term].append((doc, tf))
        self.size = len(articles)
        self.max_idf = math.log(1 + (n + 0.5) / 0.5)
        self.idf: dict[str, float] = {}
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, entries in by_term.items():
            docs = np.fromiter((d for d, _ in entries), dtype=np.int32, count=len(entries))
            tfs = np.fromiter((t for _, t in entries), dtype=np.float64, count=len(entries))
            idf = math.log(1 + (n - len(entries) + 0.5) / (len(entries) + 0.5))
            norm = tfs * (_K1 + 1) / (tfs + _K1 * (1 - _B + _B * lengths[docs] / avg))
            self.idf[term] = idf
            self.postings[term] = (docs, idf * norm)

    def search(self, terms: list[str], limit: int) -> list[Hit]:
        if not self.size:
            return []
        scores = np.zeros(self.size)
        matched = np.zeros(self.size)
        total_idf = 0.0
        for term in terms:
            total_idf += self.idf.get(term, self.max_idf)  # unseen terms count as missed
            posting = self.postings.get(term)
            if posting is not None:
                docs, weights = posting
                scores[docs] += weights
                matched[docs] += self.idf[term]
        hit_count = int(np.count_nonzero(scores))
        if not hit_count:
            return []
        k = min(limit, hit_count)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.articles[d], float(scores[d]), float(matched[d]) / total_idf) for d in top]


class KnowledgeIndex:
    """BM25F-style search over all articles, one index per language."""

    def __init__(self, articles: Iterable[Article]) -> None:
        self.articles: list[Article] = list(articles)
        self._by_lang = {
            lang: _Postings([a for a in self.articles if a.lang == lang]) for lang in LANGS
        }
        self._by_key = {(a.lang, a.id): a for a in self.articles}

    def get(self, lang: str, article_id: str) -> Article | None:
        return self._by_key.get((lang, article_id))

    def search(self, query: str, lang: str | None = None, limit: int = 5) -> list[Hit]:
        """Ranked articles for ``query``, in ``lang`` or (None) in both languages."""
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        langs = [lang] if lang else list(LANGS)
        hits = [
            hit
            for code in langs
            if code in self._by_lang
            for hit in self._by_lang[code].search(terms, limit)
        ]
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]
