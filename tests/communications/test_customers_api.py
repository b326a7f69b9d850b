"""Customers and their contacts through the API and the admin: created, edited and deleted with
validation (a clear 400 naming the field, nothing stored), by the roles that keep them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from communications.models import Customer, CustomerContact
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/"


@pytest.fixture
def keeper(make_user):
    return make_user("Business Liaison", username="keeper", email="keeper@example.com")


@pytest.fixture
def acme(keeper, api_as, service):
    response = api_as(keeper).post(
        URL,
        {
            "name": "Acme",
            "external_id": "CRM-1",
            "plan": "enterprise",
            "has_sla": True,
            "sla_terms": "99.95 %",
            "account_owner": "keeper",
            "services": ["checkout"],
            "contacts": [{"email": "ops@acme.example", "name": "Ops", "phone": "+44 20 1234"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_customer_is_created_with_contacts_and_read_back(acme, api_as, viewer):
    assert acme["name"] == "Acme"
    assert acme["needs_direct_contact"] is True
    assert acme["account_owner"]["username"] == "keeper"
    assert acme["services"] == ["checkout"]
    assert [(c["email"], c["incident_email"]) for c in acme["contacts"]] == [
        ("ops@acme.example", True)
    ]
    customer = Customer.objects.get()
    assert customer.history.first().history_user.username == "keeper"

    api = api_as(viewer)
    assert api.get(f"{URL}{acme['id']}/").json() == acme
    assert [c["name"] for c in api.get(URL).json()["results"]] == ["Acme"]
    assert api.get(f"{URL}?plan=standard").json()["results"] == []
    assert len(api.get(f"{URL}?service=checkout&has_sla=1").json()["results"]) == 1
    assert len(api.get(f"{URL}?q=acme.example").json()["results"]) == 1
    assert api.get(f"{URL}?plan=gold").status_code == 400


@pytest.mark.parametrize(
    "change, field",
    [
        ({"contacts": [{"email": "not-an-address"}]}, "contacts.0.email"),
        ({"contacts": [{"email": "a@b.example"}, {"email": "A@B.example"}]}, "contacts.1.email"),
        ({"services": ["checkout", "nope"]}, "services"),
        ({"account_owner": "ghost"}, "account_owner"),
        ({"name": "x" * 201}, "name"),
        ({"sla_terms": "x" * 301}, "sla_terms"),
        ({"name": "ACME"}, "name"),
        ({"external_id": "CRM-1", "name": "Other"}, "external_id"),
        ({"plan": "gold"}, "plan"),
        ({"contacts": [{"email": "a@b.example", "phone": "call me"}]}, "contacts.0.phone"),
        ({"contacts": [{"email": "x" * 250 + "@b.example"}]}, "contacts.0.email"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    acme, api_as, keeper, change, field
):
    body = {"name": "Beta", **change}
    response = api_as(keeper).post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    assert Customer.objects.count() == 1
    assert CustomerContact.objects.count() == 1


def test_an_inactive_or_non_staff_owner_is_refused(api_as, keeper, make_user):
    make_user(username="gone", is_active=False)
    make_user(username="outsider", is_staff=False)
    for name in ("gone", "outsider"):
        response = api_as(keeper).post(URL, {"name": "Beta", "account_owner": name}, format="json")
        assert response.status_code == 400
        assert "account_owner" in response.json()["errors"]
    assert not Customer.objects.exists()


def test_editing_a_customer_and_its_contacts(acme, api_as, keeper):
    api = api_as(keeper)
    ServiceFactory(slug="search", name="Search")
    url = f"{URL}{acme['id']}/"
    edited = api.patch(
        url, {"services": ["search", "Checkout"], "account_owner": None}, format="json"
    )
    assert edited.status_code == 200, edited.json()
    assert sorted(edited.json()["services"]) == ["checkout", "search"]
    assert edited.json()["account_owner"] is None

    added = api.post(f"{url}contacts/", {"email": "cto@acme.example"}, format="json")
    assert added.status_code == 201
    again = api.post(f"{url}contacts/", {"email": "CTO@acme.example"}, format="json")
    assert again.status_code == 400 and "email" in again.json()["errors"]

    contact = CustomerContact.objects.get(email="cto@acme.example")
    opted = api.patch(f"{url}contacts/{contact.pk}/", {"incident_email": False}, format="json")
    assert opted.status_code == 200
    contact.refresh_from_db()
    assert contact.incident_email is False and contact.opted_out_at is not None

    assert api.delete(f"{url}contacts/{contact.pk}/").status_code == 204
    assert api.get(f"{url}contacts/{contact.pk}/").status_code in (404, 405)
    assert api.delete(url).status_code == 204
    assert not Customer.objects.exists() and not CustomerContact.objects.exists()


def test_roles_that_do_not_keep_customers_are_refused(acme, api_as, viewer, technical_lead):
    for user in (viewer, technical_lead):
        api = api_as(user)
        assert api.post(URL, {"name": "Beta"}, format="json").status_code == 403
        assert api.patch(f"{URL}{acme['id']}/", {"name": "X"}, format="json").status_code == 403
        assert api.delete(f"{URL}{acme['id']}/").status_code == 403
    assert list(Customer.objects.values_list("name", flat=True)) == ["Acme"]


def test_the_list_reads_many_customers_in_a_fixed_number_of_queries(
    acme, api_as, viewer, django_assert_max_num_queries
):
    api = api_as(viewer)
    for n in range(15):
        Customer.objects.create(name=f"Customer {n}")
    with django_assert_max_num_queries(12):
        response = api.get(URL)
    assert len(response.json()["results"]) == 16


# --- admin -------------------------------------------------------------------------------------


def test_the_admin_adds_a_customer_with_contacts_through_the_services(client, keeper, service):
    client.force_login(keeper)
    url = reverse("admin:communications_customer_add")
    form = {
        "name": "Acme",
        "external_id": "",
        "plan": "enterprise",
        "has_sla": "on",
        "sla_terms": "99.9 %",
        "account_owner": str(keeper.pk),
        "services": [str(service.pk)],
        "notes": "",
        "contacts-TOTAL_FORMS": "1",
        "contacts-INITIAL_FORMS": "0",
        "contacts-MIN_NUM_FORMS": "0",
        "contacts-MAX_NUM_FORMS": "1000",
        "contacts-0-name": "Ops",
        "contacts-0-email": "ops@acme.example",
        "contacts-0-phone": "",
        "contacts-0-title": "",
        "contacts-0-incident_email": "on",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    customer = Customer.objects.get()
    assert customer.needs_direct_contact
    assert list(customer.services.all()) == [service]
    assert list(customer.contacts.values_list("email", flat=True)) == ["ops@acme.example"]
    assert customer.contacts.get().history.first().history_user == keeper

    # The same name again (other case): refused on the form, nothing stored.
    form["name"] = "ACME"
    form["contacts-0-email"] = "other@acme.example"
    again = client.post(url, form)
    assert again.status_code == 200
    assert "errornote" in again.content.decode()
    assert "customer_name_unique" in again.content.decode() or "already" in again.content.decode()
    assert Customer.objects.count() == 1 and CustomerContact.objects.count() == 1

    changelist = client.get(reverse("admin:communications_customer_changelist"))
    assert "Acme" in changelist.content.decode()
    filtered = client.get(
        reverse("admin:communications_customer_changelist") + "?plan__exact=standard"
    )
    assert "ops@acme.example" not in filtered.content.decode()
