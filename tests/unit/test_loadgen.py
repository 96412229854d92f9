"""tools/loadgen.py against a local HTTP server whose answers the test controls."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from loadgen import Load  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    plan: list[int] = []
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server's name)
        with self.lock:
            status = self.plan.pop(0) if self.plan else 200
        if status == -1:  # drop the connection without an answer
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = json.dumps({"release": "r1", "server": "fake"}).encode() if status == 200 else b"bad gateway"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_counts_statuses_errors_and_who_answered(server):
    Handler.plan = [502, 503, -1] + [200] * 20
    load = Load("127.0.0.1", "demo.test", port=server.server_address[1], clients=2, duration=0.5).run()
    result = load.summary()
    assert result["total"] > 23
    errors = sum(result["errors"].values())
    assert result["by_status"]["502"] == 1 and result["by_status"]["503"] == 1
    # The dropped connection is an error, or a retry when it had served a request before.
    assert errors + result["keepalive_retries"] == 1
    assert result["failed"] == 2 + errors
    assert result["answered_by"] == {"r1/fake": result["ok"]}
    assert sum(b["requests"] for b in result["timeline"]) == result["total"]
    assert sum(b.get("errors", 0) for b in result["timeline"]) == result["failed"]


def test_stops_by_itself_and_on_request(server):
    Handler.plan = []
    load = Load("127.0.0.1", "demo.test", port=server.server_address[1], clients=1, duration=0.3).run()
    assert 0.25 < load.summary()["seconds"] < 3
    early = Load("127.0.0.1", "demo.test", port=server.server_address[1], clients=2, duration=60).start()
    early.stop()
    assert early.summary()["seconds"] < 15


def test_a_keepalive_close_before_the_answer_is_retried_once(server):
    # The first request of a connection is answered; the second finds it closed
    # (-1) and is sent again on a new connection; a close on a new connection fails.
    Handler.plan = [200, -1, 200]
    load = Load("127.0.0.1", "demo.test", port=server.server_address[1], clients=1, duration=0.2).run()
    result = load.summary()
    assert result["keepalive_retries"] == 1
    assert result["failed"] == 0


def test_a_refused_connection_is_a_failure():
    load = Load("127.0.0.1", "demo.test", port=1, clients=1, duration=0.2).run()
    result = load.summary()
    assert result["total"] >= 1 and result["failed"] == result["total"] and result["ok"] == 0
