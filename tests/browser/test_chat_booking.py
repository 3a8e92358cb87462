"""Booking an appointment in the web chat, in a real browser: buttons for every choice, typed
answers for the patient's details, the add-to-calendar link, and axe on the page with the slots
shown."""

from __future__ import annotations

import random
import string

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_chat_page import MESSAGES, REPLIES, send_and_wait, wait_for_reply
from tests.browser.test_staff_console import serious_violations

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture
def page(browser: Browser):
    """A fresh context (its own conversation); CSP bypassed so axe-core can be injected."""
    context = browser.new_context(viewport={"width": 1024, "height": 768}, bypass_csp=True)
    yield context.new_page()
    context.close()


def tap(page: Page, title: str) -> None:
    """Press the newest enabled quick reply with this title and wait for the answer."""
    replies_before = page.locator(REPLIES).count()
    page.locator("[data-testid=careline-quick-reply]:enabled", has_text=title).last.click()
    wait_for_reply(page, replies_before)


def test_a_new_patient_books_with_buttons_and_gets_a_calendar_link(stack, page: Page):
    page.goto(f"{stack.gateway_url}/chat")
    send_and_wait(page, "I'd like to book a check-up")
    tap(page, "No, I'm new")
    tap(page, "Earliest available")
    slot = page.locator("[data-testid=careline-quick-reply]:enabled", has_text=" with ").first
    expect(slot).to_be_visible()
    assert serious_violations(page) == []
    replies_before = page.locator(REPLIES).count()
    slot.click()
    wait_for_reply(page, replies_before)
    name = "Web " + "".join(random.choice(string.ascii_lowercase) for _ in range(8)).capitalize()
    send_and_wait(page, name)
    send_and_wait(page, "08/21/1979")
    send_and_wait(page, "555 555 0190")
    tap(page, "Yes, book it")
    expect(page.locator(MESSAGES).filter(has_text="You're booked")).to_have_count(1)
    link = page.locator("[data-testid=careline-msg] a[href$='.ics']").last
    expect(link).to_be_visible()
    response = page.request.get(link.get_attribute("href"))
    assert response.status == 200 and b"BEGIN:VCALENDAR" in response.body()
