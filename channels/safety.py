"""The safety screen: runs in the gateway on every inbound message, on every channel, in every
conversation state, before NLU. Its clinical content is knowledge/triage/safety/*.yml.

A hit on an emergency or a crisis answers at once with the channel's emergency message and
flags the conversation for staff at top priority. An information question about an emergency
("what are the signs of a stroke?") goes on to the assistant and gets "if this is happening now,
call 911" added. A screen that raises fails closed (see pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from channels.messages import InboundMessage, OutboundMessage


@dataclass(frozen=True)
class ScreenResult:
    rule: str  # stable rule ids for logs and staff, never message text
    replies: tuple[OutboundMessage, ...] = field(default_factory=tuple)
    escalate: bool = True
    proceed: bool = False          # let the message go on to the assistant; replies are appended
    outcome: str = "emergency"     # emergency | crisis | advise | screen_error
    category: str = ""
    rules: tuple[str, ...] = ()


class SafetyScreen(Protocol):
    async def screen(self, message: InboundMessage) -> ScreenResult | None: ...


class PassThroughScreen:
    """Screens nothing: for tests of the pipeline's plumbing only."""

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        return None


def render_channel(message: InboundMessage) -> str:
    return "sms" if "sms" in (message.channel, message.metadata.get("format")) else "web"


class RedFlagScreen:
    def __init__(self, rules=None):
        if rules is None:
            from knowledge.redflags import default_rules
            rules = default_rules()
        self.rules = rules

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        screening = self.rules.screen(message.text)
        if screening.outcome is None:
            return None
        text = self.rules.message(screening, render_channel(message))
        category = screening.category.name if screening.category else ""
        if screening.outcome == "advise":
            return ScreenResult(rule=f"advise:{category}", replies=(OutboundMessage(text, role="system"),),
                                escalate=False, proceed=True, outcome="advise", category=category,
                                rules=tuple(screening.rules))
        return ScreenResult(rule=",".join(screening.rules), replies=(OutboundMessage(text, role="system"),),
                            escalate=True, outcome=screening.outcome, category=category, rules=tuple(screening.rules))
