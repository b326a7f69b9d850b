"""The embedded setup's SQLite backend (``ENGINE = "config.sqlite"``): see :mod:`.base`."""
