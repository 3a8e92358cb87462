"""The safety-screen hook: runs on every inbound message, in every conversation state.

The triage issue fills it with deterministic red-flag rules; the gateway calls whatever
`SafetyScreen` it was built with. A screen that raises fails closed (see pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from channels.messages import InboundMessage, OutboundMessage


@dataclass(frozen=True)
class ScreenResult:
    rule: str  # stable rule id for logs and staff, never message text
    replies: tuple[OutboundMessage, ...] = field(default_factory=tuple)
    escalate: bool = True


class SafetyScreen(Protocol):
    async def screen(self, message: InboundMessage) -> ScreenResult | None: ...


class PassThroughScreen:
    """Screens nothing. Replaced by the red-flag screen of the triage skill."""

    async def screen(self, message: InboundMessage) -> ScreenResult | None:
        return None
