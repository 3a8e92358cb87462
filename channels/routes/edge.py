"""What the API and the web chat share at the edge: the conversation's rate limit, and the body a
named error turns into."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from channels.errors import CareLineError, IdempotencyConflict, RateLimited, StoreUnavailable
from channels.messages import InboundMessage, OutboundMessage
from channels.pipeline import Gateway
from channels.ratelimit import RateLimits


def error_body(exc: CareLineError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
    # What the patient must read even on an error: the emergency numbers when our state is down,
    # the safety reply to a flagged message whose idempotency key was reused.
    if isinstance(exc, StoreUnavailable):
        body["messages"] = [OutboundMessage(exc.patient_message, role="system").to_dict()]
    elif isinstance(exc, IdempotencyConflict) and exc.replies:
        body["messages"] = [m.to_dict() for m in exc.replies]
    return body


def error_headers(exc: CareLineError) -> dict[str, str] | None:
    return {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None


async def careline_error(_request: Request, exc: CareLineError) -> JSONResponse:
    """The app's handler for named errors: one status and one body per error."""
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=error_headers(exc))


async def within_conversation_limit(limits: RateLimits, gateway: Gateway, message: InboundMessage) -> None:
    """Over the conversation's rate limit, a message is refused unless it is an emergency: a
    flagged message always goes through (the screen runs in any case, and is cheap)."""
    try:
        await limits.check("conversation", gateway.key_for(message.channel, message.address))
    except RateLimited:
        result = await gateway.screen(message)
        if result is None or not result.escalate:
            raise
