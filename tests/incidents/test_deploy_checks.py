"""Vigil's system checks: ``check --deploy`` warns while the demo's logins (published password)
are in the database, stays clean on a fresh database without tables (CI's ``make check``), and
an inbound email provider anymail does not know is an error."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
LOAD = {} if connection.vendor == "sqlite" else {"force": True}


def check(*args: str, **options) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", *args, stdout=out, stderr=err, **options)
    return out.getvalue() + err.getvalue()


@pytest.fixture
def demo_loaded(db, settings):
    settings.DEBUG = True
    call_command("demo_data", stdout=io.StringIO(), **LOAD)
    settings.DEBUG = False


def test_deploy_check_warns_while_the_demo_logins_exist(demo_loaded):
    output = check(deploy=True)
    assert "vigil.W001" in output
    assert "'vigil-demo'" in output
    assert "admin, ana, daniel, grace, julia, lena, maria, omar, priya, robert, sam, tom." in output


def test_no_warning_once_the_demo_logins_have_real_passwords(demo_loaded):
    User = get_user_model()
    for user in User.objects.all():
        user.set_password(f"real-{secrets.token_hex(8)}")
        user.save()
    assert "vigil.W001" not in check(deploy=True)


def test_only_the_logins_still_on_the_demo_password_are_named(demo_loaded):
    User = get_user_model()
    for user in User.objects.exclude(username__in=["maria", "tom"]):
        user.set_unusable_password()
        user.save()
    assert "database: maria, tom." in check(deploy=True)


def test_the_warning_is_a_deployment_check_only(demo_loaded):
    assert "vigil.W001" not in check()


def test_an_unknown_inbound_email_provider_is_an_error(settings, db):
    from django.core.management.base import SystemCheckError

    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "mailgnu"
    with pytest.raises(SystemCheckError, match=r"vigil\.E001"):
        check()
    settings.VIGIL_INBOUND_EMAIL_PROVIDER = "mailgun"
    assert "vigil.E001" not in check()


def test_check_deploy_in_production_mode_is_clean_on_a_fresh_database(tmp_path):
    """What CI's ``make check`` runs, on a database file with no tables yet."""
    # Not the test run's environment (tests/settings.py sets defaults into it): CI's.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL"}
        and not key.startswith(("DJANGO_", "VIGIL_", "ANYMAIL_", "CELERY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_ALLOWED_HOSTS="vigil.example.com",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        VIGIL_VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
