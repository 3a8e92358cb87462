"""Long messages in the knowledge action: the question inside is answered (the real retriever over
conftest.py's small knowledge base), and the diagnosis and dosing boundaries read what is asked,
not the story around it."""

from __future__ import annotations

from rasa_sdk.executor import CollectingDispatcher

import actions.knowledge as kb
from knowledge.messages import msg
from tests.unit.actions.conftest import GOUT_TREATMENT
from tests.unit.actions.support import domain, said, tracker


async def answer(text: str) -> list:
    d = CollectingDispatcher()
    await kb.ActionAnswerQuestion().run(d, tracker(text), domain())
    return said(d)


async def test_a_story_that_mentions_a_diagnosis_is_not_a_request_for_one(use_kb):
    messages = await answer(
        "Subject: my toe\nHello. For a week my big toe has been red and swollen. First I asked myself, could I "
        "have broken it, but there was no fall. The doctor at urgent care says it is gout. How is gout treated? "
        "Thank you,\nSam"
    )
    assert messages[0]["text"].startswith(GOUT_TREATMENT)


async def test_a_long_message_that_asks_for_a_diagnosis_is_told_no(use_kb):
    messages = await answer(
        "Hi there. My big toe has been red, hot and swollen since Sunday and it hurts to walk. My father had "
        "gout. Do I have gout? Thanks so much,\nSam"
    )
    assert messages == ["utter_cannot_diagnose", "utter_offer_human"]


async def test_a_dose_in_the_story_adds_no_pharmacist_line(use_kb):
    messages = await answer(
        "Hello, my father's blood pressure pill dose was raised last month and he is fine. Now his big toe is "
        "swollen and the doctor says it is gout. How is gout treated? Thank you"
    )
    assert messages[0]["text"].startswith(GOUT_TREATMENT)
    assert {"text": msg("kb.ask_pharmacist")} not in messages
