"""``wsinspect handshake check`` on pastes as editors, shells and browsers really make them (review findings 3, 4,
10, 13): a byte order mark, UTF-16 from PowerShell, indented lines, text before the request, an HTTP/2 request from
Chrome, a paste far too large, and ``curl -v ... | wsinspect handshake check -`` without ``--max-time``."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time

import pytest

from wsinspect.commands.handshake import HEADER_BLOCK_LIMIT, PASTE_LIMIT, read_paste, split_paste

from .support import ROOT, has_no_escape, run_process

POST = (b"POST /chat HTTP/1.0\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
GOOD = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n")
ANSWER = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
# Chrome's dev tools, Headers tab of an HTTP/2 WebSocket (RFC 8441), request headers copied.
CHROME_H2 = b"""\
:authority: example.com
:method: CONNECT
:path: /chat
:protocol: websocket
:scheme: https
origin: https://example.com
sec-websocket-extensions: permessage-deflate; client_max_window_bits
sec-websocket-version: 13
"""


def check(paste: bytes) -> tuple[int, str]:
    done = run_process(["handshake", "check", "-", "--color", "never"], stdin=paste, columns=120)
    assert "Traceback" not in done.err
    return done.code, done.out


def test_a_byte_order_mark_does_not_hide_the_request_line() -> None:
    plain_code, _ = check(POST)
    code, out = check(b"\xef\xbb\xbf" + POST)
    assert (code, plain_code) == (1, 1)
    assert "byte order mark" in out
    assert "The method is 'POST'; it must be GET." in out and "The request is 'HTTP/1.0'" in out
    assert "assumed GET" not in out


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_paste_is_read(codec: str) -> None:
    code, out = check(POST.decode("ascii").encode(codec))  # "utf-16": a byte order mark first, as PowerShell's >
    assert code == 1, out
    assert "UTF-16" in out
    assert "The method is 'POST'; it must be GET." in out


def test_indented_header_lines_are_read_with_a_note() -> None:
    indented = b"\xef\xbb\xbfGET /chat HTTP/1.1  \n  Host: example.com\n\tUpgrade: websocket\n Connection: Upgrade\n" \
               b"    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\nOrigin: https://e.com\n"
    code, out = check(indented)
    assert code == 0, out
    assert "4 header lines started with spaces or a tab" in out
    assert "Not a 'Name: value'" not in out


def test_an_indented_line_that_is_not_a_header_is_still_a_fold() -> None:
    _, out = check(GOOD.replace(b"Upgrade: websocket\r\n", b"Upgrade: websocket\r\n   more\r\n"))
    assert "Folded header line (obs-fold) after 'Upgrade'." in out
    assert "started with spaces" not in out


def test_a_line_before_the_request_is_noted_not_dropped_silently() -> None:
    code, out = check(b"\x1b[2J\x1b]0;x\x07[red]hi[/red]\xe2\x80\xae: v\n" + GOOD)
    assert code == 0, out
    assert "1 line outside any header block skipped: '\\x1b[2J\\x1b]0;x\\x07[red]hi[/red]\\u202e: v'" in out
    assert has_no_escape(out) and "\u202e" not in out


def test_a_malformed_request_line_is_judged_not_skipped() -> None:
    code, out = check(GOOD.replace(b"GET /chat HTTP/1.1", b"GET /chat HTTP/1.1 extra"))
    assert code == 1
    assert "The request line is not 'METHOD target HTTP/x.y'." in out
    assert "assumed GET" not in out


def test_an_http2_request_from_chrome_is_checked_by_rfc_8441() -> None:
    code, out = check(CHROME_H2)
    assert code == 0, out
    assert "RFC 8441" in out and "✓ the request follows RFC 8441" in out
    assert "rules broken" not in out and "nginx" not in out and "Sec-WebSocket-Key" not in out


def test_an_http2_request_breaking_rfc_8441() -> None:
    code, out = check(CHROME_H2.replace(b":method: CONNECT", b":method: GET").replace(b":scheme: https\n", b"")
                      .replace(b"sec-websocket-version: 13", b"sec-websocket-version: 8"))
    assert code == 1
    assert "An HTTP/2 WebSocket is opened with :method CONNECT; this one is 'GET'." in out
    assert "The extended CONNECT lacks :scheme." in out
    assert "RFC 8441 5 keeps Sec-WebSocket-Version from RFC 6455: it must be 13." in out
    assert "✗ 3 rules broken" in out and "nginx" not in out


def test_an_http2_answer() -> None:
    accepted = CHROME_H2 + b"\n:status: 200\nsec-websocket-extensions: permessage-deflate\n"
    assert check(accepted)[0] == 0
    code, out = check(CHROME_H2 + b"\n:status: 403\n")
    assert code == 1
    assert "The server answered :status 403: the WebSocket was not accepted" in out
    code, out = check(CHROME_H2 + b"\n:status: 200\nsec-websocket-protocol: chat\n")
    assert code == 1 and "The server chose a subprotocol the client did not offer." in out


def test_a_paste_over_the_limit_is_cut_with_a_note() -> None:
    huge = b"GET / HTTP/1.1\n" + b"X-a: b\n" * (3 * PASTE_LIMIT // 7)
    started = time.monotonic()
    done = run_process(["handshake", "check", "-", "--color", "never"], stdin=huge)
    assert time.monotonic() - started < 50
    assert done.code == 1
    assert f"only its first {PASTE_LIMIT:,} bytes were read and checked" in done.out


def test_a_header_block_over_the_servers_limit_is_checked_up_to_it() -> None:
    paste = split_paste(GOOD + b"X-a: b\r\n" * 10_000 + b"\r\n")
    assert paste is not None and paste.request is not None
    assert HEADER_BLOCK_LIMIT < len(paste.request) <= HEADER_BLOCK_LIMIT + 100
    kept = paste.request.count(b"\r\n") - 2  # (n header lines: n + 2 line ends)
    cut = 10_000 + GOOD.count(b"\r\n") - 1 - kept
    assert "a header block is over 32 KiB (a server refuses it: 431, and serve's --max-header is 32 KiB): its last " \
           f"{cut:,} lines are not checked" in paste.notes


def test_read_paste_bounds_what_it_holds() -> None:
    data, cut = read_paste(io.BytesIO(b"x" * (PASTE_LIMIT + 10)), stop_at_exchange=False)
    assert (len(data), cut) == (PASTE_LIMIT, PASTE_LIMIT + 1)
    data, cut = read_paste(io.BytesIO(b"y" * 10), stop_at_exchange=False)
    assert (data, cut) == (b"y" * 10, None)


class _OpenPipe(io.RawIOBase):
    """A stdin whose writer keeps it open after the handshake (curl after a 101): one chunk a read, then a wait."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        if not self.chunks:
            raise AssertionError("read on past the response's header block: this would wait forever")
        return self.chunks.pop(0)


def test_reading_stops_once_the_response_header_block_is_in() -> None:
    lines = (b"> " + line + b"\r\n" for line in GOOD.rstrip(b"\r\n").split(b"\r\n"))
    chunks = [b"*   Trying 127.0.0.1:8765...\n", *lines, b"> \r\n"]
    chunks += [b"< " + line + b"\r\n" for line in ANSWER.rstrip(b"\r\n").split(b"\r\n")] + [b"< \r\n"]
    data, cut = read_paste(_OpenPipe(list(chunks)), stop_at_exchange=True)  # type: ignore[arg-type]
    assert cut is None and data == b"".join(chunks)
    paste = split_paste(data)
    assert paste is not None and paste.request is not None and paste.response_ended


def test_a_response_header_block_still_arriving_is_waited_for() -> None:
    chunks = [GOOD + b"\r\n", b"HTTP/1.1 101 Switching Protocols\r\n", b"Upgrade: websocket\r\n", b"Connection: Upgr",
              b"ade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", b"\r\n"]
    data, _ = read_paste(_OpenPipe(list(chunks)), stop_at_exchange=True)  # type: ignore[arg-type]
    assert data == b"".join(chunks)


# -- curl -v | wsinspect handshake check -, against a real server, without --max-time ------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_piped_into_check_returns_while_curl_still_waits(websockets_server: int) -> None:
    curl = subprocess.Popen(["curl", "-v", "--http1.1", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                             "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                             f"http://127.0.0.1:{websockets_server}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert curl.stdout is not None
        checker = subprocess.run([sys.executable, "-m", "wsinspect", "handshake", "check", "-", "--color", "never"],
                                 stdin=curl.stdout, capture_output=True, cwd=ROOT, timeout=30, check=False,
                                 env={**os.environ, "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"})
        assert curl.poll() is None  # curl still holds the WebSocket open: check did not wait for its end
    finally:
        curl.kill()
        curl.wait(timeout=10)
        if curl.stdout is not None:
            curl.stdout.close()
    out = checker.stdout.decode("utf-8")
    assert checker.returncode == 0, out
    assert "a curl -v transcript" in out and "✓ the server's answer matches" in out
