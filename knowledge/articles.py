"""Loading knowledge articles: Markdown files with YAML front matter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

ARTICLES_DIR = Path(__file__).resolve().parent / "articles"
LANGS = ("zh", "en")


@dataclass(frozen=True)
class Article:
    id: str
    lang: str
    title: str
    tags: tuple[str, ...]
    questions: tuple[str, ...]
    body: str


class ArticleError(ValueError):
    """An article file is malformed; the message names the file."""


def parse_article(text: str, source: str = "<string>") -> Article:
    if not text.startswith("---"):
        raise ArticleError(f"{source}: missing front matter")
    try:
        _, front, body = text.split("---", 2)
        meta = yaml.safe_load(front)
    except (ValueError, yaml.YAMLError) as exc:
        raise ArticleError(f"{source}: bad front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArticleError(f"{source}: front matter must be a mapping")
    for key in ("id", "lang", "title"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise ArticleError(f"{source}: front matter needs a non-empty {key!r}")
    if meta["lang"] not in LANGS:
        raise ArticleError(f"{source}: lang must be one of {LANGS}")
    tags = meta.get("tags") or []
    questions = meta.get("questions") or []
    if not all(isinstance(t, str) for t in tags) or not all(isinstance(q, str) for q in questions):
        raise ArticleError(f"{source}: tags and questions must be lists of strings")
    return Article(
        id=meta["id"].strip(),
        lang=meta["lang"],
        title=meta["title"].strip(),
        tags=tuple(tags),
        questions=tuple(questions),
        body=body.strip(),
    )


def load_articles(root: Path = ARTICLES_DIR) -> list[Article]:
    """Every article under ``root/{zh,en}/``, sorted by language and id."""
    articles = []
    seen: set[tuple[str, str]] = set()
    for lang in LANGS:
        for path in sorted((root / lang).glob("*.md")):
            article = parse_article(path.read_text(encoding="utf-8"), str(path))
            if article.lang != lang:
                raise ArticleError(f"{path}: lang {article.lang!r} but stored under {lang}/")
            if (article.lang, article.id) in seen:
                raise ArticleError(f"{path}: duplicate id {article.id!r}")
            seen.add((article.lang, article.id))
            articles.append(article)
    return articles
