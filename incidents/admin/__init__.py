"""The Django admin of the incident core: the staff workspace (see ``incident``), policy and
service pages (``policy``) and the read-only records the services write (``records``); the
"Report an incident" form and reports received (``reporting``); failed-login episodes
(``security``); incident events and their handling (``events``); a person's preferences
(``preferences``: their time zone)."""

from . import detection, events, incident, policy, preferences, records, reporting, security

__all__ = [
    "detection",
    "events",
    "incident",
    "policy",
    "preferences",
    "records",
    "reporting",
    "security",
]
