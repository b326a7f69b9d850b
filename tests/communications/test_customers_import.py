"""Customers from CSV, through the API and the admin: one file, one row per contact, all or
nothing (a bad row refuses the file with every row's errors, nothing stored), a dry run and a
preview, BOMs and semicolons, limits, and an export that imports back unchanged."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from communications.models import Customer, CustomerContact
from communications.services.customers import customer_contact_update
from communications.services.customers_csv_format import IMPORT_MAX_BYTES, IMPORT_MAX_ROWS
from incidents.models import Source
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/import/"

GOOD = (
    "customer,external_id,plan,sla,sla_terms,account_owner,services,contact_name,"
    "contact_email,contact_phone,contact_title,incident_email\n"
    "Acme,CRM-1,enterprise,yes,99.95 %,keeper,checkout;Search,Ops,ops@acme.example,"
    "+44 20 1234,Head of ops,yes\n"
    "Acme,CRM-1,,,,,,CTO,cto@acme.example,,CTO,no\n"
    "Beta,,standard,no,,keeper@example.com,checkout,,info@beta.example,,,\n"
    "Gamma,,,,,,,,,,,\n"
)


@pytest.fixture
def keeper(make_user):
    return make_user("Communications Lead", username="keeper", email="keeper@example.com")


@pytest.fixture(autouse=True)
def services(service):
    return [service, ServiceFactory(slug="search", name="Search")]


def stored() -> list[tuple]:
    return [
        (
            c.name,
            c.external_id,
            c.plan,
            c.has_sla,
            c.account_owner.username if c.account_owner else None,
            sorted(s.slug for s in c.services.all()),
            sorted((k.email, k.incident_email) for k in c.contacts.all()),
        )
        for c in Customer.objects.order_by("name")
    ]


def post_csv(api, text: str | bytes, query: str = ""):
    body = text.encode() if isinstance(text, str) else text
    return api.generic("POST", URL + query, body, content_type="text/csv")


EXPECTED = [
    (
        "Acme",
        "CRM-1",
        "enterprise",
        True,
        "keeper",
        ["checkout", "search"],
        [("cto@acme.example", False), ("ops@acme.example", True)],
    ),
    ("Beta", "", "standard", False, "keeper", ["checkout"], [("info@beta.example", True)]),
    ("Gamma", "", "standard", False, None, [], []),
]


def test_a_good_file_creates_customers_and_contacts(api_as, keeper):
    response = post_csv(api_as(keeper), GOOD)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dry_run"] is False
    assert body["rows"] == 4
    assert body["customers"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert body["contacts"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert stored() == EXPECTED
    acme = Customer.objects.get(name="Acme")
    assert acme.sla_terms == "99.95 %" and acme.needs_direct_contact
    record = acme.history.first()
    assert record.history_user == keeper
    assert record.history_change_reason.startswith("CSV import")
    cto = CustomerContact.objects.get(email="cto@acme.example")
    assert cto.opted_out_at is not None

    again = post_csv(api_as(keeper), GOOD).json()
    assert again["customers"] == {"created": 0, "updated": 0, "unchanged": 3}
    assert again["contacts"] == {"created": 0, "updated": 0, "unchanged": 3}
    assert stored() == EXPECTED


def test_a_dry_run_reports_and_writes_nothing(api_as, keeper):
    response = post_csv(api_as(keeper), GOOD, "?dry_run=1")
    assert response.status_code == 200
    body = response.json()
    assert body["dry_run"] is True
    assert body["customers"]["created"] == 3
    assert [(r["row"], r["customer_action"], r["contact_action"]) for r in body["preview"]] == [
        (2, "create", "create"),
        (3, "create", "create"),
        (4, "create", "create"),
        (5, "create", ""),
    ]
    assert not Customer.objects.exists()


def test_bad_rows_refuse_the_whole_file_listing_each_row(api_as, keeper):
    bad = GOOD + (
        "Delta,,platinum,,,,,,not-an-address,,,\n"
        "Echo,,,,,ghost,nowhere,,,,,\n"
        "Foxtrot,,,,,,,,ok@fox.example,,,maybe\n"
        ",,,,,,,,a@b.example,,,\n"
    )
    response = post_csv(api_as(keeper), bad)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {
        "row 6.plan",
        "row 6.contact_email",
        "row 7.account_owner",
        "row 7.services",
        "row 8.incident_email",
        "row 9.customer",
    }
    assert "ghost" in errors["row 7.account_owner"][0]
    assert "nowhere" in errors["row 7.services"][0]
    assert "not-an-address" in errors["row 6.contact_email"][0]
    assert "nothing was changed" in response.json()["detail"]
    assert not Customer.objects.exists() and not CustomerContact.objects.exists()


def test_duplicates_and_conflicts_are_refused(api_as, keeper):
    api = api_as(keeper)
    header = "customer,external_id,plan,contact_email\n"
    cases = {
        "Acme,,,a@acme.example\nacme,,,A@acme.example\n": "row 3.contact_email",
        "Acme,,enterprise,\nAcme,,standard,\n": "row 3.plan",
        "Acme,X-1,,\nBeta,X-1,,\n": "row 3.customer",
        "Acme,X-1,,\nAcme,X-2,,\n": "row 3.external_id",
    }
    for rows, field in cases.items():
        response = post_csv(api, header + rows)
        assert response.status_code == 400, rows
        assert field in response.json()["errors"], (rows, response.json())
    assert not Customer.objects.exists()

    post_csv(api, header + "Acme,X-1,,\nBeta,,,\n")
    clash = post_csv(api, header + "Beta,X-1,,\n")  # X-1 is Acme's
    assert clash.status_code == 400
    assert "Another customer is already named" in clash.json()["errors"]["row 2.customer"][0]
    other_id = post_csv(api, header + "Acme,X-9,,\n")
    assert "row 2.external_id" in other_id.json()["errors"]


def test_customers_are_matched_by_external_id_then_by_name(api_as, keeper):
    api = api_as(keeper)
    post_csv(api, "customer,external_id,plan\nAcme,CRM-1,standard\nBeta,,standard\n")
    response = post_csv(
        api, "customer,external_id,plan\nAcme Corp,CRM-1,enterprise\nBETA,B-7,enterprise\n"
    )
    assert response.json()["customers"] == {"created": 0, "updated": 2, "unchanged": 0}
    assert list(Customer.objects.order_by("name").values_list("name", "external_id", "plan")) == [
        ("Acme Corp", "CRM-1", "enterprise"),
        ("Beta", "B-7", "enterprise"),
    ]


def test_an_opt_out_is_not_undone_by_an_import(api_as, keeper):
    api = api_as(keeper)
    post_csv(api, GOOD)
    ops = CustomerContact.objects.get(email="ops@acme.example")
    customer_contact_update(contact=ops, actor=None, source=Source.SYSTEM, incident_email=False)
    response = post_csv(api, GOOD)
    assert response.status_code == 200
    assert any("ops@acme.example opted out" in w for w in response.json()["warnings"])
    ops.refresh_from_db()
    assert ops.incident_email is False


def test_bom_semicolons_and_multipart(api_as, keeper):
    text = '\ufeffcustomer;services;contact_email\nAcme;"checkout;search";ops@acme.example\n'
    response = post_csv(api_as(keeper), text.encode("utf-8"))
    assert response.status_code == 200, response.json()
    assert stored()[0][5] == ["checkout", "search"]

    upload = SimpleUploadedFile("more.csv", b"customer,contact_email\nBeta,b@beta.example\n")
    response = api_as(keeper).post(URL, {"file": upload}, format="multipart")
    assert response.status_code == 200, response.json()
    assert Customer.objects.filter(name="Beta").exists()
    assert api_as(keeper).post(URL, {}, format="multipart").status_code == 400


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\xff\xfe\x00c\x00u", "not UTF-8"),
        (b"", "empty"),
        (b"customer\n", "no rows"),
        (b"name,email\nAcme,a@b.example\n", "Unknown column"),
        (b"customer,x\n" + b"a,b\n", "Unknown column"),
        (b"customer\n" + b"a\n" * (IMPORT_MAX_ROWS + 1), "more than"),
        (b"customer\n" + b"a" * (IMPORT_MAX_BYTES + 1) + b"\n", "larger than"),
    ],
)
def test_unusable_files_are_a_clear_400(api_as, keeper, body, message):
    response = post_csv(api_as(keeper), body)
    assert response.status_code == 400
    assert message in response.json()["detail"], response.json()
    assert not Customer.objects.exists()


def test_only_the_keepers_of_customers_may_import(api_as, viewer, technical_lead):
    for user in (viewer, technical_lead):
        assert post_csv(api_as(user), GOOD).status_code == 403
    assert not Customer.objects.exists()
    assert post_csv(api_as(viewer), GOOD, "?dry_run=maybe").status_code == 400


# --- admin ---------------------------------------------------------------------------------------


def test_the_admin_previews_then_imports(client, keeper):
    client.force_login(keeper)
    url = reverse("admin:communications_customer_import")
    changelist = client.get(reverse("admin:communications_customer_changelist"))
    assert url in changelist.content.decode()

    preview = client.post(url, {"file": SimpleUploadedFile("crm.csv", GOOD.encode())})
    assert preview.status_code == 200
    page = preview.content.decode()
    assert 'id="import-preview"' in page and "3 created" in page
    assert not Customer.objects.exists()

    payload = preview.context["payload"]
    done = client.post(url, {"payload": payload, "filename": "crm.csv", "confirm": "Import"})
    assert done.status_code == 302
    assert stored() == EXPECTED
    assert (
        Customer.objects.get(name="Acme")
        .history.first()
        .history_change_reason.startswith("CSV import crm.csv")
    )


def test_the_admin_shows_every_bad_row_and_stores_nothing(client, keeper):
    client.force_login(keeper)
    url = reverse("admin:communications_customer_import")
    bad = GOOD + "Delta,,,,,,,,not-an-address,,,\n"
    response = client.post(url, {"file": SimpleUploadedFile("bad.csv", bad.encode())})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="import-problems"' in page
    assert "<td>6</td><td>contact_email</td>" in page
    assert not Customer.objects.exists()

    tampered = client.post(url, {"payload": "%%%", "filename": "x.csv", "confirm": "Import"})
    assert tampered.status_code == 400
    assert not Customer.objects.exists()

    big = SimpleUploadedFile("big.csv", b"customer\n" + b"a" * (IMPORT_MAX_BYTES + 1))
    assert client.post(url, {"file": big}).status_code == 400


def test_the_admin_import_page_is_for_the_keepers_only(client, viewer):
    client.force_login(viewer)
    assert client.get(reverse("admin:communications_customer_import")).status_code == 403


def test_an_export_imports_back_unchanged(client, api_as, keeper):
    post_csv(api_as(keeper), GOOD + 'Zeta,,,,,,,"=cmd",z@zeta.example,-5 x,"@x",\n')
    client.force_login(keeper)
    response = client.post(
        reverse("admin:communications_customer_changelist"),
        {
            "action": "export_csv",
            "_selected_action": [str(pk) for pk in Customer.objects.values_list("pk", flat=True)],
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "customer"
    zeta = next(r for r in rows if r[0] == "Zeta")
    assert "'=cmd" in zeta and "'@x" in zeta and "'-5 x" in zeta  # not run as formulas
    before = stored()
    again = post_csv(api_as(keeper), text).json()
    assert again["customers"]["updated"] == 0 and again["contacts"]["updated"] == 0
    assert stored() == before
