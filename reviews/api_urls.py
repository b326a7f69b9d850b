"""Staff API of post-incident reviews, under /api/v1/ (token or session, role permissions)."""

app_name = "reviews-api"

urlpatterns: list = []
