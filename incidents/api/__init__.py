"""Vigil's REST API (DRF views under /api/v1/); routes in ``incidents.api_urls``."""
