"""Tests of webstack.django.websocket_probe against real WebSocket servers (the `websockets` library).

The servers run in this process, on an asyncio event loop in a background thread; the probe talks to them over
real unix and TCP sockets.
"""

import asyncio
import base64
import hashlib
import importlib.util
import json
import socket
import struct
import threading
import time
from http import HTTPStatus
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from websockets.asyncio.server import serve, unix_serve

MODULE_PATH = Path(__file__).resolve().parents[4] / "plugins" / "modules" / "websocket_probe.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("websocket_probe", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wp = _load_module()

HOST = "shop.example.com"


# --- servers -----------------------------------------------------------------------------------------------------

class ServerLoop:
    """An asyncio event loop in a daemon thread that runs websockets servers."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ws-test-loop", daemon=True)
        self.thread.start()
        self.servers = []

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _unix(self, handler, path, **kwargs):
        server = await unix_serve(handler, path=str(path), **kwargs)
        self.servers.append(server)
        return server

    async def _tcp(self, handler, **kwargs):
        server = await serve(handler, "127.0.0.1", 0, **kwargs)
        self.servers.append(server)
        return server

    def unix(self, handler, path, **kwargs):
        self.run(self._unix(handler, path, **kwargs))
        return str(path)

    def tcp(self, handler, **kwargs):
        server = self.run(self._tcp(handler, **kwargs))
        return server.sockets[0].getsockname()[1]

    async def _close_all(self):
        for server in self.servers:
            server.close()
            await server.wait_closed()

    def stop(self):
        try:
            self.run(self._close_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def servers():
    loop = ServerLoop()
    yield loop
    loop.stop()


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def answer_other(ws):
    async for _message in ws:
        await ws.send("something else")


async def close_4001(ws):
    await ws.recv()
    await ws.close(4001, "go away")


async def silent(ws):
    async for _message in ws:
        pass


async def binary_answer(ws):
    async for _message in ws:
        await ws.send(b"\x00\x01binary")


async def fragmented_echo(ws):
    async for message in ws:
        third = len(message) // 3
        await ws.send([message[:third], message[third:2 * third], message[2 * third:]])


def forbid(connection, request):
    return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")


def probe_args(**kwargs):
    args = dict(host_header=HOST, timeout=5.0)
    args.update(kwargs)
    return args


def expect_failure(**kwargs):
    with pytest.raises(wp.ProbeError) as info:
        wp.probe_once(**probe_args(**kwargs))
    return info.value


# --- pure functions ----------------------------------------------------------------------------------------------

def test_accept_key_matches_rfc6455_example():
    assert wp.accept_for_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_make_key_is_16_random_bytes_base64():
    first, second = wp.make_key(), wp.make_key()
    assert len(base64.b64decode(first, validate=True)) == 16
    assert first != second


def test_build_handshake_has_required_headers():
    request = wp.build_handshake("/ws/echo/", HOST, "http://" + HOST, "dGhlIHNhbXBsZSBub25jZQ==").decode()
    assert request.startswith("GET /ws/echo/ HTTP/1.1\r\n")
    assert request.endswith("\r\n\r\n")
    lines = request.split("\r\n")
    for header in ("Host: shop.example.com", "Upgrade: websocket", "Connection: Upgrade",
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
                   "Origin: http://shop.example.com"):
        assert header in lines


@pytest.mark.parametrize("path, host_header, origin", [
    ("ws/echo/", HOST, None),
    ("/ws/echo/ HTTP/1.0\r\nX: y", HOST, None),
    ("/ws/", "a.example\r\nX-Injected: 1", None),
    ("/ws/", HOST, "http://a\nb"),
])
def test_build_handshake_rejects_bad_values(path, host_header, origin):
    with pytest.raises(ValueError):
        wp.build_handshake(path, host_header, origin, "key")


def test_parse_and_verify_response_head():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Multi: a\r\nx-multi: b")
    status, reason, headers = wp.parse_response_head(head)
    assert (status, reason) == (101, "Switching Protocols")
    assert headers["x-multi"] == "a, b"
    assert wp.verify_handshake(status, reason, headers, key) is True
    headers["sec-websocket-accept"] = "wrong="
    with pytest.raises(wp.ProbeError, match="Sec-WebSocket-Accept mismatch"):
        wp.verify_handshake(status, reason, headers, key)
    with pytest.raises(wp.ProbeError, match="handshake answered HTTP 403 Forbidden") as info:
        wp.verify_handshake(403, "Forbidden", {}, key)
    assert info.value.status == 403


def test_split_response_head_keeps_following_bytes():
    assert wp.split_response_head(b"HTTP/1.1 101 OK\r\nA: b\r\n") is None
    head, rest = wp.split_response_head(b"HTTP/1.1 101 OK\r\nA: b\r\n\r\n\x81\x02hi")
    assert head == b"HTTP/1.1 101 OK\r\nA: b"
    assert rest == b"\x81\x02hi"


def test_encode_frame_matches_rfc6455_examples():
    assert wp.encode_frame(wp.OP_TEXT, "Hello", mask=False) == bytes.fromhex("810548656c6c6f")
    masked = wp.encode_frame(wp.OP_TEXT, "Hello", mask_key=bytes.fromhex("37fa213d"))
    assert masked == bytes.fromhex("818537fa213d7f9f4d5158")
    assert wp.decode_frame(masked) == (True, wp.OP_TEXT, b"Hello", len(masked))


@pytest.mark.parametrize("length, header_size", [
    (0, 2), (5, 2), (125, 2), (126, 4), (200, 4), (65535, 4), (65536, 10), (70000, 10),
])
@pytest.mark.parametrize("mask", [True, False])
def test_frame_round_trip(length, header_size, mask):
    payload = bytes((i * 7) % 256 for i in range(length))
    frame = wp.encode_frame(wp.OP_BINARY, payload, mask=mask)
    assert len(frame) == header_size + (4 if mask else 0) + length
    assert bool(frame[1] & 0x80) is mask
    fin, opcode, decoded, consumed = wp.decode_frame(frame + b"\x81\x00")
    assert (fin, opcode, decoded, consumed) == (True, wp.OP_BINARY, payload, len(frame))
    for cut in (0, 1, header_size - 1, len(frame) - 1):
        if 0 <= cut < len(frame):
            with pytest.raises(wp.IncompleteFrame):
                wp.decode_frame(frame[:cut])


def test_non_final_frame_and_close_payload():
    frame = wp.encode_frame(wp.OP_TEXT, "part", fin=False)
    assert wp.decode_frame(frame)[:3] == (False, wp.OP_TEXT, b"part")
    closing = wp.encode_frame(wp.OP_CLOSE, wp.close_payload(4001, "go away"), mask=False)
    assert wp.parse_close_payload(wp.decode_frame(closing)[2]) == (4001, "go away")
    assert wp.parse_close_payload(b"") == (None, "")


def test_decode_rejects_invalid_frames():
    with pytest.raises(wp.ProbeError, match="reserved bits"):
        wp.decode_frame(b"\xc1\x00")
    with pytest.raises(wp.ProbeError, match="unknown opcode"):
        wp.decode_frame(b"\x83\x00")
    with pytest.raises(wp.ProbeError, match="control frame"):
        wp.decode_frame(b"\x09\x00")
    with pytest.raises(wp.ProbeError, match="limit"):
        wp.decode_frame(b"\x82\x7f" + struct.pack("!Q", 2 ** 40))
    with pytest.raises(ValueError):
        wp.encode_frame(wp.OP_PING, b"x" * 126)


# --- against real servers ----------------------------------------------------------------------------------------

def test_echo_over_unix_socket(servers, tmp_path):
    path = servers.unix(echo, tmp_path / "e.sock")
    result = wp.probe_once(**probe_args(unix_socket=path))
    assert result["status"] == 101
    assert result["accept_ok"] is True
    assert result["echo"] == "webstack-probe"
    assert result["elapsed"] >= 0
    assert result["response_headers"]["upgrade"].lower() == "websocket"
    assert all(name == name.lower() for name in result["response_headers"])


def test_echo_over_tcp(servers):
    port = servers.tcp(echo)
    result, failure = wp.probe(host="127.0.0.1", port=port, host_header=HOST, text="héllo ✓")
    assert failure is None
    assert result["echo"] == "héllo ✓"
    assert result["attempts"] == 1


@pytest.mark.parametrize("size", [200, 70000])
def test_long_messages_round_trip(servers, tmp_path, size):
    path = servers.unix(echo, tmp_path / "e.sock")
    message = "".join(chr(ord("a") + i % 26) for i in range(size))
    result = wp.probe_once(**probe_args(unix_socket=path, text=message))
    assert result["echo"] == message


def test_sends_host_origin_and_path(servers):
    seen = {}

    def record(connection, request):
        seen["path"] = request.path
        seen["host"] = request.headers["Host"]
        seen["origin"] = request.headers.get("Origin")

    port = servers.tcp(echo, process_request=record)
    wp.probe_once(**probe_args(host="127.0.0.1", port=port, path="/ws/echo/?probe=1"))
    assert seen == {"path": "/ws/echo/?probe=1", "host": HOST, "origin": "http://" + HOST}


def test_default_origin_passes_origin_check(servers):
    port = servers.tcp(echo, origins=["http://" + HOST])
    assert wp.probe_once(**probe_args(host="127.0.0.1", port=port))["echo"] == "webstack-probe"
    error = expect_failure(host="127.0.0.1", port=port, origin="https://evil.example")
    assert "403" in error.msg
    assert error.status == 403


def test_rejected_handshake_reports_403(servers, tmp_path):
    path = servers.unix(echo, tmp_path / "r.sock", process_request=forbid)
    error = expect_failure(unix_socket=path)
    assert error.msg == "handshake answered HTTP 403 Forbidden"
    assert error.status == 403


def test_echo_mismatch(servers, tmp_path):
    path = servers.unix(answer_other, tmp_path / "o.sock")
    error = expect_failure(unix_socket=path, text="a")
    assert error.msg == "echo mismatch: sent 'a', got 'something else'"
    assert error.status == 101


def test_close_code_is_reported(servers):
    port = servers.tcp(close_4001)
    error = expect_failure(host="127.0.0.1", port=port)
    assert "4001" in error.msg
    assert "go away" in error.msg


def test_binary_answer_fails(servers):
    port = servers.tcp(binary_answer)
    error = expect_failure(host="127.0.0.1", port=port)
    assert "binary message of 8 bytes" in error.msg


def test_fragmented_answer_is_reassembled(servers, monkeypatch):
    frames = []
    decode = wp.decode_frame

    def record(buf, *args, **kwargs):
        decoded = decode(buf, *args, **kwargs)
        frames.append(decoded[:2])
        return decoded

    monkeypatch.setattr(wp, "decode_frame", record)
    port = servers.tcp(fragmented_echo)
    message = "fragmented-" * 30
    assert wp.probe_once(**probe_args(host="127.0.0.1", port=port, text=message))["echo"] == message
    # the answer really came in pieces: a non-final text frame, then continuation frames
    assert frames[0] == (False, wp.OP_TEXT)
    assert (False, wp.OP_CONTINUATION) in frames


def test_ping_is_answered_with_pong(servers):
    pongs = []

    async def ping_then_echo(ws):
        message = await ws.recv()
        waiter = await ws.ping(b"are-you-there")
        pongs.append(await asyncio.wait_for(waiter, 3))
        await ws.send(message)

    port = servers.tcp(ping_then_echo)
    assert wp.probe_once(**probe_args(host="127.0.0.1", port=port))["echo"] == "webstack-probe"
    assert len(pongs) == 1


def test_probe_sends_close_1000(servers):
    codes = []

    async def echo_and_record(ws):
        await echo(ws)
        codes.append(ws.close_code)

    port = servers.tcp(echo_and_record)
    wp.probe_once(**probe_args(host="127.0.0.1", port=port))
    deadline = time.monotonic() + 3
    while not codes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert codes == [1000]


def test_handshake_only_against_silent_server(servers, tmp_path):
    path = servers.unix(silent, tmp_path / "s.sock")
    result = wp.probe_once(**probe_args(unix_socket=path, expect_echo=False, timeout=2.0))
    assert result["status"] == 101
    assert result["accept_ok"] is True
    assert result["echo"] is None


def test_silent_server_times_out_when_echo_expected(servers, tmp_path):
    path = servers.unix(silent, tmp_path / "s.sock")
    error = expect_failure(unix_socket=path, timeout=0.3)
    assert error.msg.startswith("timed out after 0.3s waiting for the echo")


def test_missing_socket(tmp_path):
    missing = str(tmp_path / "missing.sock")
    error = expect_failure(unix_socket=missing)
    assert error.msg == "no such unix socket %s" % missing
    assert error.status is None


def test_missing_socket_with_retries_counts_attempts(tmp_path):
    missing = str(tmp_path / "missing.sock")
    started = time.monotonic()
    result, failure = wp.probe(retries=2, delay=0.05, unix_socket=missing, host_header=HOST)
    assert result is None
    error, attempts = failure
    assert attempts == 3
    assert "no such unix socket" in error.msg
    assert time.monotonic() - started >= 0.1


def test_regular_file_is_not_a_socket(tmp_path):
    regular = tmp_path / "file.sock"
    regular.write_text("")
    error = expect_failure(unix_socket=str(regular))
    assert "is not a unix socket" in error.msg


def test_stale_socket_refuses(tmp_path):
    path = str(tmp_path / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # the file stays, nothing listens
    error = expect_failure(unix_socket=path)
    assert "connection refused" in error.msg


def test_tcp_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    error = expect_failure(host="127.0.0.1", port=port)
    assert error.msg == "connection refused by 127.0.0.1:%d" % port


def test_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # connections complete in the backlog, nobody answers
    try:
        error = expect_failure(host="127.0.0.1", port=listener.getsockname()[1], timeout=0.3)
    finally:
        listener.close()
    assert error.msg.startswith("timed out after 0.3s waiting for the handshake response")


def test_server_available_after_a_delay(servers, tmp_path):
    path = tmp_path / "late.sock"

    async def start_later():
        await asyncio.sleep(0.3)
        await servers._unix(echo, path)

    servers.submit(start_later())
    result, failure = wp.probe(retries=40, delay=0.05, unix_socket=str(path), host_header=HOST)
    assert failure is None
    assert result["attempts"] > 1
    assert result["echo"] == "webstack-probe"


class RawServer:
    """A one-connection TCP server that answers the handshake with hand-made bytes."""

    def __init__(self, answer):
        self.answer = answer
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn = self.listener.accept()[0]
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:")][0]
            conn.sendall(self.answer(key))
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    def close(self):
        self.listener.close()
        self.thread.join(5)


def handshake_101(key, accept=None):
    if accept is None:
        accept = base64.b64encode(hashlib.sha1(key + wp.WS_GUID.encode()).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def test_frame_in_same_packet_as_handshake_is_kept():
    # The echo arrives together with the response head, before the probe has even sent its message.
    server = RawServer(lambda key: handshake_101(key) + wp.encode_frame(wp.OP_TEXT, "webstack-probe", mask=False))
    try:
        result = wp.probe_once(**probe_args(host="127.0.0.1", port=server.port))
    finally:
        server.close()
    assert result["echo"] == "webstack-probe"


def test_wrong_accept_fails():
    server = RawServer(lambda key: handshake_101(key, accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    try:
        error = expect_failure(host="127.0.0.1", port=server.port)
    finally:
        server.close()
    assert "Sec-WebSocket-Accept mismatch" in error.msg
    assert error.status == 101


# --- documentation -----------------------------------------------------------------------------------------------

def test_documentation_matches_argument_spec(monkeypatch):
    captured = {}

    class Recorder:
        def __init__(self, **kwargs):
            captured.update(kwargs)
            raise RuntimeError("recorded")

    monkeypatch.setattr(wp, "AnsibleModule", Recorder)
    with pytest.raises(RuntimeError, match="recorded"):
        wp.main()
    spec = captured["argument_spec"]
    doc = yaml.safe_load(wp.DOCUMENTATION)
    assert doc["module"] == "websocket_probe"
    assert str(doc["version_added"]) == "0.1.0"
    assert set(doc["options"]) == set(spec)
    for name, option in doc["options"].items():
        assert option["type"] == spec[name]["type"], name
        assert option.get("default") == spec[name].get("default"), name
        assert bool(option.get("required")) == bool(spec[name].get("required")), name
        assert option["description"], name
    assert captured["supports_check_mode"] is True
    assert ("unix_socket", "host") in captured["mutually_exclusive"]
    assert captured["required_one_of"] == [("unix_socket", "host")]
    assert captured["required_together"] == [("host", "port")]
    returned = yaml.safe_load(wp.RETURN)
    assert set(returned) == {"status", "accept_ok", "echo", "elapsed", "attempts", "response_headers"}
    examples = yaml.safe_load(wp.EXAMPLES)
    assert all("webstack.django.websocket_probe" in task for task in examples)


# --- through AnsibleModule ---------------------------------------------------------------------------------------

def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            wp.main()
    return info.value.code, json.loads(capsys.readouterr().out)


def test_main_success_in_check_mode(servers, capsys):
    port = servers.tcp(echo)
    code, result = run_main(capsys, {"host": "127.0.0.1", "port": port, "host_header": HOST,
                                     "_ansible_check_mode": True})
    assert code == 0
    assert result["changed"] is False
    assert result["status"] == 101
    assert result["accept_ok"] is True
    assert result["echo"] == "webstack-probe"
    assert result["attempts"] == 1
    assert isinstance(result["elapsed"], float)
    assert "sec-websocket-accept" in result["response_headers"]


def test_main_sends_the_text_option(servers, capsys):
    port = servers.tcp(echo)
    code, result = run_main(capsys, {"host": "127.0.0.1", "port": port, "host_header": HOST, "text": "hello ✓"})
    assert code == 0
    assert result["echo"] == "hello ✓"


def test_main_has_no_message_option(capsys):
    # "message" is reserved by ansible-test's validate-modules; the option is called "text".
    code, result = run_main(capsys, {"host": "127.0.0.1", "port": 80, "host_header": HOST, "message": "x"})
    assert code == 1
    assert "Unsupported parameters" in result["msg"] and "message" in result["msg"]


def test_main_failure_reports_status_and_attempts(servers, tmp_path, capsys):
    path = servers.unix(echo, tmp_path / "r.sock", process_request=forbid)
    code, result = run_main(capsys, {"unix_socket": path, "host_header": HOST, "retries": 1, "delay": 0})
    assert code == 1
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["status"] == 403
    assert result["attempts"] == 2
    assert "handshake answered HTTP 403 Forbidden" in result["msg"]


def test_main_missing_socket(tmp_path, capsys):
    missing = str(tmp_path / "none.sock")
    code, result = run_main(capsys, {"unix_socket": missing, "host_header": HOST})
    assert code == 1
    assert result["msg"] == "no such unix socket %s" % missing
    assert result["status"] is None
    assert result["attempts"] == 1


@pytest.mark.parametrize("args, fragment", [
    ({"host_header": HOST}, "one of the following is required"),
    ({"host_header": HOST, "unix_socket": "/run/x.sock", "host": "127.0.0.1", "port": 80}, "mutually exclusive"),
    ({"host_header": HOST, "host": "127.0.0.1"}, "parameters are required together"),
    ({"host_header": HOST, "host": "127.0.0.1", "port": 80, "timeout": 0}, "timeout must be greater than 0"),
    ({"host_header": HOST, "host": "127.0.0.1", "port": 80, "path": "ws"}, "path must start with '/'"),
])
def test_main_rejects_bad_arguments(capsys, args, fragment):
    code, result = run_main(capsys, args)
    assert code == 1
    assert fragment in result["msg"]
