"""The web chat: the full page (/chat), the embeddable widget (/widget.js) and the WebSocket they
speak (/ws): `hello` resumes or starts a conversation by its opaque token, `message` is answered
with `ack` and the replies. The handshake is refused (403) from an origin that is not ours or in
ALLOWED_ORIGINS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect, WebSocketException, status
from fastapi.responses import HTMLResponse, Response

from careline.aio import cancel_and_wait
from channels.deps import ClientKeyDep, FanoutDep, GatewayDep, LimitsDep, OriginsDep, SettingsDep, StoreDep
from channels.errors import CareLineError, InvalidMessage, RateLimited, StoreUnavailable
from channels.messages import InboundMessage
from channels.pipeline import Gateway
from channels.ratelimit import RateLimits
from channels.routes.edge import error_body, within_conversation_limit
from channels.staff.fanout import Fanout
from channels.store import ConversationStore

log = logging.getLogger(__name__)

WEB_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def _static(name: str) -> str:
    return resources.files("channels").joinpath("static", name).read_text(encoding="utf-8")


async def allowed_origin(ws: WebSocket, origins: OriginsDep) -> None:
    """Cross-site WebSocket hijacking: only our own pages and the configured embedding sites."""
    if not origins.permits(ws.headers.get("origin"), ws.scope):
        log.warning("websocket refused: origin not allowed")
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)  # before accept: HTTP 403


router = APIRouter(tags=["web chat"])


@router.get("/chat", response_class=HTMLResponse)
async def chat_page() -> HTMLResponse:
    return HTMLResponse(_static("chat.html"), headers={"Cache-Control": "no-store"})


@router.get("/widget.js")
async def widget_js() -> Response:
    return Response(
        _static("widget.js"),
        media_type="application/javascript",
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )


@router.websocket("/ws", dependencies=[Depends(allowed_origin)])
async def web_socket(
    ws: WebSocket,
    settings: SettingsDep,
    gateway: GatewayDep,
    store: StoreDep,
    limits: LimitsDep,
    client: ClientKeyDep,
    fanout: FanoutDep,
) -> None:
    await ws.accept()
    token: str | None = None
    live = LiveReplies(ws, fanout, store)
    try:
        while True:
            data = await _read_frame(ws, settings.max_ws_frame_bytes)
            if data is None:
                continue
            kind = data.get("type")
            if kind == "hello":
                token = await _web_session(ws, store, gateway, data.get("conversation_token"))
                if token is not None:
                    live.follow(gateway.key_for("web", token))
            elif kind == "message":
                await _web_message(ws, limits, gateway, client, token, data)
            else:
                await _send_error(ws, "invalid_message", "type must be hello or message")
    except WebSocketDisconnect:
        return
    finally:
        await live.stop()


class LiveReplies:
    """What staff say in this conversation, pushed into the open widget as it happens (from any
    gateway process, through channels/staff/fanout.py): their messages and notices (transcript
    items marked `push`), that a person joined or left, that they are typing, a change of owner."""

    def __init__(self, ws: WebSocket, fanout: Fanout | None, store: ConversationStore):
        self.ws, self.fanout, self.store = ws, fanout, store
        self.queue: asyncio.Queue = asyncio.Queue(256)
        self.channel: str | None = None
        self.task: asyncio.Task | None = None

    def follow(self, key: str) -> None:
        if self.fanout is None:
            return
        if self.channel is not None:
            self.fanout.unlisten(self.channel, self.queue)
        self.channel = self.store.events_channel(key)
        self.fanout.add(self.channel, self.queue)
        if self.task is None:
            self.task = asyncio.create_task(self._forward())

    async def _forward(self) -> None:
        while True:
            event = await self.queue.get()
            frame = widget_frame(event)
            if frame is not None:
                with contextlib.suppress(Exception):  # the socket closed meanwhile
                    await self.ws.send_json(frame)

    async def stop(self) -> None:
        if self.fanout is not None and self.channel is not None:
            self.fanout.unlisten(self.channel, self.queue)
        if self.task is not None:
            await cancel_and_wait([self.task])


def widget_frame(event: dict[str, Any]) -> dict[str, Any] | None:
    """The frame the widget gets for a conversation event, or None for what it already has (the
    replies to its own messages) or must not see."""
    kind = event.get("type")
    if kind == "agent":
        return {"type": "agent", "state": event.get("state"), "name": event.get("name")}
    if kind == "typing":
        return {"type": "typing", "name": event.get("name")}
    if kind == "owner":
        return {"type": "owner", "owner": event.get("owner")}
    if event.get("push") and "text" in event:
        frame = {"type": "message", "role": event.get("role", "staff"), "text": event["text"]}
        frame["buttons"] = event.get("buttons", [])
        if event.get("sender"):
            frame["sender"] = event["sender"]
        return frame
    return None


async def _send_error(ws: WebSocket, error: str, detail: str) -> None:
    await ws.send_json({"type": "error", "error": error, "detail": detail})


async def _read_frame(ws: WebSocket, max_bytes: int) -> dict[str, Any] | None:
    """The next frame as a JSON object, or None after telling the client what was wrong with it."""
    frame = await ws.receive_text()
    if len(frame.encode("utf-8")) > max_bytes:
        await _send_error(ws, "frame_too_large", f"frames must be at most {max_bytes} bytes")
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        await _send_error(ws, "invalid_message", "frames must be JSON objects")
        return None
    return data


async def _web_session(ws: WebSocket, store: ConversationStore, gateway: Gateway, asked: Any) -> str | None:
    """Resume the conversation of a token this server issued, or issue a new one. A token the
    server did not issue (invented, expired, erased) is refused and a new conversation begins."""
    try:
        known = isinstance(asked, str) and bool(WEB_TOKEN.match(asked)) and await store.web_token_issued(asked)
        token = asked if known else await store.issue_web_token()
        key = gateway.key_for("web", token)
        history = (
            [
                {"role": m["role"], "text": m["text"], "buttons": m.get("buttons", [])}
                | ({"sender": m["sender"]} if m.get("sender") else {})
                for m in await store.transcript(key)
            ]
            if known
            else []
        )
        owner = await store.owner(key) if known else None
    except Exception as exc:  # Redis down: say so, keep the socket open, the widget retries
        log.error("web session unavailable error=%s", type(exc).__name__)
        await _send_error(ws, StoreUnavailable.code, StoreUnavailable.patient_message)
        await ws.send_json(
            {"type": "message", "role": "system", "text": StoreUnavailable.patient_message, "buttons": []}
        )
        return None
    await ws.send_json(
        {
            "type": "session",
            "conversation_token": token,
            "history": history,
            "owner": owner.value if owner else "bot",
            "token_refused": bool(asked) and not known,
        }
    )
    return token


async def _web_message(
    ws: WebSocket, limits: RateLimits, gateway: Gateway, client: str, token: str | None, data: dict
) -> None:
    client_id = data.get("client_message_id")
    if token is None:
        await ws.send_json(
            {
                "type": "error",
                "error": "no_session",
                "client_message_id": client_id,
                "detail": "send a hello frame first",
            }
        )
        return
    try:
        if client_id is not None and (not isinstance(client_id, str) or len(client_id) > 128):
            raise InvalidMessage("client_message_id must be a short string")
        await limits.check("client", client)
        message = InboundMessage("web", token, data.get("text"), client_id)
        if isinstance(message.text, str):
            await within_conversation_limit(limits, gateway, message)
        result = await gateway.handle(message)
    except CareLineError as exc:
        body = error_body(exc)
        retry = {"retry_after": exc.retry_after} if isinstance(exc, RateLimited) else {}
        await ws.send_json({"type": "error", "client_message_id": client_id, **body, **retry})
        for m in body.get("messages", []):
            await ws.send_json({"type": "message", "role": "system", **m})
        return
    await ws.send_json({"type": "ack", "client_message_id": client_id, "owner": result.owner.value})
    for m in result.replies:
        await ws.send_json({"type": "message", "role": m.role, **m.to_dict()})
