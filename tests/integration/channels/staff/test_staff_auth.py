"""The staff login router and dependencies on a minimal app, with the real Redis (sessions, the
login throttle) and SQLite (accounts, audit): the cookie's attributes, 401 without a session,
CSRF on every change, the supervisor check, lockout, throttling, the audit rows, the WebSocket."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from starlette.websockets import WebSocketDisconnect

from careline.settings import Settings
from channels.db import make_engine, staff_audit
from channels.errors import CareLineError
from channels.ratelimit import RateLimits
from channels.routes.edge import careline_error
from channels.staff.accounts import StaffAccounts
from channels.staff.audit import StaffAudit
from channels.staff.auth import (
    COOKIE_NAME,
    CsrfSessionDep,
    StaffAuth,
    StaffSessionDep,
    SupervisorDep,
    router,
)
from channels.staff.sessions import StaffSessions
from tests.integration.channels.staff.conftest import cheap_hasher

PASSWORD = "correct horse battery"
WRONG = "wrong horse battery"


def build_app(auth: StaffAuth, **settings) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(_env_file=None, conversation_secret="k" * 32, **settings)
    app.state.services = SimpleNamespace(staff_auth=auth)
    app.add_exception_handler(CareLineError, careline_error)
    app.include_router(router)
    extra = APIRouter(prefix="/staff/api")

    @extra.get("/supervisors-only")
    async def supervisors_only(session: SupervisorDep) -> dict:
        return {"staff_id": session.staff_id}

    @extra.post("/change")
    async def change(session: CsrfSessionDep) -> dict:
        return {"changed_by": session.staff_id}

    @extra.get("/read")
    async def read(session: CsrfSessionDep) -> dict:
        return {"read_by": session.staff_id}

    app.include_router(extra)

    @app.websocket("/staff/ws")
    async def staff_ws(websocket: WebSocket, session: StaffSessionDep) -> None:
        await websocket.accept()
        await websocket.send_json({"staff_id": session.staff_id})
        await websocket.close()

    return app


def make_auth(redis, redis_url: str, prefix: str, engine, rate: str = "100/minute", sessions_redis=None) -> StaffAuth:
    return StaffAuth(
        accounts=StaffAccounts(engine, max_failures=3, lockout_seconds=600, hasher=cheap_hasher()),
        sessions=StaffSessions(sessions_redis or redis, prefix=prefix, idle_seconds=60),
        audit=StaffAudit(engine),
        limits=RateLimits(redis_url, prefix, "1000/minute", "1000/minute", redis=redis),
        login_rate_limit=rate,
    )


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def auth(redis, redis_url, prefix, engine) -> StaffAuth:
    auth = make_auth(redis, redis_url, prefix, engine)
    auth.accounts.add("ann@clinic.org", "supervisor", PASSWORD, display_name="Ann")
    auth.accounts.add("bo@clinic.org", "agent", PASSWORD)
    return auth


def client_for(app: FastAPI, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client(auth):
    async with client_for(build_app(auth)) as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD, **kwargs) -> httpx.Response:
    return await client.post("/staff/api/login", json={"email": email, "password": password}, **kwargs)


def cookie_attributes(response: httpx.Response) -> list[str]:
    (header,) = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return [part.strip().lower() for part in header.split(";")]


async def test_login_answers_the_csrf_token_and_sets_a_strict_http_only_cookie(client):
    response = await login(client, "ANN@clinic.org")
    assert response.status_code == 200
    body = response.json()
    assert body["staff"] == {"id": 1, "email": "ann@clinic.org", "role": "supervisor", "display_name": "Ann"}
    assert len(body["csrf_token"]) >= 43 and body["idle_timeout_seconds"] == 60
    assert response.headers["cache-control"] == "no-store"
    attributes = cookie_attributes(response)
    assert attributes[0].startswith(f"{COOKIE_NAME}=") and len(attributes[0]) > len(COOKIE_NAME) + 40
    assert {"httponly", "samesite=strict", "path=/staff"} <= set(attributes)
    assert not [a for a in attributes if a.startswith(("max-age", "expires", "secure"))]  # a browser-session cookie
    me = await client.get("/staff/api/me")
    assert me.status_code == 200 and me.json() == body and me.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "base_url, settings, headers",
    [
        ("https://testserver", {}, {}),
        ("http://testserver", {"public_url": "https://chat.clinic.org"}, {}),
        ("http://testserver", {"public_base_url": "https://chat.clinic.org"}, {}),
        ("http://testserver", {"trust_forwarded_headers": True}, {"X-Forwarded-Proto": "https"}),
    ],
)
async def test_the_cookie_is_secure_behind_https(auth, base_url, settings, headers):
    async with client_for(build_app(auth, **settings), base_url) as client:
        response = await login(client, "bo@clinic.org", headers=headers)
    assert response.status_code == 200 and "secure" in cookie_attributes(response)


async def test_a_forwarded_https_header_is_ignored_unless_trusted(client):
    response = await login(client, "bo@clinic.org", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in cookie_attributes(response)


async def test_without_a_valid_session_every_staff_route_answers_401(client):
    for method, path in (("GET", "/staff/api/me"), ("POST", "/staff/api/logout"), ("GET", "/staff/api/read")):
        for cookies in ({}, {COOKIE_NAME: "forged-token-forged-token-forged-token-1234"}):
            client.cookies.clear()
            client.cookies.update(cookies)
            response = await client.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "unauthorized" and response.json()["detail"]


async def test_logout_needs_the_csrf_token_then_ends_the_session(client, auth):
    token_body = (await login(client, "bo@clinic.org")).json()
    cookie = client.cookies[COOKIE_NAME]
    for headers in ({}, {"X-CSRF-Token": "nope"}, {"X-CSRF-Token": token_body["csrf_token"][:-1]}):
        response = await client.post("/staff/api/logout", headers=headers)
        assert response.status_code == 403 and response.json()["error"] == "csrf_failed"
    assert (await client.get("/staff/api/me")).status_code == 200
    response = await client.post("/staff/api/logout", headers={"X-CSRF-Token": token_body["csrf_token"]})
    assert response.status_code == 204
    attributes = cookie_attributes(response)
    assert attributes[0] in (f'{COOKIE_NAME}=""', f"{COOKIE_NAME}=") and "max-age=0" in attributes
    assert "path=/staff" in attributes
    assert await auth.sessions.get(cookie) is None
    client.cookies.set(COOKIE_NAME, cookie)  # the old cookie, kept by a client that ignores the deletion
    assert (await client.get("/staff/api/me")).status_code == 401


async def test_every_change_needs_the_csrf_token_and_a_read_does_not(client):
    csrf = (await login(client, "bo@clinic.org")).json()["csrf_token"]
    assert (await client.post("/staff/api/change")).status_code == 403
    response = await client.post("/staff/api/change", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and response.json() == {"changed_by": 2}
    assert (await client.get("/staff/api/read")).status_code == 200


async def test_an_agent_is_forbidden_what_is_for_supervisors(auth):
    async with client_for(build_app(auth)) as agent, client_for(build_app(auth)) as supervisor:
        await login(agent, "bo@clinic.org")
        await login(supervisor, "ann@clinic.org")
        refused = await agent.get("/staff/api/supervisors-only")
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        allowed = await supervisor.get("/staff/api/supervisors-only")
        assert allowed.status_code == 200 and allowed.json() == {"staff_id": 1}


async def test_a_failed_login_says_the_same_whatever_failed(client, auth):
    auth.accounts.add("cy@clinic.org", "agent", PASSWORD)
    auth.accounts.disable("cy@clinic.org")
    answers = [
        await login(client, "bo@clinic.org", WRONG),
        await login(client, "nobody@clinic.org", PASSWORD),
        await login(client, "cy@clinic.org", PASSWORD),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1 and answers[0].json()["error"] == "login_failed"
    assert not any("set-cookie" in r.headers for r in answers)


async def test_only_a_small_json_login_body_is_read(client):
    form = await client.post("/staff/api/login", data={"email": "bo@clinic.org", "password": PASSWORD})
    assert form.status_code == 415
    for body in (b"[]", b"{", b'{"email": "bo@clinic.org"}', b'{"email": 1, "password": "x"}'):
        response = await client.post("/staff/api/login", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, body
    huge = await login(client, "bo@clinic.org", "x" * 10_000)
    assert huge.status_code == 413


async def test_repeated_wrong_passwords_lock_the_account(client):
    assert [(await login(client, "bo@clinic.org", WRONG)).status_code for _ in range(2)] == [401, 401]
    locking = await login(client, "bo@clinic.org", WRONG)
    assert locking.status_code == 429 and locking.json()["error"] == "locked_out"
    assert int(locking.headers["retry-after"]) == 600
    right = await login(client, "bo@clinic.org", PASSWORD)
    assert right.status_code == 429 and right.json()["error"] == "locked_out"
    assert 590 <= int(right.headers["retry-after"]) <= 600 and "set-cookie" not in right.headers
    assert (await login(client, "ann@clinic.org")).status_code == 200  # another account is not locked


async def test_the_login_throttle_counts_attempts_per_client_address(redis, redis_url, prefix, engine):
    auth = make_auth(redis, redis_url, prefix, engine, rate="3/minute")
    auth.accounts.add("bo@clinic.org", "agent", PASSWORD)
    async with client_for(build_app(auth, trust_forwarded_headers=True)) as client:
        ip = {"X-Forwarded-For": "203.0.113.9"}
        assert [(await login(client, "nobody@clinic.org", headers=ip)).status_code for _ in range(3)] == [401] * 3
        throttled = await login(client, "bo@clinic.org", headers=ip)
        assert throttled.status_code == 429 and throttled.json()["error"] == "rate_limited"
        assert 1 <= int(throttled.headers["retry-after"]) <= 61
        other = await login(client, "bo@clinic.org", headers={"X-Forwarded-For": "198.51.100.4"})
        assert other.status_code == 200
    keys = [k.decode() async for k in redis.scan_iter(f"{prefix}:ratelimit*")]
    assert keys and not [k for k in keys if "203.0.113.9" in k or "198.51.100.4" in k]  # pseudonyms only


async def test_every_login_attempt_is_audited_without_the_password(client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    await login(client, "nobody@clinic.org", PASSWORD)
    await login(client, "bo@clinic.org", WRONG)
    csrf = (await login(client, "bo@clinic.org")).json()["csrf_token"]
    await client.post("/staff/api/logout", headers={"X-CSRF-Token": csrf})
    for _ in range(3):
        await login(client, "ann@clinic.org", WRONG)
    await login(client, "ann@clinic.org", PASSWORD)
    rows = [(r["staff_id"], r["action"], r["detail"]) for r in reversed(auth.audit.rows())]
    assert rows == [
        (None, "login_failed", "unknown_email"),
        (2, "login_failed", "wrong_password"),
        (2, "login", ""),
        (2, "logout", ""),
        (1, "login_failed", "wrong_password"),
        (1, "login_failed", "wrong_password"),
        (1, "locked_out", "max_failures"),
        (1, "locked_out", "still_locked"),
    ]
    everything = auth.audit.export_csv() + repr(auth.audit.rows())
    assert PASSWORD not in everything and WRONG not in everything
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "staff login staff_id=2" in logged  # the gateway logs staff by id...
    for secret in (PASSWORD, WRONG, "bo@clinic.org", "ann@clinic.org", "nobody@clinic.org"):
        assert secret not in logged  # ...never by email, and never a password


async def test_a_login_that_cannot_be_audited_is_refused_and_leaves_no_session(client, auth, engine, redis, prefix):
    with engine.begin() as conn:
        staff_audit.drop(conn)
    response = await login(client, "bo@clinic.org")
    assert response.status_code == 503 and "set-cookie" not in response.headers
    assert [k async for k in redis.scan_iter(f"{prefix}:staff:session:*")] == []


async def test_with_redis_unreachable_a_staff_route_answers_503(redis, redis_url, prefix, engine):
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    auth = make_auth(redis, redis_url, prefix, engine, sessions_redis=down)
    async with client_for(build_app(auth)) as client:
        client.cookies.set(COOKIE_NAME, "x" * 43)
        response = await client.get("/staff/api/me")
    assert response.status_code == 503 and response.json()["error"] == "service_unavailable"
    await down.aclose()


def test_the_websocket_needs_a_session_and_is_closed_1008_without(redis_url, prefix, engine):
    # sync: TestClient runs the app (and so the Redis client) on a loop of its own
    redis = Redis.from_url(redis_url)
    auth = make_auth(redis, redis_url, prefix, engine)
    auth.accounts.add("bo@clinic.org", "agent", PASSWORD)
    try:
        with TestClient(build_app(auth)) as client:
            with pytest.raises(WebSocketDisconnect) as closed:
                with client.websocket_connect("/staff/ws") as ws:
                    ws.receive_json()
            assert closed.value.code == 1008
            assert client.post("/staff/api/login", json={"email": "bo@clinic.org", "password": PASSWORD}).is_success
            with client.websocket_connect("/staff/ws") as ws:
                assert ws.receive_json() == {"staff_id": 1}
    finally:
        sync = SyncRedis.from_url(redis_url)
        keys = list(sync.scan_iter(f"{prefix}:*"))
        if keys:
            sync.delete(*keys)
        sync.close()
