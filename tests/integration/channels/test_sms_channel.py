"""The SMS channel's pieces with real components: Twilio's signature test vector, URL rebuilding
behind a proxy, and long answers split into segment-sized parts sent through the real `twilio`
library to the stand-in, with MORE continuing."""

import uuid

import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from careline.contracts import PAGE_BREAK
from careline.standins.twilio_api import TwilioStandIn
from channels.consent import SmsRecords
from channels.db import make_engine
from channels.messages import OutboundMessage
from channels.pipeline import Gateway
from channels.rasa_client import RasaClient
from channels.sms import SmsChannel, SmsTexts, public_url
from channels.sms_text import segments
from channels.store import ConversationStore
from channels.twilio_sender import TwilioSender

# The vector twilio-python's own tests use (tests/unit/test_request_validator.py).
VECTOR_TOKEN = "12345"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def request(path: str, query: str = "", headers: dict | None = None, host: str = "10.0.0.5:8000") -> Request:
    raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "query_string": query.encode(),
            "headers": raw,
            "server": ("10.0.0.5", 8000),
        }
    )


def test_twilio_vector_validates_against_the_public_url():
    url = public_url(request("/myapp.php", "foo=1&bar=2"), "https://mycompany.com", trust_forwarded=False)
    assert url == "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert RequestValidator(VECTOR_TOKEN).validate(url, VECTOR_PARAMS, VECTOR_SIGNATURE)
    assert not RequestValidator(VECTOR_TOKEN).validate(url, {**VECTOR_PARAMS, "Digits": "9"}, VECTOR_SIGNATURE)


def test_behind_a_trusted_proxy_the_url_is_rebuilt_from_forwarded_headers():
    req = request("/myapp.php", "foo=1&bar=2", {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mycompany.com"})
    assert public_url(req, None, trust_forwarded=True) == "https://mycompany.com/myapp.php?foo=1&bar=2"
    # not trusted: the headers are ignored (anyone could send them)
    assert public_url(req, "https://clinic.example", trust_forwarded=False).startswith("https://clinic.example/")


class NoRasa(RasaClient):
    def __init__(self):
        super().__init__("http://127.0.0.1:9", None, 1, 0)


@pytest.fixture
async def channel(redis_url, tmp_path):
    redis = Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with TwilioStandIn() as standin:
        sender = TwilioSender(
            standin.account_sid, standin.auth_token, standin.phone_number, api_base_url=standin.base_url, backoff=0.01
        )
        store = ConversationStore(redis, prefix=prefix)
        gateway = Gateway(store, NoRasa(), "k" * 32)
        ch = SmsChannel(
            redis,
            gateway,
            sender,
            SmsRecords(make_engine(f"sqlite:///{tmp_path / 'c.db'}")),
            SmsTexts("Maplewood Family Clinic", "(555) 555-0100"),
            shards=2,
            prefix=prefix,
        )
        yield ch, standin
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


LONG = (
    "Sickle cell disease is a group of inherited red blood cell disorders. Healthy red blood cells are round, "
    "and they move through small blood vessels to carry oxygen to all parts of the body. In someone who has "
    "sickle cell disease, the red blood cells become hard and sticky and look like a C-shaped farm tool called "
    "a \u201csickle\u201d. The sickle cells die early, which causes a constant shortage of red blood cells. "
    "Also, when they travel through small blood vessels, they get stuck and clog the blood flow. This can cause "
    "pain and other serious problems such as infection, acute chest syndrome and stroke. People with the "
    "disease should see a hematologist \u2014 a blood specialist \u2014 regularly. Treatments include "
    "medicines, blood transfusions and, for some, a bone marrow transplant. Drinking plenty of water and "
    "avoiding very hot or cold temperatures can help prevent pain crises. Source: CDC, \u201cWhat is "
    "Sickle Cell Disease?\u201d https://www.cdc.gov/sickle-cell/about/index.html"
)


async def test_a_long_answer_arrives_in_segment_sized_parts_and_more_continues(channel):
    ch, standin = channel
    assert len(LONG) >= 950
    number = "+15550001111"
    key = ch.gateway.key_for("sms", number)
    await ch._send_text(key, {"sid": "SM" + "a" * 32, "from": number}, LONG)
    first = standin.wait_for(1, to=number)
    sent = [m.body for m in standin.messages(to=number)]
    assert sum(len(b) for b in sent) <= 320 and "Reply MORE" in sent[-1]
    for body in sent:
        assert segments(body) == ("GSM-7", 1), body  # curly quotes and dashes replaced
    assert "\u201c" not in "".join(sent) and "\u2014" not in "".join(sent)
    received = list(sent)
    for n in range(2, 8):
        if "Reply MORE" not in received[-1]:
            break
        await ch._turn(key, {"sid": f"SM{n:032d}", "from": number, "body": "MORE", "kind": "text"})
        received = [m.body for m in standin.messages(to=number)]
    text = " ".join(received)
    assert "https://www.cdc.gov/sickle-cell/about/index.html" in text
    assert "bone marrow transplant" in text
    assert first


async def test_a_paged_answer_goes_out_a_page_a_turn_each_with_its_citation(channel):
    ch, standin = channel
    number = "+15550002222"
    key = ch.gateway.key_for("sms", number)
    cite = 'Source: CDC, "What is Sickle Cell Disease?" https://www.cdc.gov/sickle-cell/about/index.html'
    sentences = LONG.split(". Source:")[0].split(". ")
    paged = PAGE_BREAK.join(f"{s.removesuffix('.')}.\n{cite}" for s in sentences)  # pages as the action sizes them
    caution = OutboundMessage("If this is happening now, call 911.")
    await ch._send_replies(key, {"sid": "SM" + "b" * 32, "from": number}, [OutboundMessage(paged), caution])
    standin.wait_for(1, to=number)
    turns = [[m.body for m in standin.messages(to=number)]]
    assert "call 911" in " ".join(turns[0])  # a notice goes out with the first page, not after the last
    for n in range(2, 12):
        if not turns[-1][-1].endswith("Reply MORE for more."):
            break
        seen = len(standin.messages(to=number))
        await ch._turn(key, {"sid": f"SM{n:032d}", "from": number, "body": "MORE", "kind": "text"})
        turns.append([m.body for m in standin.messages(to=number)][seen:])
    assert len(turns) == paged.count(PAGE_BREAK) + 1
    for parts in turns:
        assert sum(len(p) for p in parts) <= 320 and all(segments(p) == ("GSM-7", 1) for p in parts)
        assert "https://www.cdc.gov/sickle-cell/about/index.html" in " ".join(parts)
    assert "bone marrow transplant" in " ".join(" ".join(parts) for parts in turns)
    assert not turns[-1][-1].endswith("Reply MORE for more.")


def test_twiml_is_empty_or_escaped_messages_that_parse():
    import xml.etree.ElementTree as ET

    from channels.sms import EMPTY_TWIML, twiml

    assert twiml() == EMPTY_TWIML
    text = 'Call 911 <now> & don\'t wait "please"'
    root = ET.fromstring(twiml(text, "second"))
    assert root.tag == "Response" and [m.text for m in root.iter("Message")] == [text, "second"]


def test_consumer_names_are_unique_per_process_start():
    import os

    from channels.sms import instance_name

    names = {instance_name() for _ in range(50)}
    assert len(names) == 50 and all(f"-{os.getpid()}-" in n for n in names)


async def test_the_channel_never_uses_another_processs_name(channel):
    ch, _ = channel
    from channels.crypto import Cipher

    other = SmsChannel(
        ch.redis, ch.gateway, ch.sender, ch.records, ch.texts, shards=2, prefix=ch.prefix, cipher=Cipher(None)
    )
    assert other.name != ch.name
    assert ch.health() == {
        "ok": False,
        "workers": 0,
        "shards": 0,
        "shards_total": 2,
        "replicas": 1,
        "restarts": 0,
        "consumer": ch.name,
    }
