"""Communications' models, by concern: the status page and its updates (``status``); customer
messaging (``messaging``: subscribers, customers and their contacts, the messages sent to them
with their delivery tracking, enterprise direct contact); the §5.2 stakeholder schedule
(``stakeholders``); and social posts (``social``)."""

from .messaging import *  # noqa: F403
from .social import *  # noqa: F403
from .stakeholders import *  # noqa: F403
from .status import *  # noqa: F403
