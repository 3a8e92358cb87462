"""While a conversation waits for staff, the holding message is said once: the gateway knows it by
its kind in the transcript, so a reworded or translated holding message is not said again."""

from __future__ import annotations

import json

import pytest

from channels.messages import HOLDING, InboundMessage
from channels.pipeline import Gateway, holding_message
from channels.safety import PassThroughScreen
from channels.store import Owner
from knowledge.messages import msg


class TranscriptStore:
    """The two store calls the waiting-for-staff route makes, over a list like Redis's."""

    def __init__(self, items: list[dict]):
        self.items = list(items)

    async def transcript(self, key: str) -> list[dict]:
        return [json.loads(json.dumps(i)) for i in self.items]

    async def append(self, key, role, messages=None, text=None) -> None:
        for m in messages or ():
            self.items.append({**m.to_dict(), "role": m.role, **({"kind": m.kind} if m.kind else {})})


USER = {"role": "user", "text": "hello?", "buttons": []}
BOT = {"role": "bot", "text": "Connecting you to our staff.", "buttons": []}


def said(text: str, kind: str | None = None) -> dict:
    return {"role": "system", "text": text, "buttons": [], **({"kind": kind} if kind else {})}


@pytest.mark.parametrize(
    "before, repeated",
    [
        ([BOT, USER], False),  # after the bot spoke: said now
        ([BOT, said("Our team will get back to you shortly.", HOLDING), USER], True),  # reworded since
        ([BOT, said("Nuestro equipo le responderá aquí.", HOLDING), USER], True),  # another language
        ([BOT, said(msg("gateway.holding")), USER], True),  # kept before kinds existed
        ([BOT, said("Our team will get back to you shortly."), USER], False),  # old, and not this text
        ([said(msg("gateway.holding"), HOLDING), BOT, USER], False),  # the bot spoke after it
        ([BOT, said(msg("gateway.holding"), "notice"), USER], False),  # a kind of another message
    ],
    ids=["bot-spoke", "reworded", "translated", "old-item", "old-other-text", "bot-after", "other-kind"],
)
async def test_the_holding_message_is_said_once(before, repeated):
    store = TranscriptStore(before)
    gateway = Gateway(store, rasa=None, secret="k" * 32, screen=PassThroughScreen())  # never reached here
    replies, owner = await gateway._route("c1", Owner.WAITING_FOR_STAFF, InboundMessage("web", "a", "hello?"))
    assert owner is Owner.WAITING_FOR_STAFF
    assert replies == ([] if repeated else [holding_message()])
    if not repeated:
        assert store.items[-1] == said(msg("gateway.holding"), HOLDING)


def test_the_holding_message_carries_its_kind_but_clients_do_not_see_it():
    message = holding_message()
    assert message.kind == HOLDING and message.role == "system"
    assert message.to_dict() == {"text": msg("gateway.holding"), "buttons": []}
