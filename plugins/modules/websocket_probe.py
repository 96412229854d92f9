#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: webstack.django maintainers
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: websocket_probe
short_description: Check that a server completes a WebSocket handshake and echoes a message
version_added: 0.1.0
description:
  - Opens a WebSocket connection (RFC 6455) to an application server such as daphne, uvicorn or gunicorn with
    C(UvicornWorker), either on its unix socket (for example before nginx is switched to a new slot) or on a TCP
    address, and checks that the handshake succeeds.
  - The handshake must be answered with HTTP status 101 and a correct C(Sec-WebSocket-Accept) header.
  - Unless O(expect_echo=false), the module then sends O(text) in one masked text frame and expects the same text
    back in a text message. Pings from the server are answered, pongs are skipped, and a close frame from the server
    fails the probe with its close code and reason.
  - The connection is always ended with a close frame (code 1000).
  - Runs on the managed host and uses only the Python standard library.
  - Plain HTTP only; TLS (C(wss://)) is not supported. Probe the app server or nginx on its plain-HTTP listener.
  - The module never changes anything; it always reports RV(ignore:changed=false).
author:
  - webstack.django maintainers (!UNKNOWN)
options:
  unix_socket:
    description:
      - Path of the unix socket the app server listens on.
      - Mutually exclusive with O(host) and O(port). One of O(unix_socket) or O(host) is required.
    type: path
  host:
    description:
      - Host name or IP address to connect to over TCP.
      - Requires O(port). Mutually exclusive with O(unix_socket).
    type: str
  port:
    description:
      - TCP port to connect to. Requires O(host).
    type: int
  path:
    description:
      - Request path (and optional query string) of the WebSocket endpoint. Must start with C(/).
    type: str
    default: /ws/echo/
  host_header:
    description:
      - Value of the C(Host) request header. The application checks it against its allowed hosts
        (Django C(ALLOWED_HOSTS)).
    type: str
    required: true
  origin:
    description:
      - Value of the C(Origin) request header.
      - Django Channels' C(AllowedHostsOriginValidator) rejects a handshake without an allowed C(Origin).
      - Defaults to C(http://) followed by O(host_header).
    type: str
  text:
    description:
      - Text sent to the server in one text frame. The server must send exactly the same text back.
    type: str
    default: webstack-probe
  expect_echo:
    description:
      - If V(true), send O(text) and require the same text back.
      - If V(false), only the handshake (status 101 and a correct C(Sec-WebSocket-Accept)) is checked and no message
        is sent.
    type: bool
    default: true
  timeout:
    description:
      - Time limit in seconds for one attempt (connect, handshake and echo).
    type: float
    default: 5.0
  retries:
    description:
      - How many more times the whole probe is tried after a failed attempt (connection refused, missing socket,
        rejected handshake, wrong answer, timeout).
    type: int
    default: 0
  delay:
    description:
      - Seconds to wait between attempts.
    type: float
    default: 1.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module is read-only, so it runs normally in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Messages sent back by the server are limited to 16 MiB and the response head to 64 KiB.
seealso:
  - name: RFC 6455 - The WebSocket Protocol
    description: The protocol the probe speaks.
    link: https://www.rfc-editor.org/rfc/rfc6455
"""

EXAMPLES = r"""
- name: Probe the new daphne slot on its unix socket before nginx is switched to it
  webstack.django.websocket_probe:
    unix_socket: /run/shop/blue-daphne-1.sock
    host_header: shop.example.com

- name: Probe the echo endpoint through nginx, waiting up to about 10 seconds for it
  webstack.django.websocket_probe:
    host: 127.0.0.1
    port: 80
    host_header: shop.example.com
    origin: https://shop.example.com
    path: /ws/echo/
    text: "deploy {{ ansible_date_time.iso8601 }}"
    retries: 10
    delay: 1
  register: ws_probe

- name: Only check the handshake of an endpoint that does not echo
  webstack.django.websocket_probe:
    host: 127.0.0.1
    port: 8001
    host_header: shop.example.com
    path: /ws/broadcast/
    expect_echo: false
"""

RETURN = r"""
status:
  description:
    - HTTP status of the handshake response. On failure it is the status of the last attempt, or V(null) if no
      response head was received.
  returned: always
  type: int
  sample: 101
accept_ok:
  description: Whether the C(Sec-WebSocket-Accept) header matched the key that was sent.
  returned: success
  type: bool
  sample: true
echo:
  description: Text the server sent back, or V(null) with O(expect_echo=false).
  returned: success
  type: str
  sample: webstack-probe
elapsed:
  description: Duration in seconds of the successful attempt.
  returned: success
  type: float
  sample: 0.0123
attempts:
  description: Number of attempts made.
  returned: always
  type: int
  sample: 1
response_headers:
  description: Headers of the handshake response, with lower-cased names. Repeated headers are joined with C(, ).
  returned: success
  type: dict
  sample:
    upgrade: websocket
    connection: Upgrade
    sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    server: daphne
"""

import base64
import errno
import hashlib
import os
import socket
import stat
import struct
import time

from ansible.module_utils.basic import AnsibleModule

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_SIZE = 64 * 1024
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
RECV_SIZE = 65536

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
KNOWN_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY) + CONTROL_OPCODES


class ProbeError(Exception):
    """A failed probe attempt; status is the HTTP status of the handshake, if one was received."""

    def __init__(self, msg, status=None):
        super(ProbeError, self).__init__(msg)
        self.msg = msg
        self.status = status


class IncompleteFrame(Exception):
    """decode_frame needs more bytes."""


# --- handshake ---------------------------------------------------------------------------------------------------

def make_key():
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for_key(key):
    """The Sec-WebSocket-Accept value a server must answer to key (RFC 6455, 4.2.2)."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _check_header_value(name, value):
    if any(c in value for c in "\r\n\0"):
        raise ValueError("%s must not contain CR, LF or NUL characters" % name)


def build_handshake(path, host_header, origin, key):
    """The client's opening handshake as bytes."""
    if not path.startswith("/"):
        raise ValueError("path must start with '/', got %r" % path)
    if any(c in path for c in " \r\n\0\t"):
        raise ValueError("path must not contain whitespace or NUL characters")
    _check_header_value("host_header", host_header)
    if origin is not None:
        _check_header_value("origin", origin)
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s" % host_header,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append("Origin: %s" % origin)
    lines.append("User-Agent: webstack.django.websocket_probe")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def split_response_head(buf):
    """Split buf at the end of the HTTP response head.

    Returns (head, rest) with head excluding the blank line, or None if the head is not complete yet.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    return buf[:end], buf[end + 4:]


def parse_response_head(head):
    """Parse an HTTP/1.1 response head into (status, reason, headers) with lower-cased header names."""
    text = head.decode("iso-8859-1")
    lines = text.split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProbeError("malformed HTTP status line in handshake response: %r" % status_line[:200])
    status = int(parts[1])
    reason = parts[2].strip() if len(parts) > 2 else ""
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and headers:
            # obsolete line folding: continue the previous header
            last = list(headers)[-1]
            headers[last] = headers[last] + " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProbeError("malformed header line in handshake response: %r" % line[:200], status)
        name = name.strip().lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    return status, reason, headers


def _header_tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def verify_handshake(status, reason, headers, key):
    """Raise ProbeError unless the response is a valid answer to a handshake sent with key."""
    if status != 101:
        raise ProbeError(("handshake answered HTTP %d %s" % (status, reason)).rstrip(), status)
    if "websocket" not in _header_tokens(headers.get("upgrade")):
        raise ProbeError("handshake answered 101 without 'Upgrade: websocket' (got %r)"
                         % headers.get("upgrade"), status)
    if "upgrade" not in _header_tokens(headers.get("connection")):
        raise ProbeError("handshake answered 101 without 'Connection: Upgrade' (got %r)"
                         % headers.get("connection"), status)
    expected = accept_for_key(key)
    got = headers.get("sec-websocket-accept")
    if got is None:
        raise ProbeError("handshake answered 101 without a Sec-WebSocket-Accept header", status)
    if got != expected:
        raise ProbeError("handshake Sec-WebSocket-Accept mismatch: expected %r, got %r" % (expected, got), status)
    return True


# --- frames ------------------------------------------------------------------------------------------------------

def apply_mask(data, mask_key):
    """XOR data with the 4-byte mask_key (masking and unmasking are the same operation)."""
    if not data:
        return b""
    n = len(data)
    repeated = (mask_key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload, fin=True, mask=True, mask_key=None):
    """Encode one frame. Client frames must be masked; mask_key defaults to 4 random bytes."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if opcode in CONTROL_OPCODES and (len(payload) > 125 or not fin):
        raise ValueError("control frames must be final and carry at most 125 bytes")
    first = (0x80 if fin else 0) | (opcode & 0x0F)
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask:
        if mask_key is None:
            mask_key = os.urandom(4)
        if len(mask_key) != 4:
            raise ValueError("mask_key must be 4 bytes")
        return header + mask_key + apply_mask(payload, mask_key)
    return header + payload


def decode_frame(buf, max_payload=MAX_MESSAGE_SIZE):
    """Decode the frame at the start of buf.

    Returns (fin, opcode, payload, consumed). Raises IncompleteFrame if buf does not hold a whole frame yet and
    ProbeError for a frame that breaks the protocol.
    """
    if len(buf) < 2:
        raise IncompleteFrame()
    first, second = buf[0], buf[1]
    fin = bool(first & 0x80)
    if first & 0x70:
        raise ProbeError("server sent a frame with reserved bits set (no extension was negotiated)")
    opcode = first & 0x0F
    if opcode not in KNOWN_OPCODES:
        raise ProbeError("server sent a frame with unknown opcode 0x%x" % opcode)
    masked = bool(second & 0x80)
    length = second & 0x7F
    pos = 2
    if length == 126:
        if len(buf) < pos + 2:
            raise IncompleteFrame()
        length = struct.unpack("!H", bytes(buf[pos:pos + 2]))[0]
        pos += 2
    elif length == 127:
        if len(buf) < pos + 8:
            raise IncompleteFrame()
        length = struct.unpack("!Q", bytes(buf[pos:pos + 8]))[0]
        pos += 8
    if opcode in CONTROL_OPCODES and (length > 125 or not fin):
        raise ProbeError("server sent an invalid control frame (fragmented or longer than 125 bytes)")
    if length > max_payload:
        raise ProbeError("server sent a frame of %d bytes, more than the limit of %d" % (length, max_payload))
    mask_key = None
    if masked:
        if len(buf) < pos + 4:
            raise IncompleteFrame()
        mask_key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + length:
        raise IncompleteFrame()
    payload = bytes(buf[pos:pos + length])
    if mask_key is not None:
        payload = apply_mask(payload, mask_key)
    return fin, opcode, payload, pos + length


def parse_close_payload(payload):
    """(code, reason) of a close frame's payload; code is None when the frame carries none."""
    if len(payload) < 2:
        return None, ""
    code = struct.unpack("!H", payload[:2])[0]
    reason = payload[2:].decode("utf-8", "replace")
    return code, reason


def close_payload(code=1000, reason=""):
    return struct.pack("!H", code) + reason.encode("utf-8")


# --- connection --------------------------------------------------------------------------------------------------

def _fmt_seconds(value):
    return ("%g" % value) + "s"


class Connection(object):
    """A client socket with a deadline for the whole attempt and a receive buffer."""

    def __init__(self, sock, timeout, deadline, target):
        self.sock = sock
        self.timeout = timeout
        self.deadline = deadline
        self.target = target
        self.buf = bytearray()

    def _remaining(self, waiting_for):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError("timed out after %s waiting for %s from %s"
                             % (_fmt_seconds(self.timeout), waiting_for, self.target))
        return remaining

    def send(self, data, what):
        try:
            self.sock.settimeout(self._remaining("sending " + what))
            self.sock.sendall(data)
        except socket.timeout:
            raise ProbeError("timed out after %s sending %s to %s" % (_fmt_seconds(self.timeout), what, self.target))
        except OSError as e:
            raise ProbeError("sending %s to %s failed: %s" % (what, self.target, e.strerror or e))

    def fill(self, waiting_for):
        """Receive more bytes into the buffer."""
        try:
            self.sock.settimeout(self._remaining(waiting_for))
            data = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            raise ProbeError("timed out after %s waiting for %s from %s"
                             % (_fmt_seconds(self.timeout), waiting_for, self.target))
        except OSError as e:
            raise ProbeError("connection to %s failed while waiting for %s: %s"
                             % (self.target, waiting_for, e.strerror or e))
        if not data:
            raise ProbeError("%s closed the connection while the probe was waiting for %s"
                             % (self.target, waiting_for))
        self.buf.extend(data)

    def read_head(self):
        """Read the handshake response head; bytes after it stay in the buffer."""
        while True:
            split = split_response_head(bytes(self.buf[:MAX_HEAD_SIZE + 4]))
            if split is not None:
                head, _rest = split
                del self.buf[:len(head) + 4]
                return head
            if len(self.buf) > MAX_HEAD_SIZE:
                raise ProbeError("handshake response head from %s is larger than %d bytes"
                                 % (self.target, MAX_HEAD_SIZE))
            self.fill("the handshake response")

    def read_frame(self, waiting_for):
        while True:
            try:
                fin, opcode, payload, consumed = decode_frame(self.buf)
            except IncompleteFrame:
                self.fill(waiting_for)
                continue
            del self.buf[:consumed]
            return fin, opcode, payload

    def read_text_message(self, waiting_for):
        """Read frames until a complete text message arrives; answer pings, skip pongs, fail on close."""
        fragments = None
        fragments_size = 0
        while True:
            fin, opcode, payload = self.read_frame(waiting_for)
            if opcode == OP_PING:
                self.send(encode_frame(OP_PONG, payload), "a pong")
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code, reason = parse_close_payload(payload)
                if code is None:
                    raise ProbeError("%s closed the WebSocket without a close code while the probe was waiting for %s"
                                     % (self.target, waiting_for))
                raise ProbeError("%s closed the WebSocket with code %d%s while the probe was waiting for %s"
                                 % (self.target, code, " (%s)" % reason if reason else "", waiting_for))
            if opcode == OP_CONTINUATION:
                if fragments is None:
                    raise ProbeError("server sent a continuation frame without a message to continue")
                fragments.append(payload)
                fragments_size += len(payload)
            elif fragments is not None:
                raise ProbeError("server started a new message before finishing the previous one")
            elif opcode == OP_BINARY:
                # read the rest of a fragmented binary message only to report it
                size = len(payload)
                while not fin:
                    fin, opcode, more = self.read_frame(waiting_for)
                    if opcode == OP_CONTINUATION:
                        size += len(more)
                raise ProbeError("expected a text message from %s, got a binary message of %d bytes"
                                 % (self.target, size))
            else:
                fragments = [payload]
                fragments_size = len(payload)
            if fragments_size > MAX_MESSAGE_SIZE:
                raise ProbeError("message from %s is larger than %d bytes" % (self.target, MAX_MESSAGE_SIZE))
            if fin:
                data = b"".join(fragments)
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProbeError("text message from %s is not valid UTF-8" % self.target)

    def close(self, code=1000, handshake_done=True):
        """Send a close frame, wait briefly for the server's answer and close the socket; never raises.

        Without a completed handshake the socket is just closed.
        """
        try:
            if not handshake_done:
                return
            self.sock.settimeout(max(0.05, min(1.0, self.deadline - time.monotonic())))
            self.sock.sendall(encode_frame(OP_CLOSE, close_payload(code)))
            # Wait for the server's close frame (or end of stream) so the server sees a clean close.
            end = time.monotonic() + self.sock.gettimeout()
            while time.monotonic() < end:
                try:
                    fin, opcode, payload, consumed = decode_frame(self.buf)
                except IncompleteFrame:
                    data = self.sock.recv(RECV_SIZE)
                    if not data:
                        break
                    self.buf.extend(data)
                    continue
                del self.buf[:consumed]
                if opcode == OP_CLOSE:
                    break
        except Exception:
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass


def connect(unix_socket=None, host=None, port=None, timeout=5.0):
    """Open the stream socket; returns (sock, target description)."""
    if unix_socket:
        target = "unix socket %s" % unix_socket
        try:
            mode = os.stat(unix_socket).st_mode
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ProbeError("no such unix socket %s" % unix_socket)
            raise ProbeError("cannot access unix socket %s: %s" % (unix_socket, e.strerror or e))
        if not stat.S_ISSOCK(mode):
            raise ProbeError("%s exists but is not a unix socket" % unix_socket)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(unix_socket)
        except socket.timeout:
            sock.close()
            raise ProbeError("timed out after %s connecting to %s" % (_fmt_seconds(timeout), target))
        except OSError as e:
            sock.close()
            if e.errno == errno.ENOENT:
                raise ProbeError("no such unix socket %s" % unix_socket)
            if e.errno == errno.ECONNREFUSED:
                raise ProbeError("connection refused on %s (nothing is listening)" % target)
            raise ProbeError("connecting to %s failed: %s" % (target, e.strerror or e))
        return sock, target
    target = "%s:%d" % (("[%s]" % host) if ":" in host else host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise ProbeError("timed out after %s connecting to %s" % (_fmt_seconds(timeout), target))
    except socket.gaierror as e:
        raise ProbeError("cannot resolve %s: %s" % (host, e.strerror or e))
    except OSError as e:
        if e.errno == errno.ECONNREFUSED:
            raise ProbeError("connection refused by %s" % target)
        raise ProbeError("connecting to %s failed: %s" % (target, e.strerror or e))
    return sock, target


def probe_once(unix_socket=None, host=None, port=None, path="/ws/echo/", host_header="localhost", origin=None,
               text="webstack-probe", expect_echo=True, timeout=5.0):
    """One probe attempt. Returns a result dict or raises ProbeError."""
    if origin is None:
        origin = "http://%s" % host_header
    key = make_key()
    request = build_handshake(path, host_header, origin, key)
    start = time.monotonic()
    deadline = start + timeout
    sock, target = connect(unix_socket=unix_socket, host=host, port=port, timeout=timeout)
    conn = Connection(sock, timeout, deadline, target)
    status = None
    upgraded = False
    try:
        conn.send(request, "the handshake")
        head = conn.read_head()
        status, reason, headers = parse_response_head(head)
        upgraded = verify_handshake(status, reason, headers, key)
        echo = None
        if expect_echo:
            conn.send(encode_frame(OP_TEXT, text), "the message")
            echo = conn.read_text_message("the echo of the message")
            if echo != text:
                raise ProbeError("echo mismatch: sent %s, got %s" % (_shorten(text), _shorten(echo)), status)
        elapsed = time.monotonic() - start
    except ProbeError as e:
        if e.status is None:
            e.status = status
        conn.close(handshake_done=upgraded)
        raise
    except BaseException:
        conn.close(handshake_done=upgraded)
        raise
    conn.close()
    return dict(
        status=status,
        accept_ok=True,
        echo=echo,
        elapsed=round(elapsed, 6),
        response_headers=headers,
    )


def _shorten(text, limit=200):
    if len(text) <= limit:
        return repr(text)
    return "%r... (%d characters)" % (text[:limit], len(text))


def probe(retries=0, delay=1.0, sleep=time.sleep, **kwargs):
    """Run probe_once up to retries + 1 times.

    Returns (result, None) on success or (None, (error, attempts)) after the last failed attempt; result includes
    attempts.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            result = probe_once(**kwargs)
        except ProbeError as e:
            if attempts > retries:
                return None, (e, attempts)
            if delay > 0:
                sleep(delay)
            continue
        result["attempts"] = attempts
        return result, None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unix_socket=dict(type="path"),
            host=dict(type="str"),
            port=dict(type="int"),
            path=dict(type="str", default="/ws/echo/"),
            host_header=dict(type="str", required=True),
            origin=dict(type="str"),
            text=dict(type="str", default="webstack-probe"),
            expect_echo=dict(type="bool", default=True),
            timeout=dict(type="float", default=5.0),
            retries=dict(type="int", default=0),
            delay=dict(type="float", default=1.0),
        ),
        mutually_exclusive=[("unix_socket", "host"), ("unix_socket", "port")],
        required_one_of=[("unix_socket", "host")],
        required_together=[("host", "port")],
        supports_check_mode=True,
    )
    p = module.params

    problems = []
    if p["timeout"] <= 0:
        problems.append("timeout must be greater than 0")
    if p["retries"] < 0:
        problems.append("retries must not be negative")
    if p["delay"] < 0:
        problems.append("delay must not be negative")
    if p["port"] is not None and not 0 < p["port"] < 65536:
        problems.append("port must be between 1 and 65535")
    if p["host"] is not None and not p["host"]:
        problems.append("host must not be empty")
    if not p["host_header"]:
        problems.append("host_header must not be empty")
    try:
        build_handshake(p["path"], p["host_header"], p["origin"], "x")
    except ValueError as e:
        problems.append(str(e))
    if problems:
        module.fail_json(msg="; ".join(problems), changed=False, status=None, attempts=0)

    result, failure = probe(
        retries=p["retries"],
        delay=p["delay"],
        unix_socket=p["unix_socket"],
        host=p["host"],
        port=p["port"],
        path=p["path"],
        host_header=p["host_header"],
        origin=p["origin"],
        text=p["text"],
        expect_echo=p["expect_echo"],
        timeout=p["timeout"],
    )
    if failure is not None:
        error, attempts = failure
        msg = error.msg
        if attempts > 1:
            msg = "%s (after %d attempts)" % (msg, attempts)
        module.fail_json(msg=msg, changed=False, status=error.status, attempts=attempts)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
