"""Communications' models, by concern: the status page and its updates (``status``), and
customer and stakeholder messaging (``messaging``: subscribers, customers and their contacts,
the messages sent to them with their delivery tracking, enterprise direct contact, the §5.2
stakeholder schedule and social posts)."""

from .messaging import *  # noqa: F403
from .status import *  # noqa: F403
