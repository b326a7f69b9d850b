"""The embedded installation served for real: ``make run`` and ``make serve`` serve through
gunicorn with threads (config/gunicorn.py); ``make serve`` is production mode on one machine —
DEBUG off even in a checkout ``make run`` left development mode in, a secret key generated once
into ``var/secret_key`` (mode 0600) and reused, no demo data, ``check --deploy`` clean."""

from __future__ import annotations

import json
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVE = {"DJANGO_DEBUG": "0", "VIGIL_EMBEDDED_PRODUCTION": "1"}  # what `make serve` exports
MAKE_RUN = "# Written by make run\nBIND=127.0.0.1\nPORT=8123\n"

SHOW = (
    "import json, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'\n"
    "from django.conf import settings as s\n"
    "print(json.dumps([s.DEBUG, s.SECRET_KEY, s.VIGIL_BASE_URL, s.EMAIL_BACKEND]))"
)


def _clean_environ(var_dir: Path, **environ: str) -> dict[str, str]:
    """The caller's environment without any of Vigil's variables (none inherited from the test
    run's settings), with ``var_dir`` as the embedded directory and ``environ`` added."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VIGIL_", "CELERY_", "ANYMAIL_"))
        and key not in ("DATABASE_URL", "REDIS_URL", "CI")
    }
    env.update(VIGIL_VAR_DIR=str(var_dir), **environ)
    return env


def _settings(var_dir: Path, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=ROOT,
        env=_clean_environ(var_dir, **environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _values(process: subprocess.CompletedProcess) -> list:
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])


# --- make serve: production mode, its secret key --------------------------------------------------


def test_make_serve_generates_a_private_secret_key_once_and_reuses_it(tmp_path):
    debug, key, _base_url, email = _values(_settings(tmp_path, **SERVE))
    assert debug is False
    assert email == "django.core.mail.backends.smtp.EmailBackend"
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == key
    assert len(key) >= 50 and "development" not in key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".secret_key.*"))  # no temporary file left behind
    # The next start, and a manage.py command typed later (without make serve's variables),
    # sign with the same key.
    assert _values(_settings(tmp_path, **SERVE))[1] == key
    assert _values(_settings(tmp_path))[:2] == [False, key]


def test_the_environment_key_wins_and_no_file_is_written(tmp_path):
    given = "e" * 50
    assert _values(_settings(tmp_path, DJANGO_SECRET_KEY=given, **SERVE))[1] == given
    assert not (tmp_path / "secret_key").exists()


def test_a_make_run_checkout_is_not_development_under_make_serve(tmp_path):
    (tmp_path / "development").write_text(MAKE_RUN)
    debug, key, base_url, email = _values(_settings(tmp_path, VIGIL_EMBEDDED_PRODUCTION="1"))
    assert debug is False
    assert key == (tmp_path / "secret_key").read_text().strip()
    assert base_url == "http://localhost:8000"  # not make run's address
    assert email == "django.core.mail.backends.smtp.EmailBackend"


def test_with_database_url_the_key_must_come_from_the_environment(tmp_path):
    """A deployment on several machines shares no var/: no key file is made or read there."""
    url = "postgres://vigil:secret@db.invalid:5432/vigil"
    (tmp_path / "secret_key").write_text("f" * 50)
    refused = _settings(tmp_path, DATABASE_URL=url, **SERVE)
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off" in refused.stderr


def test_without_make_serve_no_key_is_generated(tmp_path):
    refused = _settings(tmp_path)
    assert "DJANGO_SECRET_KEY must be set" in refused.stderr
    assert not (tmp_path / "secret_key").exists()


def test_check_deploy_is_clean_under_make_serve(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_clean_environ(tmp_path, DJANGO_SETTINGS_MODULE="config.settings", **SERVE),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def _dry_run(target: str, var_dir: Path) -> str:
    dry = subprocess.run(
        ["make", "-n", target, "PORT=8124", "BIND=0.0.0.0", f"VIGIL_VAR_DIR={var_dir}"],
        cwd=ROOT,
        env=_clean_environ(var_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    return dry.stdout


def test_make_serve_prepares_without_demo_data_and_starts_the_procfile(tmp_path):
    commands = _dry_run("serve", tmp_path)
    assert "> " + str(tmp_path / "development") not in commands  # never written
    assert "demo" not in commands.replace("demo data and demo logins", "")
    for step in ("migrate --noinput", "collectstatic --noinput", "check --deploy"):
        assert f"manage.py {step}" in commands
    assert commands.index("collectstatic") < commands.index("config.devrun")
    assert "VIGIL_BIND=0.0.0.0 exec .venv/bin/python -m config.devrun --port 8124" in commands
    assert "manage.py createsuperuser" in commands


def test_make_serve_runs_every_step_in_production_mode(tmp_path):
    """``make serve`` in a copy of the Makefile whose virtualenv's python only prints what it
    was run with: every step, and the processes, see production mode and the address, even
    with DJANGO_DEBUG=1 left in the shell; a var/development left by make run is removed."""
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    (tmp_path / "pyproject.toml").write_text("")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/bin/sh\n"
        'echo "run: $* | $DJANGO_DEBUG $VIGIL_EMBEDDED_PRODUCTION $VIGIL_BASE_URL $VIGIL_BIND"\n'
    )
    python.chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "development").write_text(MAKE_RUN)
    env = _clean_environ(tmp_path / "var", DJANGO_DEBUG="1")
    del env["VIGIL_VAR_DIR"]
    served = subprocess.run(
        ["make", "serve", "PORT=8124", "BIND=0.0.0.0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stdout + served.stderr
    runs = [line for line in served.stdout.splitlines() if line.startswith("run: ")]
    assert [line.split(" | ")[0] for line in runs] == [
        "run: manage.py migrate --noinput",
        "run: manage.py collectstatic --noinput --verbosity 0",
        "run: manage.py check --deploy",
        "run: -m config.devrun --port 8124",
    ]
    for line in runs[:-1]:
        assert line.endswith(" | 0 1 http://localhost:8124 ")
    assert runs[-1].endswith(" | 0 1 http://localhost:8124 0.0.0.0")
    assert not (tmp_path / "var" / "development").exists()
    assert "make reset starts afresh" in served.stdout
    assert "manage.py createsuperuser" in served.stdout

    # A restart collects the static files again only when one changed (or the install did).
    def steps() -> list[str]:
        again = subprocess.run(
            ["make", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stdout + again.stderr
        lines = again.stdout.splitlines()
        return [line.split(" | ")[0] for line in lines if line.startswith("run:")]

    manifest = tmp_path / "staticfiles" / "staticfiles.json"
    manifest.parent.mkdir()
    manifest.touch()
    os.utime(tmp_path / "pyproject.toml", (0, 0))
    os.utime(tmp_path / ".venv" / ".installed", (1, 1))
    assert "run: manage.py collectstatic --noinput --verbosity 0" not in steps()
    edited = tmp_path / "incidents" / "static" / "incidents" / "admin.css"
    edited.parent.mkdir(parents=True)
    edited.touch()
    os.utime(manifest, (2, 2))
    assert "run: manage.py collectstatic --noinput --verbosity 0" in steps()


# --- the web process: gunicorn with threads, in development too -------------------------------


def _gunicorn(monkeypatch, **environ: str) -> dict:
    for name in ("DJANGO_DEBUG", "VIGIL_BIND", "PORT", "WEB_CONCURRENCY", "VIGIL_WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "gunicorn.py"))


def test_the_procfile_serves_through_gunicorn_with_its_settings():
    web = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    assert "gunicorn config.wsgi --config python:config.gunicorn" in web
    assert "runserver" not in web


def test_gunicorn_threads_and_reload_in_development_only(monkeypatch):
    served = _gunicorn(monkeypatch, VIGIL_BIND="0.0.0.0", PORT="8124")
    assert served["bind"] == "0.0.0.0:8124"
    assert (served["worker_class"], served["workers"], served["threads"]) == ("gthread", 2, 4)
    assert served["reload"] is False and served["accesslog"] is None
    assert served["graceful_timeout"] < 15  # config.devrun.KILL_WAIT
    assert served["control_socket_disable"] is True
    development = _gunicorn(monkeypatch, DJANGO_DEBUG="1", WEB_CONCURRENCY="3")
    assert development["bind"] == "127.0.0.1:8000"
    assert development["reload"] is True and development["accesslog"] == "-"
    assert development["workers"] == 3
    assert str(ROOT / "templates" / "admin" / "base_site.html") in development["reload_extra_files"]
    assert _gunicorn(monkeypatch, VIGIL_BIND="::1")["bind"] == "[::1]:8000"


@pytest.mark.django_db
def test_static_files_are_served_by_whitenoise_in_development(settings):
    """Under gunicorn nothing serves /static/ in DEBUG but WhiteNoise, from the apps' folders."""
    from whitenoise.middleware import WhiteNoiseMiddleware

    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    settings.DEBUG = True
    middleware = WhiteNoiseMiddleware(lambda request: None)
    assert middleware.use_finders and middleware.autorefresh
    assert middleware.find_file("/static/admin/css/base.css") is not None
