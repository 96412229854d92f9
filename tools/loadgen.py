#!/usr/bin/env python3
"""A bounded HTTP load generator for the lab: N clients send GET requests through
nginx on keep-alive connections, and count every response by status, every
connection error, the latency, and what answered (the `release` and `server` of a
JSON body, as the demo app's /health/ reports), in 100 ms buckets.

A request sent on a reused keep-alive connection that the server closed before
answering is sent once more on a new connection, as browsers and HTTP libraries
do; such retries are counted (keepalive_retries), and a request that fails again
counts as failed.

It stops by itself: after --duration seconds, or earlier when stop() is called
(tests and benchmarks run it in a thread around a playbook).

    python tools/loadgen.py --address 10.231.0.11 --host demo.test --clients 8 --duration 10
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

BUCKET = 0.1  # seconds
_CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class Sample:
    at: float          # seconds since the start
    status: int        # HTTP status, 0 for a connection error
    latency: float     # seconds
    error: str = ""
    answered_by: str = ""
    retried: bool = False  # sent again on a new connection after a keep-alive close


@dataclass
class Load:
    address: str
    host: str
    path: str = "/health/"
    port: int = 80
    clients: int = 8
    duration: float = 60.0
    timeout: float = 10.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    # -- running ---------------------------------------------------------------
    def start(self) -> "Load":
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> "Load":
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.stopped = time.monotonic()
        return self

    def run(self) -> "Load":
        self.start()
        self._stop.wait(self.duration)
        return self.stop()

    def mark(self) -> float:
        """Seconds since the start (for marking events on the timeline)."""
        return time.monotonic() - self.started

    def _client(self) -> None:
        conn, used = None, 0
        deadline = self.started + self.duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            begin = time.monotonic()
            retried = False
            while True:
                try:
                    if conn is None:
                        conn, used = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout), 0
                    conn.request("GET", self.path, headers={"Host": self.host})
                    response = conn.getresponse()
                    body = response.read()
                    used += 1
                    sample = Sample(begin - self.started, response.status, time.monotonic() - begin,
                                    answered_by=_answered_by(body), retried=retried)
                    if response.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as exc:
                    if conn is not None:
                        conn.close()
                    reused = conn is not None and used > 0
                    conn = None
                    # A server may close an idle keep-alive connection just as a request is
                    # sent on it (nginx does on reload). Clients (browsers, curl, urllib3)
                    # retry an idempotent request once on a new connection when nothing came
                    # back (RFC 9112, 9.3.1); so does this one, and it counts the retry.
                    if reused and not retried and isinstance(exc, _CLOSED_BEFORE_ANSWER):
                        retried = True
                        continue
                    sample = Sample(begin - self.started, 0, time.monotonic() - begin, error=type(exc).__name__)
                    time.sleep(0.01)
                    break
            with self._lock:
                self.samples.append(sample)
        if conn is not None:
            conn.close()

    # -- results ---------------------------------------------------------------
    def summary(self) -> dict:
        samples = sorted(self.samples, key=lambda s: s.at)
        ok = [s for s in samples if 200 <= s.status < 400]
        failed = [s for s in samples if not 200 <= s.status < 400]
        latencies = sorted(s.latency for s in samples) or [0.0]
        buckets: dict[int, Counter] = defaultdict(Counter)
        for s in samples:
            bucket = buckets[int(s.at / BUCKET)]
            bucket["requests"] += 1
            if not 200 <= s.status < 400:
                bucket["errors"] += 1
        return {
            "clients": self.clients,
            "seconds": round((self.stopped or time.monotonic()) - self.started, 3),
            "total": len(samples),
            "ok": len(ok),
            "failed": len(failed),
            "by_status": dict(sorted(Counter(str(s.status) for s in samples if s.status).items())),
            "errors": dict(Counter(s.error for s in samples if s.error)),
            "keepalive_retries": sum(1 for s in samples if s.retried),
            "answered_by": dict(Counter(s.answered_by for s in ok if s.answered_by)),
            "p50_ms": round(_percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(_percentile(latencies, 99) * 1000, 2),
            "max_ms": round(max(latencies) * 1000, 2),
            "rps": round(len(samples) / max((self.stopped or time.monotonic()) - self.started, 1e-9), 1),
            "timeline": [{"t": round(k * BUCKET, 1), **v} for k, v in sorted(buckets.items())],
        }


class WebSocket:
    """A minimal WebSocket client (text frames) through nginx."""

    def __init__(self, address: str, path: str, host: str, port: int = 80, timeout: float = 10.0):
        self.sock = socket.create_connection((address, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1]) if head else 0

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("WebSocket closed")
            data += chunk
        return data

    def receive(self) -> str:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        payload = self._read(length)
        assert first & 0x0F == 0x1, f"expected a text frame, got opcode {first & 0x0F}"
        return payload.decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class WebSocketOpens:
    """Opens a new WebSocket connection every `interval` seconds, has it echo one
    message and closes it; counts the opens that worked and those that did not (by
    reason), with the time of each, until stopped (or after `duration`)."""

    address: str
    host: str
    path: str = "/ws/echo/"
    port: int = 80
    interval: float = 0.1
    duration: float = 600.0
    results: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, "ok" or the error)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0

    def start(self) -> "WebSocketOpens":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> "WebSocketOpens":
        self._stop.set()
        self._thread.join(30)
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() - self.started < self.duration:
            n += 1
            at = time.monotonic() - self.started
            try:
                ws = WebSocket(self.address, self.path, self.host, self.port, timeout=5)
                try:
                    if ws.status != 101:
                        outcome = f"http {ws.status}"
                    else:
                        ws.send(f"open-{n}")
                        outcome = "ok" if ws.receive() == f"open-{n}" else "wrong echo"
                finally:
                    ws.close()
            except (OSError, ValueError, ConnectionError, AssertionError) as exc:
                outcome = type(exc).__name__
            self.results.append((round(at, 3), outcome))
            self._stop.wait(self.interval)

    def summary(self) -> dict:
        outcomes = Counter(outcome for _, outcome in self.results)
        return {"opened": len(self.results), "ok": outcomes.pop("ok", 0), "failed": sum(outcomes.values()),
                "failures": dict(outcomes)}


def _answered_by(body: bytes) -> str:
    if not body.startswith(b"{"):
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return f"{data.get('release', '?')}/{data.get('server', '?')}" if isinstance(data, dict) else ""


def _percentile(ordered: list[float], pct: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[min(int(pct), 99) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="address of nginx")
    parser.add_argument("--host", required=True, help="Host header")
    parser.add_argument("--path", default="/health/")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (the run stops by itself)")
    parser.add_argument("--timeline", action="store_true", help="include the 100 ms buckets in the output")
    args = parser.parse_args(argv)
    if args.clients < 1 or not 0 < args.duration <= 3600:
        parser.error("--clients must be 1 or more and --duration within (0, 3600]")
    socket.setdefaulttimeout(10)
    result = Load(args.address, args.host, args.path, args.port, args.clients, args.duration).run().summary()
    if not args.timeline:
        result.pop("timeline")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
