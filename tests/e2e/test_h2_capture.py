"""WebSocket over HTTP/2 (RFC 8441) in real captures: two Node 20 http2 peers in captures/h2-websocket.pcapng (h2c,
prior knowledge) and captures/h2-websocket-tls.pcapng (TLS 1.3 with ALPN h2, decrypted with the client's key log), and
headless Chromium talking to the Node server in captures/h2-websocket-chromium.pcapng (its own key log).

Expected values come from the manifest the peers wrote as they sent (captures/NAME.json) and from tshark's HTTP/2
dissector (``-d tcp.port==47220,http2``; over TLS, ``-o tls.keylog_file:...``). tshark does not decode the
WebSocket inside an extended CONNECT (``-Y websocket`` finds nothing), so the WebSocket frames are checked against
tshark's DATA bytes for the stream: the frames wsinspect decoded, as they were on the wire, must be those bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wsinspect.capture.keylog import KeyLog
from wsinspect.capture.reassembly import FlowClosed, FlowData, FlowItem, FlowOpened
from wsinspect.core.events import (
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.trace import CaptureTrace

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
NAMES = ("h2-websocket", "h2-websocket-tls", "h2-websocket-chromium")
PING, PONG = 0x9, 0xA


@dataclass(frozen=True)
class Case:
    capture: Path
    manifest: dict[str, Any]
    keylog: Path | None

    @property
    def port(self) -> int:
        return int(self.manifest["port"])

    def tshark_args(self) -> list[str]:
        if self.keylog is not None:  # tshark finds HTTP/2 by the ALPN once the key log opens the TLS
            return ["-o", f"tls.keylog_file:{self.keylog}"]
        return ["-d", f"tcp.port=={self.port},http2"]

    def read_args(self) -> list[str]:
        return ["--keylog", str(self.keylog)] if self.keylog is not None else []


@pytest.fixture(scope="module", params=NAMES)
def case(request: pytest.FixtureRequest) -> Case:
    name = request.param
    keylog = CAPTURES / f"{name}.pcapng.keys"
    return Case(CAPTURES / f"{name}.pcapng", json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8")),
                keylog if keylog.exists() else None)


@pytest.fixture(scope="module")
def events(case: Case) -> list[Event]:
    keylog = KeyLog.read(case.keylog) if case.keylog is not None else None
    return list(CaptureTrace(case.capture, keylog=keylog))


def of(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def expected_messages(manifest: dict[str, Any], direction: str) -> list[tuple[int, str, bool]]:
    return [(m["opcode"], m["text"] if "text" in m else m["hex"], m["compressed"])
            for m in manifest[direction] if "opcode" in m]


def websocket_stream(events: list[Event]) -> int:
    """The TCP stream of the one WebSocket (Chromium also opened a second connection it never used)."""
    (request,) = of(events, HandshakeRequest)
    return request.stream


def test_one_conversation_with_the_handshake_the_client_sent(case: Case, events: list[Event]) -> None:
    manifest = case.manifest
    assert websocket_stream(events) in {e.stream for e in of(events, ConnectionOpened)}
    said = [e.message for e in of(events, Notice) if isinstance(e, Notice) and e.check.id == "h2.connection"]
    assert f"WebSocket over HTTP/2 (RFC 8441) on stream {manifest['h2_stream']}: the extended CONNECT" in " ".join(said)
    request = of(events, HandshakeRequest)[0]
    assert isinstance(request, HandshakeRequest)
    assert dict(request.request.headers.items) == manifest["request"]
    assert request.findings == ()
    response = of(events, HandshakeResponse)[0]
    assert isinstance(response, HandshakeResponse)
    assert response.upgraded and response.response.status == manifest["response"][":status"]
    assert response.subprotocol == manifest["response"]["sec-websocket-protocol"]
    assert response.deflate is not None
    assert response.deflate.no_context_takeover(True) and response.deflate.no_context_takeover(False)
    assert not of(events, Violation)


def test_messages_are_what_the_peers_sent(case: Case, events: list[Event]) -> None:
    manifest = case.manifest
    for direction in ("c2s", "s2c"):
        got = [(m.opcode, m.text if m.opcode == 1 else m.data.hex(), m.compressed)
               for m in of(events, Message) if isinstance(m, Message) and m.direction == direction]
        assert got == expected_messages(manifest, direction)
    frames = [e.frame for e in of(events, FrameEvent) if isinstance(e, FrameEvent)]
    for opcode, direction, key in ((PING, "c2s", "ping"), (PONG, "s2c", "pong")):
        sent = [m[key] for m in manifest[direction] if key in m]
        assert [f.payload.decode() for f in frames if f.opcode == opcode] == sent
    closes = {e.direction: (e.code, e.reason) for e in of(events, Close) if isinstance(e, Close)}
    assert closes == {d: (c["code"], c["reason"]) for d, c in manifest["closes"].items()}


def test_the_second_websocket_is_reported_not_decoded(case: Case, events: list[Event]) -> None:
    if "second_connect_stream" not in case.manifest:
        pytest.skip("one WebSocket in this capture")
    limits = [e.message for e in of(events, Notice) if isinstance(e, Notice) and e.check.id == "h2.websocket-limit"]
    second = case.manifest["second_connect_stream"]
    assert any(f"extended CONNECT on stream {second}" in m and "/second" in m for m in limits)


def test_read_command_exit_status_and_json(case: Case) -> None:
    done = subprocess.run([sys.executable, "-m", "wsinspect", "read", str(case.capture), *case.read_args(), "--json",
                           "-Y", "handshake"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    kinds = [json.loads(line)["type"] for line in done.stdout.splitlines()]
    assert kinds == ["handshake_request", "handshake_response"]


def test_the_views_name_rfc_8441_and_the_200_it_answers_with(case: Case) -> None:
    """An extended CONNECT is judged by RFC 8441 (no key, no accept), and it is upgraded by a 200, not a 101."""
    def shown(*view: str) -> str:
        done = subprocess.run([sys.executable, "-m", "wsinspect", "read", str(case.capture), *case.read_args(),
                               "--color", "never", *view], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "✓ handshake follows RFC 8441 section 4" in shown() and "RFC 6455 section 4" not in shown()
    assert "✓ 200 upgraded" in shown("--compact") and "✓ 101 upgraded" not in shown("--compact")


# -- tshark's HTTP/2 dissector as the second opinion ---------------------------------------------------------

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
FIELDS = ("frame.number", "tcp.stream", "tcp.srcport", "http2.type", "http2.streamid", "http2.header.name",
          "http2.header.value", "http2.data.data", "http2.settings.extended_connect", "http2.goaway.last_stream_id")


@pytest.fixture(scope="module")
def tshark_packets(case: Case) -> list[dict[str, list[str]]]:
    """One dict per packet with HTTP/2 in it: each field's values, in the order of the frames in the packet."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": config, "LC_ALL": "C.UTF-8"}
        done = subprocess.run(["tshark", "-n", "-r", str(case.capture), *case.tshark_args(), "-Y", "http2",
                               "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\x1f",
                               *[arg for name in FIELDS for arg in ("-e", name)]],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [{name: value.split("\x1f") if value else [] for name, value in zip(FIELDS, line.split("\t"), strict=True)}
            for line in done.stdout.splitlines()]


def headers_on(packets: list[dict[str, list[str]]], port: int, stream: int, from_client: bool) \
        -> tuple[int, list[tuple[str, str]]]:
    for packet in packets:
        sent_by_client = packet["tcp.srcport"] != [str(port)]
        frames = list(zip(packet["http2.type"], packet["http2.streamid"], strict=True))
        if sent_by_client == from_client and ("1", str(stream)) in frames:
            return int(packet["frame.number"][0]), list(zip(packet["http2.header.name"],
                                                            packet["http2.header.value"], strict=True))
    raise AssertionError(f"no HEADERS on stream {stream}")


@needs_tshark
def test_tshark_agrees_on_the_handshake_headers(case: Case, events: list[Event],
                                                tshark_packets: list[dict[str, list[str]]]) -> None:
    stream = case.manifest["h2_stream"]
    request = of(events, HandshakeRequest)[0]
    response = of(events, HandshakeResponse)[0]
    assert isinstance(request, HandshakeRequest) and isinstance(response, HandshakeResponse)
    sent, answered = (headers_on(tshark_packets, case.port, stream, by_client) for by_client in (True, False))
    assert (request.packet, list(request.request.headers.items)) == sent
    assert (response.packet, list(response.response.headers.items)) == answered


@needs_tshark
def test_tshark_agrees_on_the_websocket_bytes(case: Case, events: list[Event],
                                              tshark_packets: list[dict[str, list[str]]]) -> None:
    """Each direction's DATA on the WebSocket's stream, in tshark, is the frames wsinspect decoded, byte for byte."""
    stream = str(case.manifest["h2_stream"])
    tcp_stream = [str(websocket_stream(events))]
    for direction, from_client in (("c2s", True), ("s2c", False)):
        data = bytearray()
        data_packets = set()
        for packet in tshark_packets:
            if (packet["tcp.srcport"] != [str(case.port)]) != from_client or packet["tcp.stream"] != tcp_stream:
                continue
            frames = list(zip(packet["http2.type"], packet["http2.streamid"], strict=True))
            payloads = iter(packet["http2.data.data"])
            for kind, stream_id in frames:
                if kind == "0":
                    value = next(payloads, "")  # an empty DATA frame's field is "<MISSING>" (or left out)
                    payload = b"" if value == "<MISSING>" else bytes.fromhex(value)
                    if stream_id == stream:
                        data += payload
                        data_packets.add(int(packet["frame.number"][0]))
        decoded = [e for e in of(events, FrameEvent) if isinstance(e, FrameEvent) and e.direction == direction]
        assert b"".join(e.frame.header + e.frame.wire_payload for e in decoded) == bytes(data)
        assert {e.packet for e in decoded} <= data_packets


@needs_tshark
def test_tshark_agrees_on_settings_and_goaway(events: list[Event], tshark_packets: list[dict[str, list[str]]]) \
        -> None:
    notices = [e for e in of(events, Notice) if isinstance(e, Notice) and e.check.id == "h2.connection"]
    server_settings = [n.message for n in notices if "the server's SETTINGS" in n.message]
    enabled = [v for p in tshark_packets for v in p["http2.settings.extended_connect"]]
    assert enabled == ["1"] * len(server_settings)  # one SETTINGS per connection, each enabling it
    assert all("SETTINGS_ENABLE_CONNECT_PROTOCOL = 1" in m for m in server_settings)
    goaway_last = [int(v) for p in tshark_packets for v in p["http2.goaway.last_stream_id"]]
    said = [n.message for n in notices if n.message.startswith("GOAWAY")]
    assert len(said) == len(goaway_last)
    assert all(f"last stream {last}" in m for last, m in zip(goaway_last, said, strict=True))


# -- how the trace tells an HTTP/2 connection, fed flow items directly -------------------------------------------

CLIENT, SERVER = ("10.0.0.1", 50000), ("10.0.0.2", 8080)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """RFC 9113 4.1: length (24 bits), type, flags, stream identifier."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def header_block(*fields: tuple[str, str]) -> bytes:
    """RFC 7541 6.2.2: literal header fields without indexing, new names, no Huffman."""
    return b"".join(b"\x00" + bytes([len(n)]) + n.encode() + bytes([len(v)]) + v.encode() for n, v in fields)


CLIENT_START = PREFACE + h2_frame(0x4, 0, 0, b"") + h2_frame(0x1, 0x4, 1, header_block(
    (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/"),
    (":authority", "10.0.0.2:8080"), ("sec-websocket-version", "13")))
ENABLE_CONNECT_PROTOCOL = b"\x00\x08\x00\x00\x00\x01"  # RFC 8441 3: setting 0x8 = 1
SERVER_START = h2_frame(0x4, 0, 0, ENABLE_CONNECT_PROTOCOL) + h2_frame(0x1, 0x4, 1, header_block((":status", "200")))


def trace_of(items: list[FlowItem]) -> tuple[list[Event], CaptureTrace]:
    trace = CaptureTrace(CAPTURES / "h2-websocket.pcapng")  # the file is not read here
    out: list[Event] = []
    for item in items:
        out += trace._flow_item(item)
    return out, trace


def flow_data(direction: str, payload: bytes, packet: int) -> FlowData:
    return FlowData(flow=0, time=packet / 10, packet=packet, direction=direction, data=payload)  # type: ignore[arg-type]


OPENED = FlowOpened(flow=0, time=0.0, packet=1, client=CLIENT, server=SERVER, client_reason="SYN", mid_stream=False)


def test_a_preface_split_across_segments() -> None:
    got, _ = trace_of([OPENED, flow_data("c2s", CLIENT_START[:5], 2), flow_data("c2s", CLIENT_START[5:], 3),
                       flow_data("s2c", SERVER_START, 4), FlowClosed(flow=0, time=1.0, packet=5, reason="FIN")])
    assert [type(e) for e in got if not isinstance(e, Notice)] == [ConnectionOpened, HandshakeRequest,
                                                                   HandshakeResponse, ConnectionClosed]
    assert [e.packet for e in got if isinstance(e, (HandshakeRequest, HandshakeResponse))] == [3, 4]


def test_a_preface_from_the_side_taken_for_the_server_flips_it() -> None:
    got, _ = trace_of([OPENED, flow_data("s2c", CLIENT_START, 2), flow_data("c2s", SERVER_START, 3)])
    request = next(e for e in got if isinstance(e, HandshakeRequest))
    opened = next(e for e in got if isinstance(e, ConnectionOpened))
    assert request.direction == "c2s" and opened.client == SERVER


def test_http2_without_a_websocket_and_a_preface_that_never_completes_are_skipped() -> None:
    get = PREFACE + h2_frame(0x1, 0x5, 1, header_block((":method", "GET"), (":path", "/")))
    got, _ = trace_of([OPENED, flow_data("c2s", get, 2), flow_data("s2c", h2_frame(0x4, 0, 0, b""), 3),
                       FlowClosed(flow=0, time=1.0, packet=4, reason="FIN")])
    assert got == []
    got, trace = trace_of([OPENED, flow_data("c2s", PREFACE[:7], 2), flow_data("s2c", b"x" * 70_000, 3)])
    assert got == [] and trace.stats.skipped_streams == 1
