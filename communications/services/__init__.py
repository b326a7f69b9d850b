"""Writes of public communication. Each service takes the actor and the source, locks what it
changes, is idempotent where it can be, and calls ``public_changed()`` when the public site
must be re-rendered."""
