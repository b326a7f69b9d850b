"""Customer messaging (procedure §4.2 steps 2-3, §5.2).

* **Subscribers** of the public status page (email, double opt-in; or a webhook URL for
  machines), to every component or chosen ones, with or without maintenance notices; the
  **suppression list** of addresses Vigil must not mail (hard bounces, complaints, manual).
* **Customers** with their **contacts**, the services they use, their plan and SLA, and their
  account owner: the registered users §5.2 emails for Sev 1-2 incidents, and the enterprise
  customers who get a **direct-contact task** for a human to call them.
* **Messages**: one row per recipient of each customer-facing mailing (a status update, a
  maintenance notice, a restoration notice), with its delivery tracking; the outbox
  (``escalation.outbox``) carries each one under the same idempotency key. A **fan-out** job,
  written in the publishing transaction, expands one publication into its messages.

The stakeholder schedule lives in ``stakeholders`` and social posts in ``social``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from simple_history.models import HistoricalRecords

from incidents.models import Incident, MessageChannel, Service

from .status import Component, Maintenance, StatusUpdate

__all__ = [
    "Customer",
    "CustomerContact",
    "CustomerPlan",
    "DeliveryState",
    "DirectContactStatus",
    "DirectContactTask",
    "Fanout",
    "FanoutState",
    "Message",
    "MessageAudience",
    "MessageEvent",
    "MessageKind",
    "Subscriber",
    "SubscriberKind",
    "SubscriberState",
    "Suppression",
    "SuppressionReason",
]


# --- subscribers -----------------------------------------------------------------------------


class SubscriberKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class SubscriberState(models.TextChoices):
    PENDING = "pending", "Waiting for confirmation"
    ACTIVE = "active", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class Subscriber(models.Model):
    """Someone (an email address) or something (a webhook URL) that follows the status page.

    Email subscribers confirm by a signed, expiring link (double opt-in) before anything is
    sent to them; every link Vigil mails carries ``token_version``, which confirming and
    unsubscribing increment, so each link works once. Webhook subscribers are created by staff
    (or the API) and receive each notice as a JSON body signed with a key of their own, which
    the outbox derives from the URL and Vigil's signing key (no secret is stored on a row)."""

    kind = models.CharField(max_length=10, choices=SubscriberKind.choices)
    email = models.EmailField(max_length=254, blank=True)
    url = models.URLField(max_length=500, blank=True, help_text="Webhook subscribers only.")
    state = models.CharField(
        max_length=14, choices=SubscriberState.choices, default=SubscriberState.PENDING
    )
    all_components = models.BooleanField(
        default=True, help_text="Notified about every component (new ones included)."
    )
    components = models.ManyToManyField(Component, blank=True, related_name="subscribers")
    maintenance_notices = models.BooleanField(
        default=True, help_text="Also notified of scheduled maintenance."
    )
    token_version = models.PositiveIntegerField(
        default=1, help_text="Links mailed with an older version no longer work."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                condition=Q(kind="email"),
                name="subscriber_email_unique",
            ),
            models.UniqueConstraint(
                "url", condition=Q(kind="webhook"), name="subscriber_url_unique"
            ),
            models.CheckConstraint(
                condition=(Q(kind="email") & ~Q(email="")) | (Q(kind="webhook") & ~Q(url="")),
                name="subscriber_has_address",
            ),
        ]
        indexes = [models.Index(fields=["state", "kind"], name="subscriber_state")]

    def __str__(self) -> str:
        return self.email or self.url

    @property
    def address(self) -> str:
        return self.email if self.kind == SubscriberKind.EMAIL else self.url


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "bounced", "Hard bounce"
    COMPLAINT = "complained", "Spam complaint"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the provider"
    MANUAL = "manual", "Added by staff"


class Suppression(models.Model):
    """An address Vigil sends no customer-facing mail to (subscribers and customer contacts
    alike): a hard bounce or complaint reported by the email provider, or staff's decision.
    Paging and stakeholder messages to staff are not affected."""

    email = models.EmailField(max_length=254)
    reason = models.CharField(max_length=14, choices=SuppressionReason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(Lower("email"), name="suppression_email_unique")]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_reason_display()})"


# --- customers -------------------------------------------------------------------------------


class CustomerPlan(models.TextChoices):
    STANDARD = "standard", "Standard"
    ENTERPRISE = "enterprise", "Enterprise"


class Customer(models.Model):
    """A customer account: the services it uses, its plan and SLA, and the member of staff who
    owns the relationship (§5.2: direct contact for enterprise customers with SLA commitments)."""

    name = models.CharField(max_length=200)
    external_id = models.CharField(
        max_length=100, blank=True, help_text="The account's id in the CRM or billing system."
    )
    plan = models.CharField(
        max_length=12, choices=CustomerPlan.choices, default=CustomerPlan.STANDARD
    )
    has_sla = models.BooleanField("SLA commitments", default=False)
    sla_terms = models.CharField(
        "SLA",
        max_length=300,
        blank=True,
        help_text="What was promised, e.g. '99.95 %, 1 h response'.",
    )
    account_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="customer_accounts",
    )
    services = models.ManyToManyField(Service, blank=True, related_name="customers")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(m2m_fields=[services])

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="customer_name_unique"),
            models.UniqueConstraint(
                "external_id", condition=~Q(external_id=""), name="customer_external_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def needs_direct_contact(self) -> bool:
        return self.plan == CustomerPlan.ENTERPRISE and self.has_sla


class CustomerContact(models.Model):
    """A registered user of a customer: emailed about Sev 1-2 incidents on the services their
    customer uses, unless they opted out."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=40, blank=True)
    title = models.CharField(max_length=120, blank=True, help_text="Their role at the customer.")
    incident_email = models.BooleanField(
        "receives incident email", default=True, help_text="Off: the contact opted out."
    )
    opted_out_at = models.DateTimeField(null=True, blank=True)
    token_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["customer__name", "email", "id"]
        constraints = [
            models.UniqueConstraint(
                "customer", Lower("email"), name="customer_contact_email_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name or self.email} ({self.customer})"


# --- messages and their delivery -------------------------------------------------------------


class MessageKind(models.TextChoices):
    STATUS_UPDATE = "status_update", "Status update"
    MAINTENANCE = "maintenance", "Maintenance notice"


class MessageAudience(models.TextChoices):
    SUBSCRIBER = "subscriber", "Status page subscriber"
    CUSTOMER = "customer", "Customer contact"


class DeliveryState(models.TextChoices):
    """What became of a message, as far as Vigil knows: queued in the outbox, handed to the
    provider (sent), and then what the provider's tracking webhook reported."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class FanoutState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Fanout(models.Model):
    """The job of sending one publication (a published status update, or one step of a
    maintenance) to everyone who should get it. Written in the publishing transaction; a task
    after commit expands it into :class:`Message` rows and outbox rows in batches, each keyed
    so that running it twice (a retry, a worker killed midway) adds no second message."""

    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    status_update = models.ForeignKey(
        StatusUpdate, null=True, blank=True, on_delete=models.CASCADE, related_name="fanouts"
    )
    maintenance = models.ForeignKey(
        Maintenance, null=True, blank=True, on_delete=models.CASCADE, related_name="fanouts"
    )
    step = models.CharField(
        max_length=20, blank=True, help_text="Maintenance notices: which step (scheduled, ...)."
    )
    state = models.CharField(
        max_length=10, choices=FanoutState.choices, default=FanoutState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0, help_text="Messages written.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                "status_update", condition=Q(status_update__isnull=False), name="fanout_update_once"
            ),
            models.UniqueConstraint(
                "maintenance",
                "step",
                condition=Q(maintenance__isnull=False),
                name="fanout_maintenance_step_once",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="fanout_due",
                condition=Q(state__in=["pending", "running"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} fan-out #{self.pk}"


class Message(models.Model):
    """One customer-facing email (or subscriber webhook call) of one publication to one
    recipient, with what the provider reported about it. ``idempotency_key`` is the outbox
    row's, so one address gets one message per publication however many lists it is on."""

    fanout = models.ForeignKey(Fanout, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    audience = models.CharField(max_length=12, choices=MessageAudience.choices)
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="customer_messages"
    )
    status_update = models.ForeignKey(
        StatusUpdate, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    maintenance = models.ForeignKey(
        Maintenance, null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    subscriber = models.ForeignKey(
        Subscriber, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    contact = models.ForeignKey(
        CustomerContact, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    channel = models.CharField(
        max_length=10, choices=MessageChannel.choices, default=MessageChannel.EMAIL
    )
    recipient = models.CharField(max_length=500, db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    message_id = models.CharField(max_length=255, blank=True, db_index=True)
    provider_message_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="The email provider's id, once sent."
    )
    state = models.CharField(
        max_length=14, choices=DeliveryState.choices, default=DeliveryState.QUEUED
    )
    state_detail = models.CharField(max_length=500, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status_update", "state"], name="message_update_state"),
            models.Index(fields=["maintenance", "state"], name="message_maintenance_state"),
            # The reconcile sweep's backlog: messages whose outbox row may have been sent since.
            models.Index(fields=["id"], name="message_queued", condition=Q(state="queued")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient}"


class MessageEvent(models.Model):
    """One delivery event reported by the email provider's tracking webhook (anymail's
    normalized event), kept as received; ``event_id`` makes a redelivered webhook a no-op."""

    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    provider = models.CharField(max_length=40)
    event_id = models.CharField(max_length=200)
    event_type = models.CharField(max_length=20)
    recipient = models.CharField(max_length=254, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint("provider", "event_id", name="message_event_once")]

    def __str__(self) -> str:
        return f"{self.event_type} for {self.recipient}"


# --- enterprise direct contact ---------------------------------------------------------------


class DirectContactStatus(models.TextChoices):
    OPEN = "open", "To do"
    DONE = "done", "Contacted"
    NOT_REACHABLE = "not_reachable", "Not reachable"


class DirectContactTask(models.Model):
    """§5.2 "direct contact for enterprise customers with SLA commitments": a task for the
    customer's account owner to reach the customer about a Sev 1-2 incident, due within the
    policy's time, reminded through the outbox until it is done or the customer was not
    reachable (with a note either way, on the incident's timeline)."""

    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="direct_contact_tasks"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="direct_contacts")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="direct_contact_tasks",
    )
    sla_terms = models.CharField("SLA", max_length=300, blank=True)
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=14, choices=DirectContactStatus.choices, default=DirectContactStatus.OPEN
    )
    note = models.TextField(blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [models.UniqueConstraint("incident", "customer", name="direct_contact_once")]
        indexes = [
            models.Index(
                fields=["next_reminder_at"],
                name="direct_contact_reminder_due",
                condition=Q(status="open"),
            )
        ]

    def __str__(self) -> str:
        return f"Contact {self.customer} about {self.incident}"
