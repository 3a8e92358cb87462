"""The triage form's actions over the real engine and protocols (knowledge/triage/): which question
is asked, how each reply maps to the form's slots, the outcome with its level, buttons and hand-off,
SMS against web, and failing closed (the safety line and staff) whenever the engine fails. The form
is driven as Rasa drives it: the ask action, then on every reply validate_triage_form, and when
`triage_answer` is filled, action_triage_outcome."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import pytest
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

import actions.knowledge as kb
import actions.triage as at
from careline.contracts import Handoff, HandoffReason, Priority
from knowledge.messages import msg
from tests.unit.actions.conftest import FEVER_TREATMENT
from tests.unit.actions.support import domain, said, slots_of, tracker, user

FORM = "triage_form"
ENDS_FORM = [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("triage_state", None)]
RESET = [SlotSet("triage_state", None), SlotSet("triage_answer", None)]


def buttons(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"title": msg(title), "payload": payload} for title, payload in pairs]


YES_NO = buttons(("triage.option.yes", "yes"), ("triage.option.no", "no"), ("triage.option.not_sure", "not sure"))
WHO = buttons(
    ("triage.option.me_adult", "me, an adult"),
    ("triage.option.child", "a child"),
    ("triage.option.baby", "a baby under 1 year old"),
)
LEVEL_BUTTONS = {
    "emergency": [],
    "urgent": buttons(("triage.button.book_same_day", "/book_appointment"), ("triage.button.nurse", "/request_human")),
    "routine": buttons(("triage.button.book", "/book_appointment"), ("button.person", "/request_human")),
    "self_care": buttons(("button.person", "/request_human")),
}


@pytest.fixture(autouse=True)
def retrieval_down(monkeypatch):
    """Self-care advice falls back to the protocol's own unless a test gives a knowledge base."""

    def down():
        raise RuntimeError("the vector store cannot be reached")

    monkeypatch.setattr(kb, "get_retriever", down)


class Form:
    """One conversation's triage form, run as Rasa runs it: `seen` holds every turn's messages,
    `log` every action run with the events it returned."""

    def __init__(self, metadata: dict | None = None):
        self.metadata = metadata
        self.slots: dict[str, Any] = {}
        self.active = True
        self.seen: list[list[Any]] = []
        self.log: list[tuple[str, list[dict]]] = []

    def tracker(self, text: str, events: list[dict] | None = None):
        return tracker(text, metadata=self.metadata, slots=self.slots, events=events, active_loop=FORM)

    async def run(self, action, text: str, events: list[dict] | None = None) -> list[Any]:
        d = CollectingDispatcher()
        returned = await action.run(d, self.tracker(text, events), domain())
        self.log.append((action.name(), returned))
        self.slots.update(slots_of(returned))
        if ActiveLoop(None) in returned:
            self.active = False
        return said(d)

    async def start(self, text: str) -> list[Any]:
        """The form's first turn: Rasa asks for `triage_answer`, which reads the complaint."""
        self.seen.append(await self.run(at.ActionAskTriageAnswer(), text))
        return self.seen[-1]

    async def reply(self, text: str) -> list[Any]:
        assert self.active, "the form ended before this reply"
        # Rasa fills triage_answer from the text (its from_text mapping), then validates it.
        self.slots["triage_answer"] = text
        shown = await self.run(at.ValidateTriageForm(), text, [user(text), SlotSet("triage_answer", text)])
        if self.slots.get("triage_answer") is None:
            shown += await self.run(at.ActionAskTriageAnswer(), text)
        else:  # the form's slot is filled: Rasa ends the form and the rule tells the outcome
            self.active = False
            self.slots["requested_slot"] = None
            shown += await self.run(at.ActionTriageOutcome(), text)
        self.seen.append(shown)
        return shown

    @property
    def state(self) -> dict[str, Any]:
        return self.slots["triage_state"]

    @property
    def events(self) -> list[dict]:
        """What the last action returned."""
        return self.log[-1][1]


async def journey(opening: str, replies: list[str], metadata: dict | None = None) -> Form:
    form = Form(metadata)
    await form.start(opening)
    for reply in replies:
        await form.reply(reply)
    return form


def outcome_of(shown: list[Any], level: str) -> dict[str, Any]:
    """The outcome message: level and advice first, "not a diagnosis", the level's next steps."""
    (message,) = [m for m in shown if isinstance(m, dict)]
    headline = msg("triage.outcome.headline", level=msg(f"triage.level.{level}"), advice=msg(f"triage.advice.{level}"))
    assert message["text"].startswith(headline + "\n\n")
    assert msg("triage.outcome.not_a_diagnosis") in message["text"]
    assert message.get("buttons", []) == LEVEL_BUTTONS[level]
    return message


async def test_the_first_turn_reads_the_complaint_and_asks_what_matters():
    form = Form()
    assert await form.start("there's a fever") == [{"text": "Who is this for?", "buttons": WHO}]
    assert form.events == [SlotSet("triage_state", ANY)]
    assert form.state["facts"]["complaints"] == ["fever"]
    assert (form.state["current"], form.state["asked"], form.state["retries"]) == ("who", ["who"], 0)


@pytest.mark.parametrize(
    "opening",
    # the second: a fever under 3 months is an emergency by age alone (NICE NG143 red feature)
    ["my chest hurts and I'm sweating", "my 6 week old has a temperature of 100.8"],
)
async def test_an_emergency_in_the_first_message_ends_the_form_and_alerts_staff_first(opening):
    form = Form()
    shown = await form.start(opening)
    outcome_of(shown, "emergency")
    (handoff,) = [m for m in shown if isinstance(m, Handoff)]
    assert shown[1:] == ["utter_triage_staff_alerted", handoff]
    assert (handoff.reason, handoff.priority) == (HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY)
    assert handoff.summary["complaint"] in ("chest_pain", "fever") and handoff.summary["level"] == "emergency"
    assert opening not in str(handoff.summary)  # ids and answers for staff, not the message
    assert form.events == [SlotSet("triage_level", "emergency"), *ENDS_FORM, SlotSet("triage_answer", None)]


# (opening message, replies, level, the hand-off staff get). Every reply is needed: the form
# must end with the last one, not before.
JOURNEYS = [
    ("I've had a fever of 101 for 4 days", ["me", "no", "no", "no", "no", "none"], "routine", None),
    ("fever of 100.4 since last night, otherwise fine", ["me", "no", "no", "no", "no", "none"], "self_care", None),
    # "Not sure" about meningitis signs pushes the level up to urgent, with its red flags: staff are told.
    (
        "there's a fever",
        ["me", "not sure", "not sure", "no", "no", "no", "2 days", "none"],
        "urgent",
        (HandoffReason.TRIAGE_URGENT, Priority.URGENT),
    ),
    # An answer that reveals an emergency ends the form at once.
    ("there's a fever", ["me", "101", "yes"], "emergency", (HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY)),
]


@pytest.mark.parametrize("opening, replies, level, handoff", JOURNEYS)
async def test_a_journey_ends_with_its_level_buttons_and_hand_off(opening, replies, level, handoff):
    form = await journey(opening, replies)
    assert not form.active
    *questions, last = form.seen
    assert all(len(turn) == 1 and turn[0]["text"].endswith("?") for turn in questions)  # one question a turn
    outcome_of(last, level)
    controls = [(m.reason, m.priority) for m in last if isinstance(m, Handoff)]
    assert controls == ([handoff] if handoff else [])
    assert ("utter_triage_staff_alerted" in last) == bool(handoff)
    assert form.events == [SlotSet("triage_level", level), *RESET]


async def at_meningitis_question(metadata: dict | None = None) -> Form:
    """A form waiting for a yes/no answer: stiff neck, rash, confusion or sleepiness?"""
    form = Form(metadata)
    await form.start("there's a fever")
    await form.reply("me")
    await form.reply("101")
    assert form.state["current"] == "meningitis_signs"
    return form


SEPSIS_QUESTION = (
    "Is there very fast breathing, a racing heart, cold or blotchy skin, or shaking chills that won't stop?"
)
TEMPERATURE = {
    "text": "What is the temperature, if you have taken it?",
    "buttons": buttons(("triage.option.not_taken", "not sure")),
}
MENINGITIS_QUESTION = (
    "Is there a stiff neck, a rash that doesn't fade when you press a glass on it, confusion, or unusual sleepiness?"
)


GOES_ON = [("validate_triage_form", [SlotSet("triage_answer", None), SlotSet("triage_state", ANY)])]
ASKED = [("action_ask_triage_answer", [SlotSet("triage_state", ANY)])]
# The form's slot is filled and the state cleared, so the outcome action only resets the answer.
ENDED = [
    ("validate_triage_form", [SlotSet("triage_answer", "done"), SlotSet("triage_state", None)]),
    ("action_triage_outcome", [SlotSet("triage_answer", None)]),
]


@pytest.mark.parametrize(
    "reply, shown, actions",
    [
        ("no", [{"text": SEPSIS_QUESTION, "buttons": YES_NO}], GOES_ON + ASKED),
        ("not sure", [{"text": SEPSIS_QUESTION, "buttons": YES_NO}], GOES_ON + ASKED),
        ("purple", ["utter_triage_rephrase", {"text": MENINGITIS_QUESTION, "buttons": YES_NO}], GOES_ON + ASKED),
        ("go back", ["utter_triage_go_back", TEMPERATURE], GOES_ON + ASKED),
        ("cancel", ["utter_triage_stopped"], ENDED),
        ("talk to a person", ["utter_handoff", ANY], ENDED),
    ],
)
async def test_each_reply_maps_to_the_form_slots_and_the_next_step(reply, shown, actions):
    form = await at_meningitis_question()
    before = len(form.log)
    assert await form.reply(reply) == shown
    assert form.log[before:] == actions
    assert form.active == (actions[-1][0] == "action_ask_triage_answer")


async def test_validation_returns_exactly_the_form_slots():
    form = await at_meningitis_question()
    d = CollectingDispatcher()
    events = await at.ValidateTriageForm().run(
        d, form.tracker("no", [user("no"), SlotSet("triage_answer", "no")]), domain()
    )
    assert events == [SlotSet("triage_answer", None), SlotSet("triage_state", ANY)]
    assert events[1]["value"]["facts"]["findings"]["meningitis_signs"] is False
    validate = at.ValidateTriageForm()
    assert await validate.required_slots(validate.domain_slots(domain()), d, form.tracker("no"), domain()) == [
        "triage_answer"
    ]
    assert await validate.next_requested_slot(d, form.tracker("no"), domain()) is None  # Rasa's form asks


async def test_asking_for_a_person_mid_form_hands_off_with_the_answers_so_far():
    form = await at_meningitis_question()
    _, handoff = await form.reply("can I talk to a nurse")
    assert (handoff.reason, handoff.priority) == (HandoffReason.REQUEST_HUMAN, Priority.NORMAL)
    assert handoff.summary["complaint"] == "fever"
    assert handoff.summary["answers"]["who"] == "adult" and handoff.summary["answers"]["temperature_f"] == 101


async def test_a_reply_not_understood_twice_counts_as_not_sure():
    form = await at_meningitis_question()
    assert await form.reply("purple") == ["utter_triage_rephrase", {"text": MENINGITIS_QUESTION, "buttons": YES_NO}]
    assert await form.reply("purple") == [{"text": SEPSIS_QUESTION, "buttons": YES_NO}]
    assert "meningitis_signs" in form.state["facts"]["unsure"] and form.state["retries"] == 0


TRIAGE_ERROR = Handoff(HandoffReason.TRIAGE_ERROR, Priority.URGENT)
FAILED = ["utter_triage_unavailable", TRIAGE_ERROR]
# A state this engine cannot read (a protocol since removed, say): every step fails.
CORRUPT = {"facts": {"complaints": ["no_such_protocol"]}, "current": "who", "asked": ["who"]}


async def test_an_engine_that_cannot_load_fails_closed_on_the_first_turn(monkeypatch):
    def down():
        raise RuntimeError("protocols failed to load")

    monkeypatch.setattr(at, "engine", down)
    form = Form()
    assert await form.start("there's a fever") == FAILED
    assert form.events == [*ENDS_FORM, SlotSet("triage_answer", None)]


@pytest.mark.parametrize("action", [at.ActionAskTriageAnswer(), at.ActionTriageOutcome()], ids=["ask", "outcome"])
async def test_a_failing_step_fails_closed_and_ends_the_form(action):
    form = Form()
    form.slots["triage_state"] = CORRUPT
    assert await form.run(action, "yes") == FAILED
    assert form.events == [*ENDS_FORM, SlotSet("triage_answer", None)]


async def test_a_failing_reply_fails_closed_with_staff():
    form = Form()
    form.slots["triage_state"] = CORRUPT
    assert await form.reply("yes") == FAILED  # then the outcome action has nothing more to say
    assert not form.active and form.slots["triage_state"] is None


async def test_sms_and_web_get_the_same_outcome_but_sms_without_the_why_label():
    web, sms = Form(), Form({"format": "sms"})
    text = "my chest hurts and I'm sweating"
    web_text, sms_text = (await web.start(text))[0]["text"], (await sms.start(text))[0]["text"]
    why = msg("triage.outcome.why", reasons="")
    assert why in web_text and why not in sms_text and sms_text == web_text.replace(why, "", 1)


SELF_CARE = ("fever of 100.4 since last night, otherwise fine", ["me", "no", "no", "no", "no", "none"])
PROTOCOL_SOURCE = "Source: MedlinePlus (NIH), Fever (https://medlineplus.gov/fever.html)"


async def self_care_text(metadata: dict | None = None) -> str:
    form = await journey(*SELF_CARE, metadata)
    return outcome_of(form.seen[-1], "self_care")["text"]


async def test_self_care_advice_without_the_knowledge_base_is_the_protocols_with_its_source():
    text = await self_care_text()
    advice = at.engine().protocol("fever").self_care["advice"]
    assert f"{advice} {PROTOCOL_SOURCE}" in text and FEVER_TREATMENT not in text


@pytest.mark.parametrize(
    "metadata, cite",
    [
        (
            None,
            '\n\nSource: MedlinePlus, National Library of Medicine (NIH), "Fever" https://medlineplus.gov/fever.html',
        ),
        ({"format": "sms"}, '\nSource: MedlinePlus, "Fever" https://medlineplus.gov/fever.html'),
    ],
    ids=["web", "sms"],
)
async def test_self_care_advice_comes_cited_from_the_knowledge_base(use_kb, metadata, cite):
    text = await self_care_text(metadata)
    assert FEVER_TREATMENT + cite in text
    assert PROTOCOL_SOURCE not in text  # the advice cites its source already
