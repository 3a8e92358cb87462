"""Drive an action as the action server does: a real rasa_sdk `Tracker` and `CollectingDispatcher`,
and what it sent, read back as the gateway reads it (careline.contracts.parse_control)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from careline.contracts import parse_control

ROOT = Path(__file__).resolve().parents[3]


@cache
def domain() -> dict[str, Any]:
    """bot/domain/*.yml merged as Rasa merges a domain directory (the keys actions read)."""
    merged: dict[str, Any] = {"slots": {}, "forms": {}, "responses": {}, "actions": [], "intents": []}
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key in ("slots", "forms", "responses"):
            merged[key].update(data.get(key) or {})
        for key in ("actions", "intents"):
            merged[key] += data.get(key) or []
    return merged


def user(text: str = "", intent: str | None = None, metadata: dict | None = None) -> dict[str, Any]:
    """A user event as the SDK hands it over."""
    parse = {"intent": {"name": intent, "confidence": 0.9} if intent else {}, "text": text}
    return {"event": "user", "text": text, "parse_data": parse, "metadata": metadata or {}}


def bot(utter_action: str) -> dict[str, Any]:
    return {"event": "bot", "text": "...", "metadata": {"utter_action": utter_action}}


def tracker(
    text: str = "",
    *,
    intent: str | None = None,
    metadata: dict | None = None,
    slots: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    active_loop: str | None = None,
) -> Tracker:
    """A tracker whose latest message is `text`; every domain slot is present (None unless given).
    Without `events`, the conversation is that one message."""
    latest = user(text, intent, metadata)
    latest_message = {"text": text, "intent": latest["parse_data"]["intent"], "metadata": metadata or {}}
    all_slots = {name: None for name in domain()["slots"]} | (slots or {})
    return Tracker(
        "c1",
        all_slots,
        latest_message,
        events if events is not None else [latest],
        False,
        None,
        {"name": active_loop} if active_loop else {},
        "action_listen",
    )


def said(dispatcher: CollectingDispatcher) -> list[Any]:
    """What was sent, in order: a response's name, a control payload as the gateway reads it, or
    {"text": ..., "buttons": [...]} ("buttons" only when there are some). A response that the
    domain does not define fails here: Rasa would send nothing for it."""
    out: list[Any] = []
    for m in dispatcher.messages:
        if m.get("custom"):
            control = parse_control(m["custom"])
            assert control is not None, f"a custom message the gateway would not read: {m['custom']}"
            out.append(control)
        elif m.get("response"):
            assert m["response"] in domain()["responses"], f"{m['response']} is not in bot/domain"
            out.append(m["response"])
        else:
            out.append({"text": m["text"], "buttons": m["buttons"]} if m["buttons"] else {"text": m["text"]})
    return out


def slots_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The slots an action's events set, last value wins."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
