"""What the KPI demo's incidents are about: recurring kinds of incident on the demo's services,
each with what a responder would write when resolving and closing it and the category its
review gives the root cause. Kept apart from the generator (``demo.py``) so either reads in
one sitting."""

from __future__ import annotations

from dataclasses import dataclass

from incidents.models import DetectionSource
from reviews.models import CauseCategory


@dataclass(frozen=True)
class Story:
    title: str
    services: tuple[str, ...]
    summary: str
    root_cause: str
    resolution: str
    category: str
    detection: str = DetectionSource.MONITORING


STORIES: tuple[Story, ...] = (
    Story(
        "Checkout error rate above 5 % after a deployment",
        ("checkout", "web-app"),
        "Card payments failed for part of the customers after the morning release.",
        "A release changed the payment gateway client's timeout defaults.",
        "Rolled the release back; the timeout is now pinned in configuration.",
        CauseCategory.CHANGE,
    ),
    Story(
        "Payment gateway timeouts at checkout",
        ("checkout",),
        "The payment gateway answered slowly; some card payments timed out.",
        "The gateway provider had a partial outage in one region.",
        "Routed payments to the provider's secondary region until it recovered.",
        CauseCategory.THIRD_PARTY,
        DetectionSource.THIRD_PARTY,
    ),
    Story(
        "Storefront pages slow during the evening peak",
        ("web-app",),
        "p95 page load above 4 s for an hour at peak traffic.",
        "The web tier's autoscaling limit was lower than the peak needed.",
        "Raised the autoscaling limit and added two instances.",
        CauseCategory.CAPACITY,
    ),
    Story(
        "Customers cannot add items to the cart",
        ("web-app", "checkout"),
        "Adding to cart returned an error for logged-in customers.",
        "A cache key change made sessions unreadable after a library upgrade.",
        "Deployed a fix reading both key formats; sessions recovered.",
        CauseCategory.SOFTWARE,
        DetectionSource.CUSTOMER_REPORT,
    ),
    Story(
        "Login fails for SSO users",
        ("auth",),
        "Single sign-on logins returned an error page.",
        "The identity provider's signing certificate was rotated without notice.",
        "Imported the new certificate and re-enabled the provider.",
        CauseCategory.CONFIGURATION,
        DetectionSource.SUPPORT_ESCALATION,
    ),
    Story(
        "Password reset emails not arriving",
        ("email-provider", "auth"),
        "Customers reported that password reset emails never arrived.",
        "The email provider throttled our sending domain after a bounce spike.",
        "Cleaned the bounce list and had the provider lift the throttle.",
        CauseCategory.THIRD_PARTY,
        DetectionSource.CUSTOMER_REPORT,
    ),
    Story(
        "Orders database replication lag above 60 s",
        ("orders-db",),
        "The orders replica fell behind; order history showed stale data.",
        "A long-running analytics query held back replication on the replica.",
        "Cancelled the query and moved analytics to their own replica.",
        CauseCategory.INFRASTRUCTURE,
    ),
    Story(
        "Orders database connections exhausted",
        ("orders-db", "checkout"),
        "Checkout failed intermittently with connection errors.",
        "A new batch job opened connections without the pooler.",
        "Stopped the job and routed it through the connection pooler.",
        CauseCategory.CHANGE,
    ),
    Story(
        "Product images missing in some regions",
        ("cdn", "web-app"),
        "Product pages showed broken images for customers in Asia.",
        "The CDN provider lost an origin route at two edge locations.",
        "The provider restored the route; we purged the affected cache.",
        CauseCategory.THIRD_PARTY,
        DetectionSource.THIRD_PARTY,
    ),
    Story(
        "Nightly sales report incomplete",
        ("reporting",),
        "The morning sales report was missing one region's figures.",
        "The export job ran before the regional data load had finished.",
        "Re-ran the export; the job now waits for the load to complete.",
        CauseCategory.HUMAN,
        DetectionSource.ROUTINE_CHECK,
    ),
    Story(
        "Disk usage above 85 % on the reporting server",
        ("reporting",),
        "Disk space on the reporting server reached the §7.2 threshold.",
        "Old report archives were never rotated.",
        "Archived old reports to object storage and added rotation.",
        CauseCategory.CAPACITY,
        DetectionSource.ROUTINE_CHECK,
    ),
    Story(
        "Suspicious login attempts against staff accounts",
        ("auth",),
        "A burst of failed logins against staff accounts from one network.",
        "A credential-stuffing attempt using a leaked password list.",
        "Blocked the source network and forced resets on the targeted accounts.",
        CauseCategory.SECURITY,
        DetectionSource.SECURITY_MONITORING,
    ),
    Story(
        "Order confirmation emails delayed",
        ("email-provider",),
        "Order confirmations arrived up to 30 minutes late.",
        "The email provider had a queue backlog.",
        "Switched confirmations to the secondary provider until the backlog cleared.",
        CauseCategory.THIRD_PARTY,
        DetectionSource.THIRD_PARTY,
    ),
    Story(
        "Search returns no results for some products",
        ("web-app",),
        "Searching for recently added products found nothing.",
        "The search index rebuild failed silently after a schema change.",
        "Fixed the mapping and rebuilt the index.",
        CauseCategory.SOFTWARE,
        DetectionSource.SUPPORT_ESCALATION,
    ),
    Story(
        "Expired TLS certificate on the checkout domain",
        ("checkout", "web-app"),
        "Browsers warned customers that the checkout page was not secure.",
        "The certificate's automatic renewal pointed at a retired DNS record.",
        "Renewed the certificate and fixed the renewal's DNS validation.",
        CauseCategory.CONFIGURATION,
        DetectionSource.CUSTOMER_REPORT,
    ),
    Story(
        "Memory leak restarts web app instances",
        ("web-app",),
        "Web instances restarted every few hours; some requests failed.",
        "An image-resizing library leaked memory on large uploads.",
        "Pinned the previous library version; instances are stable.",
        CauseCategory.SOFTWARE,
    ),
    Story(
        "Load balancer health checks failing for one zone",
        ("web-app", "auth"),
        "Traffic shifted away from one availability zone; latency rose.",
        "A network switch in the hosting provider's zone failed.",
        "The provider replaced the switch; traffic rebalanced.",
        CauseCategory.INFRASTRUCTURE,
    ),
    Story(
        "Wrong prices shown after a catalogue import",
        ("web-app", "checkout"),
        "A catalogue import showed some products at the wrong price.",
        "The import file used a different decimal separator and was not validated.",
        "Re-imported the catalogue; the import now validates prices.",
        CauseCategory.HUMAN,
        DetectionSource.CUSTOMER_REPORT,
    ),
)

FALSE_ALARMS = (
    "CPU alert on the web tier during the load test",
    "Checkout synthetic check failing from one probe",
    "Replication lag alert during the planned backup",
)
FALSE_ALARM_REASON = "False alarm: the alert fired on planned work; no customer was affected."

# (name, email, customer): the people the satisfaction survey asks.
SURVEY_CONTACTS = (
    ("Helen Park", "helen.park@northwind.example", "Northwind Traders"),
    ("Luis Ortega", "luis.ortega@northwind.example", "Northwind Traders"),
    ("Aiko Tanaka", "aiko.tanaka@contoso.example", "Contoso Retail"),
    ("Ben Adler", "ben.adler@contoso.example", "Contoso Retail"),
    ("Sara Moretti", "sara.moretti@fabrikam.example", "Fabrikam Outdoor"),
)
SURVEY_COMMENTS = {
    1: "We heard nothing for an hour and lost sales.",
    2: "Fixed eventually, but the updates were vague.",
    4: "Quick fix and clear updates, thank you.",
    5: "Great communication throughout.",
}
