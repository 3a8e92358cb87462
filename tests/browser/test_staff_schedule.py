"""The schedule page (/staff/schedule) in real Chromium: a staff member logs in through the page,
books a patient into a free slot (search by name, pick the slot, confirm), sees the appointment in
the day view, cancels it with a reason, marks a past appointment a no-show; axe-core finds nothing
on the page, its booking dialog or its cancel dialog.

The gateway's own app (create_app) runs in uvicorn in a thread, with real services: staff sessions
in Redis, the staff audit and the SQL schedule in SQLite. No Rasa: the page does not talk to it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import axe_playwright_python
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect
from redis.asyncio import Redis

from careline.scheduling.sql import SqlScheduler
from careline.supervisor import free_port
from channels.db import make_engine
from channels.ratelimit import RateLimits
from channels.staff.accounts import StaffAccounts
from channels.staff.audit import StaffAudit
from channels.staff.auth import StaffAuth
from channels.staff.sessions import StaffSessions
from tests.integration.channels.staff.conftest import cheap_hasher
from tests.integration.channels.staff.test_staff_schedule import SECRET, ZONE, gateway, make_clinic

pytestmark = pytest.mark.browser

AXE_JS = Path(axe_playwright_python.__file__).parent / "axe.min.js"  # axe-core, bundled by the package
EMAIL, PASSWORD = "ann@clinic.org", "correct horse battery"
STEP_MS = 5_000


class Served:
    """The app in uvicorn on a free port, in a thread with its own event loop (its Redis client
    belongs to that loop)."""

    def __init__(self, engine, scheduler, redis_url: str, prefix: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.engine, self.scheduler, self.redis_url, self.prefix = engine, scheduler, redis_url, prefix
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        redis = Redis.from_url(self.redis_url)
        auth = StaffAuth(
            accounts=StaffAccounts(self.engine, hasher=cheap_hasher()),
            sessions=StaffSessions(redis, prefix=self.prefix, idle_seconds=600),
            audit=StaffAudit(self.engine),
            limits=RateLimits(self.redis_url, self.prefix, "1000/minute", "1000/minute", redis=redis),
            login_rate_limit="1000/minute",
        )
        app = gateway(auth, self.scheduler, self.prefix)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve()
        finally:
            keys = [k async for k in redis.scan_iter(f"{self.prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.server and self.server.started):
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def site(tmp_path, redis_url) -> Iterator[SimpleNamespace]:
    engine = make_engine(f"sqlite:///{tmp_path / 'careline.db'}")
    clinic = make_clinic(engine)
    StaffAccounts(engine, hasher=cheap_hasher()).add(EMAIL, "agent", PASSWORD, display_name="Ann")
    scheduler = SqlScheduler(engine, timezone=ZONE, secret=SECRET)
    jose = scheduler.create_patient("José O'Neil", date(1984, 5, 6), "+15552010101")
    mary = scheduler.create_patient("Mary Jones", date(1990, 1, 31), None)
    missed = scheduler.book(clinic.slots["lee_past"], mary.id, "new_patient", booked_by="staff:1")
    with Served(engine, scheduler, redis_url, f"t{uuid.uuid4().hex[:8]}") as served:
        yield SimpleNamespace(url=served.url, clinic=clinic, scheduler=scheduler, jose=jose, missed=missed)
    engine.dispose()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # the page's CSP refuses inline scripts, and axe goes in as one: this context bypasses it
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    yield context.new_page()
    context.close()


def violations(page: Page) -> list[str]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}" for v in result["violations"]]


def show_day(page: Page, day) -> None:
    page.get_by_label("Date", exact=True).fill(day.isoformat())
    expect(page.locator(f"table[data-day='{day.isoformat()}']")).to_be_visible(timeout=STEP_MS)


def test_book_see_cancel_and_mark_a_no_show(site, page):
    page.goto(f"{site.url}/staff/schedule")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    assert violations(page) == []
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("range-title")).to_be_focused(timeout=STEP_MS)

    # book: the free slot's Book button, the patient by name, confirm
    ahead = site.clinic.ahead
    show_day(page, ahead)
    slot = page.locator(f"[data-testid=slot][data-id='{site.clinic.slots['lee_9']}']")
    slot.get_by_role("button", name="Book").click()
    dialog = page.get_by_test_id("book-dialog")
    expect(dialog.get_by_label("Patient's name")).to_be_focused()
    dialog.get_by_label("Patient's name").fill("jose")
    dialog.get_by_label("Patient's name").press("Enter")
    dialog.get_by_label("José O'Neil", exact=False).check()
    expect(dialog.get_by_test_id("book-patient")).to_contain_text("José O'Neil")
    expect(dialog.locator("input[name=book-slot]:checked")).to_have_value(site.clinic.slots["lee_9"])
    assert violations(page) == []
    dialog.get_by_role("button", name="Confirm booking").click()
    expect(dialog).to_be_hidden(timeout=STEP_MS)
    expect(page.get_by_test_id("status")).to_contain_text("Booked: José O'Neil", timeout=STEP_MS)

    # the day view shows it, and the slot is no longer free
    row = page.locator("[data-testid=appointment]", has_text="José O'Neil")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("appointment-status")).to_have_text("Booked")
    expect(row.locator("time")).to_have_text("09:00–09:30")
    expect(slot).to_have_count(0)
    (booked,) = [a for a in site.scheduler.appointments_for(site.jose.id) if a.status == "booked"]
    assert booked.booked_by.startswith("staff:") and booked.visit_type == "new_patient"

    # cancel it, with a reason; the slot is free again
    row.get_by_role("button", name="Cancel").click()
    cancel = page.get_by_test_id("cancel-dialog")
    expect(cancel.get_by_label("Reason (kept with the appointment)")).to_be_focused()
    assert violations(page) == []
    cancel.get_by_label("Reason (kept with the appointment)").fill("Patient called to cancel")
    cancel.get_by_role("button", name="Cancel the appointment").click()
    expect(row.get_by_test_id("appointment-status")).to_have_text("Cancelled", timeout=STEP_MS)
    expect(slot).to_have_count(1)
    assert site.scheduler.appointment(booked.id).status == "cancelled"

    # a past appointment: no-show
    show_day(page, site.clinic.past)
    missed = page.locator(f"[data-testid=appointment][data-id='{site.missed.id}']")
    missed.get_by_role("button", name="No-show").click()
    expect(missed.get_by_test_id("appointment-status")).to_have_text("No-show", timeout=STEP_MS)
    assert site.scheduler.appointment(site.missed.id).status == "noshow"
    assert violations(page) == []


def test_move_the_week_view_and_the_keyboard(site, page):
    first = site.scheduler.book(site.clinic.slots["lee_10"], site.jose.id, "new_patient", booked_by="staff:1")
    page.goto(f"{site.url}/staff/schedule")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_test_id("range-title")).to_be_focused(timeout=STEP_MS)
    show_day(page, site.clinic.ahead)

    # move: the next day's free slot, picked in the dialog's own date
    page.locator(f"[data-testid=appointment][data-id='{first.id}']").get_by_role("button", name="Move").click()
    move = page.get_by_test_id("move-dialog")
    expect(move.get_by_label("Free slots on")).to_be_focused()
    move.get_by_label("Free slots on").fill((site.clinic.ahead + timedelta(days=1)).isoformat())
    move.get_by_label(re.compile("^09:00–09:30 · Dr. Ana Lee")).check()
    move.get_by_role("button", name="Move it").click()
    expect(move).to_be_hidden(timeout=STEP_MS)
    expect(page.get_by_test_id("status")).to_contain_text("Moved: José O'Neil", timeout=STEP_MS)
    (moved,) = site.scheduler.appointments_for(site.jose.id)
    assert moved.replaces_id == first.id and moved.slot_id == site.clinic.slots["lee_next_day"]

    show_day(page, site.clinic.ahead)  # the page went to the new day, which may be in the next week
    page.get_by_test_id("view-week").check()
    expect(page.get_by_test_id("range-title")).to_contain_text("Week of", timeout=STEP_MS)
    expect(page.locator("div.day")).to_have_count(7, timeout=STEP_MS)
    page.get_by_label("Provider").select_option("kim")
    expect(page.get_by_test_id("slot")).to_have_count(1, timeout=STEP_MS)
    # the booking dialog from the keyboard: Esc closes it, focus comes back
    page.get_by_role("button", name="Book an appointment").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Patient's name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("book-dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Book an appointment")).to_be_focused()
    assert violations(page) == []
