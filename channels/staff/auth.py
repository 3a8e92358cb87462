"""Staff login, logout and the dependencies every staff route stands behind.

- `current_staff`: the session of the `careline_staff` cookie, or 401 (a WebSocket is closed with
  1008). The cookie is HttpOnly, SameSite=Strict, Path=/staff, Secure behind https, and has no
  Max-Age: the browser drops it when it closes, the server after the idle timeout.
- `csrf_checked`: a request that changes something must also send the session's X-CSRF-Token (403).
- `supervisor`: 403 for an agent.

Logins are throttled per client address (a pseudonym in Redis) and each account is locked after
repeated wrong passwords (channels/staff/accounts.py); every attempt that reaches the accounts is
one staff_audit row. The gateway's logs name staff by id only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, WebSocketException, status
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from careline.settings import Settings
from channels import deps, errors
from channels.deps import SettingsDep, client_ip
from channels.errors import STATE_ERRORS, InvalidMessage, StoreUnavailable, Unauthorized
from channels.http_limits import read_body_capped
from channels.pseudonym import conversation_key
from channels.ratelimit import RateLimits
from channels.routes.api import require_json
from channels.staff import accounts
from channels.staff.accounts import StaffAccounts, StaffMember
from channels.staff.audit import StaffAction, StaffAudit
from channels.staff.sessions import StaffSession, StaffSessions

log = logging.getLogger(__name__)

COOKIE_NAME = "careline_staff"
COOKIE_PATH = "/staff"
BACKGROUND_HEADER = "X-Staff-Background"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# An email (254) and a password (256) in JSON, with room to spare.
LOGIN_BODY_BYTES = 4096
THROTTLE_SCOPE = "staff_login"
# The login answer and /me carry the CSRF token: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


class LoginThrottle:
    """Login attempts per client address, in the rate limiter's own Redis storage. RateLimits has a
    fixed set of buckets, so this is a limiter of its own over the same storage. If Redis fails
    the attempt goes on: the account lockout in SQL still holds."""

    def __init__(self, limits: RateLimits, rate: str):
        self.limiter = MovingWindowRateLimiter(limits.storage)
        self.items = parse_many(rate)

    async def check(self, client: str) -> None:
        for item in self.items:
            try:
                allowed = await self.limiter.hit(item, THROTTLE_SCOPE, client)
            except Exception as exc:
                log.warning("staff login throttle unavailable error=%s", type(exc).__name__)
                return
            if not allowed:
                log.warning("staff login throttled")
                raise errors.RateLimited("too many login attempts: wait and try again", await self._retry(item, client))

    async def _retry(self, item: RateLimitItem, client: str) -> int:
        try:
            stats = await self.limiter.get_window_stats(item, THROTTLE_SCOPE, client)
            return max(1, int(stats.reset_time - time.time()) + 1)
        except Exception:
            return item.get_expiry()


@dataclass
class StaffAuth:
    """What the staff routes use, attached by the gateway as `services.staff_auth`."""

    accounts: StaffAccounts
    sessions: StaffSessions
    audit: StaffAudit
    limits: RateLimits | None
    login_rate_limit: str = "10/minute"
    throttle: LoginThrottle | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.throttle = LoginThrottle(self.limits, self.login_rate_limit) if self.limits is not None else None

    @classmethod
    def from_settings(cls, settings: Settings, engine, redis, limits: RateLimits | None) -> StaffAuth:
        return cls(
            accounts=StaffAccounts(
                engine, max_failures=settings.staff_login_max_failures, lockout_seconds=settings.staff_lockout_seconds
            ),
            sessions=StaffSessions(
                redis, prefix=settings.redis_key_prefix, idle_seconds=settings.staff_idle_timeout_seconds
            ),
            audit=StaffAudit(engine),
            limits=limits,
            login_rate_limit=settings.staff_login_rate_limit,
        )


get_staff_auth = deps.get_staff_auth  # the services reach handlers only through channels/deps.py


StaffAuthDep = Annotated[StaffAuth, Depends(get_staff_auth)]


async def current_staff(conn: HTTPConnection, auth: StaffAuthDep) -> StaffSession:
    """The signed-in staff member's session: 401 without one; a WebSocket is closed (1008)."""
    websocket = conn.scope["type"] == "websocket"
    try:
        # the console's own polls say so: they are no sign of a person, and must not keep an idle
        # session from its automatic logoff
        background = conn.headers.get(BACKGROUND_HEADER) == "1"
        session = await auth.sessions.get(conn.cookies.get(COOKIE_NAME), touch=not background)
    except STATE_ERRORS as exc:
        log.warning("staff sessions unavailable error=%s", type(exc).__name__)
        if websocket:
            raise WebSocketException(code=status.WS_1011_INTERNAL_ERROR, reason="sessions unavailable") from None
        raise StoreUnavailable("the staff sessions cannot be read now: try again") from None
    if session is None:
        if websocket:
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason="a staff session is required")
        raise Unauthorized("a staff session is required: log in at /staff")
    return session


StaffSessionDep = Annotated[StaffSession, Depends(current_staff)]


async def csrf_checked(request: Request, session: StaffSessionDep) -> StaffSession:
    """The session, once a request that changes something has shown the session's CSRF token."""
    if request.method in UNSAFE_METHODS and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
        raise errors.CsrfFailed(f"the {CSRF_HEADER} header must carry this session's csrf_token")
    return session


async def supervisor(session: StaffSessionDep) -> StaffSession:
    if not session.is_supervisor:
        raise errors.Forbidden("only a supervisor may do this")
    return session


CsrfSessionDep = Annotated[StaffSession, Depends(csrf_checked)]
SupervisorDep = Annotated[StaffSession, Depends(supervisor)]


def cookie_secure(request: Request, settings: Settings) -> bool:
    if request.url.scheme == "https":
        return True
    if (
        settings.trust_forwarded_headers
        and request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
    ):
        return True
    return any((url or "").startswith("https://") for url in (settings.public_url, settings.public_base_url))


def parse_login(raw: bytes) -> tuple[str, str]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("email"), str)
        or not isinstance(body.get("password"), str)
    ):
        raise InvalidMessage('body must be JSON: {"email": "...", "password": "..."}')
    return body["email"], body["password"]


async def record(auth: StaffAuth, staff_id: int | None, action: StaffAction, **fields: str) -> None:
    """An audit row, or 503: a staff action that cannot be audited does not go ahead."""
    try:
        await auth.audit.record(staff_id, action, **fields)
    except STATE_ERRORS:
        raise StoreUnavailable("the staff audit cannot be written now: try again") from None


async def _authenticate(auth: StaffAuth, email: str, password: str) -> StaffMember:
    try:
        return await auth.accounts.authenticate(email, password)
    except accounts.LockedOut as exc:
        await record(auth, exc.staff_id, StaffAction.LOCKED_OUT, detail=exc.reason)
        log.info("staff login locked out staff_id=%s", exc.staff_id)
        raise errors.LockedOut("too many failed logins: this account is locked for now", exc.retry_after) from None
    except accounts.LoginFailed as exc:
        await record(auth, exc.staff_id, StaffAction.LOGIN_FAILED, detail=exc.reason)
        log.info("staff login failed staff_id=%s reason=%s", exc.staff_id, exc.reason)
        raise errors.LoginFailed(str(exc)) from None
    except STATE_ERRORS as exc:
        log.warning("staff accounts unavailable error=%s", type(exc).__name__)
        raise StoreUnavailable("the staff accounts cannot be read now: try again") from None


def _session_body(session: StaffSession, auth: StaffAuth) -> dict[str, object]:
    return {
        "csrf_token": session.csrf,
        "staff": session.staff_dict(),
        "idle_timeout_seconds": auth.sessions.idle_seconds,
    }


router = APIRouter(prefix="/staff/api", tags=["staff"])


@router.post("/login", dependencies=[Depends(require_json)])
async def login(request: Request, auth: StaffAuthDep, settings: SettingsDep) -> JSONResponse:
    if auth.throttle is not None:
        ip = client_ip(request, settings.trust_forwarded_headers)
        await auth.throttle.check(conversation_key(settings.conversation_secret, "ip", ip))
    email, password = parse_login(await read_body_capped(request, LOGIN_BODY_BYTES))
    member = await _authenticate(auth, email, password)
    try:
        token, session = await auth.sessions.create(member)
    except STATE_ERRORS as exc:
        log.warning("staff sessions unavailable error=%s", type(exc).__name__)
        raise StoreUnavailable("the staff sessions cannot be written now: try again") from None
    try:
        await record(auth, member.id, StaffAction.LOGIN)
    except StoreUnavailable:
        await auth.sessions.end(token)  # no session without its audit row
        raise
    log.info("staff login staff_id=%s", member.id)
    response = JSONResponse(_session_body(session, auth), headers=NO_STORE)
    response.set_cookie(
        COOKIE_NAME, token, path=COOKIE_PATH, secure=cookie_secure(request, settings), httponly=True, samesite="strict"
    )
    return response


@router.post("/logout", status_code=204)
async def logout(request: Request, session: CsrfSessionDep, auth: StaffAuthDep, settings: SettingsDep) -> Response:
    await auth.sessions.end(request.cookies.get(COOKIE_NAME))
    await record(auth, session.staff_id, StaffAction.LOGOUT)
    log.info("staff logout staff_id=%s", session.staff_id)
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, secure=cookie_secure(request, settings), httponly=True, samesite="strict"
    )
    return response


@router.get("/me")
async def me(session: StaffSessionDep, auth: StaffAuthDep) -> JSONResponse:
    return JSONResponse(_session_body(session, auth), headers=NO_STORE)
