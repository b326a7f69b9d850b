"""The status page in a real browser: Debian's headless Chromium driven by Playwright against a
live server, at desktop (1280x800) and phone (390x844) width, light and dark. No console
errors, no horizontal scrolling on a phone, every text at 4.5:1 contrast or more, a visible
keyboard focus; screenshots are kept (``VIGIL_SCREENSHOT_DIR``, else the test's tmp dir).

Skipped, with the reason, where Chromium is not installed (``apt-get install chromium``; the
CI installs it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from communications.markdown import markdown_to_html
from communications.models import ComponentGroup, Maintenance, StatusUpdate, StatusUpdateComponent
from communications.public import site
from communications.services.components import component_create, component_status_set
from tests.browser import ARGS, CHROMIUM
from tests.factories import IncidentFactory, ServiceFactory, UserFactory

# Skipped without Chromium, failed under CI (tests.browser).
pytestmark = pytest.mark.usefixtures("chromium")
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}

# Every element with its own text: its colour against the first opaque background up the tree.
CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c;
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || style.visibility === "hidden" || el.closest(".visually-hidden, .skip")) continue;
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) failures.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return failures;
}
"""


@pytest.fixture
def status_site(transactional_db):
    """A page with a bit of everything: groups, a degraded component, a bad day in the uptime,
    an active incident with two updates, a resolved one and upcoming maintenance."""
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0
    admin = UserFactory(username="root", is_superuser=True)
    payments = ComponentGroup.objects.create(name="Payments", position=1)
    start = timezone.now() - timedelta(days=120)
    components = {}
    for slug, name, group in [
        ("checkout", "Checkout", payments),
        ("refunds", "Refunds and chargebacks processing", payments),
        ("api", "Public API", None),
        ("web", "Website", None),
    ]:
        components[slug] = component_create(
            service=ServiceFactory(slug=slug, public_name=name),
            actor=admin,
            group=group,
            start_date=start.date(),
            at=start,
        )
    # Five hours from 09:00 on a day twelve days back: within one day of the uptime bars,
    # whatever the hour the test runs at.
    bad_day = timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0)
    bad_day -= timedelta(days=12)
    api = components["api"]
    component_status_set(component=api, status="major_outage", actor=admin, at=bad_day)
    component_status_set(
        component=api, status="operational", actor=admin, at=bad_day + timedelta(hours=5)
    )
    incident = IncidentFactory(title="internal", status="acknowledged")
    first = "Some card payments **fail**. We are investigating."
    second = "A provider's outage; we route around it.\n\n- retry failed payments\n- refunds work"
    for minutes, status, body, affected in [
        (50, "investigating", first, "degraded_performance"),
        (20, "identified", second, None),
    ]:
        update = StatusUpdate.objects.create(
            incident=incident, public_title="Card payments failing for some customers",
            public_status=status, body=body, body_html=markdown_to_html(body),
            state="published", published_at=timezone.now() - timedelta(minutes=minutes),
        )  # fmt: skip
        if affected:
            StatusUpdateComponent.objects.create(
                status_update=update, component=components["checkout"], new_status=affected,
                old_status="operational",
            )  # fmt: skip
            component_status_set(
                component=components["checkout"], status=affected, actor=admin,
                status_update=update,
            )  # fmt: skip
    resolved = IncidentFactory(title="internal 2", status="resolved")
    StatusUpdate.objects.create(
        incident=resolved, public_title="Slow website", public_status="resolved",
        body="Fixed.", body_html="<p>Fixed.</p>", state="published",
        published_at=timezone.now() - timedelta(days=3),
    )  # fmt: skip
    maintenance = Maintenance.objects.create(
        title="Database upgrade",
        body="A short read-only window.",
        body_html=markdown_to_html("A short read-only window."),
        scheduled_for=timezone.now() + timedelta(days=2),
        scheduled_until=timezone.now() + timedelta(days=2, hours=1),
    )
    maintenance.components.add(components["api"])
    site.site_refresh(export=False)
    yield incident
    cache.clear()
    site._local.update(files=None, at=0.0)
    site._cache_down["until"] = 0.0


def _errors_of(page) -> list[str]:
    """The page's console errors, uncaught exceptions and failed requests, as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return errors


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_page_in_chromium_at_desktop_and_phone_width(live_server, status_site, screenshots):
    from playwright.sync_api import sync_playwright

    incident_path = f"/status/incidents/{status_site.number}.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for scheme in ("light", "dark"):
                for size, (width, height) in SIZES.items():
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme=scheme
                    )
                    page = context.new_page()
                    errors = _errors_of(page)
                    for name, path in [("index", "/status/"), ("incident", incident_path)]:
                        response = page.goto(live_server.url + path)
                        assert response.status == 200
                        assert page.locator("header").count() == 1
                        assert page.locator("main").count() == 1
                        assert page.locator("footer").count() == 1
                        overflow = page.evaluate(
                            "document.documentElement.scrollWidth - window.innerWidth"
                        )
                        assert overflow <= 0, (name, size, scheme, overflow)
                        assert page.evaluate(CONTRAST_JS) == [], (name, size, scheme)
                        page.screenshot(
                            path=screenshots / f"status-{name}-{size}-{scheme}.png", full_page=True
                        )
                    assert errors == [], (size, scheme)
                    context.close()

            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(live_server.url + "/status/")
            assert "Partial System Outage" not in page.inner_text(".banner")
            assert page.inner_text(".banner") == "Minor Service Outage"
            assert page.locator("svg.bars").count() == 4
            assert page.locator("svg.bars rect").count() == 4 * 90
            assert "5 h major outage" in page.content()
            # Keyboard: the first Tab reaches the skip link, visibly focused; following it
            # moves the focus to the main content.
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.className") == "skip"
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none"
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "main"
            # Without JavaScript the page is the same.
            no_js = browser.new_context(java_script_enabled=False).new_page()
            no_js.goto(live_server.url + "/status/")
            assert "Card payments failing for some customers" in no_js.inner_text("main")
        finally:
            browser.close()
