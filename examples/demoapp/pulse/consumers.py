import json
import socket

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every frame straight back: text as text, bytes as bytes."""

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class BroadcastConsumer(AsyncJsonWebsocketConsumer):
    """Relays each JSON message to every member of the "broadcast" group.

    With the Redis channel layer the group spans all servers, so "from" shows
    which host received the original message.
    """

    group_name = "broadcast"

    async def connect(self):
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # Answer malformed input instead of letting the decode error tear
        # down the connection.
        if text_data is None:
            await self.send_json({"error": "expected a JSON text frame"})
            return
        try:
            content = await self.decode_json(text_data)
        except json.JSONDecodeError:
            await self.send_json({"error": "invalid JSON"})
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        await self.channel_layer.group_send(
            self.group_name,
            {
                "type": "broadcast.message",
                "message": content,
                "from": socket.gethostname(),
                "release": settings.WEBSTACK_RELEASE_ID,
            },
        )

    async def broadcast_message(self, event):
        await self.send_json(
            {"message": event["message"], "from": event["from"], "release": event["release"]}
        )
