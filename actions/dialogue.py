"""Plain functions over a tracker's event list (dicts, as the SDK hands them over)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Event = dict[str, Any]


def _intent(event: Event) -> str | None:
    return ((event.get("parse_data") or {}).get("intent") or {}).get("name")


def applied(events: list[Event]) -> list[Event]:
    """The events without those a later rewind took back. A rewind (UserUtteranceReverted: the
    fallback re-uttering a health message with its right intent, actions/fallback.py) removes
    the last user message, what followed it and the listen before it, as Rasa's tracker does; the
    SDK hands actions every event, taken back or not."""
    kept: list[Event] = []
    for event in events:
        if event.get("event") != "rewind":
            kept.append(event)
            continue
        for kind in ("user", "action"):
            while kept and kept.pop().get("event") != kind:
                pass
    return kept


def last_bot_utterance(events: list[Event]) -> str | None:
    """The response name (utter_*) of the last bot message before the latest user message."""
    seen_user = False
    for event in reversed(applied(events)):
        kind = event.get("event")
        if kind == "user":
            if seen_user:
                return None
            seen_user = True
        elif kind == "bot" and seen_user:
            return (event.get("metadata") or {}).get("utter_action")
    return None


MISUNDERSTOOD = {"nlu_fallback", "out_of_scope"}


def consecutive_misunderstandings(events: list[Event]) -> int:
    """How many user messages in a row, counting back from the latest, were not understood
    (NLU fallback) or asked for something the assistant does not do (out of scope)."""
    count = 0
    for event in reversed(applied(events)):
        if event.get("event") == "user":
            if _intent(event) not in MISUNDERSTOOD:
                break
            count += 1
        elif event.get("event") == "session_started":
            break
    return count


def recent_intents(events: Iterable[Event], limit: int = 5) -> list[str]:
    intents = [_intent(e) for e in applied(list(events)) if e.get("event") == "user"]
    return [i for i in intents if i][-limit:]


def handoff_summary(events: list[Event], reason: str) -> dict[str, Any]:
    """What staff see first: why, how long the conversation is, what was asked. No message text."""
    user_turns = sum(1 for e in applied(events) if e.get("event") == "user")
    return {"reason": reason, "user_turns": user_turns, "recent_intents": recent_intents(events)}
