"""The staff console: its page (/staff), its JSON API (/staff/api/...) and its live events (/staff/ws).

Every endpoint needs a staff session (401 without one; channels/staff/auth.py), every change a
CSRF token, and acting on a conversation needs being its assignee (403). Every action is one row
of the staff audit trail, with the conversation's pseudonym and never message text."""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect, WebSocketException, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from careline.aio import cancel_and_wait
from channels.deps import SettingsDep, get_staff_console
from channels.errors import CareLineError, InvalidMessage
from channels.http_limits import read_body_capped
from channels.staff.audit import StaffAction
from channels.staff.auth import StaffAuth, csrf_checked, current_staff, get_staff_auth, record, supervisor
from channels.staff.canned import CannedError
from channels.staff.console import StaffConsole
from channels.staff.desk import Actor, DeskError
from channels.staff.sessions import StaffSession
from channels.store import Owner

log = logging.getLogger(__name__)

STATIC = ("console.js", "console.css", "api.js")
RECHECK_SECONDS = 15  # how often a console's socket is checked for its session and its rights


ConsoleDep = Annotated[StaffConsole, Depends(get_staff_console)]
AuthDep = Annotated[StaffAuth, Depends(get_staff_auth)]
Reader = Annotated[StaffSession, Depends(current_staff)]
Writer = Annotated[StaffSession, Depends(csrf_checked)]
Supervisor = Annotated[StaffSession, Depends(supervisor)]


def actor(session: StaffSession) -> Actor:
    return Actor(session.staff_id, session.display_name, session.is_supervisor)


async def body(request: Request, settings: SettingsDep) -> dict[str, Any]:
    raw = await read_body_capped(request, settings.max_body_bytes)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidMessage("body must be JSON") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("body must be a JSON object")
    return data


Body = Annotated[dict[str, Any], Depends(body)]


def desk_error(exc: DeskError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": exc.detail, **exc.info}, status_code=exc.status)


router = APIRouter(tags=["staff"])


# --- the page --------------------------------------------------------------------------------
@router.get("/staff", response_class=HTMLResponse)
async def console_page() -> HTMLResponse:
    page = resources.files("channels").joinpath("static", "staff", "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/staff/{name}")
async def console_asset(name: str) -> Response:
    if name not in STATIC:
        return JSONResponse({"error": "not_found"}, status_code=404)
    text = resources.files("channels").joinpath("static", "staff", name).read_text(encoding="utf-8")
    media = "application/javascript" if name.endswith(".js") else "text/css"
    return Response(text, media_type=media, headers={"Cache-Control": "no-cache"})


# --- the queue and the people ----------------------------------------------------------------
@router.get("/staff/api/queue")
async def queue(session: Reader, console: ConsoleDep) -> dict[str, Any]:
    result = await console.desk.queue(actor(session))
    staffed, opening = await console.shift.staffed()
    return {**result, "on_shift": staffed, "next_open": opening.isoformat() if opening else None}


@router.get("/staff/api/staff")
async def staff_list(session: Reader, console: ConsoleDep, auth: AuthDep) -> dict[str, Any]:
    presence = await console.presence.all()
    members = await asyncio.to_thread(auth.accounts.list)
    return {
        "staff": [
            {
                "id": m.id,
                "display_name": m.display_name,
                "role": m.role.value,
                "status": presence.get(m.id, {}).get("status", "offline"),
            }
            for m in members
        ]
    }


@router.post("/staff/api/presence")
async def presence(session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> dict[str, Any]:
    state = data.get("status")
    if state not in ("online", "away"):
        raise InvalidMessage('status must be "online" or "away"')
    await console.presence.set(session.staff_id, session.display_name, state)
    await record(auth, session.staff_id, StaffAction.PRESENCE, detail=state)
    await console.desk.announce({"type": "presence", "staff": session.staff_id, "status": state})
    return {"status": state}


# --- one conversation ------------------------------------------------------------------------
@router.get("/staff/api/conversations/{key}")
async def conversation(key: str, session: Reader, console: ConsoleDep, auth: AuthDep) -> Response:
    try:
        view = await console.conversation(key)
    except DeskError as exc:
        return desk_error(exc)
    if not may_read(session, view):
        return not_readable(view)
    await record(auth, session.staff_id, StaffAction.OPEN, conversation=key)
    return JSONResponse(view)


def may_read(session: StaffSession, info: dict[str, Any]) -> bool:
    """Minimum necessary: an agent reads the conversations waiting in the queue and their own, not a
    colleague's nor one the assistant has again (a supervisor reads all)."""
    if session.is_supervisor:
        return True
    owner = info.get("owner")
    if owner == Owner.WAITING_FOR_STAFF:
        return True
    return owner == Owner.STAFF and str(info.get("assignee")) == str(session.staff_id)


def not_readable(info: dict[str, Any]) -> JSONResponse:
    holder = info.get("assignee_name")
    detail = f"{holder} has this conversation" if holder else "this conversation is not in the queue or yours"
    return JSONResponse({"error": "forbidden", "detail": detail}, status_code=403)


@router.post("/staff/api/conversations/{key}/reveal")
async def reveal(key: str, session: Writer, console: ConsoleDep, auth: AuthDep) -> Response:
    if not session.is_supervisor:
        return JSONResponse({"error": "forbidden", "detail": "only a supervisor can reveal a number"}, 403)
    try:
        view = await console.conversation(key, reveal=True)
    except DeskError as exc:
        return desk_error(exc)
    await record(auth, session.staff_id, StaffAction.REVEAL, conversation=key)
    return JSONResponse({"patient": view["patient"]})


async def _act(
    auth: StaffAuth, session: StaffSession, key: str, action: StaffAction, work, detail: str = ""
) -> Response:
    """Run a desk action; audit it when it was done; a refusal is the desk's named error."""
    try:
        result = await work
    except DeskError as exc:
        return desk_error(exc)
    await record(auth, session.staff_id, action, conversation=key, detail=detail)
    return JSONResponse(result if result is not None else {"ok": True})


@router.post("/staff/api/conversations/{key}/claim")
async def claim(key: str, session: Writer, console: ConsoleDep, auth: AuthDep) -> Response:
    return await _act(auth, session, key, StaffAction.CLAIM, console.claim(key, actor(session)))


@router.post("/staff/api/conversations/{key}/release")
async def release(key: str, session: Writer, console: ConsoleDep, auth: AuthDep) -> Response:
    return await _act(auth, session, key, StaffAction.RELEASE, console.desk.release(key, actor(session)))


@router.post("/staff/api/conversations/{key}/transfer")
async def transfer(key: str, session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> Response:
    to = data.get("to")
    member = await asyncio.to_thread(auth.accounts.get, to) if isinstance(to, int) else None
    if member is None:
        raise InvalidMessage('"to" must be the id of an active staff member (GET /staff/api/staff)')
    target = Actor(member.id, member.display_name, member.is_supervisor)
    work = console.transfer(key, actor(session), target)
    return await _act(auth, session, key, StaffAction.TRANSFER, work, detail=f"to={member.id}")


@router.post("/staff/api/conversations/{key}/messages")
async def send_message(key: str, session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> Response:
    work = console.reply(key, actor(session), data.get("text"), data.get("client_message_id"))
    return await _act(auth, session, key, StaffAction.REPLY, work)


@router.post("/staff/api/conversations/{key}/typing")
async def typing(key: str, session: Writer, console: ConsoleDep) -> Response:
    try:
        await console.typing(key, actor(session))
    except DeskError as exc:
        return desk_error(exc)
    return Response(status_code=204)


@router.post("/staff/api/conversations/{key}/notes")
async def add_note(key: str, session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> Response:
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidMessage("a note needs some text")
    info = await console.desk.store.info(key)
    if info and not may_read(session, info):
        return not_readable(info)
    return await _act(auth, session, key, StaffAction.NOTE, console.desk.add_note(key, actor(session), text.strip()))


@router.post("/staff/api/conversations/{key}/return-to-bot")
async def return_to_bot(key: str, session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> Response:
    resume = data.get("resume")
    work = console.hand_back(key, actor(session), Owner.BOT, resume)
    return await _act(auth, session, key, StaffAction.RETURN_TO_BOT, work, detail=f"resume={resume or ''}")


@router.post("/staff/api/conversations/{key}/close")
async def close(key: str, session: Writer, console: ConsoleDep, auth: AuthDep) -> Response:
    return await _act(auth, session, key, StaffAction.CLOSE, console.hand_back(key, actor(session), Owner.CLOSED))


# --- canned replies and the audit trail ------------------------------------------------------
@router.get("/staff/api/canned")
async def canned(session: Reader, console: ConsoleDep) -> dict[str, Any]:
    return {"replies": await console.canned.list()}


@router.post("/staff/api/canned")
async def add_canned(session: Writer, data: Body, console: ConsoleDep, auth: AuthDep) -> Response:
    if not session.is_supervisor:
        return JSONResponse({"error": "forbidden", "detail": "only a supervisor manages canned replies"}, 403)
    try:
        reply_id = await console.canned.add(data.get("title"), data.get("body"), session.staff_id)
    except CannedError as exc:
        raise InvalidMessage(str(exc)) from exc
    await record(auth, session.staff_id, StaffAction.CANNED_ADD, detail=f"id={reply_id}")
    return JSONResponse({"id": reply_id}, status_code=201)


@router.delete("/staff/api/canned/{reply_id}")
async def delete_canned(reply_id: int, session: Writer, console: ConsoleDep, auth: AuthDep) -> Response:
    if not session.is_supervisor:
        return JSONResponse({"error": "forbidden", "detail": "only a supervisor manages canned replies"}, 403)
    if not await console.canned.delete(reply_id):
        return JSONResponse({"error": "not_found"}, status_code=404)
    await record(auth, session.staff_id, StaffAction.CANNED_DELETE, detail=f"id={reply_id}")
    return Response(status_code=204)


@router.get("/staff/api/audit")
async def audit(session: Supervisor, auth: AuthDep, format: str = "json", limit: int = 1000) -> Response:
    if format not in ("json", "csv"):
        raise InvalidMessage('format must be "json" or "csv"')
    limit = max(1, min(limit, 10_000))
    await record(auth, session.staff_id, StaffAction.EXPORT_AUDIT, detail=f"format={format}")
    if format == "csv":
        text = await asyncio.to_thread(auth.audit.export_csv, limit=limit)
        return Response(
            text, media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="staff-audit.csv"'}
        )
    rows = await asyncio.to_thread(auth.audit.rows, limit=limit)
    return JSONResponse({"rows": [{k: _plain(v) for k, v in r.items()} for r in rows]})


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


# --- live events -----------------------------------------------------------------------------
def same_origin(ws: WebSocket) -> None:
    """Cross-site WebSocket hijacking: the console's socket opens only from the console's own origin."""
    origin, host = ws.headers.get("origin"), ws.headers.get("host")
    if not origin or origin.split("://", 1)[-1].rstrip("/") != host:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)


@router.websocket("/staff/ws", dependencies=[Depends(same_origin)])
async def staff_socket(ws: WebSocket, session: Reader, console: ConsoleDep, auth: AuthDep) -> None:
    """Server → console: desk events (queue changes, claims, alerts; ids only) and the events of
    the conversations it watches (transcript items, typing, owner). Console → server:
    {"type": "watch" | "unwatch", "id"}; {"type": "ping"} every 20 s keeps presence alive."""
    await ws.accept()
    watching: set[str] = set()
    async with console.fanout.listen(console.desk.events_channel) as queue:
        tasks = [
            asyncio.create_task(_forward(ws, queue)),
            asyncio.create_task(_recheck(ws, session, console, auth, queue, watching)),
        ]
        try:
            await _console_commands(ws, session, console, auth, queue, watching)
        except WebSocketDisconnect:
            pass
        finally:
            try:
                await cancel_and_wait(tasks)
            finally:  # even if a shutdown cuts the wait short
                for key in watching:
                    console.fanout.unlisten(console.desk.store.events_channel(key), queue)


async def _recheck(
    ws: WebSocket,
    session: StaffSession,
    console: StaffConsole,
    auth: StaffAuth,
    queue: asyncio.Queue,
    watching: set[str],
) -> None:
    """A socket that only listens is checked too: after logout, idle logoff or a disabled account
    (its sessions ended) it is closed; a conversation released or given to a colleague stops."""
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        try:
            if not await auth.sessions.alive(session.token_hash):
                await ws.close(code=4401)
                return
            for key in list(watching):
                if not may_read(session, await console.desk.store.info(key)):
                    watching.discard(key)
                    console.fanout.unlisten(console.desk.store.events_channel(key), queue)
                    await ws.send_json({"type": "unwatched", "id": key})
        except Exception as exc:  # Redis down or the socket gone: the next round tries again
            log.warning("staff socket recheck failed error=%s", type(exc).__name__)


async def _forward(ws: WebSocket, queue: asyncio.Queue) -> None:
    while True:
        event = await queue.get()
        channel = event.pop("channel", "")
        if ":events:" in channel:
            event = {"type": "conversation", "id": channel.rsplit(":", 1)[-1], "event": event}
        await ws.send_json(event)


async def _console_commands(
    ws: WebSocket,
    session: StaffSession,
    console: StaffConsole,
    auth: StaffAuth,
    queue: asyncio.Queue,
    watching: set[str],
) -> None:
    try:
        while True:
            try:
                data = json.loads(await ws.receive_text())
            except ValueError:
                data = None
            if not isinstance(data, dict):
                await ws.send_json({"type": "error", "error": "invalid_message", "detail": "frames are JSON objects"})
                continue
            if not await auth.sessions.alive(session.token_hash):  # logged out or idle: close the socket
                await ws.close(code=4401)
                return
            kind, key = data.get("type"), data.get("id")
            if kind == "watch" and isinstance(key, str) and len(key) <= 64:
                if not may_read(session, await console.desk.store.info(key)):
                    await ws.send_json({"type": "error", "error": "forbidden", "id": key})
                    continue
                await record(auth, session.staff_id, StaffAction.OPEN, conversation=key, detail="live")
                watching.add(key)
                console.fanout.add(console.desk.store.events_channel(key), queue)
            elif kind == "unwatch" and key in watching:
                watching.discard(key)
                console.fanout.unlisten(console.desk.store.events_channel(key), queue)
            elif kind == "ping":
                status = "away" if data.get("status") == "away" else "online"
                await console.presence.set(session.staff_id, session.display_name, status)
                await ws.send_json({"type": "pong"})
    except CareLineError:
        await ws.close(code=1011)
