"""nginx in front of the demo project, seen from the network as a user sees it."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess

import pytest
from conftest import (
    CA_FILE, PROJECT, address_of, connect, read_until_closed, request, run_playbook, tls_context, websocket_echo,
)


@pytest.fixture()
def addr(host):
    return address_of(host.backend.get_hostname())


def health(addr, host_header="shop.test", https=True):
    response = request(host_header, "/health/", https=https, address=addr)
    assert response.status == 200, response
    return json.loads(response.body)


def test_shop_health_through_nginx_over_https_is_served_by_gunicorn(addr):
    body = health(addr)
    assert body["status"] == "ok"
    assert body["server"] == "gunicorn-sync"
    assert body["release"] == "r1"


def test_nginx_tells_django_the_request_came_over_https(addr):
    # SECURE_PROXY_SSL_HEADER: the demo app reports the scheme it saw.
    assert health(addr)["scheme"] == "https"


def test_http_is_redirected_to_https(addr):
    response = request("shop.test", "/health/?a=1", address=addr)
    assert response.status == 301
    assert response.header("location") == "https://shop.test/health/?a=1"


def test_https_responses_carry_hsts_and_no_nginx_version(addr):
    response = request("shop.test", "/health/", https=True, address=addr)
    assert response.header("strict-transport-security") == "max-age=63072000"
    assert response.header("server") == "nginx"


def test_http2_is_offered_over_tls(addr):
    with socket.create_connection((addr, 443), timeout=10) as raw:
        with tls_context(alpn=["h2", "http/1.1"]).wrap_socket(raw, server_hostname="shop.test") as sock:
            assert sock.selected_alpn_protocol() == "h2"
            assert sock.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_1_1_is_refused(addr):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(CA_FILE))
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection((addr, 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="shop.test")


def hashed_static_path(addr):
    page = request("shop.test", "/", https=True, address=addr)
    assert page.status == 200
    match = re.search(rb'href="(/static/pulse/site\.[0-9a-f]{12}\.css)"', page.body)
    assert match, page.body[:500]
    return match.group(1).decode()


def test_hashed_static_files_are_cached_for_a_year(addr):
    response = request("shop.test", hashed_static_path(addr), https=True, address=addr)
    assert response.status == 200
    assert response.header("content-type") == "text/css"
    assert response.header("cache-control") == "public, max-age=31536000, immutable"
    assert response.header("strict-transport-security") == "max-age=63072000"
    assert response.header("x-content-type-options") == "nosniff"


def test_unhashed_static_files_are_cached_briefly(addr):
    response = request("shop.test", "/static/pulse/site.css", https=True, address=addr)
    assert response.status == 200
    assert response.header("cache-control") == "public, max-age=3600"


def test_static_files_outside_the_static_root_are_not_served(addr):
    assert request("shop.test", "/static/../manage.py", https=True, address=addr).status in (400, 404)
    assert request("shop.test", "/static/nothing-here.css", https=True, address=addr).status == 404


def test_media_files_are_served_from_the_media_directory(addr):
    response = request("shop.test", "/media/upload.txt", https=True, address=addr)
    assert response.status == 200
    assert response.body == b"an uploaded file\n"


def test_websocket_path_goes_to_daphne_through_nginx_over_tls(host, addr):
    handshake, echo = websocket_echo(addr, "shop.test", "/ws/echo/", "hello through nginx", https=True)
    assert handshake.status == 101
    assert echo == "hello through nginx"
    log = host.run("journalctl --no-pager -q -u shop-blue-daphne@1.service -u shop-blue-gunicorn.service -o cat")
    assert "/ws/echo/" in "\n".join(line for line in log.stdout.splitlines() if "WSCONNECT" in line)


def test_plain_http_locations_are_not_upgraded_when_websocket_paths_are_set(addr):
    # gunicorn sync cannot speak WebSocket; nginx must not pass the upgrade to it.
    handshake, _ = websocket_echo(addr, "shop.test", "/not-ws/", "x", https=True)
    assert handshake.status != 101


def test_chat_upgrades_on_every_location_over_plain_http(addr):
    body = health(addr, "chat.test", https=False)
    assert body["server"] == "uvicorn"
    handshake, echo = websocket_echo(addr, "chat.test", "/ws/echo/", "hello chat", https=False)
    assert handshake.status == 101
    assert echo == "hello chat"


@pytest.mark.parametrize("host_header", ["unknown.example", "10.231.0.99", "shop.test.evil.example"])
def test_unknown_host_gets_no_response_at_all(addr, host_header):
    with connect(addr, 80) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        assert read_until_closed(sock) == b""


def test_request_without_host_header_gets_no_response(addr):
    with connect(addr, 80) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_until_closed(sock) == b""


def test_unknown_tls_server_name_is_refused_in_the_handshake(addr):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="unknown.example")


def test_tls_passes_sslyze_mozilla_intermediate(host, addr):
    sslyze = PROJECT / ".venv-sslyze" / "bin" / "sslyze"
    result = subprocess.run(
        [str(sslyze), "--mozilla_config=intermediate", f"--certinfo_ca_file={CA_FILE}", f"shop.test:443{{{addr}}}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "shop.test:443: OK - Compliant." in result.stdout


def test_nginx_listens_only_on_80_and_443_beyond_loopback(host):
    sockets = host.socket.get_listening_sockets()
    public = {s for s in sockets if s.startswith("tcp://") and not re.match(r"tcp://(127\.|::1|\[::1\])", s)}
    ports = {s.rsplit(":", 1)[1] for s in public}
    assert ports <= {"22", "80", "443"}, public
