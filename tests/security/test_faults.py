"""Faults of the components behind the gateway, against the running stack on a private Redis:
emergencies reach the patient when Redis does not, and no turn ends in silence."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.stack

EMERGENCY = "crushing chest pain and I cant breathe"


@pytest.fixture
def fapi(fault_stack):
    with httpx.Client(base_url=fault_stack.gateway_url, timeout=60) as client:
        yield client


def say(client, cid, text):
    t0 = time.perf_counter()
    resp = client.post("/api/messages", json={"conversation_id": cid, "text": text})
    return resp, time.perf_counter() - t0


def all_text(body) -> str:
    return " ".join(m["text"] for m in body.get("messages", []))


@pytest.fixture
def redis_down(private_redis, fault_stack, request):
    """Redis paused (SIGSTOP: it accepts connections and never answers) or killed."""
    how = request.param
    private_redis.pause() if how == "paused" else private_redis.kill()
    try:
        yield how
    finally:
        private_redis.resume() if how == "paused" else private_redis.start()
        fault_stack.wait_ready(60)


@pytest.mark.parametrize("redis_down", ["paused", "killed"], indirect=True)
def test_emergencies_reach_the_patient_when_redis_does_not(fapi, fault_stack, redis_down):
    resp, elapsed = say(fapi, f"fault-{uuid.uuid4().hex}", EMERGENCY)
    assert resp.status_code == 200, resp.text
    assert "911" in all_text(resp.json()) and elapsed < 8
    assert resp.json()["owner"] == "waiting_for_staff"

    resp, elapsed = say(fapi, f"fault-{uuid.uuid4().hex}", "can I get a flu shot on saturday?")
    assert resp.status_code == 503 and elapsed < 8
    body = resp.json()
    assert body["error"] == "service_unavailable" and "can't reach our system" in all_text(body)
    assert "911" in all_text(body)

    # the web chat: the socket stays open, the patient reads why and the emergency numbers
    with connect(fault_stack.gateway_url.replace("http://", "ws://") + "/ws") as ws:
        ws.send(json.dumps({"type": "hello"}))
        frames = [json.loads(ws.recv(timeout=15)), json.loads(ws.recv(timeout=15))]
        assert frames[0]["error"] == "service_unavailable" and "911" in frames[1]["text"]
        ws.send(json.dumps({"type": "hello"}))  # still open
        assert json.loads(ws.recv(timeout=15))["type"] == "error"


def test_redis_back_means_normal_service(fapi, fault_stack, private_redis):
    private_redis.pause()
    try:
        assert say(fapi, f"fault-{uuid.uuid4().hex}", "hello")[0].status_code == 503
    finally:
        private_redis.resume()
    resp, _ = say(fapi, f"fault-{uuid.uuid4().hex}", "hello")
    assert resp.status_code == 200 and resp.json()["messages"]


def test_a_dead_action_server_fails_closed_not_silent(fapi, fault_stack):
    fault_stack.kill("actions")
    try:
        cid = f"fault-{uuid.uuid4().hex}"
        resp, _ = say(fapi, cid, "what are the symptoms of type 2 diabetes?")
        assert resp.status_code == 200
        body = resp.json()
        assert body["messages"], "the patient got silence"
        assert "911" in all_text(body) and body["owner"] == "waiting_for_staff"
    finally:
        fault_stack.start_service("actions")
