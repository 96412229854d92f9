import socket

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from demoapp.asgi import application

from .env_plugin import TEST_ENV

# Channels consumers close stale database connections around every event,
# which counts as database access for pytest-django.
pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = [(b"origin", b"http://demo.example.test")]


def run(coroutine_function):
    """Run an async test body to completion on a fresh event loop."""
    return async_to_sync(coroutine_function)()


def test_echo_round_trip_text_and_bytes():
    async def body():
        communicator = WebsocketCommunicator(application, "/ws/echo/", headers=ALLOWED_ORIGIN)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_to(text_data="hello, pulse ✓")
        assert await communicator.receive_from() == "hello, pulse ✓"
        await communicator.send_to(bytes_data=b"\x00\x01binary")
        response = await communicator.receive_output()
        assert response == {"type": "websocket.send", "bytes": b"\x00\x01binary"}
        await communicator.disconnect()

    run(body)


def test_broadcast_reaches_every_member():
    async def body():
        first = WebsocketCommunicator(application, "/ws/broadcast/", headers=ALLOWED_ORIGIN)
        second = WebsocketCommunicator(application, "/ws/broadcast/", headers=ALLOWED_ORIGIN)
        assert (await first.connect())[0]
        assert (await second.connect())[0]

        await first.send_json_to({"text": "hi all", "n": 1})
        expected = {
            "message": {"text": "hi all", "n": 1},
            "from": socket.gethostname(),
            "release": TEST_ENV["WEBSTACK_RELEASE_ID"],
        }
        assert await first.receive_json_from() == expected
        assert await second.receive_json_from() == expected
        # Exactly one copy each.
        assert await first.receive_nothing()
        assert await second.receive_nothing()

        await first.disconnect()
        await second.send_json_to("after first left")
        assert (await second.receive_json_from())["message"] == "after first left"
        await second.disconnect()

    run(body)


def test_broadcast_answers_invalid_json_and_stays_open():
    async def body():
        communicator = WebsocketCommunicator(application, "/ws/broadcast/", headers=ALLOWED_ORIGIN)
        assert (await communicator.connect())[0]
        await communicator.send_to(text_data="{not json")
        assert await communicator.receive_json_from() == {"error": "invalid JSON"}
        await communicator.send_to(bytes_data=b"\x00")
        assert await communicator.receive_json_from() == {"error": "expected a JSON text frame"}
        await communicator.send_json_to({"still": "open"})
        assert (await communicator.receive_json_from())["message"] == {"still": "open"}
        await communicator.disconnect()

    run(body)


def test_disallowed_origin_is_rejected():
    async def body():
        communicator = WebsocketCommunicator(
            application, "/ws/echo/", headers=[(b"origin", b"https://evil.example")]
        )
        connected, _ = await communicator.connect()
        assert not connected

    run(body)


def test_missing_origin_is_rejected():
    async def body():
        communicator = WebsocketCommunicator(application, "/ws/echo/")
        connected, _ = await communicator.connect()
        assert not connected

    run(body)

