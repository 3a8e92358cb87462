"""The staff console (/staff) in real Chromium against the running stack: a patient in one browser
context (the widget, or SMS through the Twilio stand-in), an agent in another.

Needs the session fixture `stack` (tests/conftest.py) and Chromium at /usr/bin/chromium. Staff
accounts are made in the stack's own database. Assertions are on behaviour (what appears where,
live, without a reload), not on the bot's wording.

CARELINE_DOCS_SCREENSHOTS=1 also saves the console at 1280×800 as docs/staff-console.png (the
README's figure); without it the screenshot goes to the test's temporary directory.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import axe_playwright_python
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from channels.pseudonym import conversation_key
from channels.staff.accounts import StaffMember
from tests.browser.test_chat_page import (
    REPLY_TIMEOUT_MS,
    SETTLED,
    USER_MESSAGES,
    send_and_wait,
    storage,
)
from tests.helpers import STAFF_PASSWORD, staff_accounts

pytestmark = [pytest.mark.browser, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = Path(axe_playwright_python.__file__).parent / "axe.min.js"  # axe-core, bundled by the package
PASSWORD = STAFF_PASSWORD
ASK_FOR_A_PERSON = "I want to talk to a person"
EMERGENCY = "crushing chest pain and I can't breathe"
LIVE_MS = 10_000  # a live event: well above the 200 ms debounce, below the 15 s poll
COOKIE = "careline_staff"
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}
ITEM = "[data-testid=queue-item][data-id='{}']"
STAFF_BUBBLES = "[data-testid=careline-msg][data-role=staff]"
SYSTEM_BUBBLES = "[data-testid=careline-msg][data-role=system]"
BOT_BUBBLES = "[data-testid=careline-msg][data-role=bot]"


@pytest.fixture(scope="module")
def staff(stack) -> dict[str, StaffMember]:
    """An agent (Sam) and a supervisor (Pat), in the database the stack's gateway uses."""
    return staff_accounts(stack, sam="agent", pat="supervisor")


@pytest.fixture(scope="module")
def tokens(stack, staff) -> dict[str, str]:
    """One session per account for the whole module: logins are throttled per client address, and
    every test here comes from 127.0.0.1. (test_web_patient_and_agent logs in through the form.)"""
    made = {}
    for name, member in staff.items():
        resp = httpx.post(
            f"{stack.gateway_url}/staff/api/login", json={"email": member.email, "password": PASSWORD}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        made[name] = resp.cookies[COOKIE]
    return made


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Browser contexts made by a test (each its own cookies and sessionStorage), closed after it."""
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def new_page(browser: Browser, contexts: list, viewport=DESKTOP, **options) -> Page:
    context = browser.new_context(viewport=viewport, **options)
    contexts.append(context)
    return context.new_page()


def console(stack, browser: Browser, contexts: list, token: str, viewport=DESKTOP, **options) -> Page:
    """The console, signed in with `token`, its live connection open."""
    page = new_page(browser, contexts, viewport, **options)
    page.context.add_cookies(
        [
            {
                "name": COOKIE,
                "value": token,
                "domain": "127.0.0.1",
                "path": "/staff",
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    page.goto(f"{stack.gateway_url}/staff")
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    expect(page.locator("body[data-live=open]")).to_have_count(1, timeout=LIVE_MS)
    return page


def api_handoff(stack, text: str = ASK_FOR_A_PERSON, before: tuple[str, ...] = ()) -> str:
    """A patient on the API channel says `before`, then `text`, until the conversation waits for
    staff; its pseudonymous key (the id the console uses)."""
    conversation = f"test-{uuid.uuid4().hex}"
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        for said in (*before, text, "yes"):
            resp = client.post("/api/messages", json={"conversation_id": conversation, "text": said})
            assert resp.status_code == 200, resp.text
            if said not in before and resp.json()["owner"] == "waiting_for_staff":
                return conversation_key(stack.secret, "api", conversation)
    raise AssertionError(f"no hand-off: {resp.json()}")


def appears(locator, timeout: int = LIVE_MS) -> bool:
    try:
        expect(locator).to_be_visible(timeout=timeout)
    except AssertionError:
        return False
    return True


def open_and_claim(page: Page, key: str) -> None:
    item = page.locator(ITEM.format(key)).first
    expect(item).to_be_visible(timeout=LIVE_MS)
    item.click()
    expect(page.get_by_test_id("packet")).to_be_visible()
    page.get_by_role("button", name="Claim", exact=True).click()
    expect(page.get_by_test_id("holder")).to_contain_text("You have")
    expect(page.get_by_label("Reply to the patient")).to_be_enabled()


def reply(page: Page, text: str) -> None:
    box = page.get_by_label("Reply to the patient")
    box.press_sequentially(text, delay=5)
    box.press("Enter")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("transcript").locator("[data-role=staff]").filter(has_text=text)).to_have_count(1)


def patient_types(page: Page, text: str) -> None:
    """The patient sends a message while staff own the conversation: acknowledged, no bot reply."""
    users = page.locator(USER_MESSAGES).count()
    box = page.get_by_test_id("careline-input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator(USER_MESSAGES).nth(users)).to_contain_text(text)
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)


def wait_for_sms(twilio, number: str, text: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [m.body for m in twilio.messages(to=number)]
        if any(text in body for body in bodies):
            return bodies
        time.sleep(0.2)
    raise AssertionError(f"no SMS with {text!r} to the patient; sent: {[m.body for m in twilio.messages(to=number)]}")


# --- 1. web chat: the whole flow --------------------------------------------------------------
def test_web_patient_and_agent(stack, browser, contexts, staff):
    agent = new_page(browser, contexts)
    agent.goto(f"{stack.gateway_url}/staff")
    agent.get_by_label("Email").fill(staff["sam"].email)
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_role("button", name="Log in").click()
    expect(agent.get_by_role("heading", name="Queue")).to_be_visible()
    expect(agent.locator("body[data-live=open]")).to_have_count(1, timeout=LIVE_MS)
    agent.evaluate("window.__notReloaded = true")

    patient = new_page(browser, contexts, {"width": 1024, "height": 768})
    patient.goto(f"{stack.gateway_url}/chat")
    send_and_wait(patient, ASK_FOR_A_PERSON)
    key = conversation_key(stack.secret, "web", storage(patient)["token"])
    item = agent.locator(f"#waiting {ITEM.format(key)}")
    if not appears(item):
        send_and_wait(patient, "yes")  # a bot that asks to confirm first

    # The hand-off appears in the agent's queue live, without a reload.
    expect(item).to_be_visible(timeout=LIVE_MS)
    assert agent.evaluate("window.__notReloaded === true")
    expect(item).to_contain_text("Web chat")

    open_and_claim(agent, key)
    expect(agent.locator(f"#assigned {ITEM.format(key)}")).to_be_visible(timeout=LIVE_MS)
    packet = agent.get_by_test_id("packet")
    expect(packet.locator("dt").first).to_have_text("Why")
    expect(packet.locator("dd").first).to_have_text(re.compile(r"\S"))
    expect(agent.get_by_test_id("transcript").locator("[data-role=user]").first).to_contain_text(ASK_FOR_A_PERSON)
    # the patient is told that a person joined
    expect(patient.locator(SYSTEM_BUBBLES).filter(has_text="Sam")).to_have_count(1, timeout=LIVE_MS)

    # Typing shows in the widget; the reply arrives there, named by its sender; typing clears.
    agent.get_by_label("Reply to the patient").press_sequentially("Hello, this is Sam", delay=20)
    expect(patient.get_by_test_id("careline-staff-typing")).to_contain_text("Sam", timeout=LIVE_MS)
    agent.get_by_label("Reply to the patient").press("Enter")
    staff_bubble = patient.locator(STAFF_BUBBLES).filter(has_text="Hello, this is Sam")
    expect(staff_bubble).to_have_count(1, timeout=LIVE_MS)
    expect(staff_bubble).to_contain_text("Sam (clinic staff)")
    expect(patient.get_by_test_id("careline-staff-typing")).to_have_text("")

    # The patient answers; the agent sees it live, and the bot stays quiet.
    bots = patient.locator(BOT_BUBBLES).count()
    patient_types(patient, "I have a question about my bill")
    expect(agent.get_by_test_id("transcript").locator("[data-role=user]").filter(has_text="my bill")).to_have_count(
        1, timeout=LIVE_MS
    )
    assert patient.locator(BOT_BUBBLES).count() == bots

    # Back to the assistant: the patient's next message gets a bot answer.
    agent.get_by_role("button", name="Return to assistant").click()
    expect(agent.get_by_test_id("status")).to_contain_text("assistant")
    expect(agent.get_by_test_id("transcript")).to_be_hidden()  # no longer the agent's to read
    expect(agent.locator(ITEM.format(key))).to_have_count(0, timeout=LIVE_MS)
    bots = patient.locator(BOT_BUBBLES).count()
    send_and_wait(patient, "what are your opening hours")
    expect(patient.locator(BOT_BUBBLES).nth(bots)).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    # the widget's transcript is the server's: the same after a reload
    shown = patient.locator("[data-testid=careline-msg]").all_inner_texts()
    patient.reload()
    expect(patient.locator("[data-testid=careline-msg]")).to_have_count(len(shown), timeout=REPLY_TIMEOUT_MS)


# --- 2. SMS through the Twilio stand-in ------------------------------------------------------
def test_sms_patient_and_agent(stack, twilio, browser, contexts, tokens):
    number = "+1555" + "".join(random.choice("0123456789") for _ in range(7))
    agent = console(stack, browser, contexts, tokens["sam"])

    key = conversation_key(stack.secret, "sms", number)
    item = agent.locator(ITEM.format(key))
    for text in (ASK_FOR_A_PERSON, "yes"):  # "yes": a bot that asks to confirm first
        resp = twilio.send_inbound(f"{stack.gateway_url}/sms/twilio", number, text)
        assert resp.status_code == 200, resp.text
        if appears(item):
            break
    expect(item).to_contain_text("SMS")

    open_and_claim(agent, key)
    # the number is masked to its last four digits
    shown = agent.get_by_test_id("patient-number")
    expect(shown).to_contain_text(number[-4:])
    expect(shown).not_to_contain_text(number[2:-4])
    # the reply box counts SMS segments, and says when a reply is longer than one page
    meter = agent.get_by_test_id("sms-meter")
    box = agent.get_by_label("Reply to the patient")
    box.fill("x" * 161)
    expect(meter).to_have_attribute("data-segments", "2")
    box.fill("é" * 10 + "ж")  # not GSM-7: UCS-2
    expect(meter).to_contain_text("UCS-2")
    box.fill("y" * 321)
    expect(meter).to_have_attribute("data-pages", "many")
    expect(meter).to_contain_text("MORE")
    box.fill("")

    reply(agent, "Hello, this is Sam")
    bodies = wait_for_sms(twilio, number, "Hello, this is Sam")
    assert any("Sam" in body and "Hello" not in body for body in bodies), "the patient was told Sam joined"

    # A supervisor sees who has it and each agent's load, and can reveal the number (audited).
    boss = console(stack, browser, contexts, tokens["pat"])
    expect(boss.get_by_test_id("load")).to_contain_text("Sam")
    boss.locator(ITEM.format(key)).click()
    expect(boss.get_by_test_id("holder")).to_contain_text("Sam has")
    expect(boss.get_by_test_id("patient-number")).not_to_contain_text(number[2:-4])
    boss.get_by_role("button", name="Reveal number").click()
    expect(boss.get_by_test_id("patient-number")).to_have_text(number)


# --- 3. an emergency jumps the queue ---------------------------------------------------------
def test_emergency_jumps_the_queue(stack, browser, contexts, tokens):
    agent = console(stack, browser, contexts, tokens["sam"])
    normal = api_handoff(stack)
    expect(agent.locator(ITEM.format(normal))).to_be_visible(timeout=LIVE_MS)
    beeps = int(agent.get_by_test_id("alerts").get_attribute("data-beeps") or 0)

    emergency = api_handoff(stack, EMERGENCY)
    expect(agent.locator(ITEM.format(emergency))).to_be_visible(timeout=LIVE_MS)
    order = agent.locator("#waiting [data-testid=queue-item]").evaluate_all("items => items.map(i => i.dataset.id)")
    assert order.index(emergency) < order.index(normal), "the later emergency is listed first"
    assert agent.locator(ITEM.format(emergency)).get_attribute("data-priority") in ("emergency", "crisis")
    expect(agent.locator(ITEM.format(emergency))).to_contain_text("Emergency")

    # announced (assertive live region) and beeped, as it arrived
    alerts = agent.get_by_test_id("alerts")
    expect(alerts).to_have_attribute("aria-live", "assertive")
    expect(alerts.locator(f"[data-testid=alert][data-id='{emergency}']")).to_be_visible()
    assert int(alerts.get_attribute("data-beeps") or 0) > beeps


def test_a_refused_session_returns_to_the_login_form(stack, browser, contexts, tokens):
    agent = console(stack, browser, contexts, tokens["pat"])
    agent.context.clear_cookies()  # as when the server ended it: the next request is refused (401)
    agent.get_by_label("My status").select_option("away")
    expect(agent.get_by_label("Email")).to_be_visible()
    expect(agent.get_by_test_id("login-message")).to_contain_text(re.compile("session ended", re.I))
    expect(agent.get_by_role("navigation", name="Queue")).to_be_hidden()


# --- 4. accessibility: axe-core --------------------------------------------------------------
def serious_violations(page: Page) -> list[str]:
    # the console's CSP refuses inline scripts, and add_script_tag is one: this context bypasses it
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_violations(stack, browser, contexts, tokens):
    login = new_page(browser, contexts, bypass_csp=True)
    login.goto(f"{stack.gateway_url}/staff")
    expect(login.get_by_label("Email")).to_be_visible()
    assert serious_violations(login) == []

    key = api_handoff(stack, before=("what are your hours on saturday",))
    agent = console(stack, browser, contexts, tokens["sam"], bypass_csp=True)
    open_and_claim(agent, key)
    reply(agent, "Hello, this is Sam")
    agent.locator("summary", has_text="Private notes").click()
    agent.get_by_label("New private note (not sent to the patient)").fill("Asked about Saturday hours.")
    agent.get_by_role("button", name="Add note").click()
    expect(agent.get_by_test_id("note")).to_have_count(1)
    assert serious_violations(agent) == []


# --- 5. layout: desktop and tablet -----------------------------------------------------------
@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1280x800", "768x1024"])
def test_layout(stack, browser, contexts, tokens, viewport, tmp_path):
    key = api_handoff(stack, before=("what are your hours on saturday",))
    agent = console(stack, browser, contexts, tokens["sam"], viewport)
    open_and_claim(agent, key)
    reply(agent, "Hello, this is Sam. Our Saturday hours are in the message above; anything else?")

    assert agent.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no horizontal scroll"
    box = agent.get_by_label("Reply to the patient").bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], f"reply box off screen: {box}"
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    if viewport == TABLET:
        queue = agent.locator("#queue").bounding_box()
        main = agent.locator("#conversation").bounding_box()
        assert queue and main and main["y"] >= queue["y"] + queue["height"] - 1, "the panes stack"
    else:
        # the newest message is in view
        last = agent.get_by_test_id("transcript").locator("[data-testid=transcript-item]").last
        expect(last).to_contain_text("anything else?")
        expect(last).to_be_in_viewport()
        docs = os.environ.get("CARELINE_DOCS_SCREENSHOTS") == "1"
        path = ROOT / "docs" / "staff-console.png" if docs else tmp_path / "staff-console.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        agent.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        # Opening the notes scrolls the pane; the transcript still shows its newest message.
        agent.locator("summary", has_text="Private notes").click()
        agent.get_by_label("New private note (not sent to the patient)").fill("Patient asked about Saturday hours.")
        agent.get_by_role("button", name="Add note").click()
        expect(agent.get_by_test_id("note")).to_have_count(1)
        expect(agent.get_by_test_id("note")).to_contain_text("not sent to the patient")
        transcript = agent.get_by_test_id("transcript")
        assert transcript.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight < 48")
