"""The knowledge actions' mapping from a retrieval result to what the patient gets and which slots
are set, driven through `run()` with the real retriever over a small in-memory knowledge base
(conftest.py): answers with their citation, "Tell me more" and `kb_more` on the web, every page in
one message on SMS, the diagnosis and dosing boundaries, abstaining with a person offered, and
failing closed when retrieval fails."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

import actions.knowledge as kb
import actions.triage
from careline.contracts import PAGE_BREAK, PAGE_CHARS_KEY, NextPage
from channels.paging import sms_metadata
from knowledge.answers.generation import Generated
from knowledge.messages import msg
from tests.unit.actions.conftest import GOUT, GOUT_TREATMENT, PAIN_RELIEVERS, PASSAGES, build_store
from tests.unit.actions.support import domain, said, tracker

CITE_GOUT = '\n\nSource: MedlinePlus, National Library of Medicine (NIH), "Gout" https://medlineplus.gov/gout.html'
CITE_PAIN = (
    '\n\nSource: MedlinePlus, National Library of Medicine (NIH), "Pain Relievers" '
    "https://medlineplus.gov/painrelievers.html"
)
SMS_CITE_GOUT = 'Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html'
# The web shows the whole sentences that fit in 450 characters; "Tell me more" shows the rest.
GOUT_CUT = GOUT.index(" But sometimes")
GOUT_FIRST, GOUT_REST = GOUT[:GOUT_CUT], GOUT[GOUT_CUT + 1 :]
SATURDAY = (
    "Maplewood Main is open on Saturdays from 9:00 a.m. to 1:00 p.m. for booked visits and the walk-in "
    "clinic. Maplewood East is closed on Saturdays."
    '\n\nSource: Maplewood Family Clinic, "Clinic hours" https://maplewoodclinic.example/hours'
)
MORE_BUTTON = {"title": msg("button.more"), "payload": "/ask_more"}
PERSON_BUTTON = {"title": msg("button.person"), "payload": "/request_human"}
PHARMACIST = {"text": msg("kb.ask_pharmacist")}


async def answer(text: str, metadata: dict | None = None, **slots) -> tuple[list, list]:
    d = CollectingDispatcher()
    events = await kb.ActionAnswerQuestion().run(d, tracker(text, metadata=metadata, slots=slots), domain())
    return said(d), events


def kb_slots(more, focus, citation) -> list[dict]:
    return [SlotSet("kb_more", more), SlotSet("kb_focus", focus), SlotSet("kb_citation", citation)]


@pytest.mark.parametrize(
    "text, slots, messages, events",
    [
        pytest.param(
            "what is gout",
            {},
            [{"text": GOUT_FIRST + CITE_GOUT, "buttons": [MORE_BUTTON]}],
            kb_slots([GOUT_REST + CITE_GOUT], "Gout", "t/gout.xml#1"),
            id="long answer: tell me more",
        ),
        pytest.param(
            "how is it treated",
            {"kb_focus": "Gout"},
            [{"text": GOUT_TREATMENT + CITE_GOUT}],
            kb_slots(None, "Gout", "t/gout.xml#2"),
            id="follow-up on the previous topic",
        ),
        pytest.param(
            "are you open saturday",
            {"kb_focus": "Gout"},
            [{"text": SATURDAY}],
            kb_slots(None, None, "clinic/hours.md#saturday-hours"),
            id="clinic answer: no medical topic to carry over",
        ),
        pytest.param(
            "how many mg of ibuprofen can i take",
            {},
            [{"text": PAIN_RELIEVERS + CITE_PAIN}, PHARMACIST],
            kb_slots(None, "Pain Relievers", "t/pain.xml#1"),
            id="dosing: general information, then ask your pharmacist",
        ),
    ],
)
async def test_web_answers_are_cited_and_set_the_topic(use_kb, text, slots, messages, events):
    assert await answer(text, **slots) == (messages, events)


@pytest.mark.parametrize(
    "text, buttons",
    [
        # The knowledge base has gout's overview and treatment, nothing on preventing it.
        ("how to prevent gout", [{"title": msg("kb.read_about", title="Gout"), "payload": "what is Gout"}]),
        ("what is hereditary angioedema", []),  # nothing related at all
        # This knowledge base has no holidays file; the clinic's hours are near, but only a medical
        # topic is offered to read about.
        ("are you open on christmas", []),
    ],
)
async def test_abstaining_offers_a_person_and_a_related_topic_if_any(use_kb, text, buttons):
    got = await answer(text, kb_more=["the rest of an earlier answer"])
    assert got == (
        ["utter_kb_abstain", {"text": msg("kb.offer_person"), "buttons": [*buttons, PERSON_BUTTON]}],
        [SlotSet("kb_more", None)],  # "tell me more" must not continue an earlier answer
    )


def broken():
    raise RuntimeError("the vector store cannot be reached")


@pytest.mark.parametrize("text", ["could I have gout?", "do i have shingles", "is this serious"])
async def test_diagnosis_is_not_attempted_even_with_retrieval_down(monkeypatch, text):
    monkeypatch.setattr(kb, "get_retriever", broken)
    assert await answer(text) == (["utter_cannot_diagnose", "utter_offer_human"], [])


async def test_a_retrieval_failure_fails_closed(monkeypatch):
    monkeypatch.setattr(kb, "get_retriever", broken)
    assert await answer("what is gout") == (["utter_kb_unavailable", "utter_offer_human"], [])


async def test_a_store_lost_after_start_fails_closed(monkeypatch, embeddings):
    from knowledge.answers.retrieval import Retriever

    client, store = build_store(embeddings, PASSAGES[:1])
    retriever = Retriever(store)
    client.delete_collection(store._collection.name)  # the real store errs (NotFoundError) mid-search
    monkeypatch.setattr(kb, "get_retriever", lambda: retriever)
    monkeypatch.setattr(kb, "get_generator", lambda: None)
    assert await answer("what is gout") == (["utter_kb_unavailable", "utter_offer_human"], [])


def sms_pages(message: dict) -> list[str]:
    assert set(message) == {"text"}, "no buttons on SMS"
    return message["text"].split(PAGE_BREAK)


async def test_sms_gets_every_page_in_one_message_each_cited_and_no_kb_more(use_kb):
    metadata = sms_metadata()
    (message,), events = await answer("what is gout", metadata)
    pages = sms_pages(message)
    assert len(pages) > 2 and all(len(p) <= metadata[PAGE_CHARS_KEY] for p in pages)
    assert all(p.endswith("\n" + SMS_CITE_GOUT) for p in pages)
    bodies = [p.removesuffix("\n" + SMS_CITE_GOUT).removesuffix("…") for p in pages]  # "…": a sentence cut
    assert " ".join(bodies).split() == GOUT.split()  # the whole passage, in order, nothing added
    assert events == kb_slots(None, "Gout", "t/gout.xml#1")


async def test_sms_dosing_answer_is_followed_by_the_pharmacist_line(use_kb):
    (message, pharmacist), events = await answer("whats the dose of ibuprofen", sms_metadata())
    assert all(p.endswith('"Pain Relievers" https://medlineplus.gov/painrelievers.html') for p in sms_pages(message))
    assert pharmacist == PHARMACIST and events == kb_slots(None, "Pain Relievers", "t/pain.xml#1")


class RecordingGenerator:
    """Stands in for the hosted model (knowledge/answers/generation.py has its real client)."""

    def __init__(self):
        self.questions: list[str] = []

    def generate(self, question, hits, limit):
        self.questions.append(question)
        return Generated("Gout is a painful kind of arthritis caused by uric acid crystals.", "grounded")


async def test_a_model_may_reword_an_answer_but_never_a_dosing_one(monkeypatch, small_kb):
    generator = RecordingGenerator()
    monkeypatch.setattr(kb, "get_retriever", lambda: small_kb)
    monkeypatch.setattr(kb, "get_generator", lambda: generator)
    messages, _ = await answer("what is gout")
    assert messages[0]["text"] == "Gout is a painful kind of arthritis caused by uric acid crystals." + CITE_GOUT
    messages, _ = await answer("how many mg of ibuprofen can i take")
    assert messages == [{"text": PAIN_RELIEVERS + CITE_PAIN}, PHARMACIST]
    assert generator.questions == ["what is gout"]


MORE = ["page two", "page three"]


@pytest.mark.parametrize(
    "kb_more, metadata, messages, events",
    [
        (["the rest"], None, [{"text": "the rest"}], [SlotSet("kb_more", None)]),
        (MORE, None, [{"text": "page two", "buttons": [MORE_BUTTON]}], [SlotSet("kb_more", ["page three"])]),
        (MORE, {"format": "sms"}, [{"text": "page two"}], [SlotSet("kb_more", ["page three"])]),
        (None, None, ["utter_kb_no_more"], []),
        ([], None, ["utter_kb_no_more"], []),
        # SMS pages are the gateway's: it sends its next kept page instead, if it kept any.
        (None, {"format": "sms"}, [NextPage(), "utter_kb_no_more"], []),
    ],
)
def test_tell_me_more_continues_from_kb_more(kb_more, metadata, messages, events):
    d = CollectingDispatcher()
    got = kb.ActionAnswerMore().run(d, tracker("/ask_more", metadata=metadata, slots={"kb_more": kb_more}), domain())
    assert (said(d), got) == (messages, events)


async def test_tell_me_more_after_a_web_answer_shows_the_rest_then_nothing_more(use_kb):
    _, events = await answer("what is gout")
    slots = {e["name"]: e["value"] for e in events}
    d = CollectingDispatcher()
    events = kb.ActionAnswerMore().run(d, tracker("/ask_more", slots=slots), domain())
    assert (said(d), events) == ([{"text": GOUT_REST + CITE_GOUT}], [SlotSet("kb_more", None)])


@pytest.mark.parametrize(
    "metadata, channel",
    [
        (None, "web"),
        ({"channel": "web"}, "web"),
        ({"format": "sms"}, "sms"),
        ({"channel": "sms"}, "sms"),
        ({"channel": "api", "format": "sms"}, "sms"),
        ({"format": "SMS"}, "web"),  # the gateway writes it in lower case; anything else is not SMS
    ],
)
def test_channel_of(metadata, channel):
    assert kb.channel_of(tracker("hi", metadata=metadata)) == channel


async def test_warm_up_loads_everything_and_says_nothing(monkeypatch, use_kb):
    def triage_down():
        raise RuntimeError("protocols failed to load")

    monkeypatch.setattr(actions.triage, "engine", triage_down)  # triage fails closed on its own when used
    d = CollectingDispatcher()
    assert await kb.ActionKnowledgeWarmUp().run(d, tracker(), domain()) == [] and d.messages == []
