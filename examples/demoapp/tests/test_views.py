import json
import socket

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import AsyncClient, Client

from pulse.models import Hit

from .env_plugin import TEST_ENV


@pytest.mark.django_db
def test_health_reports_identity_over_wsgi(client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok"
    assert body["release"] == TEST_ENV["WEBSTACK_RELEASE_ID"]
    assert body["server"] == TEST_ENV["WEBSTACK_SERVER_KIND"]
    assert body["slot"] == TEST_ENV["WEBSTACK_SLOT"]
    assert body["interface"] == "wsgi"
    assert body["host"] == socket.gethostname()
    assert body["scheme"] == "http"
    assert body["database"] == connection.vendor
    assert isinstance(body["pid"], int)


@pytest.mark.django_db
def test_health_reports_https_behind_a_proxy_that_says_so(client):
    body = client.get("/health/", headers={"X-Forwarded-Proto": "https"}).json()
    assert body["scheme"] == "https"


@pytest.mark.django_db
def test_health_returns_503_without_leaking_connection_details(client, monkeypatch):
    secret_detail = (
        'connection to server at "db.internal" (10.0.0.9), port 5432 failed: '
        'FATAL: password authentication failed for user "demo" password=hunter2'
    )

    def failing_count():
        raise OperationalError(secret_detail)

    monkeypatch.setattr(Hit.objects, "count", failing_count)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "error"
    assert body["error"] == "OperationalError"
    assert body["release"] == TEST_ENV["WEBSTACK_RELEASE_ID"]
    assert body["interface"] == "wsgi"
    text = response.content.decode()
    for leaked in ("hunter2", "password", "db.internal", "10.0.0.9", "5432"):
        assert leaked not in text


def test_health_rejects_post(client):
    assert client.post("/health/").status_code == 405


def test_index_references_hashed_css_after_collectstatic(client, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((settings.STATIC_ROOT / "staticfiles.json").read_text())
    hashed_css = manifest["paths"]["pulse/site.css"]
    assert hashed_css != "pulse/site.css"
    assert (settings.STATIC_ROOT / hashed_css).is_file()

    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/static/{hashed_css}"' in html
    assert "/static/pulse/site.css" not in html
    assert TEST_ENV["WEBSTACK_RELEASE_ID"] in html
    assert TEST_ENV["WEBSTACK_SLOT"] in html
    assert "/ws/echo/" in html


def test_async_view_over_wsgi(client):
    response = client.get("/async/")
    assert response.status_code == 200
    assert response.json() == {"async": True, "interface": "wsgi"}


def test_async_view_over_asgi():
    response = async_to_sync(AsyncClient().get)("/async/")
    assert response.status_code == 200
    assert response.json() == {"async": True, "interface": "asgi"}


def expected_stream(interface):
    host = socket.gethostname()
    return "".join(f"chunk {n}/5 from {host} via {interface}\n" for n in range(1, 6))


def test_stream_over_wsgi(client):
    response = client.get("/stream/")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Accel-Buffering"] == "no"
    chunks = list(response.streaming_content)
    assert len(chunks) == 5
    assert b"".join(chunks).decode() == expected_stream("wsgi")


def test_stream_over_asgi():
    async def fetch():
        response = await AsyncClient().get("/stream/")
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    response, chunks = async_to_sync(fetch)()
    assert response.status_code == 200
    assert response.is_async
    assert len(chunks) == 5
    assert b"".join(chunks).decode() == expected_stream("asgi")


@pytest.mark.django_db
def test_hits_api_creates_rows_and_counts(client):
    assert client.get("/api/hits/").json() == {"count": 0}

    first = client.post("/api/hits/", data="{}", content_type="application/json")
    assert first.status_code == 201
    first_body = first.json()
    assert first_body["count"] == 1

    second = client.post("/api/hits/")
    assert second.status_code == 201
    assert second.json()["count"] == 2
    assert second.json()["id"] != first_body["id"]

    assert client.get("/api/hits/").json() == {"count": 2}
    hit = Hit.objects.get(pk=first_body["id"])
    assert hit.release == TEST_ENV["WEBSTACK_RELEASE_ID"]
    assert hit.server == TEST_ENV["WEBSTACK_SERVER_KIND"]
    assert hit.created_at is not None


@pytest.mark.django_db
def test_hits_api_is_csrf_exempt():
    response = Client(enforce_csrf_checks=True).post("/api/hits/")
    assert response.status_code == 201


def test_hits_api_rejects_other_methods(client):
    assert client.delete("/api/hits/").status_code == 405


@pytest.mark.django_db
def test_ssl_redirect_spares_health_and_honours_proxy_header(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    redirect = client.get("/async/")
    assert redirect.status_code == 301
    assert redirect["Location"] == "https://testserver/async/"
    # Plain-HTTP probes straight to the app server still get the health JSON.
    assert client.get("/health/").status_code == 200
    # Behind nginx, X-Forwarded-Proto: https marks the request as secure.
    proxied = client.get("/async/", headers={"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200
