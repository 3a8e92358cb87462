"""/healthz and /readyz, and the readiness checks behind them (with stand-ins for Redis, Rasa,
the action server and the screen, which never raise into /readyz)."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from channels import readiness as readiness_module
from channels.readiness import Readiness
from tests.unit.channels.fake_services import Fakes, app_with


def test_healthz_needs_no_service():
    assert TestClient(app_with(Fakes())).get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(("ready", "status", "word"), [(True, 200, "ready"), (False, 503, "not_ready")])
def test_readyz_reports_the_checks(ready, status, word):
    fakes = Fakes()
    fakes.readiness.ready = ready
    resp = TestClient(app_with(fakes)).get("/readyz")
    assert resp.status_code == status
    assert resp.json() == {"status": word, "checks": {"redis": ready}}


class Redis:
    def __init__(self, up=True):
        self.up = up

    async def ping(self):
        if not self.up:
            raise ConnectionError("down")
        return True


class Rasa:
    async def ready(self):
        return True


class Screen:
    def __init__(self):
        self.calls = 0
        self.fail = False

    async def screen(self, message):
        self.calls += 1
        if self.fail:
            raise TimeoutError("workers gone")


class Sms:
    def health(self):
        return {"ok": False, "workers": 3}


def actions(status: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(status)))


async def test_every_check_passing_is_ready():
    ok, body = await Readiness(Redis(), Rasa(), actions(200), "http://actions/", Screen()).report()
    assert ok and body == {"checks": {"redis": True, "rasa": True, "action_server": True, "safety_screen": True}}


async def test_a_failing_check_is_not_ready_and_says_which():
    ok, body = await Readiness(Redis(up=False), Rasa(), actions(500), "http://actions", Screen()).report()
    assert not ok and body["checks"]["redis"] is False and body["checks"]["action_server"] is False


async def test_the_sms_channel_reports_its_own_health():
    ok, body = await Readiness(Redis(), Rasa(), actions(200), "http://actions", Screen(), Sms()).report()
    assert not ok and body["sms"] == {"ok": False, "workers": 3} and body["checks"]["sms_workers"] is False


async def test_the_screen_is_asked_at_most_once_every_few_seconds(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(readiness_module.time, "monotonic", lambda: now[0])
    screen = Screen()
    ready = Readiness(Redis(), Rasa(), actions(200), "http://actions", screen)
    assert await ready.screen_ok() and await ready.screen_ok()
    assert screen.calls == 1
    screen.fail = True
    now[0] += readiness_module.SCREEN_CHECK_EVERY
    assert not await ready.screen_ok()
    assert screen.calls == 2
