"""Settings for the demoapp project.

Everything that differs between machines comes from environment variables
(see README.md); nothing secret is stored here. The small ``*_from_env``
helpers take the environment as an argument so tests can exercise them
without reloading this module.
"""
import os
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

TRUE_VALUES = {"1", "true", "yes", "on"}

# Used only when DJANGO_DEBUG is on and DJANGO_SECRET_KEY is unset. The
# "django-insecure" prefix makes `manage.py check --deploy` flag it.
INSECURE_DEV_SECRET_KEY = "django-insecure-demoapp-development-only-key-never-use-in-production"


def env_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Read a boolean: 1/true/yes/on (any case) is True, anything else False."""
    value = env.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in TRUE_VALUES


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(env: Mapping[str, str], name: str) -> list[str]:
    """Read a comma-separated list, stripping whitespace and dropping empties."""
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def env_path(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name, "").strip()
    return Path(value) if value else default


def secret_key_from_env(env: Mapping[str, str], debug: bool) -> str:
    key = env.get("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    if debug:
        return INSECURE_DEV_SECRET_KEY
    raise ImproperlyConfigured(
        "The DJANGO_SECRET_KEY environment variable must be set when DJANGO_DEBUG is off."
    )


# Server kinds (WEBSTACK_SERVER_KIND, set by the collection's units) that serve ASGI.
ASGI_KINDS = frozenset({"uvicorn", "daphne", "gunicorn-uvicorn", "gunicorn-asgi"})


def database_from_env(env: Mapping[str, str], base_dir: Path) -> dict:
    """PostgreSQL when DB_NAME is set, otherwise SQLite at DJANGO_SQLITE_PATH."""
    if env.get("DB_NAME", "").strip():
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env["DB_NAME"].strip(),
            "USER": env.get("DB_USER", ""),
            "PASSWORD": env.get("DB_PASSWORD", ""),
            "HOST": env.get("DB_HOST", ""),
            "PORT": env.get("DB_PORT", ""),
            # Persistent connections leak under ASGI (each request may run in another
            # thread), so the default follows the server kind the unit reports.
            "CONN_MAX_AGE": env_int(env, "DB_CONN_MAX_AGE", 0 if env.get("WEBSTACK_SERVER_KIND", "") in ASGI_KINDS else 60),
            "CONN_HEALTH_CHECKS": True,
        }
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env_path(env, "DJANGO_SQLITE_PATH", base_dir / "db.sqlite3"),
    }


def channel_layers_from_env(env: Mapping[str, str]) -> dict:
    """Redis channel layer when REDIS_URL is set, otherwise in-process memory."""
    redis_url = env.get("REDIS_URL", "").strip()
    if redis_url:
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url]},
            }
        }
    return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


ENV = os.environ

DEBUG = env_bool(ENV, "DJANGO_DEBUG")
SECRET_KEY = secret_key_from_env(ENV, DEBUG)
ALLOWED_HOSTS = env_list(ENV, "DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list(ENV, "DJANGO_CSRF_TRUSTED_ORIGINS")

# Identity of the running release, set by the deployment.
WEBSTACK_RELEASE_ID = ENV.get("WEBSTACK_RELEASE_ID", "unknown")
WEBSTACK_SERVER_KIND = ENV.get("WEBSTACK_SERVER_KIND", "unknown")
WEBSTACK_SLOT = ENV.get("WEBSTACK_SLOT", "unknown")

INSTALLED_APPS = [
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "pulse",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demoapp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
            ],
        },
    },
]

WSGI_APPLICATION = "demoapp.wsgi.application"
ASGI_APPLICATION = "demoapp.asgi.application"

DATABASES = {"default": database_from_env(ENV, BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS = channel_layers_from_env(ENV)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are collected into STATIC_ROOT and served by nginx. The
# manifest storage gives every file a content-hashed name for long caching.
STATIC_URL = "/static/"
STATIC_ROOT = env_path(ENV, "DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
MEDIA_URL = "/media/"
MEDIA_ROOT = env_path(ENV, "DJANGO_MEDIA_ROOT", BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# nginx terminates TLS and tells us the original scheme. It must set (not
# pass through) X-Forwarded-Proto. The Host header is used as sent.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False

SECURE_SSL_REDIRECT = env_bool(ENV, "DJANGO_SECURE_SSL_REDIRECT")
# Local probes (curl to the app socket, no proxy) must get the health JSON,
# not a redirect to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = env_bool(ENV, "DJANGO_SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_bool(ENV, "DJANGO_CSRF_COOKIE_SECURE")
SECURE_HSTS_SECONDS = env_int(ENV, "DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(ENV, "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool(ENV, "DJANGO_SECURE_HSTS_PRELOAD")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Everything goes to stderr, which systemd forwards to the journal (the
# journal adds its own timestamps). The "django" logger's default handlers
# (DEBUG-only console, mail_admins) are replaced so its records reach the
# root handler exactly once.
LOG_LEVEL = ENV.get("DJANGO_LOG_LEVEL", "INFO").strip().upper() or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
}
