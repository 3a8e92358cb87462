"""Questions about a named medicine that the knowledge base has no passage on (doses, side effects,
interactions: MedQuAD has no drug monographs) get an honest answer, the pharmacist and a person,
through `run()` with the real retriever over the small knowledge base of conftest.py. A medicine
the knowledge base does cover keeps its cited answer (and the dosing line), and a medicine named
in passing does not stop an answer about the condition asked about."""

from __future__ import annotations

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

import actions.knowledge as kb
from knowledge.messages import msg
from tests.unit.actions.conftest import GOUT_TREATMENT, PAIN_RELIEVERS
from tests.unit.actions.support import domain, said, tracker

PERSON_BUTTON = {"title": msg("button.person"), "payload": "/request_human"}
ASK_PHARMACIST = ([{"text": msg("kb.no_medicine_info"), "buttons": [PERSON_BUTTON]}], [SlotSet("kb_more", None)])


async def answer(text: str, **slots) -> tuple[list, list]:
    d = CollectingDispatcher()
    events = await kb.ActionAnswerQuestion().run(d, tracker(text, slots=slots), domain())
    return said(d), events


def test_the_reply_says_what_it_cannot_do_and_who_can():
    text = msg("kb.no_medicine_info")
    assert "pharmacist" in text and "doses, side effects and interactions" in text and "staff" in text


@pytest.mark.parametrize(
    "text",
    [
        "what are the side effects of metformin",
        "is it safe to take tylenol while breastfeeding",
        "can i take lisinopril with grapefruit juice",
        "how long should i stay on sertraline",
        # A long message: the medicine is in the question, the story around it is dropped.
        "Subject: my new pills\nHi, my doctor started me on metformin last month for my blood sugar. Since then my "
        "stomach is upset most days and I have lost some weight. Is that a side effect of metformin? Will it go "
        "away?\nThanks,\nPat",
    ],
)
async def test_a_medicine_the_knowledge_base_has_nothing_on_gets_the_pharmacist_and_a_person(use_kb, text):
    assert await answer(text, kb_more=["the rest of an earlier answer"]) == ASK_PHARMACIST


async def test_a_medicine_the_knowledge_base_covers_keeps_its_cited_answer_and_the_dosing_line(use_kb):
    # "ibuprofen" is a synonym of the Pain Relievers topic.
    messages, _ = await answer("what is the usual dose of ibuprofen for adults")
    assert messages[0]["text"].startswith(PAIN_RELIEVERS) and messages[-1] == {"text": msg("kb.ask_pharmacist")}


@pytest.mark.parametrize(
    "text",
    [
        "my dad takes lisinopril for his blood pressure. how is gout treated?",
        # The medicine is in the story, the question is about the condition.
        "Hello. My husband is 62 and takes metformin and lisinopril every morning. Last week his big toe swelled "
        "up and the doctor said it was gout. How is gout treated? Thank you, Rose",
    ],
)
async def test_a_medicine_named_in_passing_does_not_stop_an_answer_about_the_condition(use_kb, text):
    messages, events = await answer(text)
    assert messages[0]["text"].startswith(GOUT_TREATMENT)
    assert SlotSet("kb_citation", "t/gout.xml#2") in events
