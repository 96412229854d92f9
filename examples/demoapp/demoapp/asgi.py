"""ASGI entry point for uvicorn, gunicorn's UvicornWorker and daphne.

HTTP goes to Django; WebSockets go to the Channels consumers in ``pulse``.
"""
import os

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoapp.settings")

# Set up Django (settings, app registry) before importing anything that may
# import models, such as the consumers behind pulse.routing.
django_asgi_app = get_asgi_application()

from pulse.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Rejects handshakes whose Origin header does not match ALLOWED_HOSTS,
        # including handshakes without an Origin header (see README).
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
