"""``wsinspect serve --certfile FILE --keyfile FILE``: wss:// and the demo page over https://, against a ``websockets``
client and ``urllib`` trusting a test CA (made at test time), and headless Chromium (told to accept the test
certificate); a bad certificate or key is one line and exit status 2, before anything listens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from serve_support import REPO, WSINSPECT, Server, of_type, raw_exchange, split_response
from tls_support import Certificates, make_certificates

websockets_client = pytest.importorskip("websockets.asyncio.client")


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


def tls_serve(serve: Callable[..., Server], certificates: Certificates, *args: str) -> Server:
    return serve("--certfile", str(certificates.chain), "--keyfile", str(certificates.key), *args)


def test_a_websockets_client_over_wss(serve: Callable[..., Server], certificates: Certificates) -> None:
    server = tls_serve(serve, certificates)
    banner = server.stdout.splitlines()
    assert f"on wss://127.0.0.1:{server.port}/" in banner[0] and f"  https://127.0.0.1:{server.port}/" in banner

    async def converse() -> tuple[str, str | None]:
        async with websockets_client.connect(f"wss://localhost:{server.port}/tls",
                                             ssl=certificates.client_context()) as connection:
            await connection.send("hello over TLS")
            echo = await asyncio.wait_for(connection.recv(), 10)
            return str(echo), connection.response.headers.get("Sec-WebSocket-Extensions")

    echo, extensions = asyncio.run(converse())
    assert echo == "hello over TLS" and extensions is not None and extensions.startswith("permessage-deflate")
    server.wait_for(re.compile(r"#0 closed \("))
    assert server.stop() == 0
    events = server.events()
    assert [m["text"] for m in of_type(events, "message")] == ["hello over TLS"] * 2
    [request] = of_type(events, "handshake_request")
    assert request["target"] == "/tls"


def test_the_demo_page_over_https(serve: Callable[..., Server], certificates: Certificates) -> None:
    server = tls_serve(serve, certificates)
    with urllib.request.urlopen(f"https://localhost:{server.port}/", timeout=10,
                                context=certificates.client_context()) as answer:
        assert answer.status == 200 and b"<html" in answer.read().lower()


def test_the_key_may_be_in_the_certificates_file(serve: Callable[..., Server], certificates: Certificates,
                                                 tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(certificates.chain.read_bytes() + certificates.key.read_bytes())
    server = serve("--certfile", str(both))
    with urllib.request.urlopen(f"https://localhost:{server.port}/", timeout=10,
                                context=certificates.client_context()) as answer:
        assert answer.status == 200


def test_a_plain_client_on_the_tls_port_does_not_stop_a_good_one(serve: Callable[..., Server],
                                                                 certificates: Certificates) -> None:
    """Plain HTTP on the TLS port is answered 400 in plain HTTP, as nginx does ("The plain HTTP request was sent to
    HTTPS port"), and named in the log (review finding 7: the client got an empty reply and the log said nothing)."""
    server = tls_serve(serve, certificates)
    started = time.monotonic()
    answer = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
    assert time.monotonic() - started < 3
    status, _, body = split_response(answer)
    assert status == 400 and b"The plain HTTP request was sent to HTTPS port" in body, answer
    log = server.section(-1).replace("\n  ", " ")
    assert "answered 400 at once: plain HTTP on the TLS port: this server is wss:// / https:// (--certfile); use " \
           "https:// or wss://" in log, log
    with urllib.request.urlopen(f"https://localhost:{server.port}/", timeout=10,
                                context=certificates.client_context()) as answer:
        assert answer.status == 200
    assert server.stop() == 0


def test_a_tls_handshake_never_started_is_cut_after_the_handshake_timeout(serve: Callable[..., Server],
                                                                          certificates: Certificates) -> None:
    server = tls_serve(serve, certificates, "--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed by the server (or reset), never a byte
            assert silent.recv(1) == b""
        assert 0.9 <= time.monotonic() - started < 5


def test_chromium_over_https_and_wss(serve: Callable[..., Server], certificates: Certificates,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import test_serve_browser

    if test_serve_browser.CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; CI installs it)")
    # The test CA is not in Chromium's store: the browser is told to accept the certificate it is shown.
    monkeypatch.setattr(test_serve_browser, "FLAGS", [*test_serve_browser.FLAGS, "--ignore-certificate-errors"])
    server = tls_serve(serve, certificates)
    profile = tmp_path / "profile"
    profile.mkdir()
    chromium = test_serve_browser.Browser(f"https://127.0.0.1:{server.port}/", profile)
    try:
        assert chromium.wait_until("document.getElementById('status')?.textContent === 'open'")
        message = "hello from chromium over wss"
        chromium.evaluate(f"""(() => {{
            document.getElementById('text').value = {json.dumps(message)};
            document.getElementById('form').requestSubmit();
            return true;
        }})()""")
        chromium.wait_until(f"""[...document.querySelectorAll('#log li.got .body')]
                                .some(e => e.textContent === {json.dumps(message)})""")
        page_scheme = chromium.evaluate("location.protocol")
    finally:
        chromium.quit()
    assert page_scheme == "https:"
    assert server.stop() == 0
    events = server.events()
    upgraded = [r for r in of_type(events, "handshake_response") if r["upgraded"]]
    assert len(upgraded) == 1 and upgraded[0]["extensions"][0].startswith("permessage-deflate")
    texts = [(m["direction"], m["text"]) for m in of_type(events, "message") if m["stream"] == upgraded[0]["stream"]]
    assert ("c2s", message) in texts and ("s2c", message) in texts


def _serve_exits(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*WSINSPECT, "serve", "--port", "0", "--color", "never", *args], cwd=REPO,
                          capture_output=True, timeout=30, check=False)


def test_a_bad_certificate_or_key_is_one_line_and_exit_status_2(tmp_path: Path, certificates: Certificates) -> None:
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")  # its key belongs to another certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cases = [
        (["--certfile", str(tmp_path / "missing.pem"), "--keyfile", str(certificates.key)], "No such file"),
        (["--certfile", str(garbage), "--keyfile", str(certificates.key)], "not a PEM certificate chain"),
        (["--certfile", str(certificates.chain), "--keyfile", str(other.key)], "KEY_VALUES_MISMATCH"),
        (["--certfile", str(certificates.chain)], "not a PEM certificate chain"),  # no key anywhere
        (["--keyfile", str(certificates.key)], "--keyfile needs --certfile"),
    ]
    for args, said in cases:
        done = _serve_exits(*args)
        errors = done.stderr.decode()
        assert done.returncode == 2, (args, done)
        assert len(errors.strip().splitlines()) == 1 and errors.startswith("wsinspect serve: "), errors
        assert said in errors, errors
        assert b"mode on" not in done.stdout  # nothing listened

