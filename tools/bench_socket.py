#!/usr/bin/env python3
"""Requests per second on an app server's unix socket (or loopback port), stdlib only.

Runs ON a lab host: C keep-alive clients loop on GET PATH for D seconds each; prints
one JSON line per target with requests, non-200 answers, errors and rate. Bounded in
time and count (--max-requests). Used by `make bench-appservers`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def client(target: str, path: str, host: str, deadline: float, counts: dict, budget: list) -> None:
    try:
        if target.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(target)
        else:
            address, port = target.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(address, int(port))
    except OSError:
        counts["errors"] += 1
        return
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts["ok" if status == 200 else "non_200"] += 1
            if b"connection: close" in head.lower():
                break
    except (OSError, asyncio.IncompleteReadError, ValueError):
        counts["errors"] += 1
    finally:
        writer.close()


async def bench(target: str, args: argparse.Namespace) -> dict:
    counts = {"ok": 0, "non_200": 0, "errors": 0}
    budget = [args.max_requests]
    start = time.monotonic()
    deadline = start + args.duration
    # Reconnect clients whose connection the server closed (e.g. max_requests), until the deadline.
    while time.monotonic() < deadline and budget[0] > 0:
        await asyncio.gather(*(client(target, args.path, args.host, deadline, counts, budget)
                               for _ in range(args.concurrency)))
    elapsed = time.monotonic() - start
    return {"target": target, "seconds": round(elapsed, 2), **counts,
            "rps": round(counts["ok"] / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", help="socket paths or 127.0.0.1:PORT")
    parser.add_argument("--path", default="/health/")
    parser.add_argument("--host", default="localhost", help="Host header")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    args = parser.parse_args()
    for target in args.targets:
        print(json.dumps(asyncio.run(bench(target, args))), flush=True)


if __name__ == "__main__":
    main()
