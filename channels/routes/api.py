"""The JSON API: `POST /api/messages`, and `GET /api/messages` to poll for what was said since a
cursor (staff replies, which come outside a request of the integration's).

At the edge, in this order: the bearer token (when API_TOKEN is set), JSON only, the client's rate
limit, the body read with a cap, its fields checked; then the conversation's rate limit (which an
emergency passes) and the gateway. Anything refused on the way gets a named error and never
reaches the gateway."""

from __future__ import annotations

import hmac
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from channels.deps import ClientKeyDep, GatewayDep, LimitsDep, PagerDep, SettingsDep, StoreDep
from channels.errors import InvalidMessage, Unauthorized, UnsupportedMediaType
from channels.http_limits import read_body_capped
from channels.messages import InboundMessage
from channels.paging import handle_sms_rendered
from channels.routes.edge import within_conversation_limit

API_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
RENDERS = ("web", "sms")

# The guards are async, like the providers in channels/deps.py: a sync one would run in a thread.


async def require_api_token(request: Request, settings: SettingsDep) -> None:
    if settings.api_token:
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied.encode(), settings.api_token.encode()):
            raise Unauthorized("a valid bearer token is required")


async def require_json(request: Request) -> None:
    # a cross-site form or text/plain POST (no CORS preflight) is refused before it is read
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")


async def client_within_limit(limits: LimitsDep, client: ClientKeyDep) -> None:
    await limits.check("client", client)


def parse_message(raw: bytes, idempotency_key: str | None = None) -> InboundMessage:
    """The API message in a request body, or InvalidMessage saying what is wrong with it. The text
    is checked by the gateway (which screens even a message too long to answer)."""
    try:
        body: Any = json.loads(raw)
    except ValueError as exc:
        raise InvalidMessage('body must be JSON: {"conversation_id": "...", "text": "..."}') from exc
    if not isinstance(body, dict):
        raise InvalidMessage("body must be a JSON object")
    conversation_id = body.get("conversation_id")
    if not isinstance(conversation_id, str) or not API_CONVERSATION_ID.match(conversation_id):
        raise InvalidMessage("conversation_id must be a string of 1-128 letters, digits or ._:@+-")
    if "text" not in body:
        raise InvalidMessage("text is required")
    message_id = body.get("message_id") or idempotency_key
    if message_id is not None and (not isinstance(message_id, str) or not 0 < len(message_id) <= 128):
        raise InvalidMessage("message_id must be a string of at most 128 characters")
    render = body.get("render", "web")
    if render not in RENDERS:
        raise InvalidMessage('render must be "web" or "sms"')
    return InboundMessage("api", conversation_id, body["text"], message_id, {"format": render})


async def read_message(request: Request, settings: SettingsDep) -> InboundMessage:
    raw = await read_body_capped(request, settings.max_body_bytes)
    return parse_message(raw, request.headers.get("idempotency-key"))


ApiMessage = Annotated[InboundMessage, Depends(read_message)]

router = APIRouter(tags=["api"])


@router.post(
    "/api/messages",
    dependencies=[Depends(require_api_token), Depends(require_json), Depends(client_within_limit)],
)
async def api_messages(message: ApiMessage, gateway: GatewayDep, limits: LimitsDep, pager: PagerDep) -> JSONResponse:
    if isinstance(message.text, str):
        await within_conversation_limit(limits, gateway, message)
    if message.metadata.get("format") == "sms" and pager is not None:  # a page a reply, MORE for the next
        result = await handle_sms_rendered(gateway, pager, message)
    else:
        result = await gateway.handle(message)
    return JSONResponse(
        {
            "conversation_id": message.address,
            "owner": result.owner.value,
            "messages": [m.to_dict() for m in result.replies],
        }
    )


@router.get("/api/messages", dependencies=[Depends(require_api_token), Depends(client_within_limit)])
async def api_poll(
    conversation_id: str, gateway: GatewayDep, store: StoreDep, after: int = 0, limit: int = 100
) -> JSONResponse:
    """The conversation's messages after the cursor `after` (0: from the start of what is kept),
    oldest first, at most `limit`; `cursor` is what to send as `after` next time."""
    if not API_CONVERSATION_ID.match(conversation_id):
        raise InvalidMessage("conversation_id must be a string of 1-128 letters, digits or ._:@+-")
    if after < 0 or not 1 <= limit <= 500:
        raise InvalidMessage("after must be >= 0 and limit between 1 and 500")
    key = gateway.key_for("api", conversation_id)
    owner = await store.owner(key)
    if owner is None:
        return JSONResponse({"error": "not_found", "detail": "no such conversation"}, status_code=404)
    items = [m for m in await store.transcript(key) if m.get("seq", 0) > after][:limit]
    messages = [
        {"text": m.get("text", ""), "buttons": m.get("buttons", []), "role": m.get("role", "bot"), "cursor": m["seq"]}
        | ({"sender": m["sender"]} if m.get("sender") else {})
        for m in items
    ]
    cursor = messages[-1]["cursor"] if messages else after
    return JSONResponse(
        {"conversation_id": conversation_id, "owner": owner.value, "messages": messages, "cursor": cursor}
    )
