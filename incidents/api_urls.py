"""REST API routes under /api/ (filled in by the API)."""

urlpatterns: list = []
