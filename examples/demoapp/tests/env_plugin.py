"""Test environment, loaded as a pytest plugin (``-p tests.env_plugin``).

pytest-django imports demoapp.settings before any conftest.py is loaded, so
the variables the settings read must be set by an early plugin instead.
DB_NAME and REDIS_URL are left alone: set them to run the suite against
PostgreSQL and Redis instead of SQLite and the in-memory channel layer.
"""
import os

TEST_ENV = {
    "DJANGO_SECRET_KEY": "test-only-secret-key-not-used-anywhere-else",
    "DJANGO_ALLOWED_HOSTS": "testserver, localhost,demo.example.test",
    "WEBSTACK_RELEASE_ID": "test-release-42",
    "WEBSTACK_SERVER_KIND": "test-server",
    "WEBSTACK_SLOT": "blue",
}

os.environ.update(TEST_ENV)
