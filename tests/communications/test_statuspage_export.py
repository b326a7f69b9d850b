"""The static export: ``manage.py statuspage_export DIR`` writes every file of the site, and the
render task (queued by every public change) writes them to VIGIL_STATUS_EXPORT_STORAGE."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.utils import timezone

from communications.public.site import EXPORT_MANIFEST, site_render
from communications.services.components import component_status_set
from communications.tasks import status_site_render
from tests.communications.feeds_data import make_component, make_incident, publish, staff


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def page(db):
    actor = staff()
    now = timezone.now()
    web = make_component(slug="web", public_name="Website", actor=actor, at=now - timedelta(1))
    incident = make_incident()
    publish(
        incident=incident,
        title="Website slow",
        status="investigating",
        body="Looking.",
        at=now - timedelta(hours=1),
        actor=actor,
        components={web: "degraded_performance"},
    )
    return {"incident": incident, "web": web, "actor": actor}


def written(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def test_export_command_writes_every_file_of_the_site(page, tmp_path):
    out = StringIO()
    call_command("statuspage_export", str(tmp_path / "site"), stdout=out)
    files = written(tmp_path / "site")
    expected = site_render()
    assert set(files) == set(expected) | {EXPORT_MANIFEST}
    assert json.loads(files[EXPORT_MANIFEST]) == sorted(expected)
    for path, artifact in expected.items():
        assert files[path] == artifact.body, path
    for path in (
        "api/v2/summary.json",
        "history.atom",
        "history.rss",
        "badge.svg",
        "components/web/badge.svg",
    ):
        assert path in files
    # What a consumer reads from the static copy is what Vigil serves.
    summary = json.loads(files["api/v2/summary.json"])
    assert summary["incidents"][0]["id"] == page["incident"].number
    assert f"Wrote {len(expected)} files" in out.getvalue()


def test_export_command_refuses_a_file_as_directory(db, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(CommandError, match="not a directory"):
        call_command("statuspage_export", str(target))
    assert target.read_text() == "x"


def test_a_second_export_replaces_the_files(page, tmp_path):
    call_command("statuspage_export", str(tmp_path), stdout=StringIO())
    component_status_set(component=page["web"], status="major_outage", actor=page["actor"])
    call_command("statuspage_export", str(tmp_path), stdout=StringIO())
    summary = json.loads((tmp_path / "api/v2/summary.json").read_bytes())
    assert summary["components"][0]["status"] == "major_outage"
    assert not [p for p in tmp_path.rglob("*_*.json")]  # no renamed copies beside the files


def test_render_task_writes_the_export_storage(page, tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "status_export": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    settings.VIGIL_STATUS_EXPORT_STORAGE = "status_export"
    component_status_set(component=page["web"], status="partial_outage", actor=page["actor"])
    status_site_render.apply()
    files = written(tmp_path)
    assert set(files) == set(site_render()) | {EXPORT_MANIFEST}
    summary = json.loads(files["api/v2/summary.json"])
    assert summary["status"]["indicator"] == "major"


def test_files_no_longer_on_the_site_leave_the_export(page, tmp_path):
    (tmp_path / "keep-me.txt").write_text("not ours")
    call_command("statuspage_export", str(tmp_path), stdout=StringIO())
    assert (tmp_path / "components/web/badge.svg").exists()
    other = make_component(slug="docs", public_name="Docs", actor=page["actor"])
    call_command("statuspage_export", str(tmp_path), stdout=StringIO())
    assert (tmp_path / "components/docs/badge.svg").exists()
    other.intervals.all().delete()
    other.delete()
    call_command("statuspage_export", str(tmp_path), stdout=StringIO())
    assert not (tmp_path / "components/docs/badge.svg").exists()
    assert (tmp_path / "components/web/badge.svg").exists()
    assert (tmp_path / "keep-me.txt").read_text() == "not ours"  # only its own files go


def test_no_export_storage_no_export(page, tmp_path, settings):
    settings.VIGIL_STATUS_EXPORT_STORAGE = ""
    status_site_render.apply()
    assert written(tmp_path) == {}
