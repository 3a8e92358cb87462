"""The Twilio stand-in speaks Twilio's protocol: the real `twilio` library sends through it, its
errors arrive as TwilioRestException with Twilio's codes, and the webhooks it posts carry
signatures that the library's RequestValidator accepts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from careline.standins.twilio_api import TwilioStandIn, num_segments, sign
from tests.helpers import ROOT

PATIENT = "+15555550123"
CLINIC = "+15005550006"


def twilio_client(standin: TwilioStandIn, auth_token: str | None = None, account_sid: str | None = None) -> Client:
    """A real twilio Client that talks to the stand-in. The library builds every API URL from its
    domain's `base_url` (Domain.absolute_url), so replacing `client.api.base_url`, which is
    https://api.twilio.com, sends `client.messages` to the stand-in and changes nothing else."""
    client = Client(standin.account_sid, auth_token or standin.auth_token, account_sid=account_sid)
    client.api.base_url = standin.base_url
    return client


class Receiver:
    """A tiny web app that records the webhooks it gets and answers `reply` (TwiML or empty)."""

    def __init__(self, reply: str = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'):
        self.requests: list[dict] = []
        self.reply = reply
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with receiver._arrived:
                    form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "form": form})
                    receiver._arrived.notify_all()
                data = receiver.reply.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def wait(self, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} webhook(s), got {len(self.requests)}"
                self._arrived.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def standin():
    with TwilioStandIn(phone_number=CLINIC, callback_delay=0.01) as s:
        yield s


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


# --- signing --------------------------------------------------------------------------------------


def test_signature_matches_twilio_python_official_vector():
    # From twilio-python's tests/unit/test_request_validator.py.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert sign("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert RequestValidator("12345").validate(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


@pytest.mark.parametrize(
    "body, segments",
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("é" * 160, 1),  # é is in the GSM-7 set
        ("ü" + "ł" * 69, 1),
        ("ł" * 71, 2),
        ("😀" * 10, 1),
    ],
)
def test_num_segments(body, segments):
    assert num_segments(body) == segments


# --- the REST API through the real library --------------------------------------------------------


def test_create_message_returns_twilio_message(standin):
    message = twilio_client(standin).messages.create(to=PATIENT, from_=CLINIC, body="Your visit is at 3pm.")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.account_sid == standin.account_sid
    assert (message.to, message.from_, message.body) == (PATIENT, CLINIC, "Your visit is at 3pm.")
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.api_version == "2010-04-01"
    assert isinstance(message.date_created, datetime)  # RFC 2822, parsed by the library
    assert message.uri == f"/2010-04-01/Accounts/{standin.account_sid}/Messages/{message.sid}.json"
    [recorded] = standin.wait_for(1, to=PATIENT)
    assert (recorded.sid, recorded.to, recorded.from_, recorded.body) == (
        message.sid,
        PATIENT,
        CLINIC,
        "Your visit is at 3pm.",
    )


def test_fetch_follows_delivery(standin):
    client = twilio_client(standin)
    sid = client.messages.create(to=PATIENT, from_=CLINIC, body="hi").sid
    deadline = time.monotonic() + 5
    while client.messages(sid).fetch().status != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(TwilioRestException) as err:
        client.messages("SM" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_messaging_service_message_is_accepted(standin):
    service = "MG" + "1" * 32
    message = twilio_client(standin).messages.create(to=PATIENT, messaging_service_sid=service, body="hi")
    assert message.status == "accepted"
    assert message.messaging_service_sid == service
    assert message.from_ is None
    assert message.num_segments == "0"


def test_list_pages_newest_first_and_filters_by_number(standin):
    client = twilio_client(standin)
    for n in range(5):
        client.messages.create(to=PATIENT, from_=CLINIC, body=f"part {n}")
    client.messages.create(to="+15555550999", from_=CLINIC, body="someone else")
    listed = client.messages.list(to=PATIENT, page_size=2)  # three pages, followed by the library
    assert [m.body for m in listed] == [f"part {n}" for n in (4, 3, 2, 1, 0)]
    assert all(m.to == PATIENT and m.date_created is not None for m in listed)
    assert [m.body for m in client.messages.list(to=PATIENT, limit=2)] == ["part 4", "part 3"]
    assert [m.body for m in client.messages.list(to="+15555550999")] == ["someone else"]


def test_wrong_token_is_20003(standin):
    with pytest.raises(TwilioRestException) as err:
        twilio_client(standin, auth_token="not-the-token").messages.create(to=PATIENT, from_=CLINIC, body="hi")
    assert (err.value.status, err.value.code) == (401, 20003)
    assert standin.messages() == []


def test_raw_error_json_shape(standin):
    response = httpx.post(
        standin.messages_url,
        data={"To": PATIENT, "From": CLINIC, "Body": "hi"},
        auth=(standin.account_sid, "wrong"),
        trust_env=False,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


def test_other_account_in_path_is_not_found(standin):
    client = twilio_client(standin, account_sid="AC" + "f" * 32)
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to=PATIENT, from_=CLINIC, body="hi")
    assert (err.value.status, err.value.code) == (404, 20404)


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"to": "", "from_": CLINIC, "body": "hi"}, 21604),
        ({"to": PATIENT, "from_": CLINIC}, 21602),
        ({"to": PATIENT, "body": "hi"}, 21603),
        ({"to": PATIENT, "from_": CLINIC, "body": "x" * 1601}, 21617),
        ({"to": "not a number", "from_": CLINIC, "body": "hi"}, 21211),
    ],
)
def test_validation_errors(standin, kwargs, code):
    with pytest.raises(TwilioRestException) as err:
        twilio_client(standin).messages.create(**kwargs)
    assert (err.value.status, err.value.code) == (400, code)
    assert standin.messages() == []


@pytest.mark.parametrize("status, code", [(429, 20429), (500, 20500), (503, 20503)])
def test_injected_faults_then_recovery(standin, status, code):
    client = twilio_client(standin)
    standin.fail_next(2, status=status)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as err:
            client.messages.create(to=PATIENT, from_=CLINIC, body="hi")
        assert (err.value.status, err.value.code) == (status, code)
    assert client.messages.create(to=PATIENT, from_=CLINIC, body="hi").status == "queued"
    assert standin.send_attempts == 3
    assert len(standin.messages()) == 1


def test_unsubscribed_recipient_is_21610(standin):
    client = twilio_client(standin)
    standin.unsubscribe(PATIENT)
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to=PATIENT, from_=CLINIC, body="hi")
    assert (err.value.status, err.value.code) == (400, 21610)
    assert "unsubscribed recipient" in err.value.msg
    client.messages.create(to="+15555550199", from_=CLINIC, body="hi")  # others still get messages
    standin.resubscribe(PATIENT)
    client.messages.create(to=PATIENT, from_=CLINIC, body="hi")
    assert [m.to for m in standin.messages()] == ["+15555550199", PATIENT]


def test_latency_delays_answers(standin):
    standin.latency = 0.3
    started = time.monotonic()
    twilio_client(standin).messages.create(to=PATIENT, from_=CLINIC, body="hi")
    assert time.monotonic() - started >= 0.3


def test_wait_for_filters_times_out_and_clear(standin):
    client = twilio_client(standin)
    client.messages.create(to=PATIENT, from_=CLINIC, body="one")
    client.messages.create(to="+15555550199", from_=CLINIC, body="two")
    assert [m.body for m in standin.wait_for(1, to=PATIENT)] == ["one"]
    with pytest.raises(TimeoutError):
        standin.wait_for(2, to=PATIENT, timeout=0.2)
    standin.clear()
    assert standin.messages() == [] and standin.send_attempts == 0


# --- webhooks the stand-in posts ------------------------------------------------------------------


def test_status_callbacks_arrive_signed(standin, receiver):
    url = receiver.url("/sms/status?shard=1")
    message = twilio_client(standin).messages.create(to=PATIENT, from_=CLINIC, body="hi", status_callback=url)
    first, second = receiver.wait(2)
    validator = RequestValidator(standin.auth_token)
    for request, status in ((first, "sent"), (second, "delivered")):
        form = request["form"]
        assert form["MessageStatus"] == form["SmsStatus"] == status
        assert form["MessageSid"] == form["SmsSid"] == message.sid
        assert (form["AccountSid"], form["From"], form["To"], form["ApiVersion"]) == (
            standin.account_sid,
            CLINIC,
            PATIENT,
            "2010-04-01",
        )
        assert validator.validate(url, form, request["headers"]["X-Twilio-Signature"])
        assert not RequestValidator("other-token").validate(url, form, request["headers"]["X-Twilio-Signature"])


def test_unreachable_status_callback_is_ignored(standin, receiver):
    dead = receiver.url("/status")
    receiver.close()
    message = twilio_client(standin).messages.create(to=PATIENT, from_=CLINIC, body="hi", status_callback=dead)
    assert message.status == "queued"
    deadline = time.monotonic() + 5
    while len(standin.callbacks) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert all("error" in c for c in standin.callbacks)
    assert standin.messages()[0].status == "delivered"


def test_inbound_webhook_is_signed_over_public_url(standin, receiver):
    public = "https://chat.clinic.example.org/sms/inbound"
    response = standin.send_inbound(receiver.url("/sms/inbound"), PATIENT, "I have a rash", public_url=public)
    assert response.status_code == 200
    [request] = receiver.wait(1)
    form, signature = request["form"], request["headers"]["X-Twilio-Signature"]
    assert RequestValidator(standin.auth_token).validate(public, form, signature)
    assert not RequestValidator(standin.auth_token).validate(receiver.url("/sms/inbound"), form, signature)
    assert re.fullmatch(r"SM[0-9a-f]{32}", form["MessageSid"])
    assert form["SmsSid"] == form["SmsMessageSid"] == form["MessageSid"]
    assert (form["From"], form["To"], form["Body"], form["AccountSid"]) == (
        PATIENT,
        CLINIC,
        "I have a rash",
        standin.account_sid,
    )
    assert (form["NumMedia"], form["NumSegments"], form["ApiVersion"], form["SmsStatus"]) == (
        "0",
        "1",
        "2010-04-01",
        "received",
    )
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    [inbound] = standin.inbound(PATIENT)
    assert (inbound.sid, inbound.webhook_status) == (form["MessageSid"], 200)


def test_inbound_defaults_and_extra_fields(standin, receiver):
    url = receiver.url("/sms")
    standin.send_inbound(
        url, PATIENT, "hi", message_sid="SM" + "a" * 32, extra={"OptOutType": "STOP", "FromCountry": None}
    )
    [request] = receiver.wait(1)
    form = request["form"]
    assert form["MessageSid"] == "SM" + "a" * 32
    assert form["OptOutType"] == "STOP" and "FromCountry" not in form
    assert RequestValidator(standin.auth_token).validate(url, form, request["headers"]["X-Twilio-Signature"])


def test_twiml_reply_is_recorded_as_a_sent_message(standin):
    replying = Receiver(
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks, we got it.</Message></Response>'
    )
    try:
        standin.send_inbound(replying.url("/sms"), PATIENT, "hello")
        [reply] = standin.wait_for(1, to=PATIENT)
        assert (reply.body, reply.from_, reply.direction) == ("Thanks, we got it.", CLINIC, "outbound-reply")
    finally:
        replying.close()


# --- the sandbox phone ----------------------------------------------------------------------------


def test_phone_page_sends_and_lists_the_conversation(receiver):
    public = "https://sandbox.example.org/sms"
    with TwilioStandIn(phone_number=CLINIC, webhook_url=receiver.url("/sms"), public_url=public) as standin:
        page = httpx.get(f"{standin.base_url}/phone", trust_env=False)
        assert page.status_code == 200 and '<label for="number"' in page.text
        sent = httpx.post(
            f"{standin.base_url}/phone/send", json={"number": PATIENT, "body": "Is the clinic open?"}, trust_env=False
        )
        assert sent.json() == {"webhook_status": 200}
        [request] = receiver.wait(1)
        assert RequestValidator(standin.auth_token).validate(
            public, request["form"], request["headers"]["X-Twilio-Signature"]
        )
        twilio_client(standin).messages.create(to=PATIENT, from_=CLINIC, body="Yes, until 6pm.")
        listing = httpx.get(f"{standin.base_url}/phone/messages", params={"number": PATIENT}, trust_env=False).json()
        assert listing["clinic_number"] == CLINIC
        assert [(m["direction"], m["body"]) for m in listing["messages"]] == [
            ("inbound", "Is the clinic open?"),
            ("outbound", "Yes, until 6pm."),
        ]
        bad = httpx.post(f"{standin.base_url}/phone/send", json={"number": PATIENT, "body": " "}, trust_env=False)
        assert bad.status_code == 400


def test_phone_send_without_webhook_says_so(standin):
    response = httpx.post(f"{standin.base_url}/phone/send", json={"number": PATIENT, "body": "hi"}, trust_env=False)
    assert response.status_code == 503 and "--webhook" in response.json()["error"]


def test_runs_as_a_script():
    from careline.supervisor import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "careline.standins.twilio_api",
            "--port",
            str(port),
            "--account-sid",
            "AC" + "2" * 32,
            "--auth-token",
            "tok",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert "Twilio stand-in: http://127.0.0.1:" in proc.stdout.readline()
        info = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).json()
        assert info["account_sid"] == "AC" + "2" * 32
        client = Client("AC" + "2" * 32, "tok")
        client.api.base_url = f"http://127.0.0.1:{port}"
        assert client.messages.create(to=PATIENT, from_=CLINIC, body="hi").status == "queued"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_gateway_env_points_the_gateway_at_the_stand_in(standin, monkeypatch):
    from careline.settings import Settings

    for name, value in standin.gateway_env("http://127.0.0.1:8123").items():
        monkeypatch.setenv(name, value)
    settings = Settings(conversation_secret="a" * 64, _env_file=None)
    assert settings.sms_enabled
    assert (settings.twilio_account_sid, settings.twilio_auth_token) == (standin.account_sid, standin.auth_token)
    assert settings.twilio_phone_number == standin.phone_number
    assert settings.twilio_api_base_url == standin.base_url
    assert settings.public_base_url == "http://127.0.0.1:8123"
