"""Attacks on the gateway's front door, against the running stack: each observation of issue 9
now gets the secure behaviour."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.helpers import texts

pytestmark = pytest.mark.stack

CATASTROPHIC = "potassium" + " came back at" * 150  # backtracked for ever before the linear-time rules


def ws_url(stack) -> str:
    return stack.gateway_url.replace("http://", "ws://") + "/ws"


def hello(ws, token=None) -> dict:
    ws.send(json.dumps({"type": "hello", "conversation_token": token}))
    frame = json.loads(ws.recv(timeout=10))
    assert frame["type"] == "session", frame
    return frame


# --- 1. the screen in bounded time -----------------------------------------------------------
def test_a_pathological_message_neither_stalls_its_conversation_nor_anyone_else(stack, api):
    probes: list[float] = []
    done = threading.Event()

    def probe():
        while not done.is_set():
            t0 = time.perf_counter()
            assert httpx.get(f"{stack.gateway_url}/healthz", timeout=5).status_code == 200
            probes.append(time.perf_counter() - t0)
            time.sleep(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        t0 = time.perf_counter()
        resp = api.post(
            "/api/messages", json={"conversation_id": f"sec-{uuid.uuid4().hex}", "text": CATASTROPHIC[:2000]}
        )
        elapsed = time.perf_counter() - t0
    finally:
        done.set()
        thread.join()
    assert resp.status_code == 200 and elapsed < 10
    assert probes and max(probes) < 1.0, "the event loop was blocked"
    # decided by the rules in time (linear-time engine), not by the deadline's fail-closed reply
    assert "couldn't check your message safely" not in texts(resp.json())


# --- 5. limits and origins -------------------------------------------------------------------
def test_an_oversized_body_is_refused_before_it_is_read(stack):
    with socket.create_connection(("127.0.0.1", int(stack.gateway_url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(
            b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 33554432\r\n\r\n" + b"{" * 1024
        )
        head = s.recv(4096).decode()
    assert " 413 " in head.splitlines()[0]

    # chunked, with no Content-Length: counted as it arrives
    def chunks():
        for _ in range(64):
            yield b"[" * 65536

    resp = httpx.post(
        f"{stack.gateway_url}/api/messages", content=chunks(), headers={"content-type": "application/json"}, timeout=30
    )
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"


def test_only_json_is_accepted_on_the_api(api):
    resp = api.post(
        "/api/messages",
        content=json.dumps({"conversation_id": "x", "text": "hi"}),
        headers={"content-type": "text/plain"},
    )
    assert resp.status_code == 415 and resp.json()["error"] == "unsupported_media_type"


def test_a_conversation_sending_too_fast_gets_429_with_a_reason(api):
    cid = f"sec-{uuid.uuid4().hex}"
    statuses = [api.post("/api/messages", json={"conversation_id": cid, "text": "hi"}) for _ in range(24)]
    limited = [r for r in statuses if r.status_code == 429]
    assert [r.status_code for r in statuses[:20]] == [200] * 20 and limited
    body = limited[0].json()
    assert body["error"] == "rate_limited" and "20 messages a minute" in body["detail"]
    assert int(limited[0].headers["retry-after"]) >= 1


def test_an_emergency_goes_through_over_the_rate_limit_and_in_an_over_long_message(api):
    cid = f"sec-{uuid.uuid4().hex}"
    for _ in range(20):
        api.post("/api/messages", json={"conversation_id": cid, "text": "hi"})
    assert api.post("/api/messages", json={"conversation_id": cid, "text": "hi"}).status_code == 429
    flagged = api.post("/api/messages", json={"conversation_id": cid, "text": "crushing chest pain and I cant breathe"})
    assert flagged.status_code == 200 and "911" in texts(flagged.json())
    assert flagged.json()["owner"] == "waiting_for_staff"
    long = "I have been feeling low for a while and " * 60 + "I am going to kill myself tonight"
    resp = api.post("/api/messages", json={"conversation_id": f"sec-{uuid.uuid4().hex}", "text": long})
    assert resp.status_code == 200 and "988" in texts(resp.json())
    calm = api.post("/api/messages", json={"conversation_id": f"sec-{uuid.uuid4().hex}", "text": "hello " * 500})
    assert calm.status_code == 413 and calm.json()["error"] == "message_too_long"


def test_a_websocket_frame_over_the_cap_is_refused(stack):
    with connect(ws_url(stack), max_size=None) as ws:
        hello(ws)
        ws.send(json.dumps({"type": "message", "text": "x" * (4 * 1024 * 1024), "client_message_id": "big"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_websocket_flood_is_rate_limited(stack):
    with connect(ws_url(stack)) as ws:
        hello(ws)
        errors = []
        for i in range(25):
            ws.send(json.dumps({"type": "message", "text": "hello", "client_message_id": f"f{i}"}))
        deadline = time.monotonic() + 60
        acks = 0
        while acks + len(errors) < 25 and time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=30))
            if frame["type"] == "ack":
                acks += 1
            elif frame["type"] == "error":
                errors.append(frame)
        assert acks == 20 and len(errors) == 5
        assert all(e["error"] == "rate_limited" and e["retry_after"] >= 1 for e in errors)


def test_websocket_origins(stack):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(stack), origin="https://evil.example")
    assert refused.value.response.status_code == 403
    with connect(ws_url(stack), origin=stack.gateway_url) as ws:  # our own page
        hello(ws)


# --- 6. tokens and idempotency -----------------------------------------------------------------
def test_a_token_the_server_did_not_issue_is_refused(stack):
    with connect(ws_url(stack)) as ws:
        session = hello(ws, "a" * 22)
        assert session["token_refused"] is True and session["history"] == []
        assert session["conversation_token"] != "a" * 22 and len(session["conversation_token"]) >= 40
        token = session["conversation_token"]
        ws.send(json.dumps({"type": "message", "text": "good morning", "client_message_id": "m1"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ack"
    with connect(ws_url(stack)) as ws:  # the issued token resumes
        session = hello(ws, token)
        assert session["token_refused"] is False and session["history"][0]["text"] == "good morning"


def test_a_reused_idempotency_key_with_new_text_is_a_conflict_and_still_screened(api):
    cid = f"sec-{uuid.uuid4().hex}"
    first = api.post("/api/messages", json={"conversation_id": cid, "text": "hello", "message_id": "k1"})
    assert first.status_code == 200
    again = api.post("/api/messages", json={"conversation_id": cid, "text": "hello", "message_id": "k1"})
    assert again.status_code == 200 and again.json()["messages"] == first.json()["messages"]
    conflict = api.post(
        "/api/messages",
        json={"conversation_id": cid, "message_id": "k1", "text": "crushing chest pain and I cant breathe"},
    )
    assert conflict.status_code == 409
    body = conflict.json()
    assert body["error"] == "idempotency_conflict" and "911" in " ".join(m["text"] for m in body["messages"])
    after = api.post("/api/messages", json={"conversation_id": cid, "text": "are you there?"})
    assert after.json()["owner"] == "waiting_for_staff"  # the emergency reached staff


# --- 7. minimum necessary -------------------------------------------------------------------------
def test_no_raw_address_or_token_at_rest(stack, api, redis_url):
    import redis

    cid = f"sec-api-{uuid.uuid4().hex}"
    api.post("/api/messages", json={"conversation_id": cid, "text": "hello"}).raise_for_status()
    with connect(ws_url(stack)) as ws:
        token = hello(ws)["conversation_token"]
        ws.send(json.dumps({"type": "message", "text": "hello", "client_message_id": "m1"}))
        ws.recv(timeout=60)
    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter("careline:*", count=1000):
        kind = r.type(key).decode()
        values = {
            "string": lambda key=key: [r.get(key)],
            "hash": lambda key=key: list(r.hgetall(key).values()),
            "list": lambda key=key: r.lrange(key, 0, -1),
            "zset": lambda key=key: [m for m, _ in r.zrange(key, 0, -1, withscores=True)],
            "stream": lambda key=key: [v for _, f in r.xrange(key) for v in f.values()],
            "set": lambda key=key: list(r.smembers(key)),
        }
        blob = key + b" " + b" ".join(v or b"" for v in values.get(kind, lambda: [])())
        assert cid.encode() not in blob and token.encode() not in blob, key


# --- 8. production defaults -----------------------------------------------------------------
def test_security_headers_on_every_page(stack):
    for path in ("/chat", "/widget.js", "/healthz", "/readyz"):
        resp = httpx.get(f"{stack.gateway_url}{path}", timeout=10)
        assert resp.headers["x-content-type-options"] == "nosniff", path
        assert resp.headers["referrer-policy"] == "no-referrer", path
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors" in csp, path
    chat = httpx.get(f"{stack.gateway_url}/chat", timeout=10).headers["content-security-policy"]
    assert "frame-ancestors 'self'" in chat
    assert "frame-ancestors 'none'" in httpx.get(f"{stack.gateway_url}/healthz").headers["content-security-policy"]
