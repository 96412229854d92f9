import asyncio
import logging
import os
import socket
import time

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connection
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from .models import Hit

logger = logging.getLogger(__name__)

STREAM_CHUNKS = 5
STREAM_DELAY_SECONDS = 0.02


def interface_of(request):
    """Which server interface delivered this request: "asgi" or "wsgi"."""
    return "asgi" if isinstance(request, ASGIRequest) else "wsgi"


def identity(request):
    return {
        "release": settings.WEBSTACK_RELEASE_ID,
        "server": settings.WEBSTACK_SERVER_KIND,
        "slot": settings.WEBSTACK_SLOT,
        "interface": interface_of(request),
        "host": socket.gethostname(),
        # What Django concluded from the proxy's X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
        "scheme": request.scheme,
    }


def uncached_json(data, status=200):
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def index(request):
    return render(request, "pulse/index.html", identity(request))


@require_safe
def health(request):
    """Report the release identity after a real query on the Hit table.

    Counting rows proves both that the database answers and that the
    migrations have been applied.
    """
    try:
        Hit.objects.count()
    except DatabaseError as exc:
        # Details (host, user, DSN) go to the log only, never to the client.
        logger.warning("health check failed: database error", exc_info=True)
        body = {"status": "error", "error": type(exc).__name__, **identity(request)}
        return uncached_json(body, status=503)
    body = {
        "status": "ok",
        **identity(request),
        "database": connection.vendor,
        "pid": os.getpid(),
    }
    return uncached_json(body)


@require_safe
async def async_view(request):
    await asyncio.sleep(0.01)
    return uncached_json({"async": True, "interface": interface_of(request)})


def stream_lines(interface):
    host = socket.gethostname()
    for number in range(1, STREAM_CHUNKS + 1):
        yield f"chunk {number}/{STREAM_CHUNKS} from {host} via {interface}\n"


async def async_stream(interface):
    for position, line in enumerate(stream_lines(interface)):
        if position:
            await asyncio.sleep(STREAM_DELAY_SECONDS)
        yield line


def sync_stream(interface):
    for position, line in enumerate(stream_lines(interface)):
        if position:
            time.sleep(STREAM_DELAY_SECONDS)
        yield line


@require_safe
def stream(request):
    """Stream a few lines, one at a time.

    Django serves an async iterator under WSGI (and a sync one under ASGI)
    only by buffering it whole and warning, so each interface gets the
    iterator kind it can stream natively.
    """
    interface = interface_of(request)
    chunks = async_stream(interface) if interface == "asgi" else sync_stream(interface)
    response = StreamingHttpResponse(chunks, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    # Ask nginx to pass chunks through as they come instead of buffering.
    response["X-Accel-Buffering"] = "no"
    return response


@csrf_exempt
@require_http_methods(["GET", "POST"])
def hits(request):
    """GET: how many hits were recorded. POST: record one more."""
    if request.method == "POST":
        hit = Hit.objects.create(
            release=settings.WEBSTACK_RELEASE_ID, server=settings.WEBSTACK_SERVER_KIND
        )
        return uncached_json({"id": hit.pk, "count": Hit.objects.count()}, status=201)
    return uncached_json({"count": Hit.objects.count()})
