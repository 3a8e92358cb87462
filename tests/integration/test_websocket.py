"""The web chat's WebSocket: session, resume, replies, errors, de-duplication."""

import json
import uuid

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.stack


def ws_url(stack) -> str:
    return stack.gateway_url.replace("http://", "ws://") + "/ws"


def hello(ws, token=None) -> dict:
    ws.send(json.dumps({"type": "hello", "conversation_token": token}))
    frame = json.loads(ws.recv(timeout=10))
    assert frame["type"] == "session"
    return frame


def send(ws, text, client_id=None) -> list[dict]:
    """Send a message; return the ack and the replies that follow it."""
    client_id = client_id or uuid.uuid4().hex
    ws.send(json.dumps({"type": "message", "text": text, "client_message_id": client_id}))
    frames = [json.loads(ws.recv(timeout=60))]
    assert frames[0]["type"] in ("ack", "error"), frames
    while frames[0]["type"] == "ack":
        try:
            frames.append(json.loads(ws.recv(timeout=1.5)))
        except TimeoutError:
            break
    return frames


def test_multi_turn_conversation_and_resume(stack):
    with connect(ws_url(stack)) as ws:
        session = hello(ws)
        token = session["conversation_token"]
        assert len(token) >= 22 and session["history"] == []
        frames = send(ws, "good morning")
        assert frames[0]["type"] == "ack" and frames[0]["owner"] == "bot"
        assert any("CareLine" in f.get("text", "") for f in frames[1:])
        frames = send(ws, "my appointment is on friday, can i move it to monday?")
        assert any("full name" in f.get("text", "") for f in frames[1:])
    # A new connection with the same token resumes the conversation with its history.
    with connect(ws_url(stack)) as ws:
        session = hello(ws, token)
        assert session["conversation_token"] == token
        roles = [m["role"] for m in session["history"]]
        assert roles[0] == "user" and "bot" in roles
        assert session["history"][0]["text"] == "good morning"
        frames = send(ws, "I want to talk to a human")
        assert frames[0]["owner"] == "waiting_for_staff"


def test_invalid_token_gets_a_fresh_conversation(stack):
    with connect(ws_url(stack)) as ws:
        session = hello(ws, "../../etc/passwd")
        assert session["conversation_token"] != "../../etc/passwd" and session["history"] == []


def test_bad_frames_get_errors_and_the_socket_stays_open(stack):
    with connect(ws_url(stack)) as ws:
        ws.send(json.dumps({"type": "message", "text": "hi", "client_message_id": "x"}))
        assert json.loads(ws.recv(timeout=10))["error"] == "no_session"
        hello(ws)
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["error"] == "invalid_message"
        frames = send(ws, "")
        assert frames[0]["type"] == "error" and frames[0]["error"] == "invalid_message"
        frames = send(ws, "y" * 5000)
        assert frames[0]["error"] == "message_too_long"
        frames = send(ws, "hello")
        assert frames[0]["type"] == "ack"


def test_resent_message_is_not_answered_twice(stack):
    with connect(ws_url(stack)) as ws:
        token = hello(ws)["conversation_token"]
        first = send(ws, "hi", client_id="same-id")
    # The widget re-sends unacknowledged messages after a reconnect with the same id.
    with connect(ws_url(stack)) as ws:
        session = hello(ws, token)
        again = send(ws, "hi", client_id="same-id")
        assert [f["text"] for f in again[1:]] == [f["text"] for f in first[1:]]
        assert [m["role"] for m in session["history"]].count("user") == 1
