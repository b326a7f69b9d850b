"""``manage.py apitoken <username>``: print a new API token for that user.

The token is shown once: only its hash is stored (django-rest-knox). Use it as
``Authorization: Token <token>``. Tokens are listed and revoked in the admin (Knox → Auth
tokens) or all at once with ``--revoke-all``.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Print a new API token for a user (shown once; stored hashed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Days until the token expires (default: never).",
        )
        parser.add_argument(
            "--revoke-all",
            action="store_true",
            help="Revoke every token of the user first (a leaked-token response).",
        )

    def handle(self, *args, username: str, expires_in_days: int | None, revoke_all: bool, **opts):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; activate it first.")
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise CommandError("--expires-in-days must be between 1 and 3650.")
        if revoke_all:
            revoked, _ = AuthToken.objects.filter(user=user).delete()
            self.stderr.write(f"Revoked {revoked} token(s) of {username}.")
        expiry = timedelta(days=expires_in_days) if expires_in_days is not None else None
        _, token = AuthToken.objects.create(user=user, expiry=expiry)
        # The token alone on stdout, so scripts can capture it; the note goes to stderr.
        self.stdout.write(token)
        self.stderr.write(
            f"Token for {username} created"
            + (f", expires in {expires_in_days} days" if expires_in_days else ", no expiry")
            + ". It is shown only now."
        )
