"""The incident list's search, "mine" filter, SLA column and live rows: a search by ID, title
or person looks at every status (and says so) unless a status was chosen; "Show all" shows
all; the SLA column sorts by the next deadline and turns amber before red; htmx's poll gets
the rows alone; and none of it costs a query per row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from incidents.models import Source
from incidents.services import incident_create, incident_role_assign, incident_transition

pytestmark = pytest.mark.django_db

LIST = reverse("admin:incidents_incident_changelist")
NOTE = "Searched all statuses (the list shows active incidents by default)"
HTMX = {"HX-Request": "true"}


def shown(response) -> list[str]:
    return [incident.number for incident in response.context["cl"].result_list]


def assign(incident, role: str, user) -> None:
    incident_role_assign(incident=incident, role=role, user=user, actor=None, source=Source.SYSTEM)


@pytest.fixture
def grace(make_user):
    return make_user("Technical Lead", username="gliu", first_name="Grace", last_name="Liu")


# --- search -----------------------------------------------------------------------------------


def test_searching_an_id_finds_a_closed_incident_and_says_the_view_widened(
    client, viewer, make_incident
):
    closed = make_incident(status="closed", title="Checkout 502s")
    make_incident(title="Unrelated")
    client.force_login(viewer)

    default = client.get(LIST)
    response = client.get(LIST, {"q": closed.number})

    assert closed.number not in shown(default)
    assert shown(response) == [closed.number]
    html = response.content.decode()
    assert NOTE in html
    assert NOTE not in default.content.decode()
    # The status filter says what was searched: every status.
    assert response.context["cl"].status_shown == "all"
    assert re.search(r'<li class="selected">\s*<a href="[^"]*status=all', html)


@pytest.mark.parametrize("status", ["open", "resolved", "closed", "cancelled"])
def test_searching_title_words_looks_at_every_status(client, viewer, make_incident, status):
    found = make_incident(status=status, title="Payments API timing out")
    make_incident(title="Search slow")
    client.force_login(viewer)

    response = client.get(LIST, {"q": "payments timing"})

    assert shown(response) == [found.number]
    assert NOTE in response.content.decode()


@pytest.mark.parametrize("term", ["gliu", "grace", "Liu", "grace liu"])
def test_searching_a_persons_name_finds_the_incidents_they_hold_a_role_on(
    client, viewer, grace, incident_manager, make_incident, term
):
    led = make_incident(title="Database failover")
    assign(led, "technical_lead", grace)
    also = make_incident(title="Login errors")
    assign(also, "incident_manager", incident_manager)
    assign(also, "technical_lead", grace)
    earlier = make_incident(title="Queue backlog")
    assign(earlier, "technical_lead", grace)
    earlier = _resolve(earlier)
    make_incident(title="Nobody's")
    client.force_login(viewer)

    response = client.get(LIST, {"q": term})

    # Each once, whatever the number of roles the person holds; resolved ones too.
    assert sorted(shown(response)) == sorted([led.number, also.number, earlier.number])
    assert NOTE in response.content.decode()


def test_a_chosen_status_is_kept_during_a_search(client, viewer, make_incident):
    closed = make_incident(status="closed", title="Payments down")
    open_ = make_incident(title="Payments slow")
    client.force_login(viewer)

    active = client.get(LIST, {"q": "payments", "status": "active"})
    only_closed = client.get(LIST, {"q": "payments", "status": "closed"})

    assert shown(active) == [open_.number]
    assert shown(only_closed) == [closed.number]
    assert NOTE not in active.content.decode()
    assert NOTE not in only_closed.content.decode()


def test_the_status_filters_active_link_stays_active_during_a_search(client, viewer, make_incident):
    make_incident(title="Payments down")
    client.force_login(viewer)

    html = client.get(LIST, {"q": "payments"}).content.decode()

    # Without the parameter a search means every status, so "Active" has to say it.
    assert re.search(r'href="\?q=payments&amp;status=active">Active<', html)


def test_show_all_shows_every_status(client, viewer, make_incident):
    active = make_incident()
    closed = make_incident(status="closed")
    client.force_login(viewer)

    page = client.get(LIST, {"q": "incident"})
    [link] = re.findall(
        r'<a href="([^"]*)" class="vigil-show-all">Show all</a>', page.content.decode()
    )
    everything = client.get(LIST + link.replace("&amp;", "&"))

    assert set(shown(everything)) == {active.number, closed.number}
    assert NOTE not in everything.content.decode()
    # Once everything is shown, nothing more to show.
    assert "vigil-show-all" not in everything.content.decode()


def test_the_paginators_show_all_says_it_shows_every_row_of_the_view(
    client, viewer, make_incident, monkeypatch
):
    from incidents.admin.incident import IncidentAdmin

    monkeypatch.setattr(IncidentAdmin, "list_per_page", 2)
    for _ in range(3):
        make_incident()
    client.force_login(viewer)

    html = client.get(LIST).content.decode()
    every_row = client.get(LIST, {"all": ""})

    assert 'class="showall">All 3 on one page</a>' in html
    assert len(shown(every_row)) == 3


def test_the_admin_search_refuses_nothing_it_used_to_find(client, viewer, make_incident):
    payments = make_incident(title="Payments API timing out")
    http = make_incident(title="Search returns HTTP 500")
    client.force_login(viewer)

    assert shown(client.get(LIST, {"q": payments.number.lower()})) == [payments.number]
    assert len(shown(client.get(LIST, {"q": payments.number[4:13]}))) == 2
    assert shown(client.get(LIST, {"q": '"returns HTTP"'})) == [http.number]
    assert shown(client.get(LIST, {"q": "500"})) == [http.number]
    assert shown(client.get(LIST, {"q": "nothing-like-this"})) == []
    assert len(shown(client.get(LIST, {"q": '"" payments'}))) == 1


# --- mine ---------------------------------------------------------------------------------------


def test_mine_lists_incidents_where_i_hold_a_role_or_that_i_declared(
    client, grace, incident_manager, make_incident
):
    held = make_incident(title="Held")
    assign(held, "technical_lead", grace)
    declared = incident_create(
        actor=grace, source=Source.ADMIN, title="Declared by Grace", severity=3
    )
    others = make_incident(title="Someone else's")
    assign(others, "incident_manager", incident_manager)
    make_incident(title="Nobody's")
    client.force_login(grace)

    response = client.get(LIST, {"mine": "yes"})

    assert sorted(shown(response)) == sorted([held.number, declared.number])
    assert others.number not in shown(response)
    assert client.get(LIST, {"mine": "bogus"}).status_code == 302


def test_mine_is_a_quick_link_and_a_filter(client, grace, make_incident):
    make_incident()
    client.force_login(grace)

    page = client.get(LIST)
    mine = client.get(LIST, {"mine": "yes"})

    html = page.content.decode()
    assert re.search(
        r'<nav class="vigil-quick-links"[^>]*>.*href="\?mine=yes">Mine</a>', html, re.S
    )
    assert "By involvement" in html
    links = {link.label: link for link in mine.context["cl"].quick_links}
    assert links["Mine"].selected and links["Mine"].url == "?"
    assert links["Active"].selected and not links["All statuses"].selected


# --- SLA ----------------------------------------------------------------------------------------


def _resolve(incident):
    for action in ("acknowledge", "investigate", "resolve"):
        extra = {"resolution": "Rolled back."} if action == "resolve" else {}
        incident = incident_transition(
            incident=incident, action=action, actor=None, source=Source.SYSTEM, **extra
        )
    return incident


def test_the_sla_column_sorts_by_the_next_deadline(client, viewer, make_incident):
    now = timezone.now()
    # Response due in 5 min; response due in 50 min; resolution due in ~4 h; none.
    sev1_open = make_incident(severity=1, detected_at=now - timedelta(minutes=10))
    sev2_open = make_incident(severity=2, detected_at=now - timedelta(minutes=10))
    sev1_acked = make_incident(
        severity=1, status="acknowledged", detected_at=now - timedelta(minutes=1)
    )
    resolved = _resolve(make_incident(severity=1))
    client.force_login(viewer)

    first = client.get(LIST, {"status": "all"})
    column = first.context["cl"].list_display.index("sla")
    ascending = client.get(LIST, {"status": "all", "o": str(column)})
    descending = client.get(LIST, {"status": "all", "o": f"-{column}"})

    order = [sev1_open.number, sev2_open.number, sev1_acked.number]
    assert shown(ascending) == [*order, resolved.number]
    # Ended incidents have no deadline: last either way.
    assert shown(descending) == [*reversed(order), resolved.number]
    assert 'class="sortable column-sla' in first.content.decode()


@pytest.mark.parametrize(
    ("minutes", "state", "words"),
    [
        (30, "running", "to response"),
        (46, "approaching", "to response · due soon"),
        (61, "breached", "Breached"),
    ],
)
def test_the_sla_turns_amber_before_it_turns_red(
    client, viewer, make_incident, minutes, state, words
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_incident(severity=2)  # response target 1 h: amber under 15 min left
    client.force_login(viewer)

    with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
        html = client.get(LIST).content.decode()

    cell = re.search(r'<td class="field-sla">(.*?)</td>', html, re.S).group(1)
    assert f"vigil-clock-{state}" in cell
    assert words in cell
    others = {"running", "approaching", "breached"} - {state}
    assert not any(f"vigil-clock-{other}" in cell for other in others)


# --- live -----------------------------------------------------------------------------------------


def test_the_list_polls_its_own_url_and_htmx_gets_the_rows_alone(client, viewer, make_incident):
    shown_incident = make_incident(title="Payments down", status="closed")
    client.force_login(viewer)
    query = {"q": "payments", "status": "closed"}

    page = client.get(LIST, query)
    fragment = client.get(LIST, query, headers=HTMX)

    html = page.content.decode()
    assert 'id="vigil-live-list"' in html
    assert 'hx-get="/admin/incidents/incident/?q=payments&amp;status=closed"' in html
    assert 'hx-select="#vigil-live-list"' in html
    assert re.search(r"Updated <time[^>]*>\d\d:\d\d:\d\d</time>", html)
    assert "incidents/incident-list.js" in html
    body = fragment.content.decode()
    assert fragment.status_code == 200
    assert body.lstrip().startswith('<div id="vigil-live-list"')
    assert shown_incident.number in body and "<html" not in body
    assert "changelist-filter" not in body  # the rows alone, their paginator and count
    assert '<p class="paginator">' in body
    assert '<span class="small quiet" id="vigil-result-count">1 result' in body
    assert 'hx-select-oob="#vigil-result-count"' in html
    for response in (page, fragment):
        assert "HX-Request" in response["Vary"]


def test_the_list_works_as_a_plain_page(client, viewer, make_incident):
    make_incident()
    client.force_login(viewer)

    html = client.get(LIST).content.decode()

    assert 'class="vigil-live-refresh">Refresh</a>' in html
    assert "<noscript" not in html  # nothing hidden behind JavaScript


def test_htmx_history_restore_gets_the_whole_page(client, viewer, make_incident):
    make_incident()
    client.force_login(viewer)

    response = client.get(LIST, headers={**HTMX, "HX-History-Restore-Request": "true"})

    assert "<html" in response.content.decode()


# --- queries ------------------------------------------------------------------------------------


def _crowd(count: int, grace, incident_manager, make_incident) -> None:
    for n in range(count):
        incident = make_incident(severity=1 + n % 4, services=["checkout"])
        assign(incident, "incident_manager", incident_manager)
        assign(incident, "technical_lead", grace)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"status": "all"},
        {"q": "grace"},
        {"q": "incident"},
        {"mine": "yes"},
        {"status": "all", "o": "sla"},
    ],
    ids=["active", "all", "person", "title", "mine", "sla"],
)
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_list_queries_do_not_grow_with_rows(
    client,
    grace,
    incident_manager,
    make_incident,
    service,
    django_assert_max_num_queries,
    params,
    htmx,
):
    client.force_login(grace)
    headers = HTMX if htmx else {}

    def url_params() -> dict[str, str]:
        if params.get("o") != "sla":
            return params
        column = client.get(LIST).context["cl"].list_display.index("sla")
        return {**params, "o": str(column)}

    _crowd(3, grace, incident_manager, make_incident)
    query = url_params()
    client.get(LIST, query, headers=headers)  # warm the content-type and session caches
    with django_assert_max_num_queries(12) as few:
        assert len(shown(client.get(LIST, query, headers=headers))) == 3
    _crowd(27, grace, incident_manager, make_incident)
    with django_assert_max_num_queries(len(few)) as many:
        assert len(shown(client.get(LIST, query, headers=headers))) == 30

    assert len(many) == len(few)
