"""The web chat routes: the page and widget, and the /ws protocol at the edge (origin, frames,
sessions) with the gateway and the store replaced."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from channels.errors import StoreUnavailable
from tests.unit.channels.fake_services import ISSUED_TOKEN, Fakes, app_with

EMBEDDER = "https://www.clinic.org"


def client(fakes: Fakes, **settings) -> TestClient:
    return TestClient(app_with(fakes, allowed_origins=EMBEDDER, **settings))


def hello(ws, token=None) -> dict:
    ws.send_json({"type": "hello", **({"conversation_token": token} if token else {})})
    return ws.receive_json()


def test_the_chat_page_and_the_widget_are_served():
    web = client(Fakes())
    page = web.get("/chat")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["cache-control"] == "no-store"
    widget = web.get("/widget.js")
    assert widget.status_code == 200 and widget.headers["content-type"].startswith("application/javascript")
    assert widget.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://www.clinic.org.evil.example", "null"])
def test_a_handshake_from_another_origin_is_refused_before_it_is_accepted(origin):
    fakes = Fakes()
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client(fakes).websocket_connect("/ws", headers={"Origin": origin}),
    ):
        pass
    assert refused.value.code == 1008
    assert fakes.limits.checked == [] and fakes.store.issued == {ISSUED_TOKEN}


@pytest.mark.parametrize("origin", [EMBEDDER, "http://testserver", None])
def test_our_own_page_an_embedding_site_and_a_non_browser_are_let_in(origin):
    headers = {"Origin": origin} if origin else {}
    with client(Fakes()).websocket_connect("/ws", headers=headers) as ws:
        assert hello(ws)["type"] == "session"


def test_hello_then_message_gets_an_ack_and_the_replies():
    fakes = Fakes()
    with client(fakes).websocket_connect("/ws") as ws:
        session = hello(ws)
        assert session["owner"] == "bot" and session["history"] == [] and session["token_refused"] is False
        ws.send_json({"type": "message", "text": "hi", "client_message_id": "c1"})
        assert ws.receive_json() == {"type": "ack", "client_message_id": "c1", "owner": "bot"}
        assert ws.receive_json() == {"type": "message", "role": "bot", "text": "Hello from the bot", "buttons": []}
    (message,) = fakes.gateway.handled
    assert (message.channel, message.address, message.text, message.message_id) == (
        "web",
        session["conversation_token"],
        "hi",
        "c1",
    )


def test_a_token_the_server_issued_resumes_its_history_and_any_other_is_refused():
    fakes = Fakes()
    fakes.store.transcripts[f"web:{ISSUED_TOKEN}"] = [{"role": "bot", "text": "earlier"}]
    with client(fakes).websocket_connect("/ws") as ws:
        resumed = hello(ws, ISSUED_TOKEN)
        assert resumed["conversation_token"] == ISSUED_TOKEN
        assert resumed["history"] == [{"role": "bot", "text": "earlier", "buttons": []}]
        invented = hello(ws, "invented-token-000000000000")
        assert invented["token_refused"] is True and invented["conversation_token"] != "invented-token-000000000000"
        assert invented["history"] == []


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "shout"}', "invalid_message"),
        ('{"type": "message", "text": "hi"}', "no_session"),
        ('{"type": "hello", "pad": "' + "x" * 2000 + '"}', "frame_too_large"),
    ],
)
def test_a_bad_frame_gets_an_error_and_the_socket_stays_open(frame, error):
    fakes = Fakes()
    with client(fakes, max_ws_frame_bytes=1024).websocket_connect("/ws") as ws:
        ws.send_text(frame)
        assert ws.receive_json()["error"] == error
        assert hello(ws)["type"] == "session"  # still open
    assert fakes.gateway.handled == []


def test_a_bad_client_message_id_never_reaches_the_gateway():
    fakes = Fakes()
    with client(fakes).websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_json({"type": "message", "text": "hi", "client_message_id": "c" * 129})
        assert ws.receive_json()["error"] == "invalid_message"
    assert fakes.gateway.handled == []


def test_a_rate_limited_client_is_told_when_to_retry():
    fakes = Fakes()
    fakes.limits.refuse.add("client")
    with client(fakes).websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_json({"type": "message", "text": "hi", "client_message_id": "c1"})
        error = ws.receive_json()
        assert (error["error"], error["retry_after"], error["client_message_id"]) == ("rate_limited", 7, "c1")
    assert fakes.gateway.handled == []


def test_with_the_state_down_the_patient_reads_the_emergency_numbers():
    fakes = Fakes()
    fakes.gateway.error = StoreUnavailable()
    with client(fakes).websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_json({"type": "message", "text": "hi"})
        assert ws.receive_json()["error"] == "service_unavailable"
        message = ws.receive_json()
        assert message["type"] == "message" and message["role"] == "system" and "911" in message["text"]


def test_a_session_without_redis_says_so_and_keeps_the_socket_open():
    fakes = Fakes()
    fakes.store.down = True
    with client(fakes).websocket_connect("/ws") as ws:
        assert hello(ws) == {
            "type": "error",
            "error": "service_unavailable",
            "detail": StoreUnavailable.patient_message,
        }
        assert "911" in ws.receive_json()["text"]
        fakes.store.down = False
        assert hello(ws)["type"] == "session"
