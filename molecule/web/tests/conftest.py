"""Clients of the web scenario's tests: HTTP(S) and WebSocket requests sent from the
controller to nginx on the lab hosts, with any Host header or TLS server name."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = PROJECT / "molecule" / "web"
INVENTORY = PROJECT / "molecule" / "inventory"
TLS_DIR = Path("/tmp/webstack-web-tls")
CA_FILE = TLS_DIR / "ca.pem"
SECRET = "webstack-canary-7f3c9a1e5d-django-secret-key-for-tests-only-q8w2e4r6"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _VaultLoader(yaml.SafeLoader):
    pass


_VaultLoader.add_constructor("!vault", lambda loader, node: "<vaulted>")
VARS = yaml.load((SCENARIO / "vars" / "web.yml").read_text(), _VaultLoader)
HOSTS = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["webservers"]["hosts"]
WEB_HOSTS = sorted(HOSTS)


def address_of(name: str) -> str:
    return HOSTS[name]["ansible_host"]


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(CA_FILE))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def connect(address: str, port: int, server_name: str | None = None, timeout: float = 10):
    """A TCP connection, wrapped in TLS (verified against the test CA) when server_name is given."""
    sock = socket.create_connection((address, port), timeout=timeout)
    if server_name is None:
        return sock
    return tls_context().wrap_socket(sock, server_hostname=server_name)


def read_until_closed(sock, limit: int = 4 << 20) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def parse_head(raw: bytes) -> tuple[Response, bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    response = Response(status=int(lines[0].split()[1]))
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response.headers.setdefault(name.strip().lower(), []).append(value.strip())
    return response, rest


def request(host: str, path: str, *, https: bool = False, method: str = "GET", address: str | None = None,
            server_name: str | None = None) -> Response:
    """One HTTP/1.1 request with `Connection: close`, to nginx on a lab host."""
    port = 443 if https else 80
    sock = connect(address, port, (server_name or host) if https else None)
    with sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = read_until_closed(sock)
    response, body = parse_head(raw)
    if response.header("transfer-encoding") == "chunked":
        decoded = b""
        while body:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, body = decoded + body[:size], body[size + 2:]
        body = decoded
    response.body = body
    return response


def websocket_echo(address: str, host: str, path: str, message: str, *, https: bool) -> tuple[Response, str]:
    """Upgrade to a WebSocket through nginx, send one masked text frame, return the handshake and the echo."""
    key = base64.b64encode(os.urandom(16)).decode()
    scheme = "https" if https else "http"
    sock = connect(address, 443 if https else 80, host if https else None)
    with sock:
        sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {scheme}://{host}\r\n\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
        handshake, rest = parse_head(raw)
        if handshake.status != 101:
            return handshake, ""
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert handshake.header("sec-websocket-accept") == accept
        payload = message.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        data = rest
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data[0] & 0x0F == 0x1, f"expected a text frame, got opcode {data[0] & 0x0F}"
        length = data[1] & 0x7F
        echo = data[2:2 + length].decode()
        sock.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8")))
    return handshake, echo


def run_playbook(playbook: str, extra_vars: dict | None = None, *extra_args: str) -> subprocess.CompletedProcess:
    """Run one of the scenario's playbooks from the controller; return the finished process."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), f"--inventory={INVENTORY}",
            f"--vault-password-file={SCENARIO / 'vault-password'}", str(SCENARIO / playbook), *extra_args]
    if extra_vars:
        argv += ["--extra-vars", yaml.safe_dump(extra_vars, default_flow_style=True)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def lab_hosts():
    import testinfra

    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY)) for name in WEB_HOSTS}
