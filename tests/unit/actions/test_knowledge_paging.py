"""The knowledge action's answer as each channel gets it: on the web a short answer with "Tell me
more" and the rest in `kb_more`; on SMS every page in one message, for the gateway to send a turn
at a time (channels/paging.py), and nothing in `kb_more`. Retrieval is a stub; no model."""

import pytest
from rasa_sdk import Tracker

import actions.knowledge as kb
from careline.contracts import PAGE_BREAK, PAGE_CHARS_KEY
from knowledge.answers.retrieval import Hit

CITE = 'Source: MedlinePlus, "Gout" https://medlineplus.gov/gout.html'
LONG = " ".join(f"Sentence number {i} explains one more thing about gout and its care." for i in range(40))


class StubRetriever:
    class calibration:
        threshold = 0.5

    def search(self, query, k=5, context=None):
        meta = {
            "organisation": "MedlinePlus, National Library of Medicine (NIH)",
            "title": "Gout",
            "kind": "medical",
            "focus": "Gout",
            "url": "https://medlineplus.gov/gout.html",
        }
        return [Hit("g~0", "g", 0.9, meta, LONG)]


@pytest.fixture(autouse=True)
def stub(monkeypatch):
    monkeypatch.setattr(kb, "get_retriever", StubRetriever)
    monkeypatch.setattr(kb, "get_generator", lambda: None)


def slots(events):
    return {e["name"]: e["value"] for e in events}


def test_sms_gets_every_page_in_one_message_and_no_kb_more():
    messages, events = kb.answer_events("what is gout", "sms", None, 299)
    (message,) = messages
    pages = message["text"].split(PAGE_BREAK)
    assert len(pages) > 2 and all(len(p) <= 299 and p.endswith(CITE) for p in pages)
    assert "buttons" not in message and "MORE" not in message["text"]
    assert slots(events)["kb_more"] is None and slots(events)["kb_focus"] == "Gout"


def test_web_gets_tell_me_more_and_kb_more():
    messages, events = kb.answer_events("what is gout", "web", None)
    (message,) = messages
    assert PAGE_BREAK not in message["text"] and message["buttons"][0]["payload"] == "/ask_more"
    assert slots(events)["kb_more"] and slots(events)["kb_more"][0].endswith("https://medlineplus.gov/gout.html")


@pytest.mark.parametrize(
    "metadata, expected",
    [({"format": "sms", PAGE_CHARS_KEY: 299}, 299), ({"format": "sms"}, None), ({PAGE_CHARS_KEY: "299"}, None)],
)
def test_the_page_size_is_the_gateways(metadata, expected):
    tracker = Tracker("c1", {}, {"text": "hi", "metadata": metadata}, [], False, None, None, "action_listen")
    assert kb.page_chars_of(tracker) == expected
