from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hotline.answers import KnowledgeAnswers
from knowledge.articles import ArticleError, load_articles, parse_article
from knowledge.search import KnowledgeIndex, tokenize


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex(load_articles())


def test_articles_cover_both_languages() -> None:
    articles = load_articles()
    by_lang = {lang: {a.id for a in articles if a.lang == lang} for lang in ("zh", "en")}
    assert len(by_lang["zh"]) >= 20 and len(by_lang["en"]) >= 20
    assert by_lang["zh"] == by_lang["en"]
    for article in articles:
        assert article.title and article.body and article.questions


def test_bad_front_matter_names_the_file() -> None:
    with pytest.raises(ArticleError, match=r"x\.md"):
        parse_article("---\nid: a\nlang: fr\ntitle: t\n---\nbody", "x.md")
    with pytest.raises(ArticleError, match=r"y\.md"):
        parse_article("no front matter", "y.md")


def test_chinese_tokenization() -> None:
    assert "举报" in tokenize("我想匿名举报贪污")
    assert "匿名" in tokenize("我想匿名举报贪污")
    assert tokenize("Reports and REPLIES") == ["report", "repli"]


@pytest.mark.parametrize(
    ("query", "lang", "expected"),
    [
        ("举报以后多久能收到答复", "zh", "deadlines"),
        ("匿名举报会不会泄露我的身份", "zh", "anonymity"),
        ("国家赔偿怎么申请", "zh", "state-compensation"),
        ("律师怎么预约阅卷", "zh", "lawyer-appointment"),
        ("你们几点上班", "zh", "office-hours"),
        ("举报控告申诉有什么区别", "zh", "report-complaint-appeal"),
        ("how long until I get a reply", "en", "deadlines"),
        ("can I report anonymously", "en", "anonymity"),
        ("how do I apply for state compensation", "en", "state-compensation"),
        ("what should my report include", "en", "report-contents"),
        ("difference between a complaint and an appeal", "en", "report-complaint-appeal"),
    ],
)
def test_search_finds_the_right_article(
    index: KnowledgeIndex, query: str, lang: str, expected: str
) -> None:
    hits = index.search(query, lang=lang, limit=3)
    assert expected in [h.article.id for h in hits], [h.article.id for h in hits]
    assert all(h.article.lang == lang for h in hits)


def test_weak_match_offers_a_person(index: KnowledgeIndex) -> None:
    answer = KnowledgeAnswers(index).answer("量子色动力学的渐近自由", "zh")
    assert "没有找到" in answer.text
    assert any(b.payload == "/request_human" for b in answer.buttons)


def test_topic_answers_directly(index: KnowledgeIndex) -> None:
    answer = KnowledgeAnswers(index).answer("", "en", topic="lawyer-appointment")
    assert answer.article is not None and answer.article.id == "lawyer-appointment"


@pytest.fixture
async def api(hub_server: TestServer) -> AsyncIterator[str]:
    yield str(hub_server.make_url("/api/kb/search"))


async def test_search_api(api: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(api, params={"q": "匿名举报", "lang": "zh"}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["results"][0]["lang"] == "zh"
        scores = [r["score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True)
        for bad in (
            {"q": ""},
            {"q": "x", "lang": "fr"},
            {"q": "x", "limit": "0"},
            {"q": "x" * 501},
        ):
            async with http.get(api, params=bad) as resp:
                assert resp.status == 400
                assert "error" in await resp.json()
