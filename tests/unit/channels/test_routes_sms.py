"""Twilio's webhooks at the edge: only a signed request from our account, to our number, with a
body under the cap, reaches the SMS channel."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests.unit.channels.fake_services import FakeGateway, Fakes, FakeSms, app_with

ACCOUNT, AUTH_TOKEN, NUMBER, BASE = "AC" + "1" * 32, "a" * 32, "+15555550100", "https://sms.clinic.example"
INBOUND = {"AccountSid": ACCOUNT, "MessageSid": "SM1", "From": "+15555550199", "To": NUMBER, "Body": "hi"}
STATUS = {"AccountSid": ACCOUNT, "MessageSid": "SM2", "MessageStatus": "delivered", "To": "+15555550199"}


def sms_app() -> tuple[TestClient, FakeSms]:
    fakes = Fakes()
    fakes.sms = FakeSms(FakeGateway())
    app = app_with(
        fakes,
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=AUTH_TOKEN,
        twilio_phone_number=NUMBER,
        public_base_url=BASE,
        max_body_bytes=1024,
    )
    return TestClient(app), fakes.sms


def post(client: TestClient, path: str, form: dict, signature: str | None = "sign", token: str = AUTH_TOKEN):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "sign":
        signature = RequestValidator(token).compute_signature(BASE + path, form)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, content=urlencode(form), headers=headers)


def test_a_signed_message_reaches_the_channel_and_its_reply_is_twiml():
    client, sms = sms_app()
    resp = post(client, "/sms/twilio", INBOUND)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
    assert "<Message>Thanks, we got your message.</Message>" in resp.text
    assert sms.accepted == [INBOUND]


@pytest.mark.parametrize(
    ("form", "signature", "token"),
    [
        (INBOUND, None, AUTH_TOKEN),  # unsigned
        (INBOUND, "sign", "b" * 32),  # signed with another token
        ({**INBOUND, "AccountSid": "AC" + "2" * 32}, "sign", AUTH_TOKEN),  # another account
        ({**INBOUND, "To": "+15555550111"}, "sign", AUTH_TOKEN),  # not one of our numbers
    ],
)
def test_an_unverified_webhook_is_refused_and_never_reaches_the_channel(form, signature, token):
    client, sms = sms_app()
    resp = post(client, "/sms/twilio", form, signature, token)
    assert resp.status_code == 403 and resp.text == "forbidden"
    assert sms.accepted == []


def test_an_oversized_webhook_is_refused_before_it_is_read():
    client, sms = sms_app()
    resp = post(client, "/sms/twilio", {**INBOUND, "Body": "x" * 2000})
    assert resp.status_code == 413 and sms.accepted == []


@pytest.mark.parametrize(("drop", "missing"), [("MessageSid", "MessageSid"), ("From", "From"), ("Body", "Body")])
def test_a_malformed_webhook_says_what_is_missing(drop, missing):
    client, sms = sms_app()
    resp = post(client, "/sms/twilio", {k: v for k, v in INBOUND.items() if k != drop})
    assert resp.status_code == 400 and missing in resp.text and sms.accepted == []


def test_a_picture_without_text_is_a_message():
    client, sms = sms_app()
    form = {**{k: v for k, v in INBOUND.items() if k != "Body"}, "NumMedia": "1"}
    assert post(client, "/sms/twilio", form).status_code == 200 and len(sms.accepted) == 1


def test_a_delivery_status_is_recorded_and_an_unsubscribed_number_opted_out():
    client, sms = sms_app()
    assert post(client, "/sms/twilio/status", STATUS).status_code == 204
    form = {**STATUS, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert post(client, "/sms/twilio/status", form).status_code == 204
    assert sms.records.statuses == [("SM2", "delivered", None), ("SM2", "failed", "21610")]
    assert sms.records.opt_outs == [("sms:+15555550199", "twilio_21610")]


def test_a_status_callback_is_verified_too_and_needs_its_fields():
    client, sms = sms_app()
    assert post(client, "/sms/twilio/status", STATUS, signature=None).status_code == 403
    assert post(client, "/sms/twilio/status", {"AccountSid": ACCOUNT, "MessageSid": "SM2"}).status_code == 400
    assert sms.records.statuses == []
