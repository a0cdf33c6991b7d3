"""Knowledge-base search latency at 10,000 articles (target: p95 <= 20 ms).

The corpus is built from the real articles: each synthetic article mixes sentences
and titles of real ones (same language), so term statistics look like the real thing.
Queries are the real articles' sample questions.

    .venv/bin/python bench/kb_search.py [--articles 10000] [--queries 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import resource
import statistics
import time

from knowledge.articles import Article, load_articles
from knowledge.search import KnowledgeIndex


def synthetic_corpus(real: list[Article], size: int, seed: int = 7) -> list[Article]:
    rng = random.Random(seed)
    sentences: dict[str, list[str]] = {"zh": [], "en": []}
    for article in real:
        sentences[article.lang] += [s for s in re.split(r"(?<=[。！？.!?])\s*", article.body) if s]
    out = list(real)
    while len(out) < size:
        base = rng.choice(real)
        body = " ".join(rng.sample(sentences[base.lang], k=min(8, len(sentences[base.lang]))))
        out.append(
            Article(
                id=f"{base.id}-{len(out)}",
                lang=base.lang,
                title=f"{base.title} {rng.randint(1, 999)}",
                tags=base.tags,
                questions=tuple(rng.sample(base.questions, k=min(2, len(base.questions)))),
                body=body,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    real = load_articles()
    corpus = synthetic_corpus(real, args.articles)
    started = time.perf_counter()
    index = KnowledgeIndex(corpus)
    build_s = time.perf_counter() - started
    queries = [(q, a.lang) for a in real for q in a.questions]
    rng = random.Random(11)
    index.search(queries[0][0], queries[0][1])  # warm jieba
    samples = []
    for _ in range(args.queries):
        query, lang = rng.choice(queries)
        t0 = time.perf_counter()
        index.search(query, lang=lang, limit=5)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    result = {
        "articles": len(corpus),
        "queries": len(samples),
        "build_s": round(build_s, 2),
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
        "max_ms": round(samples[-1], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "machine": f"{platform.machine()}, python {platform.python_version()}",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>12}: {value}")
        print("target: p95 <= 20 ms ->", "MET" if result["p95_ms"] <= 20 else "MISSED")


if __name__ == "__main__":
    main()
