"""``wsinspect handshake`` (the Sec-WebSocket-Accept walk-through) and ``wsinspect handshake check`` on real pastes.

The key, the GUID, the SHA-1 bytes and the accept value are written here as RFC 6455 1.3 prints them. The pastes are
a Chrome dev tools copy (headers only, LF line ends), the same panel copied with each value under its name, a
``curl -v`` transcript made in the test against a ``websockets`` server on 127.0.0.1, and a request as a reverse
proxy that drops hop-by-hop headers forwards it.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest

from .support import has_no_escape, run, run_process

# RFC 6455 1.3: the key, the string formed with the GUID, the SHA-1 "0xb3 0x7a ... 0xea" and the accept value
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_CONCATENATION = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RFC_SHA1 = ("0xb3 0x7a 0x4f 0x2c 0xc0 0x62 0x4f 0x16 0x90 0xf6 0x46 0x06 0xcf 0x38 0x59 0x45 0xb2 0xbe 0xc4 "
            "0xea")
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

CHROME_REQUEST_HEADERS = """\
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-US,en;q=0.9
Cache-Control: no-cache
Connection: Upgrade
Host: 127.0.0.1:8765
Origin: http://127.0.0.1:8765
Pragma: no-cache
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Upgrade: websocket
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36
"""

CHROME_PANEL_VALUES_UNDER_NAMES = """\
General
Request URL:
ws://127.0.0.1:8765/chat
Request Method:
GET
Status Code:
101 Switching Protocols
Response Headers
Connection:
Upgrade
Sec-WebSocket-Accept:
s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
Upgrade:
websocket
Request Headers
Connection:
Upgrade
Host:
127.0.0.1:8765
Origin:
http://127.0.0.1:8765
Sec-WebSocket-Key:
dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version:
13
Upgrade:
websocket
"""

# What a backend receives from an nginx location without the upgrade lines: Upgrade and Connection are gone.
NGINX_STRIPPED = (b"GET /ws HTTP/1.0\r\nHost: backend\r\nX-Real-IP: 10.0.0.7\r\nX-Forwarded-For: 10.0.0.7\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"Origin: https://example.com\r\n\r\n")


def test_default_key_is_the_rfc_example_step_by_step() -> None:
    done = run(["handshake"])
    assert done.code == 0
    lines = done.out.splitlines()
    steps = [line.strip()[:2] for line in lines if line.strip()[:2] in ("1.", "2.", "3.", "4.")]
    assert steps == ["1.", "2.", "3.", "4."]
    assert RFC_KEY in done.out
    assert RFC_CONCATENATION in done.out
    assert RFC_SHA1 in done.out
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}" in done.out
    for section in ("RFC 6455 1.3", "RFC 6455 4.2.2 item 5.4", "RFC 6455 4.2.2 item 4"):
        assert section in done.out


def test_surrounding_whitespace_is_dropped() -> None:
    """RFC 6455 1.3: the value "minus any leading and trailing whitespace"."""
    done = run(["handshake", "--key", f"  {RFC_KEY}\t"])
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}" in done.out
    assert "the whitespace is dropped" in done.out


def test_another_key_gets_its_own_digest() -> None:
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    done = run(["handshake", "--key", key])
    assert done.code == 0
    assert " ".join(f"0x{byte:02x}" for byte in digest) in done.out
    assert f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode()}" in done.out
    assert "RFC 6455 4.2.1" not in done.out  # a good key: nothing to refuse


@pytest.mark.parametrize(("key", "why"), [("abc", "not valid base64"), ("AAAA", "decodes to 3 bytes")])
def test_a_bad_key_is_computed_and_refused(key: str, why: str) -> None:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    done = run(["handshake", "--key", key])
    assert done.code == 1  # a broken rule: the exit status says so, as check's does
    assert f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode()}" in done.out  # servers compute it anyway
    assert "RFC 6455 4.2.1" in done.out and why in done.out
    assert "400 Bad Request" in done.out


def test_a_hostile_key_is_shown_escaped() -> None:
    done = run_process(["handshake", "--key", "\x1b]0;pwned\x07\x1b[2J\u202e", "--color", "always"])
    assert done.code == 1  # not base64 of 16 bytes: a broken rule, as check's exit status says
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in done.out
    assert "\x07" not in done.out and "\u202e" not in done.out


def check(paste: bytes, *extra: str) -> tuple[int, str, str]:
    done = run_process(["handshake", "check", "-", "--color", "never", *extra], stdin=paste, columns=120)
    assert "Traceback" not in done.err
    return done.code, done.out, done.err


def test_chrome_request_headers_paste() -> None:
    code, out, _ = check(CHROME_REQUEST_HEADERS.encode())
    assert code == 0, out
    assert "no request line in the paste" in out
    assert "✓ the request follows RFC 6455 section 4" in out
    assert RFC_ACCEPT in out  # the accept value the server must answer with, computed for the pasted key


def test_chrome_panel_copied_with_values_under_names() -> None:
    code, out, _ = check(CHROME_PANEL_VALUES_UNDER_NAMES.encode())
    assert code == 0, out
    assert "rebuilt from 'Request Method' and 'Request URL' as GET /chat HTTP/1.1" in out
    assert "✓ the server's answer matches" in out


def test_crlf_and_lf_give_the_same_verdict() -> None:
    request = CHROME_REQUEST_HEADERS.replace("\n", "\r\n").encode()
    assert check(request)[0] == 0
    # bare LF is the clipboard's doing, not the peer's: not a finding here
    assert "LF instead of CRLF" not in check(CHROME_REQUEST_HEADERS.encode())[1]


def test_nginx_stripped_request_gets_the_proxy_fix() -> None:
    code, out, _ = check(NGINX_STRIPPED)
    assert code == 1
    assert "RFC 6455 4.2.1: The Upgrade header field is missing." in out
    assert "RFC 6455 4.2.1: The Connection header field is missing." in out
    assert "RFC 9110 7.6.1" in out
    assert "RFC 6455 4.2.1: The request is 'HTTP/1.0'" in out
    for directive in ("proxy_set_header Upgrade $http_upgrade;", 'proxy_set_header Connection "upgrade";',
                      "mod_proxy_wstunnel", "upgrade=websocket"):
        assert out.count(directive) == 1, directive  # said once, not under every finding
    assert "proxy_http_version 1.1;" in out  # nginx speaks HTTP/1.0 to backends unless told


def test_wrong_accept_in_a_response() -> None:
    paste = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
             b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")
    code, out, _ = check(paste)
    assert code == 1
    assert "RFC 6455 4.1: Sec-WebSocket-Accept does not match the key the client sent." in out
    assert f"expected: {RFC_ACCEPT}" in out


@pytest.mark.parametrize("paste", [b"", b"\x00\x01\x02\xff binary", b"hello world\nthis is not http\n",
                                   b"\x1b[2J\x1b]0;pwned\x07"])
def test_not_http_at_all(paste: bytes) -> None:
    code, out, err = check(paste)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "not an HTTP request or response" in err


def test_hostile_header_values_are_escaped() -> None:
    paste = (b"GET /\x1b[2J HTTP/1.1\nHost: \x1b]0;pwned\x07\nUpgrade: websocket\nConnection: Upgrade\n"
             b"Sec-WebSocket-Key: [bold red]x\xe2\x80\xae\nSec-WebSocket-Version: 13\n\n")
    done = run_process(["handshake", "check", "-", "--color", "always"], stdin=paste)
    assert done.code == 1
    assert "\\x1b]0;pwned\\x07" in done.out and "[bold red]x" in done.out
    assert "\x07" not in done.out and "]0;pwned\x07" not in done.out
    assert has_no_escape(done.err)


def test_missing_file_is_one_line() -> None:
    done = run_process(["handshake", "check", "/nonexistent/\x1b[2J.txt"])
    assert done.code == 2
    assert done.err.count("\n") == 1 and has_no_escape(done.err)


# -- curl -v against a real server -------------------------------------------------------------------------


def curl_transcript(port: int, key: str) -> bytes:
    # After a 101 curl waits for a body that never comes: --max-time ends it (status 28), the transcript is complete.
    done = subprocess.run(["curl", "-v", "--http1.1", "--max-time", "2", "-H", "Connection: Upgrade",
                           "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                           "-H", f"Sec-WebSocket-Key: {key}", f"http://127.0.0.1:{port}/"],
                          capture_output=True, timeout=30, check=False)
    return done.stderr + done.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_transcript_of_an_accepted_handshake(websockets_server: int) -> None:
    transcript = curl_transcript(websockets_server, RFC_KEY)
    assert b"< HTTP/1.1 101" in transcript
    code, out, _ = check(transcript)
    assert code == 0, out
    assert "a curl -v transcript" in out
    assert "✓ the server's answer matches" in out
    assert "websockets/" in out  # the real server's Server header, read from the '<' lines


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_transcript_of_a_refused_handshake(websockets_server: int) -> None:
    transcript = curl_transcript(websockets_server, "abc")
    assert b"< HTTP/1.1 400" in transcript  # the real server refuses the key too
    code, out, _ = check(transcript)
    assert code == 1
    assert "RFC 6455 4.2.1: Sec-WebSocket-Key 'abc' is not valid base64." in out
    assert "The server answered 400" in out


# What curl printed when the 400 came slowly (CI, under load): its progress meter, redirected with the rest, wrote
# an update (lone CR, no newline) just before the status line.
SLOW_METER = b"\r  0     0    0     0    0     0      0      0 --:--:--  0:00:01 --:--:--     0"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_transcript_with_progress_updates_between_lines(websockets_server: int) -> None:
    transcript = curl_transcript(websockets_server, "abc")
    slowed = transcript.replace(b"\n<", b"\n" + SLOW_METER + b"<").replace(b"\n>", b"\n" + SLOW_METER + b">")
    assert slowed.count(SLOW_METER) >= 10
    code, out, _ = check(slowed)
    assert code == 1
    assert "RFC 6455 4.2.1: Sec-WebSocket-Key 'abc' is not valid base64." in out
    assert "The server answered 400" in out
    assert check(slowed) == check(transcript)


def test_progress_meter_columns_in_a_header_value_stay() -> None:
    paste = (b"GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
             b"X-Numbers: 0 0 0 0 0 0 0 0 --:--:-- --:--:-- --:--:-- 0\n\n")
    code, out, _ = check(paste)
    assert code == 0, out
    assert "0 0 0 0 0 0 0 0 --:--:-- --:--:-- --:--:-- 0" in out
