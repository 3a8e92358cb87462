"""The gateway's ASGI app: web chat (page, widget, WebSocket), the JSON API, health checks."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import resources
from typing import Any

import httpx
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from redis.asyncio import Redis

from careline.settings import Settings, get_settings
from channels.crypto import Cipher
from channels.errors import (
    CareLineError,
    IdempotencyConflict,
    InvalidMessage,
    RateLimited,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from channels.http_limits import read_body_capped
from channels.messages import InboundMessage, OutboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.ratelimit import RateLimits
from channels.safety import IsolatedScreen, SafetyScreen
from channels.store import ConversationStore
from channels.web_security import Origins, SecurityHeaders

log = logging.getLogger(__name__)

WEB_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
API_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


def _static(name: str) -> str:
    return resources.files("channels").joinpath("static", name).read_text(encoding="utf-8")


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


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def client_ip(request_or_ws, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = request_or_ws.headers.get("x-forwarded-for")
        if forwarded:
            # the last hop is the one our proxy added; the ones before it are the client's to invent
            return forwarded.split(",")[-1].strip()
    return request_or_ws.client.host if request_or_ws.client else "unknown"


def build_sms_channel(settings: Settings, redis: Redis, gateway: Gateway, engine):
    from channels.consent import SmsRecords
    from channels.sms import SmsChannel, SmsTexts
    from channels.twilio_sender import TwilioSender

    callback = f"{settings.public_base_url.rstrip('/')}/sms/twilio/status" if settings.public_base_url else None
    sender = TwilioSender(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_phone_number,
        settings.twilio_messaging_service_sid,
        settings.twilio_api_base_url,
        callback,
        retries=settings.sms_send_retries,
    )
    records = SmsRecords(engine, redis, settings.redis_key_prefix)
    return SmsChannel(
        redis,
        gateway,
        sender,
        records,
        SmsTexts(settings.clinic_name, settings.clinic_phone),
        shards=settings.sms_shards,
        prefix=settings.redis_key_prefix,
        max_chars=settings.max_message_chars,
        dedupe_ttl=settings.dedupe_ttl_seconds,
        cipher=gateway.cipher,
        claim_idle=settings.sms_claim_idle_seconds,
        state_timeout=settings.redis_timeout_seconds,
    )


def create_app(settings: Settings | None = None, screen: SafetyScreen | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as cleanup:  # whatever was started is stopped, even if start-up fails
            await _start_services(app, cleanup)
            yield

    async def _start_services(app: FastAPI, cleanup: AsyncExitStack) -> None:
        state = app.state
        # Every Redis call gives up after redis_timeout_seconds: a hanging Redis must not hold a patient.
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            retry_on_timeout=False,
        )
        cleanup.push_async_callback(redis.aclose)
        rasa = RasaClient(
            settings.rasa_url, settings.rasa_token, settings.rasa_timeout_seconds, settings.rasa_connect_retries
        )
        cleanup.push_async_callback(rasa.aclose)
        state.http = httpx.AsyncClient(timeout=3.0)
        cleanup.push_async_callback(state.http.aclose)
        state.redis, state.rasa = redis, rasa
        state.store = ConversationStore(
            redis,
            settings.redis_key_prefix,
            settings.retention_seconds,
            settings.transcript_max_items,
            settings.dedupe_ttl_seconds,
        )
        state.limits = RateLimits(
            settings.redis_url,
            settings.redis_key_prefix,
            settings.rate_limit_conversation,
            settings.rate_limit_client,
            redis=redis,
        )
        from channels.audit import SafetyAudit
        from channels.db import make_engine

        engine = make_engine(settings.database_url)
        cleanup.callback(engine.dispose)
        state.audit = SafetyAudit(engine)
        isolated = None
        if screen is None:
            isolated = IsolatedScreen(settings.screen_workers, settings.screen_timeout_seconds)
            cleanup.callback(isolated.close)
            await isolated.warm_up()
        state.screen = screen or isolated
        state.screen_check = (0.0, False)
        state.cipher = Cipher(settings.data_encryption_key)
        state.gateway = Gateway(
            state.store,
            rasa,
            settings.conversation_secret,
            state.screen,
            settings.max_message_chars,
            audit=state.audit,
            cipher=state.cipher,
        )
        # Retention: everything about a conversation goes RETENTION_DAYS after its first message.
        from channels.privacy import run_periodically

        retention = asyncio.create_task(
            run_periodically(redis, engine, settings, interval=3600, cipher=state.cipher), name="retention-sweep"
        )
        cleanup.push_async_callback(_cancel, retention)
        state.sms = None
        if settings.sms_enabled:
            # Twilio sends and SQL writes run in threads: room for every shard and the webhooks.
            from concurrent.futures import ThreadPoolExecutor

            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4 * settings.sms_shards + 8))
            state.sms = build_sms_channel(settings, redis, state.gateway, engine)
            cleanup.push_async_callback(state.sms.stop)
            await state.sms.start()
            log.info("sms channel on shards=%d", settings.sms_shards)

    # The interactive API docs are for development: a production gateway does not describe itself.
    docs = {} if not settings.production else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="CareLine gateway", version="0.1.0", lifespan=lifespan, **docs)
    app.state.settings = settings
    origins = Origins(
        settings.origins,
        settings.public_url,
        settings.public_base_url,
        trust_forwarded=settings.trust_forwarded_headers,
    )
    app.add_middleware(
        SecurityHeaders,
        frame_ancestors=settings.origins,
        hsts=any((u or "").startswith("https://") for u in (settings.public_url, settings.public_base_url)),
        trust_forwarded=settings.trust_forwarded_headers,
    )
    if settings.sms_enabled:
        from channels.sms import make_router

        app.include_router(make_router(lambda: app.state.sms, settings))

    @app.exception_handler(CareLineError)
    async def _careline_error(_request: Request, exc: CareLineError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.status_code, headers=error_headers(exc))

    async def within_conversation_limit(state, message: InboundMessage) -> None:
        """Over the conversation's rate limit, a message is refused unless it is an emergency: a
        flagged message always goes through (the screen runs in any case, and is cheap)."""
        try:
            await state.limits.check("conversation", state.gateway.key_for(message.channel, message.address))
        except RateLimited:
            result = await state.gateway.screen(message)
            if result is None or not result.escalate:
                raise

    # --- health ----------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state

        async def redis_ok() -> bool:
            try:
                return bool(await state.redis.ping())
            except Exception:
                return False

        async def actions_ok() -> bool:
            try:
                resp = await state.http.get(f"{settings.action_server_url.rstrip('/')}/health")
                return resp.status_code == 200
            except httpx.HTTPError:
                return False

        async def screen_ok() -> bool:
            # at most one check every 5 s: hammering /readyz must not take the workers from patients
            checked_at, ok = state.screen_check
            if time.monotonic() - checked_at < 5:
                return ok
            try:
                await state.screen.screen(InboundMessage("web", "readyz", "readiness check"))
                ok = True
            except Exception:
                ok = False
            state.screen_check = (time.monotonic(), ok)
            return ok

        r, a, s, sc = await asyncio.gather(redis_ok(), state.rasa.ready(), actions_ok(), screen_ok())
        checks = {"redis": r, "rasa": a, "action_server": s, "safety_screen": sc}
        body: dict[str, Any] = {"checks": checks}
        if state.sms is not None:
            body["sms"] = sms = state.sms.health()
            checks["sms_workers"] = bool(sms.get("ok", True))
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", **body}, status_code=200 if ok else 503)

    # --- JSON API --------------------------------------------------------------------------
    @app.post("/api/messages")
    async def api_messages(request: Request) -> JSONResponse:
        if settings.api_token:
            supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(supplied.encode(), settings.api_token.encode()):
                raise Unauthorized("a valid bearer token is required")
        # JSON only: a cross-site form or text/plain POST (no CORS preflight) is refused before it is read
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType("Content-Type must be application/json")
        state = request.app.state
        await state.limits.check(
            "client", state.gateway.key_for("ip", client_ip(request, settings.trust_forwarded_headers))
        )
        raw = await read_body_capped(request, settings.max_body_bytes)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise InvalidMessage('body must be JSON: {"conversation_id": "...", "text": "..."}') from exc
        if not isinstance(body, dict):
            raise InvalidMessage("body must be a JSON object")
        conversation_id = body.get("conversation_id")
        if not isinstance(conversation_id, str) or not API_CONVERSATION_ID.match(conversation_id):
            raise InvalidMessage("conversation_id must be a string of 1-128 letters, digits or ._:@+-")
        if "text" not in body:
            raise InvalidMessage("text is required")
        message_id = body.get("message_id") or request.headers.get("idempotency-key")
        if message_id is not None and (not isinstance(message_id, str) or not 0 < len(message_id) <= 128):
            raise InvalidMessage("message_id must be a string of at most 128 characters")
        render = body.get("render", "web")
        if render not in ("web", "sms"):
            raise InvalidMessage('render must be "web" or "sms"')
        message = InboundMessage("api", conversation_id, body["text"], message_id, {"format": render})
        if isinstance(message.text, str):
            await within_conversation_limit(state, message)
        result = await state.gateway.handle(message)
        return JSONResponse(
            {
                "conversation_id": conversation_id,
                "owner": result.owner.value,
                "messages": [m.to_dict() for m in result.replies],
            }
        )

    # --- web chat --------------------------------------------------------------------------
    @app.get("/chat", response_class=HTMLResponse)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(_static("chat.html"), headers={"Cache-Control": "no-store"})

    @app.get("/widget.js")
    async def widget_js() -> Response:
        return Response(
            _static("widget.js"),
            media_type="application/javascript",
            headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
        )

    @app.websocket("/ws")
    async def web_socket(ws: WebSocket) -> None:
        # Cross-site WebSocket hijacking: only our own pages and the configured embedding sites.
        if not origins.permits(ws.headers.get("origin"), ws.scope):
            log.warning("websocket refused: origin not allowed")
            await ws.close(code=1008)
            return
        await ws.accept()
        state = ws.app.state
        gateway: Gateway = state.gateway
        store: ConversationStore = state.store
        client = gateway.key_for("ip", client_ip(ws, settings.trust_forwarded_headers))
        token: str | None = None
        try:
            while True:
                frame = await ws.receive_text()
                if len(frame.encode("utf-8")) > settings.max_ws_frame_bytes:
                    await ws.send_json(
                        {
                            "type": "error",
                            "error": "frame_too_large",
                            "detail": f"frames must be at most {settings.max_ws_frame_bytes} bytes",
                        }
                    )
                    continue
                try:
                    data = json.loads(frame)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    await ws.send_json(
                        {"type": "error", "error": "invalid_message", "detail": "frames must be JSON objects"}
                    )
                    continue
                kind = data.get("type")
                if kind == "hello":
                    token = await _web_session(ws, store, gateway, data.get("conversation_token"))
                elif kind == "message":
                    await _web_message(ws, state, gateway, client, token, data)
                else:
                    await ws.send_json(
                        {"type": "error", "error": "invalid_message", "detail": "type must be hello or message"}
                    )
        except WebSocketDisconnect:
            return

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
                    for m in await store.transcript(key)
                ]
                if known
                else []
            )
            owner = await store.owner(key) if known else None
        except Exception as exc:  # Redis down: say so, keep the socket open, the widget retries
            log.error("web session unavailable error=%s", type(exc).__name__)
            await ws.send_json(
                {"type": "error", "error": StoreUnavailable.code, "detail": StoreUnavailable.patient_message}
            )
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

    async def _web_message(ws: WebSocket, state, gateway: Gateway, client: str, token: str | None, data: dict) -> None:
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
            await state.limits.check("client", client)
            message = InboundMessage("web", token, data.get("text"), client_id)
            if isinstance(message.text, str):
                await within_conversation_limit(state, message)
            result = await gateway.handle(message)
        except CareLineError as exc:
            body = error_body(exc)
            await ws.send_json(
                {
                    "type": "error",
                    "client_message_id": client_id,
                    **body,
                    **({"retry_after": exc.retry_after} if isinstance(exc, RateLimited) else {}),
                }
            )
            for m in body.get("messages", []):
                await ws.send_json({"type": "message", "role": "system", **m})
            return
        await ws.send_json({"type": "ack", "client_message_id": client_id, "owner": result.owner.value})
        for m in result.replies:
            await ws.send_json({"type": "message", "role": m.role, **m.to_dict()})

    return app
