"""The admin index's "What needs you now" in a real browser (Debian's headless Chromium through
Playwright, against a live server), at a laptop's width (1280 px) and a phone's (390 px): the
ranked list above the fold with its countdowns ticking, who is on call, a Sev 1 declared
meanwhile (through the service, as another session would) appearing at the top without a
reload and highlighted as new, the "Updated" time moving on, the Notify button opting in and
then one browser notification for a Sev 2 declared meanwhile, no sideways page scroll, the rows
as cards with their Acknowledge button in reach on a phone; no console errors. Screenshots kept
(``screenshots`` fixture)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from incidents.models import Incident, Source
from incidents.services import incident_acknowledge, incident_create, incident_role_assign
from tests.browser import ARGS, BODY_FITS, OVERFLOWING, WIDTHS, sign_in, watch
from tests.factories import IncidentFactory, UserFactory

LIVE_WAIT_MS = 12_000  # the list asks every 5 s: two polls and some slack
# Records the browser notifications the page shows (title, body) in window.vigilNotes.
NOTIFICATION_SPY = """(() => {
    const Real = window.Notification;
    window.vigilNotes = [];
    function Spy(title, options) { window.vigilNotes.push([title, (options || {}).body]); }
    Object.defineProperty(Spy, "permission", { get: () => Real.permission });
    Spy.requestPermission = () => Real.requestPermission();
    window.Notification = Spy;
})();"""


def _meanwhile(action) -> None:
    """Run ``action`` as another session would, meanwhile: from a thread of its own
    (Playwright's event loop runs in the test's), committed before it returns."""

    def run() -> None:
        try:
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)


def _declare(title: str, severity: int) -> None:
    _meanwhile(
        lambda: incident_create(actor=None, source=Source.SYSTEM, title=title, severity=severity)
    )


def _acknowledge_all() -> None:
    def run() -> None:
        for incident in Incident.objects.filter(status="open", severity=1):
            incident_acknowledge(incident=incident, actor=None, source=Source.SYSTEM)

    _meanwhile(run)


# Committed data (the live server reads it from another thread); the seeded role groups and
# severity levels are restored afterwards for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_dashboard_is_live_and_fits_a_laptop_and_a_phone(live_server, chromium, screenshots):
    from playwright.sync_api import expect, sync_playwright

    cache.clear()
    manager = UserFactory(
        username="grace", first_name="Grace", last_name="Liu", groups=["Incident Manager"]
    )
    now = timezone.now()
    IncidentFactory(
        severity=3,
        title="Search results slow for customers in the EU region since the last deploy",
        detected_at=now - timedelta(minutes=10),
    )
    mine = IncidentFactory(severity=2, status="investigating", title="Card payments failing")
    incident_role_assign(
        incident=mine, role="incident_manager", user=manager, actor=None, source=Source.SYSTEM
    )
    base = live_server.url

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            for width in WIDTHS:
                phone = width < 768
                _acknowledge_all()  # the Sev 1 an earlier width declared
                context = browser.new_context(viewport={"width": width, "height": 900})
                page = context.new_page()
                errors = watch(page)
                sign_in(page, base, "grace")

                needs = page.locator("#vigil-needs")
                rows = needs.locator("li.vigil-need")
                expect(page.locator("#vigil-needs-heading")).to_have_text("What needs you now")
                expect(rows.first).to_contain_text("Not acknowledged")
                expect(rows.first).to_contain_text("Search results slow")
                expect(needs.locator("li.vigil-need-mine")).to_contain_text(
                    "You are Incident Manager"
                )
                expect(needs.locator("#index-panel-on-call")).to_contain_text("Incident Manager")
                # The countdown ticks from its deadline (the server wrote minutes).
                countdown = rows.first.locator(".vigil-countdown")
                expect(countdown).to_contain_text("left")
                expect(page.get_by_role("link", name="Refresh")).to_be_visible()
                # Above the fold: the first row and its action without scrolling.
                action = rows.first.locator(".vigil-need-action")
                expect(action).to_have_text(
                    "Acknowledge" + " " + rows.first.get_attribute("data-incident-number")
                )
                box = action.bounding_box()
                assert box["y"] + box["height"] <= 900, f"first action below the fold at {width} px"
                assert box["x"] + box["width"] <= width
                sideways = page.evaluate(OVERFLOWING, "body *")
                assert page.evaluate(BODY_FITS), f"scrolls sideways at {width} px: {sideways}"
                wide = page.evaluate(OVERFLOWING, "#vigil-needs *, #content-related *")
                assert wide == [], f"{wide} run off the page at {width} px"
                if phone:
                    # A card: the title above, the countdown and the action side by side below.
                    what = rows.first.locator(".vigil-need-what").bounding_box()
                    assert box["y"] > what["y"] + what["height"] - 1
                page.screenshot(path=screenshots / f"dashboard-{width}.png", full_page=True)

                # A Sev 1 declared meanwhile tops the list without a reload.
                updated = needs.locator(".vigil-needs-updated time").inner_text()
                title = f"Checkout down at {width} px"
                _declare(title, severity=1)
                first = page.locator("#vigil-needs li.vigil-need").first
                expect(first).to_contain_text(title, timeout=LIVE_WAIT_MS)
                expect(first).to_have_class(re.compile(r"\bvigil-need-new\b"))
                expect(first.locator(".vigil-sev-1")).to_be_visible()
                assert page.locator(".vigil-needs-updated time").inner_text() != updated
                assert page.evaluate(BODY_FITS), f"the live list scrolls sideways at {width} px"
                page.screenshot(path=screenshots / f"dashboard-live-{width}.png", full_page=True)

                assert errors == [], errors
                context.close()

            # The button appears where the browser can notify; a granted permission opts in.
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(["notifications"], origin=base)
            context.add_init_script(NOTIFICATION_SPY)
            page = context.new_page()
            errors = watch(page)
            sign_in(page, base, "grace")
            button = page.locator("[data-vigil-notify]")
            expect(button).to_have_text("Notify me of new Sev 1–2")
            button.click()
            expect(button).to_contain_text("Notifying you of new Sev 1–2")
            assert page.evaluate("localStorage.getItem('vigil.dashboard.notify-sev12')") == "on"
            # Opted in: a Sev 2 declared meanwhile is announced once; those listed at load are not.
            _declare("Login page returns errors", severity=2)
            page.wait_for_function("window.vigilNotes.length > 0", timeout=LIVE_WAIT_MS)
            page.wait_for_timeout(6_000)  # one more poll: no second notification
            notes = page.evaluate("window.vigilNotes")
            assert len(notes) == 1 and notes[0][0].startswith("Sev 2: INC-"), notes
            assert notes[0][1] == "Login page returns errors"
            assert errors == [], errors
            context.close()
        finally:
            browser.close()
