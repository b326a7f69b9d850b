"""Staff API of post-incident reviews, under /api/v1/ (token or session, role permissions)."""

app_name = "reviews-api"

urlpatterns: list = []

# Action items (list, add, read, change, delete, status actions).
from . import api_actions  # noqa: E402

urlpatterns += api_actions.urlpatterns
