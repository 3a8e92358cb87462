"""Grounded answers to health and clinic questions from the curated knowledge base."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.blocking import built_once, in_thread
from actions.handoff import send_next_page
from careline.contracts import PAGE_BREAK, PAGE_CHARS_KEY
from knowledge.answers.boundaries import boundary  # "diagnosis", "dosing" or None (boundaries.yml)
from knowledge.messages import msg

log = logging.getLogger(__name__)


@built_once
def get_retriever():
    """Built on first use (or by the warm-up action), never at import."""
    from knowledge.answers.vectorstore import make_retriever

    root = Path(os.environ.get("CARELINE_ROOT") or Path(__file__).resolve().parents[1])
    return make_retriever(root)


@built_once
def get_generator():
    """Optional LLM generation: None unless LLM_MODEL is set. Built on first use, never at import."""
    from knowledge.answers.generation import make_generator

    return make_generator()


def channel_of(tracker: Tracker) -> str:
    """How to size answers: "sms" (SMS channel, or an API client asking for SMS rendering) or "web"."""
    metadata = tracker.latest_message.get("metadata") or {}
    return "sms" if "sms" in (metadata.get("format"), metadata.get("channel")) else "web"


def page_chars_of(tracker: Tracker) -> int | None:
    """How many characters an SMS page may hold, as the gateway said (channels/paging.py); None: one page."""
    value = (tracker.latest_message.get("metadata") or {}).get(PAGE_CHARS_KEY)
    return value if type(value) is int and value > 0 else None


def answer_events(
    text: str, channel: str, focus: str | None, page_chars: int | None = None
) -> tuple[list[dict[str, Any]], list]:
    """Plain function behind the action: (messages to send, slot events). Blocking (retrieval, and
    the LLM call when generation is on): the action runs it in a thread."""
    from knowledge.answers.answer import decide, render
    from knowledge.answers.question import find_question

    # The boundaries read what the message asks, not its story ("the doctor thinks I might have
    # lupus. What are the symptoms?" asks for no diagnosis); a short question is read whole.
    crossed = boundary(find_question(text).text)
    if crossed == "diagnosis":
        return [{"response": "utter_cannot_diagnose"}, {"response": "utter_offer_human"}], []
    retriever = get_retriever()
    hits = retriever.search(text, k=3, context=focus)
    decision = decide(hits, retriever.calibration.threshold, text)
    if not decision.answer:
        log.info("kb abstain reason=%s top=%.3f", decision.reason, hits[0].score if hits else 0.0)
        person = {"title": msg("button.person"), "payload": "/request_human"}
        if decision.reason == "medicine":  # nothing on that medicine: the pharmacist, or a person
            return [{"text": msg("kb.no_medicine_info"), "buttons": [person]}], [SlotSet("kb_more", None)]
        messages: list[dict[str, Any]] = [{"response": "utter_kb_abstain"}]
        related = [
            h for h in hits if h.score >= retriever.calibration.threshold / 3 and h.metadata.get("kind") == "medical"
        ]
        buttons = [person]
        if related:
            title = related[0].metadata.get("title", "")
            buttons.insert(0, {"title": msg("kb.read_about", title=title)[:60], "payload": f"what is {title}"})
        messages.append({"text": msg("kb.offer_person"), "buttons": buttons})
        return messages, [SlotSet("kb_more", None)]
    hit = decision.cited[0]
    rendered = render(hit, channel, page_chars)
    if crossed != "dosing":  # dosing questions keep the source's own words
        from knowledge.answers.generation import compose

        rendered, _ = compose(get_generator(), text, hit, channel, rendered, page_chars)
    log.info("kb answer citation=%s score=%.3f", hit.citation_id, hit.score)
    first: dict[str, Any] = {"text": rendered.first}
    more = rendered.rest or None  # "tell me more" (web)
    if channel == "sms":  # every page in one message: the gateway sends them a turn at a time
        first, more = {"text": PAGE_BREAK.join([rendered.first, *rendered.rest])}, None
    elif rendered.rest:
        first["buttons"] = [{"title": msg("button.more"), "payload": "/ask_more"}]
    messages = [first]
    if crossed == "dosing":
        messages.append({"text": msg("kb.ask_pharmacist")})
    focus_name = hit.metadata.get("focus") if hit.metadata.get("kind") == "medical" else None
    return messages, [
        SlotSet("kb_more", more),
        SlotSet("kb_focus", focus_name),
        SlotSet("kb_citation", hit.citation_id),
    ]


def send(dispatcher: CollectingDispatcher, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        dispatcher.utter_message(**m)


class ActionAnswerQuestion(Action):
    def name(self) -> str:
        return "action_answer_question"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        text = tracker.latest_message.get("text") or ""
        try:
            messages, events = await in_thread(
                answer_events, text, channel_of(tracker), tracker.get_slot("kb_focus"), page_chars_of(tracker)
            )
        except Exception:  # fail closed: no unchecked answer, the safety line and a person
            log.exception("kb answer failed")
            dispatcher.utter_message(response="utter_kb_unavailable")
            dispatcher.utter_message(response="utter_offer_human")
            return []
        send(dispatcher, messages)
        return events


class ActionAnswerMore(Action):
    def name(self) -> str:
        return "action_answer_more"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        rest = tracker.get_slot("kb_more") or []
        if not rest:
            if channel_of(tracker) == "sms":  # SMS pages are the gateway's: it sends the next one if it kept any
                send_next_page(dispatcher)
            dispatcher.utter_message(response="utter_kb_no_more")
            return []
        message: dict[str, Any] = {"text": rest[0]}
        if len(rest) > 1 and channel_of(tracker) != "sms":
            message["buttons"] = [{"title": msg("button.more"), "payload": "/ask_more"}]
        dispatcher.utter_message(**message)
        return [SlotSet("kb_more", rest[1:] or None)]


def warm_up() -> None:
    """Load what the first patient would otherwise wait for: the knowledge base (seconds), the
    optional model client, and the triage protocols (about a second)."""
    get_retriever().search("warm up", k=1)
    get_generator()
    try:
        from actions.triage import engine  # here, not at import: actions.triage imports this module

        engine()
    except Exception:  # triage fails closed on its own when used; the knowledge base is ready
        log.exception("triage warm-up failed")


class ActionKnowledgeWarmUp(Action):
    """Called once by the supervisor after start so the first patient does not wait for loading."""

    def name(self) -> str:
        return "action_kb_warmup"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        await in_thread(warm_up)
        return []
