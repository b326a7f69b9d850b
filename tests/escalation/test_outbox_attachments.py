"""Files an email carries (``context["attachments"]``): checked when the message is enqueued —
email only, at most 5, 10 MB decoded in all, safe names, type/subtype, valid base64 — and
attached decoded, with their name and type, when it is delivered."""

from __future__ import annotations

import base64

import pytest
from django.core import mail

from config.celery import app
from escalation.models import Notification, NotificationStatus
from escalation.outbox import OutboxMessage, notification_enqueue, notification_enqueue_many
from escalation.tasks import notification_send_task
from tests import workers

no_external_network = workers.no_external_network

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_external_network")]

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n\x00\xff binary"


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def attachment(**changes) -> dict:
    fields = {
        "filename": "vigil-report-2026-11.pdf",
        "content_type": "application/pdf",
        "content_base64": b64(PDF),
    }
    fields.update(changes)
    return fields


@pytest.fixture
def eager(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def enqueue(*, channel="email", recipient="manager@example.org", key="report:2026-11", **context):
    return notification_enqueue(
        incident=None,
        channel=channel,
        recipient=recipient,
        subject="Monthly incident report, November 2026",
        body="The report is attached.",
        template="monthly_report",
        reason="Monthly report",
        idempotency_key=key,
        context=context,
    )


def test_a_pdf_arrives_attached_with_its_name_and_type(eager, django_capture_on_commit_callbacks):
    csv = b"month,incidents\n2026-11,42\n"
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(
            html="<p>The report is attached.</p>",
            attachments=[
                attachment(),
                attachment(filename="incidents.csv", content_type="text/csv",
                           content_base64=b64(csv)),
            ],
        )  # fmt: skip

    [sent] = mail.outbox
    assert Notification.objects.get().status == NotificationStatus.SENT
    assert sent.alternatives[0] == ("<p>The report is attached.</p>", "text/html")
    assert [(name, content_type) for name, _, content_type in sent.attachments] == [
        ("vigil-report-2026-11.pdf", "application/pdf"),
        ("incidents.csv", "text/csv"),
    ]
    assert sent.attachments[0][1] == PDF
    parts = {part.get_filename(): part for part in sent.message().walk() if part.get_filename()}
    assert parts["vigil-report-2026-11.pdf"].get_content_type() == "application/pdf"
    assert parts["vigil-report-2026-11.pdf"].get_payload(decode=True) == PDF
    assert parts["vigil-report-2026-11.pdf"]["Content-Disposition"].startswith("attachment")
    assert parts["incidents.csv"].get_payload(decode=True) == csv


def test_attachments_up_to_the_limits_pass():
    four_mb = b64(b"x" * (4 * 1024 * 1024))
    half = attachment(content_base64=four_mb)
    tail = attachment(content_base64=b64(b"y" * (2 * 1024 * 1024 - 1)))
    small = [attachment(filename=f"part {n} (été).pdf") for n in range(3)]

    enqueue(key="limits:size", attachments=[half, half, tail])
    enqueue(key="limits:count", attachments=[*small, attachment(), attachment()])
    enqueue(key="limits:name", attachments=[attachment(filename="r" * 116 + ".pdf")])
    enqueue(key="limits:none", attachments=[])

    assert Notification.objects.count() == 4


ELEVEN_MB = b64(b"z" * (11 * 1024 * 1024))


@pytest.mark.parametrize(
    ("attachments", "error"),
    [
        ([attachment()] * 6, "At most 5 attachments"),
        ([attachment(content_base64=ELEVEN_MB)], "10 MB in total"),
        (
            [attachment(content_base64=b64(b"a" * (6 * 1024 * 1024)))] * 2,
            "10 MB in total",
        ),
        ([attachment(filename="../../etc/passwd")], "path separator"),
        ([attachment(filename="C:\\reports\\x.pdf")], "path separator"),
        ([attachment(filename="report\r\nBcc: x@example.org.pdf")], "control"),
        ([attachment(filename="report\x00.pdf")], "control"),
        ([attachment(filename="invoice\u202efdp.exe")], "control"),
        ([attachment(filename="r" * 121)], "120 characters"),
        ([attachment(filename="")], "non-empty name"),
        ([attachment(filename="..")], "non-empty name"),
        ([attachment(filename=None)], "non-empty name"),
        ([attachment(content_type="pdf")], "type/subtype"),
        ([attachment(content_type="text/html; charset=utf-8")], "type/subtype"),
        ([attachment(content_type="text/plain\r\nBcc: x@example.org")], "type/subtype"),
        ([attachment(content_base64="not base64!")], "not valid base64"),
        ([attachment(content_base64="QUJD\nREVG")], "not valid base64"),
        ([attachment(content_base64=PDF)], "base64 text"),
        ([{"filename": "x.pdf", "content_type": "application/pdf"}], "exactly"),
        ([{**attachment(), "path": "/etc/passwd"}], "exactly"),
        (["x.pdf"], "exactly"),
        (attachment(), "must be a list"),
    ],
)
def test_a_bad_attachment_is_refused_at_enqueue(attachments, error):
    with pytest.raises(ValueError, match=error):
        enqueue(attachments=attachments)
    with pytest.raises(ValueError, match=error):
        notification_enqueue_many(
            [
                OutboxMessage(
                    channel="email",
                    recipient="manager@example.org",
                    subject="Report",
                    body="Attached.",
                    template="monthly_report",
                    reason="Monthly report",
                    idempotency_key="report:many",
                    context={"attachments": attachments},
                )
            ]
        )
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("channel", "recipient"),
    [("slack", "#ops"), ("sms", "+33612345678"), ("webhook", "ops-hook")],
)
def test_only_email_carries_attachments(channel, recipient):
    with pytest.raises(ValueError, match="Only email notifications carry attachments"):
        enqueue(channel=channel, recipient=recipient, attachments=[attachment()])
    assert not Notification.objects.exists()


def test_a_row_whose_attachment_no_longer_decodes_fails_for_good(
    eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        notification = enqueue(attachments=[attachment()])
    # Only a direct write could do this; the channel refuses to send the message without it.
    Notification.objects.filter(pk=notification.pk).update(
        context={"attachments": [attachment(content_base64="%%%")]}
    )
    notification_send_task.delay(notification.pk)

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert "attachment cannot be read" in notification.last_error
    assert mail.outbox == []


def test_the_admin_shows_the_files_names_not_their_content(client, superuser):
    notification = enqueue(attachments=[attachment(content_base64=b64(b"q" * 3000))])
    client.force_login(superuser)

    page = client.get(f"/admin/escalation/notification/{notification.pk}/change/")
    listing = client.get("/admin/escalation/notification/")

    assert page.status_code == 200 and listing.status_code == 200
    html = page.content.decode()
    assert "vigil-report-2026-11.pdf" in html and "[4000 characters]" in html
    assert b64(b"q" * 3000) not in html
