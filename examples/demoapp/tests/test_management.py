import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

PROJECT_DIR = Path(__file__).resolve().parent.parent


def run_manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def base_env(tmp_path):
    """The current environment minus everything demoapp.settings reads."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DB_", "REDIS_", "WEBSTACK_"))
    }
    env["DJANGO_SQLITE_PATH"] = str(tmp_path / "check.sqlite3")
    return env


SECURE_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "demo.example.test",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://demo.example.test",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SESSION_COOKIE_SECURE": "true",
    "DJANGO_CSRF_COOKIE_SECURE": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}


def test_check_deploy_is_clean_with_secure_env(tmp_path):
    env = {**base_env(tmp_path), **SECURE_ENV, "DJANGO_SECRET_KEY": secrets.token_urlsafe(64)}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_insecure_defaults(tmp_path):
    env = {
        **base_env(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "demo.example.test",
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in output


@pytest.mark.django_db
def test_no_missing_migrations(capsys):
    call_command("makemigrations", "--check", "--dry-run")
    assert "No changes detected" in capsys.readouterr().out
