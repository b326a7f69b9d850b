"""The public status site: the page, its Statuspage-compatible JSON, feeds and badges, rendered
when something public changes and served from the cache (see :mod:`.site`)."""
