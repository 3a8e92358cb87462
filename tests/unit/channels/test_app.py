"""The app's wiring: every route is there (SMS only when configured), services reach the handlers
only through channels/deps.py, and the lifespan stops whatever it started, in reverse order, even
when start-up fails half-way. Clients are replaced by recorders: nothing here connects anywhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

import channels
from channels import app as app_module
from channels import deps
from channels.app import create_app
from channels.safety import PassThroughScreen
from tests.unit.channels.fake_services import FakeGateway, Fakes, FakeSms, app_with, settings

SMS = {"twilio_account_sid": "AC" + "1" * 32, "twilio_auth_token": "a" * 32, "twilio_phone_number": "+15555550100"}
WEB = {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/api/messages"), ("GET", "/chat"), ("GET", "/widget.js")}
STAFF = {("GET", "/staff"), ("GET", "/staff/{name}"), ("GET", "/staff/api/me"), ("POST", "/staff/api/login")}
STAFF |= {("POST", "/staff/api/logout"), ("GET", "/staff/api/queue"), ("GET", "/staff/api/staff")}
STAFF |= {("POST", "/staff/api/presence"), ("GET", "/staff/api/canned"), ("POST", "/staff/api/canned")}
STAFF |= {("DELETE", "/staff/api/canned/{reply_id}"), ("GET", "/staff/api/audit")}
STAFF |= {("GET", "/staff/api/conversations/{key}"), ("GET", "/api/messages")}
STAFF |= {
    ("POST", f"/staff/api/conversations/{{key}}/{action}")
    for action in ("reveal", "claim", "release", "transfer", "messages", "typing", "notes", "return-to-bot", "close")
}
STAFF |= {("GET", "/staff/schedule"), ("GET", "/staff/api/slots")}  # channels/routes/schedule.py
STAFF |= {(m, p) for m in ("GET", "POST") for p in ("/staff/api/patients", "/staff/api/appointments")}
STAFF |= {("POST", f"/staff/api/appointments/{{appointment_id}}/{action}") for action in ("cancel", "move", "status")}
WEB |= STAFF
WEB |= {("GET", "/calendar/{token}.ics")}  # channels/routes/calendar.py


def wired(app) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations}


def test_every_route_is_wired_and_sms_only_when_configured():
    assert wired(create_app(settings())) == WEB
    assert wired(create_app(settings(**SMS))) == WEB | {("POST", "/sms/twilio"), ("POST", "/sms/twilio/status")}
    fakes = Fakes()
    fakes.sms = FakeSms(FakeGateway())
    for app in (app_with(fakes), app_with(fakes, **SMS)):
        with TestClient(app).websocket_connect("/ws") as ws:  # the one route the API schema leaves out
            ws.send_json({"type": "hello"})
            assert ws.receive_json()["type"] == "session"
    assert TestClient(app_with(fakes)).post("/sms/twilio").status_code == 404


def test_only_deps_reads_the_app_state():
    readers = [
        str(path.relative_to(Path(channels.__file__).parent))
        for path in Path(channels.__file__).parent.rglob("*.py")
        if "app.state" in path.read_text(encoding="utf-8")
    ]
    assert readers == ["deps.py"]


class Recorder:
    """Stands in for a client or engine; records when it is closed."""

    def __init__(self, name: str, log: list[str]):
        self.name, self.log = name, log

    async def aclose(self) -> None:
        self.log.append(f"{self.name} closed")

    def dispose(self) -> None:
        self.log.append(f"{self.name} disposed")


class FakeSmsChannel:
    def __init__(self, log: list[str], fail: bool):
        self.log, self.fail = log, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("sms start failed")
        self.log.append("sms started")

    async def stop(self) -> None:
        self.log.append("sms stopped")


@pytest.fixture
def started(monkeypatch):
    """The lifespan with its clients recorded: (log, fail_at) where fail_at names a step to break."""
    log: list[str] = []
    fail_at: set[str] = set()

    async def sweep(*_args, **_kwargs):
        await asyncio.Event().wait()

    async def cancel(task):
        log.append("sweep cancelled")
        await real_cancel(task)

    async def isolated_screen(_settings, cleanup):
        cleanup.callback(log.append, "screen closed")
        if "screen" in fail_at:
            raise RuntimeError("screen workers did not start")
        return PassThroughScreen()

    def redis(_settings):  # a real client (it connects on first use, and nothing here uses it)
        client = Redis.from_url("redis://127.0.0.1:1/0")
        client.aclose = Recorder("redis", log).aclose
        return client

    monkeypatch.setattr(app_module, "connect_redis", redis)
    monkeypatch.setattr(app_module, "RasaClient", lambda *_a, **_k: Recorder("rasa", log))
    monkeypatch.setattr(app_module, "make_engine", lambda _url: Recorder("engine", log))
    real_cancel = app_module._cancel
    monkeypatch.setattr(app_module, "run_periodically", sweep)
    monkeypatch.setattr(app_module, "_cancel", cancel)
    monkeypatch.setattr(app_module, "start_isolated_screen", isolated_screen)
    monkeypatch.setattr(app_module, "build_sms_channel", lambda *_a: FakeSmsChannel(log, "sms" in fail_at))

    async def no_scheduling(*_a):  # the schedule needs a real database: tests/integration/scheduling
        return None

    monkeypatch.setattr(app_module, "start_scheduling", no_scheduling)
    return log, fail_at


def test_the_lifespan_attaches_the_services_and_stops_them_in_reverse(started):
    log, _ = started
    app = create_app(settings(**SMS))
    with TestClient(app) as client:
        services = client.app.state.services
        assert isinstance(services, deps.Services) and services.sms is not None
        assert services.gateway.store is services.store
        assert log == ["sms started"]
    assert log[1:] == [
        "sms stopped",
        "sweep cancelled",
        "screen closed",
        "engine disposed",
        "rasa closed",
        "redis closed",
    ]


def test_a_given_screen_replaces_the_worker_processes(started):
    log, _ = started
    screen = PassThroughScreen()
    with TestClient(create_app(settings(), screen=screen)) as client:
        assert client.app.state.services.gateway.screener is screen
    assert "screen closed" not in log


@pytest.mark.parametrize(
    ("step", "stopped"),
    [
        ("screen", ["screen closed", "engine disposed", "rasa closed", "redis closed"]),
        ("sms", ["sms stopped", "sweep cancelled", "screen closed", "engine disposed", "rasa closed", "redis closed"]),
    ],
)
def test_a_failed_start_up_stops_what_was_started(started, step, stopped):
    log, fail_at = started
    fail_at.add(step)
    with pytest.raises(RuntimeError), TestClient(create_app(settings(**SMS))):
        pass
    assert log == stopped
