"""The web chat in a real browser against the running stack: /chat and the embeddable widget.

Needs the session fixture `stack` (tests/conftest.py) and Chromium at /usr/bin/chromium.
Assertions do not depend on the bot's wording: only that replies arrive, in the same conversation.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, WebSocketRoute, expect

pytestmark = [pytest.mark.browser, pytest.mark.stack]

TOKEN_KEY = "careline.conversation_token"
DEMO_PAGE = Path(__file__).resolve().parents[2] / "channels" / "static" / "demo-embed.html"
DEMO_WIDGET_SRC = "http://127.0.0.1:8000/widget.js"
REPLY_TIMEOUT_MS = 30_000  # a real Rasa turn, with actions, can take a few seconds

# Playwright's CSS engine pierces the widget's open shadow root.
MESSAGES = "[data-testid=careline-msg]"
USER_MESSAGES = "[data-testid=careline-msg][data-role=user]"
REPLIES = "[data-testid=careline-msg]:not([data-role=user])"
SETTLED = "[data-testid=careline-chat][data-connection=open][data-waiting=false]"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test: its own sessionStorage, so its own conversation."""
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    yield page
    context.close()


def send_and_wait(page: Page, text: str) -> None:
    """Type `text`, press Enter, and wait for the user bubble and at least one new reply."""
    replies_before = page.locator(REPLIES).count()
    users_before = page.locator(USER_MESSAGES).count()
    box = page.get_by_test_id("careline-input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator(USER_MESSAGES).nth(users_before)).to_contain_text(text)
    wait_for_reply(page, replies_before)


def wait_for_reply(page: Page, replies_before: int) -> None:
    expect(page.locator(REPLIES).nth(replies_before)).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)


def storage(page: Page) -> dict:
    return page.evaluate(f"() => ({{token: sessionStorage.getItem({TOKEN_KEY!r}), local: localStorage.length}})")


def texts(locator: Locator) -> list[str]:
    return [t.strip() for t in locator.all_inner_texts()]


def test_conversation_survives_a_reload(stack, page: Page):
    page.goto(f"{stack.gateway_url}/chat")
    expect(page).to_have_title(re.compile("CareLine"))
    expect(page.get_by_text("This chat is not for emergencies.")).to_be_visible()

    send_and_wait(page, "hello")
    expect(page.locator("[data-testid=careline-msg][data-role=bot]").first).to_be_visible()
    before = texts(page.locator(MESSAGES))
    first = storage(page)
    assert first["token"], "the conversation token is kept in sessionStorage"
    assert first["local"] == 0, "nothing is written to localStorage"

    page.reload()
    expect(page.locator(MESSAGES)).to_have_count(len(before), timeout=REPLY_TIMEOUT_MS)
    expect(page.locator(SETTLED)).to_have_count(1)
    assert texts(page.locator(MESSAGES)) == before

    send_and_wait(page, "what can you do")
    assert texts(page.locator(MESSAGES))[: len(before)] == before
    after = storage(page)
    assert after["token"] == first["token"]
    assert after["local"] == 0


def test_quick_replies(stack, page: Page):
    page.goto(f"{stack.gateway_url}/chat")
    send_and_wait(page, "hello")

    offering = [
        i
        for i, m in enumerate(page.locator(MESSAGES).all())
        if m.locator("[data-testid=careline-quick-reply]:enabled").count()
    ]
    if not offering:
        pytest.skip("the bot's reply had no quick-reply buttons")
    # Bubbles already shown stay in place, so this locator keeps pointing at the same message.
    answered = page.locator(MESSAGES).nth(offering[-1])
    first = answered.get_by_test_id("careline-quick-reply").first
    expect(first).to_have_js_property("tagName", "BUTTON")
    title = first.inner_text().strip()
    users_before = page.locator(USER_MESSAGES).count()
    replies_before = page.locator(REPLIES).count()
    first.click()

    # The patient sees the button's title (not its payload) as their own message.
    expect(page.locator(USER_MESSAGES).nth(users_before)).to_contain_text(title)
    wait_for_reply(page, replies_before)
    # The buttons of an answered message cannot be pressed again.
    for button in answered.get_by_test_id("careline-quick-reply").all():
        expect(button).to_be_disabled()


def test_keyboard_and_labels(stack, page: Page):
    page.goto(f"{stack.gateway_url}/chat")
    expect(page.get_by_role("log")).to_have_count(1)
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(log).to_have_accessible_name(re.compile(r"\S"))
    box = page.get_by_role("textbox")
    expect(box).to_have_accessible_name(re.compile(r"message", re.I))
    expect(box).to_have_attribute("maxlength", "2000")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

    # The input is reachable with Tab alone.
    for _ in range(10):
        page.keyboard.press("Tab")
        if box.evaluate("el => el.getRootNode().activeElement === el"):
            break
    expect(box).to_be_focused()

    # Shift+Enter is a new line; Enter sends.
    page.keyboard.type("hello")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("there")
    expect(box).to_have_value("hello\nthere")
    expect(page.locator(USER_MESSAGES)).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator(USER_MESSAGES)).to_have_count(1)
    expect(page.locator(USER_MESSAGES).first).to_contain_text("hello\nthere", use_inner_text=True)
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    wait_for_reply(page, 0)

    # 2000 characters at most, with a counter.
    box.fill("x" * 1999)
    page.keyboard.type("yz")
    expect(box).to_have_value("x" * 1999 + "y")
    expect(page.get_by_test_id("careline-counter")).to_have_text("2000 / 2000")


@pytest.fixture
def clinic_site(stack, embedding_site_port: int) -> Iterator[str]:
    """demo-embed.html, pointed at the stack's gateway, served from another origin.

    A real loopback server rather than `page.route`: Chromium's local-network-access checks block
    a page it cannot place on the network from loading scripts off 127.0.0.1.
    """
    demo = DEMO_PAGE.read_text(encoding="utf-8")
    assert DEMO_WIDGET_SRC in demo, "demo-embed.html embeds the widget with one script tag"
    body = demo.replace(DEMO_WIDGET_SRC, f"{stack.gateway_url}/widget.js").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    # the port of the origin the stack lists in ALLOWED_ORIGINS (tests/conftest.py)
    server = ThreadingHTTPServer(("127.0.0.1", embedding_site_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_floating_widget_on_another_site(stack, clinic_site: str, page: Page):
    page.goto(clinic_site)
    assert not clinic_site.startswith(stack.gateway_url)

    launcher = page.get_by_role("button", name="Chat with us")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(launcher).to_have_attribute("aria-controls", re.compile(r"\S"))
    expect(page.get_by_test_id("careline-transcript")).to_be_hidden()

    launcher.click()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text("Not for emergencies")).to_be_visible()
    expect(page.get_by_test_id("careline-input")).to_be_focused()

    send_and_wait(page, "hello")
    assert storage(page)["token"], "the token is kept in the embedding site's sessionStorage"

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(launcher).to_be_focused()


def test_narrow_screen(stack, page: Page):
    """At 320px the chat fits without sideways scrolling and the input stays usable."""
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(f"{stack.gateway_url}/chat")
    send_and_wait(page, "hello")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    box = page.get_by_test_id("careline-input").bounding_box()
    send = page.get_by_test_id("careline-send").bounding_box()
    assert box and send and box["width"] >= 150 and send["x"] + send["width"] <= 320


class FlakyLink:
    """Routes the chat's WebSocket through the test to the real gateway, to break it on cue."""

    def __init__(self, page: Page):
        self.sent: list[dict] = []  # every frame the page sent, in order
        self.connections = 0
        self.refuse = False  # close every new connection at once: the gateway is "down"
        self.lose_next_message = False  # cut the connection instead of delivering the next message
        self.cut_after_next_forward = False  # deliver the next message, then cut before any answer
        self.lose_next_ack = False  # let the gateway answer the next message, cut before the page sees it
        self.oversize_next_message = False  # make the next message longer than the gateway accepts
        page.route_web_socket(re.compile(r"/ws$"), self._connect)

    def _connect(self, page_side: WebSocketRoute) -> None:
        self.connections += 1
        if self.refuse:
            page_side.close(code=1012, reason="test: gateway down")
            return
        server = page_side.connect_to_server()
        state = {"open": True}

        def cut() -> None:
            state["open"] = False
            page_side.close(code=1012, reason="test: connection lost")

        def from_page(raw: str | bytes) -> None:
            frame = json.loads(raw)
            self.sent.append(frame)
            if not state["open"]:
                return
            if frame.get("type") == "message" and self.oversize_next_message:
                self.oversize_next_message = False
                raw = json.dumps({**frame, "text": "a" * 5_000})
            if frame.get("type") == "message" and self.lose_next_message:
                self.lose_next_message = False
                cut()
                return
            server.send(raw)
            if frame.get("type") == "message" and self.cut_after_next_forward:
                self.cut_after_next_forward = False
                cut()

        def from_server(raw: str | bytes) -> None:
            if not state["open"]:
                return
            if json.loads(raw).get("type") == "ack" and self.lose_next_ack:
                self.lose_next_ack = False
                cut()
                return
            page_side.send(raw)

        page_side.on_message(from_page)
        server.on_message(from_server)

    def message_ids(self) -> list[str]:
        return [f["client_message_id"] for f in self.sent if f.get("type") == "message"]


def assert_shows_the_server_transcript(page: Page, user_text: str) -> None:
    """One bubble for the message, and after a reload (the server's transcript) the same view."""
    expect(page.locator(USER_MESSAGES).filter(has_text=user_text)).to_have_count(1)
    shown = texts(page.locator(MESSAGES))
    page.reload()
    expect(page.locator(MESSAGES)).to_have_count(len(shown), timeout=REPLY_TIMEOUT_MS)
    expect(page.locator(SETTLED)).to_have_count(1)
    assert texts(page.locator(MESSAGES)) == shown


@pytest.mark.parametrize("failure", ["lose_next_message", "cut_after_next_forward", "lose_next_ack"])
def test_message_survives_a_dropped_connection(stack, page: Page, failure: str):
    link = FlakyLink(page)
    page.goto(f"{stack.gateway_url}/chat")
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

    setattr(link, failure, True)
    send_and_wait(page, "hello")

    assert link.connections >= 2, "the connection was cut and the chat reconnected"
    ids = link.message_ids()
    assert len(ids) >= 2 and len(set(ids)) == 1, "re-sent with the same client_message_id"
    assert_shows_the_server_transcript(page, "hello")


def test_message_typed_while_offline_is_sent_on_reconnect(stack, page: Page):
    link = FlakyLink(page)
    page.goto(f"{stack.gateway_url}/chat")
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

    # The next message frame is lost with its connection, and every reconnect is refused.
    link.refuse = True
    link.lose_next_message = True
    box = page.get_by_test_id("careline-input")
    box.fill("hello")
    box.press("Enter")
    expect(page.get_by_test_id("careline-status")).to_contain_text("Reconnecting")
    expect(page.locator(USER_MESSAGES)).to_have_count(1)
    expect(page.locator(USER_MESSAGES).first).to_contain_text("Waiting to send")

    link.refuse = False
    wait_for_reply(page, 0)
    expect(page.locator(USER_MESSAGES).first).not_to_contain_text("Waiting to send")
    assert len(set(link.message_ids())) == 1
    assert_shows_the_server_transcript(page, "hello")


def test_server_error_is_shown_politely(stack, page: Page):
    link = FlakyLink(page)
    page.goto(f"{stack.gateway_url}/chat")
    expect(page.locator(SETTLED)).to_have_count(1, timeout=REPLY_TIMEOUT_MS)

    link.oversize_next_message = True  # the gateway gets a message over its length limit
    box = page.get_by_test_id("careline-input")
    box.fill("hello")
    box.press("Enter")
    expect(page.get_by_test_id("careline-error")).to_contain_text("Sorry")
    expect(page.locator(USER_MESSAGES).first).to_contain_text("Not sent")
    expect(box).to_have_value("hello")  # the draft comes back to be edited and sent again
    expect(page.locator(SETTLED)).to_have_count(1)

    box.press("Enter")
    wait_for_reply(page, 0)
