"""POST /api/messages at the edge: anything refused gets a named error and never reaches the
gateway; what passes reaches it as one InboundMessage."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from channels.errors import InvalidMessage, StoreUnavailable
from channels.routes.api import parse_message
from tests.unit.channels.fake_services import Fakes, app_with

TOKEN = "t" * 40
GOOD = {"conversation_id": "abc-1", "text": "hello"}


def client(fakes: Fakes, **settings) -> TestClient:
    return TestClient(app_with(fakes, **settings))


def test_a_message_reaches_the_gateway_and_its_replies_come_back():
    fakes = Fakes()
    resp = client(fakes).post("/api/messages", json={**GOOD, "message_id": "m1", "render": "sms"})
    assert resp.status_code == 200
    assert resp.json() == {
        "conversation_id": "abc-1",
        "owner": "bot",
        "messages": [{"text": "Hello from the bot", "buttons": []}],
    }
    (message,) = fakes.gateway.handled
    assert (message.channel, message.address, message.text, message.message_id) == ("api", "abc-1", "hello", "m1")
    assert message.metadata == {"format": "sms"}
    assert fakes.limits.checked == [("client", "ip:testclient"), ("conversation", "api:abc-1")]


def test_the_idempotency_key_header_is_the_message_id_when_the_body_has_none():
    fakes = Fakes()
    client(fakes).post("/api/messages", json=GOOD, headers={"Idempotency-Key": "k-9"})
    assert fakes.gateway.handled[0].message_id == "k-9"
    assert fakes.gateway.handled[0].metadata == {"format": "web"}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer "])
def test_without_the_api_token_nothing_is_read(authorization):
    fakes = Fakes()
    headers = {"Authorization": authorization} if authorization else {}
    resp = client(fakes, api_token=TOKEN).post("/api/messages", json=GOOD, headers=headers)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
    assert fakes.gateway.handled == [] and fakes.limits.checked == []


def test_with_the_api_token_the_message_goes_through():
    fakes = Fakes()
    resp = client(fakes, api_token=TOKEN).post("/api/messages", json=GOOD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200 and len(fakes.gateway.handled) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_is_read(content_type):
    fakes = Fakes()
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client(fakes).post("/api/messages", content=json.dumps(GOOD), headers=headers)
    assert resp.status_code == 415 and resp.json()["error"] == "unsupported_media_type"
    assert fakes.gateway.handled == []


def test_json_with_a_charset_is_json():
    fakes = Fakes()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert client(fakes).post("/api/messages", content=json.dumps(GOOD), headers=headers).status_code == 200


def test_an_oversized_body_is_refused_by_its_declared_length():
    fakes = Fakes()
    big = json.dumps({**GOOD, "text": "x" * 5000})
    resp = client(fakes, max_body_bytes=1024).post(
        "/api/messages", content=big, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"
    assert fakes.gateway.handled == []


def test_an_oversized_body_without_a_length_is_refused_as_it_streams():
    fakes = Fakes()

    def chunks():
        yield b'{"conversation_id": "abc-1", "text": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    resp = client(fakes, max_body_bytes=1024).post(
        "/api/messages", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"
    assert fakes.gateway.handled == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("{not json", "body must be JSON"),
        ('["a list"]', "body must be a JSON object"),
        ('{"text": "hi"}', "conversation_id must be"),
        ('{"conversation_id": "has space", "text": "hi"}', "conversation_id must be"),
        ('{"conversation_id": 12, "text": "hi"}', "conversation_id must be"),
        ('{"conversation_id": "' + "a" * 129 + '", "text": "hi"}', "conversation_id must be"),
        ('{"conversation_id": "abc"}', "text is required"),
        ('{"conversation_id": "abc", "text": "hi", "message_id": 5}', "message_id must be"),
        ('{"conversation_id": "abc", "text": "hi", "message_id": "' + "m" * 129 + '"}', "message_id must be"),
        ('{"conversation_id": "abc", "text": "hi", "render": "fax"}', 'render must be "web" or "sms"'),
    ],
)
def test_bad_input_gets_a_clear_error_and_never_reaches_the_gateway(body, detail):
    fakes = Fakes()
    resp = client(fakes).post("/api/messages", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid_message" and detail in resp.json()["detail"]
    assert fakes.gateway.handled == []
    with pytest.raises(InvalidMessage, match=detail.split('"')[0]):
        parse_message(body.encode())


def test_a_client_over_its_rate_limit_is_refused_before_its_body_is_read():
    fakes = Fakes()
    fakes.limits.refuse.add("client")
    resp = client(fakes).post("/api/messages", content="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.json()["error"] == "rate_limited" and fakes.gateway.handled == []


def test_over_the_conversation_limit_only_an_emergency_goes_through():
    calm = Fakes()
    calm.limits.refuse.add("conversation")
    assert client(calm).post("/api/messages", json=GOOD).status_code == 429
    assert calm.gateway.handled == [] and len(calm.gateway.screened) == 1

    crisis = Fakes()
    crisis.limits.refuse.add("conversation")
    crisis.gateway.flagged = True
    assert client(crisis).post("/api/messages", json=GOOD).status_code == 200
    assert len(crisis.gateway.handled) == 1


def test_a_text_that_is_not_a_string_skips_the_conversation_limit_and_is_the_gateways_to_refuse():
    fakes = Fakes()
    client(fakes).post("/api/messages", json={**GOOD, "text": 42})
    assert ("conversation", "api:abc-1") not in fakes.limits.checked
    assert fakes.gateway.handled[0].text == 42


def test_when_the_state_is_down_the_patient_still_reads_the_emergency_numbers():
    fakes = Fakes()
    fakes.gateway.error = StoreUnavailable()
    resp = client(fakes).post("/api/messages", json=GOOD)
    assert resp.status_code == 503 and resp.json()["error"] == "service_unavailable"
    assert "911" in resp.json()["messages"][0]["text"]


def test_the_client_is_counted_by_the_proxys_hop_only_when_trusted():
    fakes = Fakes()
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    client(fakes).post("/api/messages", json=GOOD, headers=headers)
    client(fakes, trust_forwarded_headers=True).post("/api/messages", json=GOOD, headers=headers)
    clients = [identity for scope, identity in fakes.limits.checked if scope == "client"]
    assert clients == ["ip:testclient", "ip:198.51.100.7"]
