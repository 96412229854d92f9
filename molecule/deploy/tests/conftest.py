"""Helpers of the deploy scenario: run the collection's playbooks against the lab the
way a user would, and look at the result from outside (HTTP and WebSockets through
nginx on each host, state files, units, the database on db1)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_TOOLS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "tools"
sys.path.insert(0, str(PROJECT_TOOLS))
from loadgen import Load  # noqa: E402,F401  (the tests' load generator)

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = PROJECT / "molecule" / "deploy"
INVENTORIES = [PROJECT / "molecule" / "inventory", SCENARIO / "inventory"]
HOSTS = yaml.safe_load((INVENTORIES[0] / "hosts.yml").read_text())
WEB = sorted(HOSTS["webservers"]["hosts"])
SITE = "demo.test"
RELEASES = Path("/tmp/webstack-releases")


def address(name: str) -> str:
    for group in HOSTS.values():
        if name in group["hosts"]:
            return group["hosts"][name]["ansible_host"]
    raise KeyError(name)


class Run:
    """A finished ansible-playbook run: its exit code, output and per-host recap."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap = {
            m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", proc.stdout, re.M)
        }

    def changed(self, host: str) -> int:
        return self.recap.get(host, {}).get("changed", -1)

    def __repr__(self) -> str:
        return f"rc={self.rc}\n{self.output[-6000:]}"


def playbook(name: str, *args: str, **extra_vars) -> Run:
    """Run webstack.django.<name> with the scenario's inventories, as a user would."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / ".collections")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook")]
    argv += [f"--inventory={inv}" for inv in INVENTORIES]
    argv += [f"webstack.django.{name}", *args]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    return Run(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200, check=False))


def get(host: str, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    """GET a path through nginx on a web server, with the site's Host header."""
    conn = http.client.HTTPConnection(address(host), 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": SITE})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def health(host: str) -> dict:
    """/health/ through nginx on a web server, as JSON (with the HTTP status as http_status)."""
    response, body = get(host, "/health/")
    data = json.loads(body) if body.startswith(b"{") else {}
    return {**data, "http_status": response.status}


class WebSocket:
    """A minimal WebSocket client (text frames) through nginx on a lab host."""

    def __init__(self, host: str, path: str):
        self.sock = socket.create_connection((address(host), 80), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {SITE}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{SITE}\r\n\r\n").encode())
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


@pytest.fixture(scope="session")
def hosts():
    import testinfra

    inventory = str(INVENTORIES[0])
    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)
            for name in [*WEB, "db1"]}


def state(host) -> dict:
    """The deploy state file of the demo app on a testinfra host."""
    return json.loads(host.file("/etc/ansible/facts.d/webstack_demo.fact").content_string)
