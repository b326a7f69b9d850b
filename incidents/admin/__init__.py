"""The Django admin of the incident core: the staff workspace (see ``incident``), policy and
service pages (``policy``) and the read-only records the services write (``records``)."""

from . import detection, incident, policy, records

__all__ = ["detection", "incident", "policy", "records"]
