"""The appointment conversations: book, cancel, reschedule, "when is my appointment?".

A plain state machine over one JSON-able dict (a Rasa slot carries it between turns; the thin
actions in actions/scheduling.py call `Conversation.start` and `Conversation.reply`). Each turn
returns what to say (text and buttons: buttons on the web, numbered choices on SMS, which the
gateway renders) and, when a person must take over, a hand-off.

- Book: the visit reason; a symptom is triaged first (the triage engine's own questions):
  emergency -> no booking, the emergency message and staff; urgent -> same-day or next-day slots
  only, or a person; routine -> the next available; self-care -> advice, and booking if wanted.
  New or returning patient, preferences (day, time of day, provider, location), a few slots,
  the patient's details, confirm. The slot is held while the patient decides; the database has
  the last word when it is booked.
- Cancel, reschedule, check: name and date of birth, then a one-time code texted to the number on
  file (or the SMS sender's number is that number), and only then anything about appointments.
  Inside the cut-off (CANCEL_CUTOFF_HOURS) a change goes to staff. A reschedule books the new
  slot before the old one is released.
- At any step: "go back", "stop", "talk to a person", and corrections ("actually Tuesday").
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from careline.contracts import HandoffReason, Priority
from careline.scheduling import parse
from careline.scheduling.model import (
    ACTIVE_STATUSES,
    Appointment,
    NotAllowed,
    Patient,
    Scheduler,
    SchedulingError,
    Slot,
    SlotQuery,
    SlotTaken,
)
from knowledge.messages import msg

log = logging.getLogger(__name__)

BOOK, CANCEL, RESCHEDULE, CHECK = "book", "cancel", "reschedule", "check"
FLOWS = {
    "book_appointment": BOOK,
    "cancel_appointment": CANCEL,
    "reschedule_appointment": RESCHEDULE,
    "check_appointment": CHECK,
}
MAX_BACK = 12  # how many steps "go back" can undo
MAX_NAME_CHARS = 120
SEARCH_LIMIT = 400  # slots read to filter by time of day (28 days of one clinic: about 1,400)
# Steps whose question is always the same (the others re-show their last prompt when not understood).
FIXED_QUESTIONS = frozenset({"reason", "symptoms", "returning", "prefs", "name", "dob", "phone", "code"})
MAX_UNCLEAR = 2  # replies not understood at one step before a person is offered


@dataclass
class Turn:
    """What one turn says and does."""

    messages: list[dict[str, Any]] = field(default_factory=list)  # {"text", "buttons"}
    handoff: tuple[HandoffReason, Priority, dict[str, Any]] | None = None
    done: bool = False
    triage_level: str | None = None

    def say(self, text: str, buttons: list[dict[str, str]] | None = None) -> Turn:
        self.messages.append({"text": text, "buttons": buttons or []})
        return self


@dataclass
class Context:
    """Who is talking, and how: the conversation's pseudonym, its channel, the clock."""

    sender_id: str
    channel: str  # "web" | "sms"
    now: datetime
    calendar_url: Any = None  # callable(appointment_id) -> URL of its .ics file, web only


def button(title: str, payload: str | None = None) -> dict[str, str]:
    return {"title": title, "payload": payload if payload is not None else title}


def person_button() -> dict[str, str]:
    return button(msg("button.person"), "talk to a person")


class Conversation:
    """The machine. `scheduler` is any backend; `codes` sends and checks one-time codes
    (careline/scheduling/otp.py); `triage` is the triage engine."""

    def __init__(
        self,
        scheduler: Scheduler,
        codes,
        triage,
        settings,
        clinic_tz: str,
        secret: str,
        waitlist=None,
        identity_limit=None,
    ):
        self.scheduler, self.codes, self.triage, self.settings = scheduler, codes, triage, settings
        self.waitlist = waitlist  # callable(patient_id, visit_type, appointment_id): the waitlist for an earlier slot
        self.identity_limit = identity_limit  # callable(name key) -> False when that name had too many tries
        self.tz = ZoneInfo(clinic_tz)
        self.secret = secret  # CONVERSATION_SECRET: an SMS sender's key is phone_key(secret, number)

    # --- entry points ---------------------------------------------------------------------------

    def start(
        self,
        flow: str,
        text: str,
        ctx: Context,
        entities: dict[str, Any] | None = None,
        triage_level: str | None = None,
    ) -> tuple[dict[str, Any] | None, Turn]:
        """The first turn of a flow, reading what the opening message already says."""
        state, turn = self._start(flow, text, ctx, entities, triage_level)
        remember_prompt(state, turn)
        return state, turn

    def _start(self, flow, text, ctx, entities, triage_level):
        state: dict[str, Any] = {"flow": flow, "step": None, "back": [], "unclear": 0, "prefs": {}}
        turn = Turn()
        appointment_id = (entities or {}).get("appointment_id")
        if flow in (CANCEL, RESCHEDULE) and appointment_id:
            return self._from_reply_keyword(state, str(appointment_id), ctx, turn)
        if flow == BOOK:
            self._read_preferences(state, text, ctx)
            named = self._names_reason(text)
            if triage_level in ("urgent", "routine", "self_care") and not named:
                state["level"], state["reason"] = triage_level, ""
                return self._ask_returning(state, ctx, turn)
            if named:
                return self._take_reason(state, text, ctx, turn)
            return self._ask(state, "reason", turn)
        return self._ask(state, "name", turn)

    def reply(self, state: dict[str, Any], text: str, ctx: Context) -> tuple[dict[str, Any] | None, Turn]:
        """One patient reply. Returns the new state (None: the flow is over) and the turn."""
        turn = Turn()
        text = (text or "").strip()
        if parse.wants_person(text):
            return self._handoff(state, turn, HandoffReason.REQUEST_HUMAN, Priority.NORMAL, "scheduling.to_person")
        if self._wants_stop(state, text, ctx):
            self._release_hold(state, ctx)
            return None, turn.say(msg("scheduling.stopped"))
        if parse.wants_back(text):
            return self._go_back(state, ctx, turn)
        handler = getattr(self, f"_on_{state.get('step')}", None)
        if handler is None:
            return None, turn.say(msg("scheduling.stopped"))
        previous = _snapshot(state)
        new_state, turn = handler(state, text, ctx, turn)
        if new_state is not None and new_state.get("step") != previous.get("step"):
            new_state["back"] = (previous.get("back") or [])[-MAX_BACK:] + [previous]
            new_state["unclear"] = 0
        remember_prompt(new_state, turn)
        return new_state, turn

    def _wants_stop(self, state, text: str, ctx: Context) -> bool:
        """ "never mind", "forget it"; on the web also a bare "stop" or "quit" (on SMS those are the
        carrier keywords, which the gateway handles). Not a yes: "yes, cancel this" confirms."""
        if parse.parse_yes_no(text) is True:
            return False
        bare = text.lower().strip(" .!") in ("stop", "quit", "exit", "end")
        return parse.wants_stop(text) or (bare and ctx.channel != "sms")

    # --- asking ---------------------------------------------------------------------------------

    def _ask(self, state: dict[str, Any], step: str, turn: Turn, **params) -> tuple[dict[str, Any], Turn]:
        state["step"] = step
        text, buttons = self._question(state, step, **params)
        return state, turn.say(text, buttons)

    def _question(self, state: dict[str, Any], step: str, **params) -> tuple[str, list[dict[str, str]]]:
        if step == "reason":
            return msg("scheduling.ask.reason"), [
                button(msg("scheduling.reason.checkup"), "check-up or follow-up visit"),
                button(msg("scheduling.reason.new_problem"), "a new problem"),
                button(msg("scheduling.reason.video"), "a video visit"),
                person_button(),
            ]
        if step == "symptoms":
            return msg("scheduling.ask.symptoms"), []
        if step == "returning":
            return msg("scheduling.ask.returning"), [
                button(msg("scheduling.returning.yes"), "yes, I have been before"),
                button(msg("scheduling.returning.no"), "no, I'm new"),
            ]
        if step == "prefs":
            return msg("scheduling.ask.preferences"), [
                button(msg("scheduling.prefs.earliest"), "earliest"),
                button(msg("scheduling.prefs.morning"), "morning"),
                button(msg("scheduling.prefs.afternoon"), "afternoon"),
            ]
        if step == "name":
            return msg("scheduling.ask.name"), []
        if step == "dob":
            return msg("scheduling.ask.dob"), []
        if step == "phone":
            return msg("scheduling.ask.phone"), []
        if step == "code":
            return msg("scheduling.ask.code", ending=params.get("ending", "")), [
                button(msg("scheduling.code.resend"), "send a new code")
            ]
        raise ValueError(f"no question for step {step}")

    def _unclear(self, state: dict[str, Any], turn: Turn, hint: str) -> tuple[dict[str, Any], Turn]:
        """A reply this step could not read: say what is expected again (the step's question, or
        the last prompt with its choices); after MAX_UNCLEAR, offer a person too."""
        state["unclear"] = int(state.get("unclear") or 0) + 1
        if state["step"] in FIXED_QUESTIONS:
            text, buttons = self._question(state, state["step"], ending=state.get("ending", ""))
        else:
            prompt = state.get("prompt") or {}
            text, buttons = prompt.get("text", ""), list(prompt.get("buttons") or [])
        if state["unclear"] > MAX_UNCLEAR:
            buttons = [*buttons, person_button()]
        turn.say(f"{msg(hint)} {text}", buttons)
        return state, turn

    def _go_back(self, state: dict[str, Any], ctx: Context, turn: Turn) -> tuple[dict[str, Any] | None, Turn]:
        history = state.get("back") or []
        if not history:
            return self._ask(state, state.get("step") or "reason", turn.say(msg("scheduling.back_at_start")))
        self._release_hold(state, ctx)
        previous = history[-1]
        previous["back"] = history[:-1]
        turn.say(msg("scheduling.going_back"))
        step = previous.get("step")
        if step == "pick":
            return self._offer(previous, ctx, turn)
        if step == "triage":
            previous["step"] = "symptoms"
            return self._ask(previous, "symptoms", turn)
        if step == "confirm_cancel":
            return self._ask_cancel(previous, ctx, turn)
        return self._ask(previous, step, turn, ending=previous.get("ending", ""))

    # --- book: reason and triage ----------------------------------------------------------------

    def _names_reason(self, text: str) -> bool:
        """Whether the opening message says why, beyond asking for an appointment: a kind of visit
        ("a check-up"), a reason after "for"/"about"/"because", or a symptom the triage engine reads."""
        if _reason_kind(text) in ("checkup", "video") or _says_why(text):
            return True
        from knowledge.triage.engine import Facts

        facts = Facts()
        self.triage.read(text, facts)
        return bool(facts.complaints)

    def _on_reason(self, state, text, ctx, turn):
        return self._take_reason(state, text, ctx, turn)

    def _take_reason(self, state, text, ctx, turn):
        kind = _reason_kind(text)
        state["reason"] = text[:200] if kind == "symptom" else ""
        if kind == "video":
            state["visit_type"] = "telehealth"
        if kind == "checkup" or kind == "video":
            state["level"] = "routine"
            return self._ask_returning(state, ctx, turn)
        if kind == "new_problem":
            return self._ask(state, "symptoms", turn)
        return self._triage(state, text, ctx, turn)

    def _on_symptoms(self, state, text, ctx, turn):
        state["reason"] = text[:200]
        return self._triage(state, text, ctx, turn)

    def _triage(self, state, text, ctx, turn):
        """Triage the visit reason with the triage engine, asking its questions as the form does."""
        from knowledge.triage.dialogue import TriageState

        triage = TriageState()
        self.triage.read(text, triage.facts)
        if not triage.facts.complaints and not self.triage.assess(triage.facts).red_flags:
            state["level"] = "routine"  # not a symptom: a visit like any other
            return self._ask_returning(state, ctx, turn)
        state["step"] = "triage"
        return self._triage_next(state, triage, ctx, turn)

    def _on_triage(self, state, text, ctx, turn):
        from knowledge.triage.dialogue import TriageState, apply_answer

        triage = TriageState.from_dict(state.get("triage"))
        result = apply_answer(self.triage, triage, text)
        if result == "unclear":
            triage.retries += 1
            if triage.retries < 2:
                state["triage"] = triage.to_dict()
                return state, turn.say(msg("scheduling.triage_rephrase"))
            # asked twice and still not understood: "not sure", as the triage form does (pushes the level up)
            from knowledge.triage.dialogue import question_by_id

            q = question_by_id(self.triage, triage.facts, triage.current)
            if q is not None:
                triage.facts.unsure.add(q.finding or q.kind)
        return self._triage_next(state, triage, ctx, turn)

    def _triage_next(self, state, triage, ctx, turn):
        from knowledge.triage.dialogue import ask

        q = self.triage.next_question(triage.facts)
        if q is not None:
            if q.id != triage.current:
                triage.current, triage.retries = q.id, 0
                triage.asked.append(q.id)
            state["triage"] = triage.to_dict()
            shown = ask(q, triage.facts)
            return state, turn.say(shown["text"], shown["buttons"])
        return self._triage_outcome(state, triage, ctx, turn)

    def _triage_outcome(self, state, triage, ctx, turn):
        from knowledge.triage.dialogue import outcome, staff_summary

        assessment = self.triage.assess(triage.facts)
        level = str(assessment.level)
        state["level"], state["triage"] = level, None
        turn.triage_level = level
        log.info("scheduling triage level=%s complaint=%s", level, assessment.complaint)
        shown = outcome(assessment, triage.facts, ctx.channel)
        if level == "emergency":
            turn.say(shown["text"]).say(msg("scheduling.emergency_no_booking"))
            turn.handoff = (HandoffReason.TRIAGE_EMERGENCY, Priority.EMERGENCY, staff_summary(assessment, triage.facts))
            turn.done = True
            return None, turn
        if level == "self_care":
            state["step"] = "self_care"
            return state, turn.say(shown["text"]).say(
                msg("scheduling.self_care_offer"),
                [
                    button(msg("scheduling.self_care.book"), "book anyway"),
                    button(msg("scheduling.self_care.no"), "no thanks"),
                ],
            )
        turn.say(shown["text"].split("\n\n")[0])
        if level == "urgent":
            state["visit_type"] = "same_day_sick"
        return self._ask_returning(state, ctx, turn)

    def _on_self_care(self, state, text, ctx, turn):
        answer = parse.parse_yes_no(text)
        lowered = text.lower()
        if "book" in lowered or answer is True:
            return self._ask_returning(state, ctx, turn)
        if answer is False or "no thanks" in lowered:
            return None, turn.say(msg("scheduling.self_care_done"))
        return self._unclear(state, turn, "scheduling.unclear.yes_no")

    # --- book: new or returning, preferences, slots ----------------------------------------------

    def _ask_returning(self, state, ctx, turn):
        if state.get("patient_id"):  # known already (a reschedule, or identified earlier)
            return self._ask_prefs_or_offer(state, ctx, turn)
        return self._ask(state, "returning", turn)

    def _on_returning(self, state, text, ctx, turn):
        new = _is_new_patient(text)
        if new is None:
            return self._unclear(state, turn, "scheduling.unclear.yes_no")
        state["new_patient"] = new
        return self._ask_prefs_or_offer(state, ctx, turn)

    def _ask_prefs_or_offer(self, state, ctx, turn):
        if state.get("level") == "urgent" or state.get("prefs"):
            return self._offer(state, ctx, turn)
        return self._ask(state, "prefs", turn)

    def _on_prefs(self, state, text, ctx, turn):
        problem = self._read_preferences(state, text, ctx)
        if problem:
            state["unclear"] = int(state.get("unclear") or 0) + 1
            return state, turn.say(msg("scheduling.impossible_date"), self._question(state, "prefs")[1])
        return self._offer(state, ctx, turn)

    def _read_preferences(self, state, text, ctx) -> str:
        """Fold what the text says about day, time, provider and location into the state's
        preferences (a correction replaces what it names and keeps the rest). Returns a reason
        code when it names an impossible date."""
        today = ctx.now.astimezone(self.tz).date()
        # names with roles and addresses: "the nurse practitioner", "the one on Lakeview"
        providers = [(p.id, f"{p.name} {p.role}") for p in self.scheduler.providers()]
        locations = [(loc.id, f"{loc.name} {loc.address}") for loc in self.scheduler.locations()]
        newer = parse.parse_preferences(text, today, providers, locations)
        if newer.impossible:
            return newer.impossible
        if newer == parse.Preferences():
            return ""
        state["prefs"] = (
            _prefs_to_dict(_prefs_from_dict(state.get("prefs")).merge(newer))
            if state.get("prefs")
            else _prefs_to_dict(newer)
        )
        return ""

    def _visit_type(self, state) -> str:
        if state.get("visit_type"):
            return state["visit_type"]
        if state.get("flow") == RESCHEDULE and state.get("old_visit_type"):
            return state["old_visit_type"]
        return "new_patient" if state.get("new_patient") else "follow_up"

    def _slot_query(self, state, ctx, relaxed: bool = False) -> SlotQuery:
        prefs = _prefs_from_dict(state.get("prefs"))
        local_now = ctx.now.astimezone(self.tz)
        start = ctx.now + timedelta(minutes=30)
        end = ctx.now + timedelta(days=self.settings.schedule_days_ahead)
        if state.get("level") == "urgent":  # same day or next day only
            end = datetime.combine(local_now.date() + timedelta(days=2), datetime.min.time(), self.tz)
            return SlotQuery(
                start=start, end=end, visit_type=self._visit_type(state), limit=self.settings.slots_offered
            )
        if relaxed:
            return SlotQuery(
                start=start, end=end, visit_type=self._visit_type(state), limit=self.settings.slots_offered
            )
        if prefs.not_before:
            start = max(start, datetime.combine(prefs.not_before, datetime.min.time(), self.tz))
        weekdays = set(prefs.weekdays)
        days = sorted(prefs.days)
        if days:
            start = max(start, datetime.combine(days[0], datetime.min.time(), self.tz))
            end = min(end, datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), self.tz))
            weekdays = set()
        return SlotQuery(
            start=start,
            end=end,
            visit_type=self._visit_type(state),
            provider_id=prefs.provider_id,
            location_id=prefs.location_id,
            weekdays=frozenset(weekdays),
            parts_of_day=frozenset(prefs.parts_of_day),
            limit=50,
        )

    def _find(self, state, ctx) -> tuple[list[Slot], bool]:
        """Slots that fit the preferences and the times asked for; else that day (or those days) at
        any time; else the earliest of any. The second value: whether they fit what was asked."""
        prefs = _prefs_from_dict(state.get("prefs"))
        query = self._slot_query(state, ctx)
        wanted = self.settings.slots_offered
        candidates = self.scheduler.find_slots(replace(query, limit=SEARCH_LIMIT), now=ctx.now)
        slots = [s for s in candidates if _fits_times(s, prefs, self.tz)]
        if slots or state.get("level") == "urgent":
            return slots[:wanted], True
        if candidates and (prefs.days or prefs.weekdays or prefs.provider_id or prefs.location_id):
            return candidates[:wanted], False
        relaxed = self.scheduler.find_slots(self._slot_query(state, ctx, relaxed=True), now=ctx.now)
        return relaxed[:wanted], False

    def _offer(self, state, ctx, turn):
        self._release_hold(state, ctx)
        slots, fit = self._find(state, ctx)
        if not slots:
            if state.get("level") == "urgent":
                return self._handoff(
                    state, turn, HandoffReason.SCHEDULING_NO_SLOT, Priority.URGENT, "scheduling.no_urgent_slot"
                )
            return self._handoff(state, turn, HandoffReason.SCHEDULING_NO_SLOT, Priority.NORMAL, "scheduling.no_slots")
        state["step"] = "pick"
        state["offered"] = [s.as_dict() for s in slots]
        intro = (
            "scheduling.offer.urgent"
            if state.get("level") == "urgent"
            else "scheduling.offer.fit"
            if fit
            else "scheduling.offer.nothing_fits"
        )
        text = msg(intro)
        if ctx.channel == "sms":  # SMS cuts a choice's title short: the full list goes in the text
            text += "\n" + "\n".join(f"{i + 1}. {self._label(s)}" for i, s in enumerate(slots))
        buttons = [
            button(self._when(s) if ctx.channel == "sms" else self._label(s), f"slot {i + 1}")
            for i, s in enumerate(slots)
        ]
        buttons.append(button(msg("scheduling.offer.other_times"), "other times"))
        if state.get("level") == "urgent":
            buttons.append(person_button())
        return state, turn.say(text, buttons)

    def _on_pick(self, state, text, ctx, turn):
        offered = state.get("offered") or []
        choice = _slot_choice(text, len(offered))
        if choice is None:
            choice = self._named_slot(offered, text)
        if choice is None and _has_word(text, ("other", "different", "more", "later", "none", "neither")):
            state["prefs"] = {}
            return self._ask(state, "prefs", turn)
        if choice is None:
            corrected = self._correction(state, text, ctx)
            if corrected == "impossible":
                return state, turn.say(msg("scheduling.impossible_date"))
            if corrected:
                return self._offer(state, ctx, turn)  # a correction: "actually Tuesday"
            return self._unclear(state, turn, "scheduling.unclear.pick")
        slot = offered[choice]
        try:
            state["hold_until"] = self.scheduler.hold(
                slot["id"], ctx.sender_id, self.settings.slot_hold_seconds, now=ctx.now
            ).isoformat()
        except SlotTaken:
            turn.say(msg("scheduling.slot_gone"))
            return self._offer(state, ctx, turn)
        state["chosen"] = slot
        return self._after_pick(state, ctx, turn)

    def _named_slot(self, offered: list[dict[str, Any]], text: str) -> int | None:
        """ "the 8:20 one", "9:40", or an offered slot's label typed out: the one slot it names."""
        lowered = text.lower()
        hits = []
        for i, slot in enumerate(offered):
            local = datetime.fromisoformat(slot["start"]).astimezone(self.tz)
            clock = f"{local.hour % 12 or 12}:{local.minute:02d}"
            if self._label_of(slot).lower() in lowered or re.search(rf"(?<![\d:]){clock}(?!\d)", lowered):
                hits.append(i)
        return hits[0] if len(hits) == 1 else None

    def _correction(self, state, text: str, ctx) -> bool | str:
        """A reply that changes the preferences ("actually Tuesday", "with Dr Okafor instead"):
        True when they changed (and are updated), "impossible" for an impossible date."""
        before = dict(state.get("prefs") or {})
        problem = self._read_preferences(state, text, ctx)
        if problem:
            return "impossible"
        return (state.get("prefs") or {}) != before

    def _after_pick(self, state, ctx, turn):
        if state.get("patient_id"):
            return self._ask_confirm(state, ctx, turn)
        return self._ask(state, "name", turn)

    # --- who is asking ------------------------------------------------------------------------

    def _on_name(self, state, text, ctx, turn):
        name = parse.parse_name(text)
        if not name or len(name) > MAX_NAME_CHARS:
            return self._unclear(state, turn, "scheduling.unclear.name")
        state["name"] = name
        return self._ask(state, "dob", turn)

    def _on_dob(self, state, text, ctx, turn):
        if state.get("flow") == BOOK and _is_new_patient(text) is True:  # "No, I'm new" after a mismatch
            state["new_patient"], state["id_attempts"] = True, 0
            return self._ask(state, "dob", turn)
        answer = parse.parse_birth_date(text, ctx.now.astimezone(self.tz).date())
        if answer.kind == "impossible":
            return state, turn.say(msg("scheduling.dob_impossible"))
        if answer.kind == "future":
            return state, turn.say(msg("scheduling.dob_future"))
        if answer.kind != "date":
            return self._unclear(state, turn, "scheduling.unclear.dob")
        state["dob"] = answer.value.isoformat()
        if state.get("flow") == BOOK and state.get("new_patient"):
            return self._ask(state, "phone", turn)
        return self._identify(state, ctx, turn)

    def _on_phone(self, state, text, ctx, turn):
        from careline.scheduling.identity import normalise_phone

        phone = normalise_phone(text)
        if not phone:
            return self._unclear(state, turn, "scheduling.unclear.phone")
        state["phone"] = phone
        return self._ask_confirm(state, ctx, turn)

    def _identify(self, state, ctx, turn):
        """An existing patient by name and date of birth. A mismatch says no more than that, and
        after IDENTITY_MAX_ATTEMPTS a person takes over. Tries for one name are also limited across
        conversations (IDENTITY_RATE_LIMIT), so a new conversation does not reset the count."""
        from careline.scheduling.identity import name_key

        if self.identity_limit is not None and not self.identity_limit(name_key(state["name"])):
            log.info("scheduling identity rate limited")
            return self._handoff(
                state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.identity_failed"
            )
        patient = self.scheduler.match_patient(state["name"], date.fromisoformat(state["dob"]))
        if patient is None:
            state["id_attempts"] = int(state.get("id_attempts") or 0) + 1
            log.info("scheduling identity mismatch attempt=%d", state["id_attempts"])
            if state["id_attempts"] >= self.settings.identity_max_attempts:
                return self._handoff(
                    state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.identity_failed"
                )
            state["step"] = "dob"
            buttons = [button(msg("scheduling.returning.no"), "no, I'm new")] if state.get("flow") == BOOK else []
            return state, turn.say(msg("scheduling.no_match"), buttons)
        state["patient_id"] = patient.id
        if state.get("flow") == BOOK:
            return self._ask_confirm(state, ctx, turn)
        return self._verify(state, patient, ctx, turn)

    def _verify(self, state, patient: Patient, ctx, turn):
        """Nothing about appointments before this: the SMS sender's number is the number on file,
        or a code texted to that number comes back."""
        if ctx.channel == "sms" and patient.phone and self._sender_is(patient, ctx):
            state["verified"] = True
            return self._after_verified(state, ctx, turn)
        return self._send_code(state, patient, ctx, turn)

    def _sender_is(self, patient: Patient, ctx) -> bool:
        import hmac

        from careline.scheduling.identity import phone_key

        return hmac.compare_digest(phone_key(self.secret, patient.phone), ctx.sender_id)

    def _send_code(self, state, patient: Patient, ctx, turn):
        if not patient.phone or self.codes is None:
            return self._handoff(
                state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.cannot_verify"
            )
        result = self.codes.send(patient, purpose=state["flow"], now=ctx.now)
        status = getattr(result, "status", str(result))
        if status == "rate_limited":
            return self._handoff(
                state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.code_rate_limited"
            )
        if status != "sent":
            return self._handoff(
                state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.cannot_verify"
            )
        state["ending"] = patient.phone[-2:]
        return self._ask(state, "code", turn, ending=state["ending"])

    def _on_code(self, state, text, ctx, turn):
        lowered = text.lower()
        patient = self.scheduler.patient(state["patient_id"])
        if patient is None:
            return self._handoff(
                state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.cannot_verify"
            )
        if "new code" in lowered or "resend" in lowered or "send again" in lowered:
            return self._send_code(state, patient, ctx, turn)
        code = "".join(ch for ch in text if ch.isdigit())
        if not code:
            return self._unclear(state, turn, "scheduling.unclear.code")
        result = self.codes.verify(patient.id, code, now=ctx.now)
        outcome = getattr(result, "outcome", str(result))
        if outcome == "ok":
            state["verified"] = True
            return self._after_verified(state, ctx, turn)
        if outcome == "wrong":
            return state, turn.say(msg("scheduling.code_wrong", remaining=getattr(result, "remaining", 0)))
        if outcome == "expired":
            return state, turn.say(
                msg("scheduling.code_expired"), [button(msg("scheduling.code.resend"), "send a new code")]
            )
        return self._handoff(state, turn, HandoffReason.SCHEDULING_IDENTITY, Priority.NORMAL, "scheduling.code_locked")

    def _from_reply_keyword(self, state, appointment_id, ctx, turn):
        """R or X to a reminder: the gateway names the appointment; it counts only when the SMS
        sender's number is the number on file of the appointment's patient."""
        appointment = self.scheduler.appointment(appointment_id)
        patient = self.scheduler.patient(appointment.patient_id) if appointment else None
        if ctx.channel == "sms" and patient and patient.phone and self._sender_is(patient, ctx):
            state.update(patient_id=patient.id, verified=True, target=appointment.id)
            return self._act_on(state, appointment, ctx, turn)
        return self._ask(state, "name", turn)

    # --- after verification: check, cancel, reschedule --------------------------------------------

    def _after_verified(self, state, ctx, turn):
        upcoming = self.scheduler.appointments_for(state["patient_id"], upcoming=True, now=ctx.now)
        if not upcoming:
            state["step"] = "none_upcoming"
            return None, turn.say(
                msg("scheduling.none_upcoming"), [button(msg("triage.button.book"), "/book_appointment")]
            )
        if state["flow"] == CHECK:
            lines = [self._describe(a) for a in upcoming[:5]]
            return None, turn.say(msg("scheduling.your_appointments", appointments="\n".join(lines)))
        if len(upcoming) == 1:
            return self._act_on(state, upcoming[0], ctx, turn)
        state["step"] = "choose"
        state["choices"] = [a.id for a in upcoming[:5]]
        buttons = [button(self._describe(a), f"appointment {i + 1}") for i, a in enumerate(upcoming[:5])]
        return state, turn.say(msg("scheduling.which_appointment"), buttons)

    def _on_choose(self, state, text, ctx, turn):
        choices = state.get("choices") or []
        choice = _slot_choice(text, len(choices))
        if choice is None:
            return self._unclear_choice(state, turn)
        appointment = self.scheduler.appointment(choices[choice])
        if appointment is None:
            return self._unclear_choice(state, turn)
        return self._act_on(state, appointment, ctx, turn)

    def _unclear_choice(self, state, turn):
        return self._unclear(state, turn, "scheduling.unclear.pick")

    def _act_on(self, state, appointment: Appointment, ctx, turn):
        if appointment.status not in ACTIVE_STATUSES or appointment.start <= ctx.now:
            return None, turn.say(
                msg("scheduling.not_active"), [button(msg("triage.button.book"), "/book_appointment")]
            )
        state["target"] = appointment.id
        state["old_visit_type"] = appointment.visit_type
        cutoff = timedelta(hours=self.settings.cancel_cutoff_hours)
        if appointment.start - ctx.now < cutoff:
            return self._handoff(
                state,
                turn,
                HandoffReason.SCHEDULING_CUTOFF,
                Priority.NORMAL,
                "scheduling.inside_cutoff",
                hours=self.settings.cancel_cutoff_hours,
            )
        if state["flow"] == CANCEL:
            return self._ask_cancel(state, ctx, turn)
        state["prefs"] = {}
        turn.say(msg("scheduling.moving", appointment=self._describe(appointment)))
        return self._ask(state, "prefs", turn)

    def _ask_cancel(self, state, ctx, turn):
        appointment = self.scheduler.appointment(state["target"])
        state["step"] = "confirm_cancel"
        return state, turn.say(
            msg("scheduling.confirm_cancel", appointment=self._describe(appointment)),
            [button(msg("scheduling.yes_cancel"), "yes, cancel it"), button(msg("scheduling.no_keep"), "no, keep it")],
        )

    def _on_confirm_cancel(self, state, text, ctx, turn):
        answer = parse.parse_yes_no(text)
        cancel = _has_word(text, ("cancel", "cancelled", "cancelling"))
        if answer is False and not cancel or (answer is None and _has_word(text, ("keep",)) and not cancel):
            return None, turn.say(msg("scheduling.kept"))
        if answer is not True and not cancel:
            return self._unclear(state, turn, "scheduling.unclear.yes_no")
        try:
            self.scheduler.cancel(state["target"], reason="patient", by="patient")
        except NotAllowed:
            return None, turn.say(msg("scheduling.already_cancelled"))
        log.info("scheduling cancelled appointment=%s", state["target"])
        return None, turn.say(msg("scheduling.cancelled"), [button(msg("triage.button.book"), "/book_appointment")])

    # --- confirm and book ---------------------------------------------------------------------

    def _ask_confirm(self, state, ctx, turn):
        state["step"] = "confirm"
        slot = state["chosen"]
        key = "scheduling.confirm_move" if state["flow"] == RESCHEDULE else "scheduling.confirm_book"
        buttons = [button(msg("scheduling.yes_book"), "yes, book it")]
        if self.waitlist is not None and state["flow"] == BOOK:
            buttons.append(button(msg("scheduling.yes_book_waitlist"), "yes, and text me if an earlier time frees up"))
        buttons.append(button(msg("scheduling.change_time"), "change the time"))
        text = msg(key, when=self._when(slot), provider=slot["provider_name"], location=slot["location_name"])
        return state, turn.say(text, buttons)

    def _on_confirm(self, state, text, ctx, turn):
        answer = parse.parse_yes_no(text)
        if answer is True or (answer is None and _has_word(text, ("book",))):
            state["waitlist"] = _has_word(text, ("earlier",))
            return self._book(state, ctx, turn)
        corrected = self._correction(state, text, ctx)
        if corrected == "impossible":
            return state, turn.say(msg("scheduling.impossible_date"))
        if corrected:
            return self._offer(state, ctx, turn)  # "actually Tuesday", "with Dr Okafor instead"
        if answer is False or _has_word(text, ("change", "different", "another", "other")):
            return self._offer(state, ctx, turn.say(msg("scheduling.other_times")))
        return self._unclear(state, turn, "scheduling.unclear.yes_no")

    def _book(self, state, ctx, turn):
        slot = state["chosen"]
        if datetime.fromisoformat(slot["start"]) <= ctx.now + timedelta(minutes=5):  # decided too late
            turn.say(msg("scheduling.slot_passed"))
            return self._offer(state, ctx, turn)
        try:
            patient_id = state.get("patient_id") or self._register(state)
            state["patient_id"] = patient_id
            if state["flow"] == RESCHEDULE:
                appointment = self.scheduler.reschedule(state["target"], slot["id"], holder=ctx.sender_id, by="patient")
            else:
                appointment = self.scheduler.book(
                    slot["id"],
                    patient_id,
                    self._visit_type(state),
                    reason=state.get("reason") or "",
                    holder=ctx.sender_id,
                    booked_by="patient",
                    now=ctx.now,
                )
        except SlotTaken:
            turn.say(msg("scheduling.slot_gone"))
            state.pop("chosen", None)
            return self._offer(state, ctx, turn)
        except NotAllowed:  # the appointment to move was cancelled meanwhile
            self._release_hold(state, ctx)
            return None, turn.say(msg("scheduling.not_active"))
        log.info("scheduling booked appointment=%s flow=%s", appointment.id, state["flow"])
        key = "scheduling.moved" if state["flow"] == RESCHEDULE else "scheduling.booked"
        turn.say(msg(key, appointment=self._describe(appointment)))
        if state.get("waitlist") and self.waitlist is not None:
            self.waitlist(patient_id, appointment.visit_type, appointment.id)
            turn.say(msg("scheduling.waitlisted"))
        if ctx.channel != "sms" and ctx.calendar_url:
            turn.say(msg("scheduling.add_to_calendar", url=ctx.calendar_url(appointment.id)))
        if ctx.channel == "sms":
            turn.say(msg("scheduling.sms_reminders"))
        return None, turn

    def _register(self, state) -> str:
        """A new patient; or, when a patient with this name and date of birth exists already, that
        record (a second one would make both unmatchable, locking the real patient out)."""
        dob = date.fromisoformat(state["dob"])
        existing = self.scheduler.match_patient(state["name"], dob)
        if existing is not None:
            return existing.id
        return self.scheduler.create_patient(state["name"], dob, state.get("phone")).id

    # --- helpers --------------------------------------------------------------------------------

    def _handoff(self, state, turn, reason: HandoffReason, priority: Priority, text_id: str, **params):
        turn.say(msg(text_id, **params))
        turn.handoff = (
            reason,
            priority,
            {
                "reason": str(reason),
                "flow": state.get("flow"),
                "step": state.get("step"),
                "level": state.get("level"),
                "appointment_id": state.get("target"),
                "patient_id": state.get("patient_id"),
            },
        )
        turn.done = True
        return None, turn

    def _release_hold(self, state, ctx) -> None:
        slot = state.pop("chosen", None)
        if slot:
            try:
                self.scheduler.release(slot["id"], ctx.sender_id)
            except SchedulingError:
                log.warning("scheduling hold release failed slot=%s", slot.get("id"))

    def _when(self, slot_or_appointment) -> str:
        start = slot_or_appointment["start"] if isinstance(slot_or_appointment, dict) else slot_or_appointment.start
        if isinstance(start, str):
            start = datetime.fromisoformat(start)
        local = start.astimezone(self.tz)
        return (
            local.strftime("%a %b ") + str(local.day) + local.strftime(" at ") + local.strftime("%I:%M %p").lstrip("0")
        )

    def _label_of(self, slot: dict[str, Any]) -> str:
        return msg(
            "scheduling.slot_label",
            when=self._when(slot),
            provider=slot["provider_name"],
            location=slot["location_name"],
        )

    def _label(self, slot: Slot) -> str:
        return msg(
            "scheduling.slot_label", when=self._when(slot), provider=slot.provider_name, location=slot.location_name
        )

    def _describe(self, appointment: Appointment) -> str:
        return msg(
            "scheduling.appointment_label",
            when=self._when(appointment),
            provider=appointment.provider_name,
            location=appointment.location_name,
        )


# --- plain functions ------------------------------------------------------------------------------


def remember_prompt(state: dict[str, Any] | None, turn: Turn) -> None:
    """The turn's last message with choices: what a reply that is not understood is shown again."""
    if state is None:
        return
    asked = [m for m in turn.messages if m["buttons"]]
    if asked:
        state["prompt"] = {"text": asked[-1]["text"], "buttons": asked[-1]["buttons"]}


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    found = set(re.findall(r"[a-z']+", text.lower()))
    return any(w in found for w in words)


def _is_new_patient(text: str) -> bool | None:
    """ "No, I'm new" -> True; "yes, I've been before", "I'm not new" -> False; else None."""
    lowered = text.lower()
    if re.search(
        r"\bnot (?:a )?new\b|\b(?:been|came|come|seen) (?:here |there )?before\b|\bexisting\b|\breturning\b", lowered
    ):
        return False
    if re.search(r"\bnew\b|\bfirst (?:time|visit)\b|\bnever\b", lowered):
        return True
    answer = parse.parse_yes_no(text)
    return None if answer is None else not answer


def _snapshot(state: dict[str, Any]) -> dict[str, Any]:
    snap = copy.deepcopy({k: v for k, v in state.items() if k != "back"})
    return snap


_CHECKUP = (
    "check-up",
    "checkup",
    "check up",
    "follow-up",
    "follow up",
    "followup",
    "physical",
    "annual",
    "routine",
    "refill",
    "review",
    "results",
    "vaccin",
    "shot",
    "flu jab",
    "wellness",
    "screening",
    "consult",
)
_VIDEO = ("video", "telehealth", "virtual", "online visit", "phone visit")
_NEW_PROBLEM = ("a new problem", "new problem", "something new", "sick visit", "i'm sick", "im sick")


def _reason_kind(text: str) -> str:
    lowered = text.lower()
    if any(w in lowered for w in _VIDEO):
        return "video"
    if lowered.strip(" .!") in _NEW_PROBLEM:
        return "new_problem"
    if any(w in lowered for w in _CHECKUP):
        return "checkup"
    return "symptom"


_BOOKING_WORDS = (
    "book",
    "appointment",
    "appt",
    "schedule",
    "see a doctor",
    "see the doctor",
    "see dr",
    "visit",
    "make an",
    "get an",
    "need an",
    "want an",
    "slot",
    "in with",
    "come in",
    "please",
    "can i",
    "i need",
    "i want",
    "i'd like",
    "id like",
    "to see",
    "a doctor",
    "with dr",
    "with doctor",
)


def _says_why(text: str) -> bool:
    """Whether the opening message says why, beyond asking for an appointment ("book me in for my
    sore throat" does; "can I book an appointment with Dr Lee on Tuesday" does not)."""
    lowered = text.lower()
    for marker in (" for ", " about ", " because ", " regarding ", " re "):
        if marker in f" {lowered} ":
            tail = f" {lowered} ".split(marker, 1)[1]
            words = [
                w for w in tail.split() if w not in ("a", "an", "the", "my", "me", "appointment", "tomorrow", "today")
            ]
            if words and not all(
                w
                in (
                    "next",
                    "this",
                    "week",
                    "monday",
                    "tuesday",
                    "wednesday",
                    "thursday",
                    "friday",
                    "saturday",
                    "morning",
                    "afternoon",
                    "evening",
                )
                for w in words
            ):
                return True
    return False


def _slot_choice(text: str, count: int) -> int | None:
    lowered = text.lower().strip()
    for prefix in ("slot ", "appointment "):
        if lowered.startswith(prefix) and lowered[len(prefix) :].isdigit():
            n = int(lowered[len(prefix) :]) - 1
            return n if 0 <= n < count else None
    return parse.parse_choice(text, count)


def _fits_times(slot: Slot, prefs, tz: ZoneInfo) -> bool:
    local = slot.start.astimezone(tz).time()
    if prefs.after_time and local < prefs.after_time:
        return False
    if prefs.before_time and local >= prefs.before_time:
        return False
    return True


def _prefs_to_dict(prefs) -> dict[str, Any]:
    return {
        "days": sorted(d.isoformat() for d in prefs.days),
        "weekdays": sorted(prefs.weekdays),
        "parts_of_day": sorted(prefs.parts_of_day),
        "not_before": prefs.not_before.isoformat() if prefs.not_before else None,
        "after_time": prefs.after_time.isoformat() if prefs.after_time else None,
        "before_time": prefs.before_time.isoformat() if prefs.before_time else None,
        "provider_id": prefs.provider_id,
        "location_id": prefs.location_id,
        "asap": prefs.asap,
    }


def _prefs_from_dict(data: dict[str, Any] | None):
    from datetime import time

    data = data or {}
    return parse.Preferences(
        days=frozenset(date.fromisoformat(d) for d in data.get("days") or []),
        weekdays=frozenset(data.get("weekdays") or []),
        parts_of_day=frozenset(data.get("parts_of_day") or []),
        not_before=date.fromisoformat(data["not_before"]) if data.get("not_before") else None,
        after_time=time.fromisoformat(data["after_time"]) if data.get("after_time") else None,
        before_time=time.fromisoformat(data["before_time"]) if data.get("before_time") else None,
        provider_id=data.get("provider_id"),
        location_id=data.get("location_id"),
        asap=bool(data.get("asap")),
    )
