import pytest

from knowledge.answers.answer import SMS_FIRST_LIMIT, decide, render, sentences, take
from knowledge.answers.retrieval import Hit, query_qtypes

LONG = " ".join(f"Sentence number {i} explains one more thing about gout and its care." for i in range(40))


def hit(text=LONG, score=0.9):
    return Hit(
        "4_MPlus_Health_Topics_QA/0000411.xml#1~0",
        "4_MPlus_Health_Topics_QA/0000411.xml#1",
        score,
        {
            "organisation": "MedlinePlus, National Library of Medicine (NIH)",
            "title": "Gout",
            "url": "https://medlineplus.gov/gout.html",
        },
        text,
    )


def test_sms_first_reply_fits_and_continues_with_more():
    r = render(hit(), "sms")
    assert len(r.first) <= SMS_FIRST_LIMIT
    assert "Reply MORE" in r.first and "medlineplus.gov/gout.html" in r.first
    assert r.rest and all(len(m) <= 320 and "Source: MedlinePlus" in m for m in r.rest)
    assert "Reply MORE" not in r.rest[-1]
    shown = " ".join([r.first] + r.rest)
    assert "Sentence number 0 " in shown and "Sentence number 39 " in shown


def test_web_short_answer_with_expandable_rest_both_cited():
    r = render(hit(), "web")
    assert r.first.endswith("https://medlineplus.gov/gout.html")
    assert len(r.rest) == 1 and r.rest[0].endswith("https://medlineplus.gov/gout.html")


def test_short_answer_has_no_more():
    r = render(hit("Gout is a kind of arthritis."), "sms")
    assert r.rest == [] and "MORE" not in r.first and "Source:" in r.first


def test_decide_abstains_below_threshold():
    assert decide([hit(score=0.4)], 0.5).answer is False
    assert decide([], 0.5).answer is False
    d = decide([hit(score=0.8), hit(score=0.7)], 0.5)
    assert d.answer and d.cited[0].score == 0.8


def test_sentences_and_take():
    parts = sentences("Gout hurts.  It is common.\n\n- Drink water  - Rest")
    assert parts == ["Gout hurts.", "It is common.", "- Drink water", "- Rest"]
    first, rest = take(parts, 25)
    assert first == "Gout hurts. It is common." and rest == ["- Drink water", "- Rest"]
    cut, rest = take(["x" * 50], 20)
    assert cut.endswith("…") and len(cut) <= 20


@pytest.mark.parametrize(
    "query, expected",
    [
        ("what causes gout", {"causes"}),
        ("is marfan passed on to my kids", {"inheritance"}),
        ("how do they treat lupus", {"treatment"}),
        ("what is lupus", set()),
    ],
)
def test_query_qtypes(query, expected):
    assert query_qtypes(query) == expected
