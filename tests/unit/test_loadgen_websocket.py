"""tools/loadgen.py's WebSocket opener against a local server that echoes, or refuses
the handshake, as the test says."""

from __future__ import annotations

import socketserver
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from loadgen import WebSocket, WebSocketOpens  # noqa: E402


class Echo(socketserver.BaseRequestHandler):
    refuse = threading.Event()

    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(1024)
            if not chunk:
                return
            head += chunk
        if self.refuse.is_set():
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.request.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        first, second = self.request.recv(2)
        length, mask = second & 0x7F, self.request.recv(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.request.recv(length)))
        self.request.sendall(bytes([first, len(payload)]) + payload)


@pytest.fixture()
def server():
    Echo.refuse.clear()
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_a_websocket_echoes(server):
    ws = WebSocket("127.0.0.1", "/ws/echo/", "demo.test", port=server)
    assert ws.status == 101
    ws.send("hello")
    assert ws.receive() == "hello"
    ws.close()


def test_opens_are_counted_ok_then_failed(server):
    opens = WebSocketOpens("127.0.0.1", "demo.test", port=server, interval=0.02).start()
    time.sleep(0.3)
    Echo.refuse.set()
    time.sleep(0.3)
    summary = opens.stop().summary()
    assert summary["ok"] > 3 and summary["failed"] > 3, summary
    assert summary["opened"] == summary["ok"] + summary["failed"]
    assert set(summary["failures"]) == {"http 502"}
    # ok first, failures after: the times say when
    first_failure = min(at for at, outcome in opens.results if outcome != "ok")
    assert all(outcome == "ok" for at, outcome in opens.results if at < first_failure)


def test_opens_stop_by_themselves(server):
    opens = WebSocketOpens("127.0.0.1", "demo.test", port=server, interval=0.01, duration=0.2).start()
    time.sleep(0.5)
    count = len(opens.results)
    time.sleep(0.2)
    assert len(opens.results) == count
    opens.stop()
