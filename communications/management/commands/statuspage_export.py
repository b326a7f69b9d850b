"""``manage.py statuspage_export DIR``: write the whole public status site, as it is now, into
DIR (the page, incident and history pages, the Statuspage v2 JSON, the feeds, the badges and the
stylesheet), ready for any static host. The render task keeps the storage named by
``VIGIL_STATUS_EXPORT_STORAGE`` up to date on every change; this command writes a copy once."""

from __future__ import annotations

from pathlib import Path

from django.core.files.storage import FileSystemStorage
from django.core.management.base import BaseCommand, CommandError

from communications.public.site import site_export, site_render


class Command(BaseCommand):
    help = "Write the whole public status site into a directory (a static copy)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", help="Where to write the files (created if missing).")

    def handle(self, *args, directory: str, **options) -> None:
        target = Path(directory).resolve()
        if target.exists() and not target.is_dir():
            raise CommandError(f"{target} exists and is not a directory.")
        target.mkdir(parents=True, exist_ok=True)
        files = site_render()
        site_export(files, FileSystemStorage(location=str(target)))
        self.stdout.write(f"Wrote {len(files)} files to {target}.")
