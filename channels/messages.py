"""The one internal message type every channel converts to and from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HOLDING = "holding"  # the OutboundMessage.kind of "a member of our team will reply" (channels/pipeline.py)
AWAY = "away"  # nobody on shift: when a reply will come (channels/pipeline.py)


@dataclass(frozen=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True)
class InboundMessage:
    channel: str
    # The channel's own address of the conversation (web token, API id, phone number). Never logged,
    # never sent to Rasa: see channels.pseudonym.
    address: str
    text: str
    # Idempotency key from the channel (client message id, Twilio MessageSid); None when it has none.
    message_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # What the idempotency key is bound to, when not `text`: the SMS as the patient sent it, before
    # a numbered reply was mapped to its option (the mapping may differ on a retry).
    dedupe_text: str | None = None


@dataclass(frozen=True)
class OutboundMessage:
    text: str
    buttons: tuple[Button, ...] = ()
    role: str = "bot"
    # Which of the gateway's own messages this is (HOLDING), kept in the transcript so the gateway
    # recognises it by what it is, not by its wording; None for everything else. Not sent to clients.
    kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "buttons": [asdict(b) for b in self.buttons]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], role: str = "bot") -> OutboundMessage:
        buttons = tuple(Button(str(b["title"]), str(b["payload"])) for b in data.get("buttons") or ())
        return cls(text=str(data.get("text", "")), buttons=buttons, role=data.get("role", role))
