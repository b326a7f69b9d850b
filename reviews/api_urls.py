"""Staff API of post-incident reviews, under /api/v1/ (token or session, role permissions)."""

app_name = "reviews-api"

urlpatterns: list = []

# Action items (list, add, read, change, delete, status actions).
from . import api_actions  # noqa: E402

urlpatterns += api_actions.urlpatterns

# Post-incident reviews (list, read, write the sections, held, publish).
from . import api_reviews  # noqa: E402

urlpatterns += api_reviews.urlpatterns

# The knowledge base (articles: list with search and service filters, read; runbook links).
from . import api_knowledge  # noqa: E402

urlpatterns += api_knowledge.urlpatterns
