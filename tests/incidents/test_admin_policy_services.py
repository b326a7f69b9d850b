"""The policy pages of the admin write through the catalogue services, the API's too: the same
permission check, the same validation and the same audited history row naming the actor."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django import forms
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from escalation.models import EscalationStep
from incidents.errors import InvalidInput
from incidents.models import (
    AlertRule,
    Contact,
    EscalationContact,
    Integration,
    PriorityMatrixCell,
    ResponseRole,
    SeverityLevel,
    Source,
)
from incidents.services.catalog import (
    RowInUse,
    contact_create,
    contact_delete,
    escalation_contact_delete,
)
from tests.incidents.detection_fixtures import make_integration

pytestmark = pytest.mark.django_db


# --- helpers -------------------------------------------------------------------------------------


def admin_url(model, name: str, *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=args)


def form_data(client, url: str, **overrides) -> dict[str, object]:
    """The admin form of ``url`` as the page would post it back, unchanged unless overridden."""
    page = client.get(url)
    assert page.status_code == 200
    forms_shown = [page.context["adminform"].form]
    for inline in page.context.get("inline_admin_formsets", []):
        forms_shown += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, object] = {}
    for form in forms_shown:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field, forms.BooleanField):
                if value:
                    data[form.add_prefix(name)] = "on"
                continue
            data[form.add_prefix(name)] = "" if value is None else value
            if field.show_hidden_initial:  # a callable default: the page posts it back too
                data[form.add_initial_prefix(name)] = data[form.add_prefix(name)]
    data.update(overrides)
    data["_save"] = "Save"
    return data


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def latest(row):
    return row.history.latest("history_id")


def audit(record) -> tuple:
    """What a history record says: kind, author, and the fields it changed."""
    previous = record.prev_record
    fields = sorted(record.diff_against(previous).changed_fields) if previous else []
    return record.history_type, record.history_user, fields


@pytest.fixture(autouse=True)
def seeded_history(db):
    """The migrations seed the policy without history; give each seeded row its first record,
    so an edit's record has one to be compared with."""
    for model in (SeverityLevel, PriorityMatrixCell, ResponseRole, EscalationContact):
        model.history.bulk_history_create(model.objects.all(), default_change_reason="seeded")
    EscalationStep.history.bulk_history_create(
        EscalationStep.objects.all(), default_change_reason="seeded"
    )


@pytest.fixture
def staff_with(make_user):
    def make(*perms: str, username: str = "staff"):
        user = make_user(username=username)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return make


@pytest.fixture
def contact(db):
    return contact_create(actor=None, source=Source.SYSTEM, name="Dana", email="dana@example.com")


# --- an edit leaves a history row naming the editor ---------------------------------------------


def test_a_contact_edited_in_the_admin_is_saved_by_the_service_naming_the_editor(
    client, incident_manager, contact
):
    client.force_login(incident_manager)  # the Incident Manager group may change contacts
    url = admin_url(Contact, "change", contact.pk)

    response = client.post(url, form_data(client, url, phone="+14155550100"))

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.phone == "+14155550100"
    record = latest(contact)
    assert audit(record) == ("~", incident_manager, ["phone"])
    assert record.history_change_reason == "updated phone via admin"


def test_adding_and_deleting_a_contact_go_through_the_services(client, staff_with):
    user = staff_with("incidents.add_contact", "incidents.delete_contact", "incidents.view_contact")
    client.force_login(user)

    added = client.post(
        admin_url(Contact, "add"),
        {"name": "Eli", "email": "eli@example.com", "phone": "", "slack_handle": "", "user": ""},
    )
    contact = Contact.objects.get(name="Eli")
    deleted = client.post(admin_url(Contact, "delete", contact.pk), {"post": "yes"})

    assert (added.status_code, deleted.status_code) == (302, 302)
    assert not Contact.objects.filter(pk=contact.pk).exists()
    created, gone = Contact.history.filter(id=contact.pk).order_by("history_id")
    assert (created.history_type, created.history_user) == ("+", user)
    assert created.history_change_reason == "created via admin"
    assert (gone.history_type, gone.history_user) == ("-", user)
    assert gone.history_change_reason == "deleted via admin"


def test_an_escalation_step_edited_in_the_admin_is_audited(client, superuser):
    step = EscalationStep.objects.get(severity_id=1, elapsed=timedelta(minutes=30))
    client.force_login(superuser)
    url = admin_url(EscalationStep, "change", step.pk)
    cto = EscalationContact.objects.get(key="cto")

    response = client.post(url, form_data(client, url, target=str(cto.pk)))

    assert response.status_code == 302
    step.refresh_from_db()
    assert step.target == cto
    assert audit(latest(step)) == ("~", superuser, ["target"])
    assert latest(step).history_change_reason == "updated target via admin"


def test_an_alert_rule_edited_in_the_admin_is_audited(client, superuser):
    rule = AlertRule.objects.get(key="error_rate")
    records = rule.history.count()
    client.force_login(superuser)
    url = admin_url(AlertRule, "change", rule.pk)

    response = client.post(url, form_data(client, url, threshold="10", enabled=""))

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.enabled) == (10, False)
    assert rule.history.count() == records + 1
    record = latest(rule)
    assert (record.history_user, record.history_change_reason) == (
        superuser,
        "updated threshold, enabled via admin",
    )


# --- no permission: 403 and nothing changes -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "lookup", "change"),
    [
        (SeverityLevel, {"level": 2}, {"name": "Renamed"}),
        (PriorityMatrixCell, {"urgency": "low", "impact": "low"}, {"priority": "1"}),
        (ResponseRole, {"key": "technical_lead"}, {"name": "Renamed"}),
        (EscalationContact, {"key": "cto"}, {"name": "Renamed"}),
        (EscalationStep, {"severity_id": 2, "elapsed": timedelta(hours=1)}, {"elapsed": "0:45:00"}),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_without_the_change_permission_a_post_is_403_and_changes_nothing(
    client, viewer, superuser, model, lookup, change
):
    row = model.objects.get(**lookup)
    url = admin_url(model, "change", row.pk)
    client.force_login(superuser)
    data = form_data(client, url, **change)
    records = row.history.count()
    client.force_login(viewer)  # may view every policy table, change none

    response = client.post(url, data)

    assert response.status_code == 403
    assert row.history.count() == records
    fresh = model.objects.get(pk=row.pk)
    assert [getattr(fresh, f.attname) for f in model._meta.concrete_fields] == [
        getattr(row, f.attname) for f in model._meta.concrete_fields
    ]


def test_a_contact_post_without_the_change_permission_is_403(client, viewer, contact):
    client.force_login(viewer)
    url = admin_url(Contact, "change", contact.pk)

    response = client.post(url, {"name": "Mallory", "email": "m@example.com", "_save": "Save"})

    assert response.status_code == 403
    contact.refresh_from_db()
    assert contact.name == "Dana"
    assert contact.history.count() == 1


# --- invalid input: a form error and nothing changes --------------------------------------------


def test_a_contact_with_no_way_to_reach_it_is_a_form_error(client, incident_manager, contact):
    client.force_login(incident_manager)
    url = admin_url(Contact, "change", contact.pk)

    response = client.post(url, form_data(client, url, email=""))

    assert response.status_code == 200
    assert "at least one of phone, email or Slack" in str(response.context["adminform"].form.errors)
    contact.refresh_from_db()
    assert contact.email == "dana@example.com"
    assert contact.history.count() == 1


def test_a_refusal_of_the_service_shows_on_the_field_and_changes_nothing(
    client, incident_manager, contact, monkeypatch
):
    """Whatever the service refuses (not only what the model form checks) comes back as a
    form error on the field it names, and the admin's transaction is rolled back."""

    def refuse(**kwargs):
        raise InvalidInput({"phone": "Numbers outside the company plan are refused."})

    model_admin = admin.site._registry[Contact]
    monkeypatch.setattr(
        model_admin, "write_services", replace(model_admin.write_services, update=refuse)
    )
    client.force_login(incident_manager)
    url = admin_url(Contact, "change", contact.pk)

    response = client.post(url, form_data(client, url, phone="+14155550100"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["phone"] == ["Numbers outside the company plan are refused."]
    contact.refresh_from_db()
    assert contact.phone == ""


def test_a_negative_or_duplicate_escalation_step_is_a_form_error(client, superuser):
    step = EscalationStep.objects.get(severity_id=1, elapsed=timedelta(minutes=30))
    client.force_login(superuser)
    url = admin_url(EscalationStep, "change", step.pk)

    negative = client.post(url, form_data(client, url, elapsed="-1:00:00"))
    taken = client.post(url, form_data(client, url, elapsed="1:00:00"))  # the CTO step's time

    assert "cannot be negative" in str(negative.context["adminform"].form.errors)
    assert "already exists" in str(taken.context["adminform"].form.errors)
    step.refresh_from_db()
    assert step.elapsed == timedelta(minutes=30)
    assert step.history.count() == 1


def test_a_priority_out_of_range_is_a_form_error(client, superuser):
    cell = PriorityMatrixCell.objects.get(urgency="low", impact="low")
    client.force_login(superuser)
    url = admin_url(PriorityMatrixCell, "change", cell.pk)

    response = client.post(url, form_data(client, url, priority="7"))

    assert response.status_code == 200
    assert "priority" in response.context["adminform"].form.errors
    cell.refresh_from_db()
    assert (cell.priority, cell.history.count()) == (4, 1)


def test_a_refusal_on_the_priority_matrix_list_rolls_the_whole_list_back(
    client, superuser, monkeypatch
):
    calls = []

    def refuse_the_second(*, cell, actor, source, priority):
        calls.append(cell.pk)
        if len(calls) == 2:
            raise InvalidInput({"priority": "Refused."})
        return original(cell=cell, actor=actor, source=source, priority=priority)

    model_admin = admin.site._registry[PriorityMatrixCell]
    original = model_admin.write_services.update
    monkeypatch.setattr(
        model_admin,
        "write_services",
        replace(model_admin.write_services, update=refuse_the_second),
    )
    client.force_login(superuser)
    url = admin_url(PriorityMatrixCell, "changelist")
    cells = list(client.get(url).context["cl"].result_list)
    data = {
        "form-TOTAL_FORMS": str(len(cells)),
        "form-INITIAL_FORMS": str(len(cells)),
        "_save": "Save",
    }
    for index, cell in enumerate(cells):
        data[f"form-{index}-id"] = str(cell.pk)
        data[f"form-{index}-priority"] = "4" if index < 2 else str(cell.priority)

    response = client.post(url, data)

    assert response.status_code == 302
    assert messages_of(response) == ["Nothing changed: priority: Refused."]
    assert [c.priority for c in PriorityMatrixCell.objects.filter(pk__in=calls)] == [
        c.priority for c in cells[:2]
    ]
    assert all(c.history.count() == 1 for c in PriorityMatrixCell.objects.all())


def test_a_level_the_matrix_uses_is_not_deleted(client, superuser):
    level = EscalationContact.objects.get(key="cto")
    client.force_login(superuser)

    response = client.post(admin_url(EscalationContact, "delete", level.pk), {"post": "yes"})

    assert response.status_code == 200  # Django's "Cannot delete" page lists the steps
    assert "Sev 1 after 1:00:00: CTO" in response.content.decode()
    assert EscalationContact.objects.filter(pk=level.pk).exists()
    with pytest.raises(RowInUse, match="The escalation matrix uses this level"):
        escalation_contact_delete(escalation_contact=level, actor=superuser, source=Source.API)


def test_a_delete_the_service_refuses_is_a_message_and_deletes_nothing(
    client, superuser, contact, monkeypatch
):
    def refuse(**kwargs):
        raise RowInUse({"non_field_errors": "Still on the on-call rota."})

    model_admin = admin.site._registry[Contact]
    monkeypatch.setattr(
        model_admin, "write_services", replace(model_admin.write_services, delete=refuse)
    )
    client.force_login(superuser)

    response = client.post(admin_url(Contact, "delete", contact.pk), {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == admin_url(Contact, "change", contact.pk)
    assert messages_of(response) == ["Not deleted: non_field_errors: Still on the on-call rota."]
    assert Contact.objects.filter(pk=contact.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_delete_selected_is_all_or_nothing(client, superuser, contact, monkeypatch):
    other = contact_create(actor=None, source=Source.SYSTEM, name="Fay", email="fay@example.com")
    model_admin = admin.site._registry[Contact]
    delete = model_admin.write_services.delete

    def refuse_fay(*, contact, actor, source):
        if contact.name == "Fay":
            raise RowInUse({"non_field_errors": "Fay is on the on-call rota."})
        delete(contact=contact, actor=actor, source=source)

    monkeypatch.setattr(
        model_admin, "write_services", replace(model_admin.write_services, delete=refuse_fay)
    )
    client.force_login(superuser)

    response = client.post(
        admin_url(Contact, "changelist"),
        {"action": "delete_selected", "_selected_action": [contact.pk, other.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert messages_of(response) == [
        "Nothing changed: non_field_errors: Fay is on the on-call rota."
    ]
    assert Contact.objects.filter(pk__in=[contact.pk, other.pk]).count() == 2
    assert not Contact.history.filter(history_type="-").exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_a_contact_a_role_names_is_refused_by_the_service(superuser, contact):
    role = ResponseRole.objects.get(key="technical_lead")
    role.primary_contact = contact
    role.save()

    with pytest.raises(RowInUse, match="names this contact"):
        contact_delete(contact=contact, actor=superuser, source=Source.ADMIN)
    assert Contact.objects.filter(pk=contact.pk).exists()


# --- admin and API leave the same audit -----------------------------------------------------------


def test_severity_edits_from_the_admin_and_the_api_leave_the_same_audit(client, superuser, api_as):
    level = SeverityLevel.objects.get(level=2)
    client.force_login(superuser)
    url = admin_url(SeverityLevel, "change", level.pk)

    client.post(url, form_data(client, url, name="Major", response_target="00:20:00"))
    from_admin = latest(level)
    response = api_as(superuser).patch(
        "/api/v1/policy/severities/2/",
        {"name": "High", "response_target": "PT30M"},
        format="json",
    )
    from_api = latest(level)

    assert response.status_code == 200
    assert (
        audit(from_admin)
        == audit(from_api)
        == (
            "~",
            superuser,
            ["name", "response_target"],
        )
    )
    assert from_admin.history_change_reason == "updated name, response_target via admin"
    assert from_api.history_change_reason == "updated name, response_target via api"


def test_priority_edits_from_the_admin_and_the_api_leave_the_same_audit(client, superuser, api_as):
    cell = PriorityMatrixCell.objects.get(urgency="low", impact="low")
    client.force_login(superuser)
    url = admin_url(PriorityMatrixCell, "change", cell.pk)

    client.post(url, form_data(client, url, priority="3"))
    from_admin = latest(cell)
    api_as(superuser).patch(
        "/api/v1/policy/priority-matrix/low/low/", {"priority": 4}, format="json"
    )
    from_api = latest(cell)

    assert audit(from_admin) == audit(from_api) == ("~", superuser, ["priority"])
    assert from_admin.history_change_reason == "priority 4 → 3 via admin"
    assert from_api.history_change_reason == "priority 3 → 4 via api"


def test_role_edits_from_the_admin_and_the_api_leave_the_same_audit(
    client, superuser, api_as, contact
):
    role = ResponseRole.objects.get(key="business_liaison")
    client.force_login(superuser)
    url = admin_url(ResponseRole, "change", role.pk)

    client.post(url, form_data(client, url, backup_contact=str(contact.pk), position="9"))
    from_admin = latest(role)
    api_as(superuser).patch(
        "/api/v1/policy/roles/business_liaison/",
        {"backup_contact": None, "position": role.position},
        format="json",
    )
    from_api = latest(role)

    assert audit(from_admin) == audit(from_api) == ("~", superuser, ["backup_contact", "position"])
    assert from_admin.history_change_reason == "updated backup_contact, position via admin"
    assert from_api.history_change_reason == "updated backup_contact, position via api"


def test_the_api_refuses_what_the_admin_refuses(client, technical_lead, api_as):
    """A Technical Lead may not change the severity policy: 403 on both doors."""
    level = SeverityLevel.objects.get(level=3)
    client.force_login(technical_lead)

    admin_post = client.post(admin_url(SeverityLevel, "change", level.pk), {"name": "X"})
    api_patch = api_as(technical_lead).patch(
        "/api/v1/policy/severities/3/", {"name": "X"}, format="json"
    )

    assert (admin_post.status_code, api_patch.status_code) == (403, 403)
    assert api_patch.json()["code"] == "action_forbidden"
    assert level.history.count() == 1


# --- integrations: the secret is rotated, never typed -------------------------------------------


def test_the_integration_secret_cannot_be_edited_in_the_change_form(client, superuser):
    integration = make_integration("grafana")
    secret = integration.secret
    client.force_login(superuser)
    url = admin_url(Integration, "change", integration.pk)
    page = client.get(url)

    response = client.post(
        url, form_data(client, url, name="Grafana EU", secret="typed-by-hand", kind="generic")
    )

    assert 'name="secret"' not in page.content.decode()
    assert secret in page.content.decode()  # shown read-only, for copying into the sender
    assert response.status_code == 302
    integration.refresh_from_db()
    assert (integration.name, integration.secret, integration.kind) == (
        "Grafana EU",
        secret,
        "grafana",
    )
    record = latest(integration)
    assert (record.history_user, record.history_change_reason) == (
        superuser,
        "updated name via admin",
    )


def test_rotating_secrets_asks_first_then_rotates_each_through_the_service(
    client, superuser, api_as
):
    grafana = make_integration("grafana")
    generic = make_integration("generic")
    pagerduty = make_integration("pagerduty")
    old = {i.pk: i.secret for i in (grafana, generic)}
    client.force_login(superuser)
    chosen = {
        "action": "rotate_secret",
        "_selected_action": [grafana.pk, generic.pk, pagerduty.pk],
    }

    confirm = client.post(admin_url(Integration, "changelist"), chosen)
    unchanged = {i.pk: i.secret for i in Integration.objects.filter(pk__in=old)}
    done = client.post(admin_url(Integration, "changelist"), {**chosen, "post": "yes"})

    assert confirm.status_code == 200
    assert "Yes, rotate 3 secrets" in confirm.content.decode()
    assert unchanged == old
    assert done.status_code == 302
    shown = messages_of(done)
    assert "2 integration(s) given a new secret (update the senders)." in shown
    assert any(m.startswith("pagerduty test: ") and "routing key" in m for m in shown)
    for integration in (grafana, generic):
        integration.refresh_from_db()
        assert integration.secret != old[integration.pk]
        record = latest(integration)
        assert (record.history_user, record.history_change_reason) == (
            superuser,
            "secret rotated via admin",
        )

    # The API's rotate endpoint is the same service: the same audit, its own source.
    api_as(superuser).post(f"/api/v1/integrations/{grafana.pk}/rotate-secret/")
    record = latest(grafana)
    assert (record.history_user, record.history_change_reason) == (
        superuser,
        "secret rotated via api",
    )


def test_an_integration_added_in_the_admin_is_created_by_the_service(client, superuser):
    client.force_login(superuser)
    url = admin_url(Integration, "add")

    response = client.post(
        url,
        form_data(client, url, name="Prometheus", kind="alertmanager", default_severity="2"),
    )

    assert response.status_code == 302
    integration = Integration.objects.get(name="Prometheus")
    assert len(integration.key) == 32 and integration.secret
    record = latest(integration)
    assert (record.history_type, record.history_user, record.history_change_reason) == (
        "+",
        superuser,
        "created via admin",
    )
