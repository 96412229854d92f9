import importlib.util
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from demoapp import settings as demo_settings

SETTINGS_FILE = Path(demo_settings.__file__)
SETTINGS_ENV_PREFIXES = ("DJANGO_", "DB_", "REDIS_", "WEBSTACK_")


def load_settings_module(monkeypatch, env):
    """Execute settings.py afresh, as a separate module, with only ``env`` set
    among the variables it reads."""
    for name in list(demo_settings.ENV):
        if name.startswith(SETTINGS_ENV_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("demoapp_settings_probe", SETTINGS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", " on "])
def test_env_bool_true_values(value):
    assert demo_settings.env_bool({"FLAG": value}, "FLAG") is True


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "enabled"])
def test_env_bool_false_values(value):
    assert demo_settings.env_bool({"FLAG": value}, "FLAG", default=True) is False


def test_env_bool_default_when_unset_or_blank():
    assert demo_settings.env_bool({}, "FLAG") is False
    assert demo_settings.env_bool({"FLAG": " "}, "FLAG", default=True) is True


def test_allowed_hosts_split_strip_and_drop_empties():
    env = {"DJANGO_ALLOWED_HOSTS": " a.example , b.example,, ,.c.example ,"}
    assert demo_settings.env_list(env, "DJANGO_ALLOWED_HOSTS") == [
        "a.example",
        "b.example",
        ".c.example",
    ]
    assert demo_settings.env_list({}, "DJANGO_ALLOWED_HOSTS") == []


def test_env_int_rejects_garbage():
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECURE_HSTS_SECONDS"):
        demo_settings.env_int({"DJANGO_SECURE_HSTS_SECONDS": "a year"}, "DJANGO_SECURE_HSTS_SECONDS", 0)


def test_sqlite_is_default_database(tmp_path):
    assert demo_settings.database_from_env({}, tmp_path) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": tmp_path / "db.sqlite3",
    }
    db = demo_settings.database_from_env({"DJANGO_SQLITE_PATH": "/srv/data/app.db"}, tmp_path)
    assert db["NAME"] == Path("/srv/data/app.db")


def test_postgres_chosen_when_db_name_set(tmp_path):
    env = {
        "DB_NAME": "demo",
        "DB_USER": "demo_user",
        "DB_PASSWORD": "s3cret",
        "DB_HOST": "db.internal",
        "DB_PORT": "6432",
    }
    db = demo_settings.database_from_env(env, tmp_path)
    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "demo",
        "USER": "demo_user",
        "PASSWORD": "s3cret",
        "HOST": "db.internal",
        "PORT": "6432",
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
    env["DB_CONN_MAX_AGE"] = "0"
    assert demo_settings.database_from_env(env, tmp_path)["CONN_MAX_AGE"] == 0
    del env["DB_CONN_MAX_AGE"]
    # Under an ASGI server the default is no persistent connections (they leak there).
    for kind, age in [("uvicorn", 0), ("daphne", 0), ("gunicorn-uvicorn", 0), ("gunicorn-asgi", 0),
                      ("gunicorn-sync", 60), ("gunicorn-gthread", 60)]:
        assert demo_settings.database_from_env({**env, "WEBSTACK_SERVER_KIND": kind}, tmp_path)["CONN_MAX_AGE"] == age


def test_channel_layer_selection():
    assert demo_settings.channel_layers_from_env({}) == {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    assert demo_settings.channel_layers_from_env({"REDIS_URL": "redis://10.0.0.5:6379/1"}) == {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://10.0.0.5:6379/1"]},
        }
    }


def test_settings_module_reads_environment(monkeypatch, tmp_path):
    module = load_settings_module(
        monkeypatch,
        {
            "DJANGO_SECRET_KEY": "x" * 60,
            "DJANGO_ALLOWED_HOSTS": "app.example, ,www.app.example",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://app.example",
            "DB_NAME": "demo",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
            "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
            "DJANGO_SECURE_HSTS_SECONDS": "3600",
            "WEBSTACK_RELEASE_ID": "r-7",
        },
    )
    assert module.DEBUG is False
    assert module.ALLOWED_HOSTS == ["app.example", "www.app.example"]
    assert module.CSRF_TRUSTED_ORIGINS == ["https://app.example"]
    assert module.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert module.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert module.STATIC_ROOT == tmp_path / "static"
    assert module.MEDIA_ROOT == tmp_path / "media"
    assert module.SECURE_HSTS_SECONDS == 3600
    assert module.WEBSTACK_RELEASE_ID == "r-7"
    assert module.WEBSTACK_SERVER_KIND == "unknown"
    assert module.WEBSTACK_SLOT == "unknown"
    assert "daphne" not in module.INSTALLED_APPS


def test_missing_secret_key_without_debug_raises(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        load_settings_module(monkeypatch, {})


def test_missing_secret_key_with_debug_uses_insecure_dev_key(monkeypatch):
    module = load_settings_module(monkeypatch, {"DJANGO_DEBUG": "yes"})
    assert module.DEBUG is True
    assert module.SECRET_KEY == demo_settings.INSECURE_DEV_SECRET_KEY
    assert module.SECRET_KEY.startswith("django-insecure")
