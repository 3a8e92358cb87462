import pytest

from careline.contracts import PAGE_BREAK
from channels.paging import first_page, page_chars
from channels.sms_text import MAX_SEND
from knowledge.answers.answer import decide, render, sentences, take
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


def test_sms_pages_fit_the_gateways_page_and_each_ends_with_the_citation():
    r = render(hit(), "sms", page_chars())
    pages = [r.first, *r.rest]
    assert len(pages) > 2 and all(len(p) <= page_chars() for p in pages)
    assert all(p.endswith('Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html') for p in pages)
    assert not any("MORE" in p or PAGE_BREAK in p for p in pages)  # the gateway's to add
    shown = " ".join(pages)
    assert "Sentence number 0 " in shown and "Sentence number 39 " in shown


def test_sms_first_reply_fits_and_continues_with_more():
    # what the patient gets: the action's pages, paged by the gateway (channels/paging.py)
    r = render(hit(), "sms", page_chars())
    first, rest = first_page(PAGE_BREAK.join([r.first, *r.rest]))
    assert len(first) <= MAX_SEND
    assert "Reply MORE" in first and "medlineplus.gov/gout.html" in first
    shown = [first]
    while rest:
        page, rest = first_page(rest)
        assert len(page) <= MAX_SEND and "Source: MedlinePlus" in page
        assert ("Reply MORE" in page) == bool(rest)
        shown.append(page)
    assert "Sentence number 0 " in " ".join(shown) and "Sentence number 39 " in " ".join(shown)


def test_sms_without_a_page_size_is_one_page():
    r = render(hit(), "sms")
    assert r.rest == [] and "Sentence number 39 " in r.first and r.first.endswith("gout.html")


def test_web_short_answer_with_expandable_rest_both_cited():
    r = render(hit(), "web")
    assert r.first.endswith("https://medlineplus.gov/gout.html")
    assert len(r.rest) == 1 and r.rest[0].endswith("https://medlineplus.gov/gout.html")


def test_short_answer_has_no_more():
    r = render(hit("Gout is a kind of arthritis."), "sms", page_chars())
    assert r.rest == [] and "MORE" not in r.first and "Source:" in r.first
    assert first_page(r.first) == (r.first, None)


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


def test_the_citation_line_is_worded_as_before_and_read_from_the_catalogue(tmp_path, monkeypatch):
    from knowledge import messages
    from knowledge.answers.answer import citation_line

    web = 'Source: MedlinePlus, National Library of Medicine (NIH), "Gout" https://medlineplus.gov/gout.html'
    assert citation_line(hit()) == web
    assert citation_line(hit(), short=True) == 'Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html'
    no_url = Hit("c~0", "c", 0.9, {"organisation": "Clinic", "title": "Hours"}, "Open 9-5.")
    assert citation_line(no_url) == 'Source: Clinic, "Hours"'  # no trailing space

    (tmp_path / "en.yml").write_text((messages.DIRECTORY / "en.yml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "es.yml").write_text("kb.citation: 'Fuente: {organisation}, «{title}» {url}'\n", encoding="utf-8")
    monkeypatch.setattr(messages, "default_catalogue", lambda: messages.Catalogue.load("es", tmp_path))
    assert citation_line(hit(), short=True) == "Fuente: MedlinePlus, «Gout» https://medlineplus.gov/gout.html"
