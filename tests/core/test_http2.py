"""core.http2: RFC 7541 Appendix C through the header decoder, and HTTP/2 connections built byte by byte.

Expected values come from the RFCs: Appendix C's header lists (RFC 7541), the frame layout (RFC 9113 4.1), RFC 6455
5.7's example frames. Header blocks here are written by hand with RFC 7541 6.2.2's "literal header field without
indexing, new name" (0x00, length, name, length, value), never with an HPACK encoder.
"""

from __future__ import annotations

import struct

import pytest

from wsinspect.core.connection import Limits
from wsinspect.core.events import (
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    Gap,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.http2 import PREFACE, HeaderBlockError, HeaderDecoder, Http2Connection

# -- RFC 7541 Appendix C ---------------------------------------------------------------------------------------

REQUEST_1 = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")]
REQUEST_2 = [*REQUEST_1, ("cache-control", "no-cache")]
REQUEST_3 = [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"),
             ("custom-key", "custom-value")]
RESPONSE_1 = [(":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
              ("location", "https://www.example.com")]
RESPONSE_2 = [(":status", "307"), *RESPONSE_1[1:]]
RESPONSE_3 = [(":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
              ("location", "https://www.example.com"), ("content-encoding", "gzip"),
              ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")]

# Each series shares one decoder: later blocks refer to the dynamic table entries earlier ones added (and, in C.5
# and C.6, whose table is 256 octets, evict them).
APPENDIX_C = {
    "C.2.1": (4096, [("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                      [("custom-key", "custom-header")])]),
    "C.2.2": (4096, [("040c 2f73 616d 706c 652f 7061 7468", [(":path", "/sample/path")])]),
    "C.2.3": (4096, [("1008 7061 7373 776f 7264 0673 6563 7265 74", [("password", "secret")])]),
    "C.2.4": (4096, [("82", [(":method", "GET")])]),
    "C.3 (no Huffman)": (4096, [
        ("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", REQUEST_1),
        ("8286 84be 5808 6e6f 2d63 6163 6865", REQUEST_2),
        ("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", REQUEST_3),
    ]),
    "C.4 (Huffman)": (4096, [
        ("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQUEST_1),
        ("8286 84be 5886 a8eb 1064 9cbf", REQUEST_2),
        ("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", REQUEST_3),
    ]),
    "C.5 (no Huffman, eviction)": (256, [
        ("4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 "
         "3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", RESPONSE_1),
        ("4803 3330 37c1 c0bf", RESPONSE_2),
        ("88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 "
         "7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 "
         "6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31", RESPONSE_3),
    ]),
    "C.6 (Huffman, eviction)": (256, [
        ("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad "
         "1718 63c7 8f0b 97c8 e9ae 82ae 43d3", RESPONSE_1),
        ("4883 640e ffc1 c0bf", RESPONSE_2),
        ("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 "
         "e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
         RESPONSE_3),
    ]),
}


@pytest.mark.parametrize("section", list(APPENDIX_C))
def test_rfc7541_appendix_c(section: str) -> None:
    table_size, blocks = APPENDIX_C[section]
    decoder = HeaderDecoder(max_list_size=64 * 1024, table_size=table_size)
    for block, expected in blocks:
        decoded = decoder.decode(bytes.fromhex(block))
        assert [(name.decode(), value.decode()) for name, value in decoded] == expected


def test_hpack_errors_are_one_exception() -> None:
    decoder = HeaderDecoder(max_list_size=1024)
    with pytest.raises(HeaderBlockError):
        decoder.decode(b"\xbe")  # index 62: the first dynamic entry, and the table is empty (RFC 7541 2.3.3)
    with pytest.raises(HeaderBlockError):
        decoder.decode(b"\x00\x05ab")  # a string literal longer than the block (RFC 7541 5.2)
    with pytest.raises(HeaderBlockError):  # 42 octets per ":method GET" (RFC 7541 4.1), past 1024
        decoder.decode(b"\x82" * 100)


# -- HTTP/2 connections, built by hand ----------------------------------------------------------------------------


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """RFC 9113 4.1: length (24 bits), type, flags, stream identifier (31 bits)."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def literal(name: str, value: str) -> bytes:
    """RFC 7541 6.2.2, a new name, no Huffman (both shorter than 127 octets)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def block(*fields: tuple[str, str]) -> bytes:
    return b"".join(literal(name, value) for name, value in fields)


DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x7, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
CONNECT = block((":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/chat"),
                (":authority", "server.example.com"), ("sec-websocket-protocol", "chat, superchat"),
                ("sec-websocket-extensions", "permessage-deflate"), ("sec-websocket-version", "13"))
ACCEPTED = block((":status", "200"), ("sec-websocket-protocol", "chat"))
ENABLE_CONNECT = struct.pack(">HI", 0x8, 1)  # RFC 8441 3
# RFC 6455 5.7: a single-frame masked text message "Hello", and the unmasked one.
MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")
HELLO = bytes.fromhex("810548656c6c6f")
OPENED = ConnectionOpened(stream=7, direction="c2s", time=0.0, client=("10.0.0.1", 50000),
                          server=("10.0.0.2", 443), how="SYN")


def run(steps: list[tuple[str, bytes]], *, limits: Limits | None = None, chunk: int | None = None) -> list[Event]:
    connection = Http2Connection(OPENED, limits=limits)
    events: list[Event] = []
    for number, (direction, data) in enumerate(steps, 1):
        pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
        for piece in pieces:
            events += connection.receive("c2s" if direction == "c2s" else "s2c", piece, time=float(number),
                                         packet=number)
    return events + connection.end(time=99.0)


def websocket_session() -> list[tuple[str, bytes]]:
    """RFC 8441 5.1's example, with padding, a priority field, a CONTINUATION and a stream reset."""
    return [
        ("s2c", frame(SETTINGS, 0, 0, ENABLE_CONNECT)),
        ("c2s", PREFACE + frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, 1, 0, b"")),
        # HEADERS padded (3 bytes) with a priority field (5 bytes), the block's end in a CONTINUATION.
        ("c2s", frame(HEADERS, PADDED | PRIORITY, 1, b"\x03" + b"\x00\x00\x00\x00\x10" + CONNECT[:20] + b"\0\0\0")
         + frame(CONTINUATION, END_HEADERS, 1, CONNECT[20:])),
        ("s2c", frame(HEADERS, END_HEADERS, 1, ACCEPTED)),
        ("c2s", frame(DATA, PADDED, 1, b"\x02" + MASKED_HELLO + b"\0\0")),
        ("s2c", frame(DATA, 0, 1, HELLO[:3]) + frame(DATA, 0, 1, HELLO[3:])),  # a frame across two DATA frames
        ("c2s", frame(RST_STREAM, 0, 1, (0x8).to_bytes(4, "big"))),  # CANCEL (RFC 8441 5)
        ("s2c", frame(GOAWAY, 0, 0, (1).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"bye\x1b[2J")),
    ]


def test_extended_connect_becomes_a_websocket_conversation() -> None:
    events = run(websocket_session())
    opened = [e for e in events if isinstance(e, ConnectionOpened)]
    assert len(opened) == 1 and opened[0].stream == 7 and "WebSocket on stream 1 (RFC 8441)" in opened[0].how
    request = next(e for e in events if isinstance(e, HandshakeRequest))
    assert request.request.headers.get(":protocol") == "websocket" and request.request.method == "CONNECT"
    assert request.findings == ()
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert response.upgraded and response.subprotocol == "chat" and response.findings == ()
    assert [(e.direction, e.text) for e in events if isinstance(e, Message)] == [("c2s", "Hello"), ("s2c", "Hello")]
    frames = [e for e in events if isinstance(e, FrameEvent)]
    assert [f.frame.masked for f in frames] == [True, False]
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("SETTINGS_ENABLE_CONNECT_PROTOCOL = 1" in m for m in notices)
    assert any(m.startswith("RST_STREAM on stream 1 (CANCEL)") for m in notices)
    assert any('GOAWAY (NO_ERROR, last stream 1; debug data "bye\\x1b[2J")' in m for m in notices)
    assert not [e for e in events if isinstance(e, Violation)]
    assert isinstance(events[-1], ConnectionClosed)


def test_any_chunking_gives_the_same_events() -> None:
    whole = run(websocket_session())
    for size in (1, 5, 9, 10):
        chunked = run(websocket_session(), chunk=size)
        assert [(type(e), e.direction, getattr(e, "message", None), getattr(e, "text", None)) for e in chunked] == \
            [(type(e), e.direction, getattr(e, "message", None), getattr(e, "text", None)) for e in whole]


def test_connect_before_the_server_enabled_it() -> None:
    steps = websocket_session()
    steps[0] = ("s2c", frame(SETTINGS, 0, 0, b""))  # the server's SETTINGS without SETTINGS_ENABLE_CONNECT_PROTOCOL
    events = run(steps)
    request = next(e for e in events if isinstance(e, HandshakeRequest))
    assert [f.check.id for f in request.findings] == ["h2.connect-not-enabled"]


def test_connect_without_path_and_version() -> None:
    steps = websocket_session()
    bare = block((":method", "CONNECT"), (":protocol", "websocket"), (":authority", "server.example.com"))
    steps[2] = ("c2s", frame(HEADERS, END_HEADERS, 1, bare))
    request = next(e for e in run(steps) if isinstance(e, HandshakeRequest))
    assert [f.check.id for f in request.findings] == ["h2.extended-connect", "request.websocket-version"]
    assert "lacks :scheme, :path" in request.findings[0].message


def test_a_refused_connect() -> None:
    steps = websocket_session()
    steps[3] = ("s2c", frame(HEADERS, END_HEADERS | END_STREAM, 1, block((":status", "403"))))
    events = run(steps)
    response = next(e for e in events if isinstance(e, HandshakeResponse))
    assert not response.upgraded and response.response.status == 403
    assert not [e for e in events if isinstance(e, FrameEvent)]


def test_plain_http2_without_a_websocket_shows_nothing() -> None:
    get = block((":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "example.com"))
    events = run([("c2s", PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_HEADERS | END_STREAM, 1, get)),
                  ("s2c", frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_HEADERS, 1, block((":status", "200")))
                   + frame(DATA, END_STREAM, 1, b"<html>"))])
    assert events == []


# -- hostile input: notices, never an exception --------------------------------------------------------------


def checks(events: list[Event]) -> list[str]:
    return [e.check.id for e in events if isinstance(e, (Notice, Violation))]


def test_header_block_over_the_limit() -> None:
    steps = websocket_session()
    huge = block(*[(f"x-filler-{i}", "y" * 100) for i in range(20)])  # about 2.3 kB of header block
    steps[2] = ("c2s", frame(HEADERS, 0, 1, huge[:1000]) + frame(CONTINUATION, 0, 1, huge[1000:2000])
                + frame(CONTINUATION, END_HEADERS, 1, huge[2000:]))
    events = run(steps, limits=Limits(max_header_bytes=1500))
    assert "h2.header-too-large" in checks(events)
    assert not [e for e in events if isinstance(e, HandshakeRequest)]


def test_bad_hpack_index() -> None:
    steps = websocket_session()
    steps[2] = ("c2s", frame(HEADERS, END_HEADERS, 1, b"\xff\x80\x01"))  # index 255: beyond both tables
    events = run(steps)
    assert "h2.hpack" in checks(events)
    assert isinstance(events[-1], ConnectionClosed)


def test_huge_dynamic_table_size_update() -> None:
    steps = websocket_session()
    # RFC 7541 6.3: 001 and a 5-bit prefix integer (5.1): 31 + 127 + 127*128 + 127*128^2 + 15*128^3, about 33 MB.
    update = b"\x3f\xff\xff\xff\x0f"
    steps[2] = ("c2s", frame(HEADERS, END_HEADERS, 1, update + CONNECT))
    events = run(steps)
    assert "h2.hpack" in checks(events)
    assert not [e for e in events if isinstance(e, HandshakeRequest)]


def test_garbage_after_the_preface() -> None:
    garbage = bytes(range(256)) * 4
    events = run([("c2s", PREFACE + garbage), ("s2c", garbage)])
    assert checks(events) and set(checks(events)) <= {"h2.frame"}
    assert isinstance(events[0], ConnectionOpened) and isinstance(events[-1], ConnectionClosed)


def test_a_broken_preface_and_misplaced_frames() -> None:
    events = run([("c2s", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0, b""))])
    assert checks(events) == ["h2.frame"]
    interrupted = frame(HEADERS, 0, 1, CONNECT[:10]) + frame(DATA, 0, 1, b"x")  # RFC 9113 6.10
    assert checks(run([("c2s", PREFACE + interrupted)])) == ["h2.frame"]
    lonely = frame(CONTINUATION, END_HEADERS, 1, CONNECT)
    assert checks(run([("c2s", PREFACE + lonely)])) == ["h2.frame"]
    overpadded = frame(DATA, PADDED, 1, b"\xff" + b"x")
    assert checks(run([("c2s", PREFACE + overpadded)])) == ["h2.frame"]


def test_oversized_frame_is_skipped() -> None:
    steps = websocket_session()
    steps.insert(4, ("c2s", frame(DATA, 0, 1, b"z" * 20000)))  # past the default 16384 (RFC 9113 4.2)
    events = run(steps)
    assert checks(events).count("h2.frame") == 1
    assert [e.text for e in events if isinstance(e, Message)] == ["Hello", "Hello"]


def test_many_extended_connects_are_bounded() -> None:
    steps = websocket_session()[:4]
    others = b"".join(frame(HEADERS, END_HEADERS, stream, CONNECT) for stream in range(3, 3 + 2 * 500, 2))
    steps.append(("c2s", others))
    events = run(steps)
    assert len(checks(events)) < 300  # reported up to a bound, not one note per stream for ever
    assert len(events) < 400


def test_mutated_sessions_never_raise() -> None:
    """Every byte of a real session, changed in turn (and some cut short): notices at most, never an exception."""
    steps = websocket_session()
    for index, (direction, data) in enumerate(steps):
        for position in range(len(data)):
            for replacement in (0x00, 0xFF, data[position] ^ 0x80):
                changed = list(steps)
                changed[index] = (direction, data[:position] + bytes([replacement]) + data[position + 1 :])
                events = run(changed)
                assert not events or isinstance(events[-1], ConnectionClosed)
            cut = list(steps)
            cut[index] = (direction, data[:position])
            run(cut[: index + 1])


def test_a_websocket_after_the_first_closed_is_decoded_too() -> None:
    """One at a time: the second extended CONNECT comes after both END_STREAMs of the first."""
    steps = websocket_session()[:6]
    steps += [("c2s", frame(DATA, END_STREAM, 1, b"")), ("s2c", frame(DATA, END_STREAM, 1, b"")),
              ("c2s", frame(HEADERS, END_HEADERS, 3, CONNECT)), ("s2c", frame(HEADERS, END_HEADERS, 3, ACCEPTED)),
              ("c2s", frame(DATA, 0, 3, MASKED_HELLO))]
    events = run(steps)
    assert len([e for e in events if isinstance(e, HandshakeRequest)]) == 2
    assert [e.text for e in events if isinstance(e, Message)] == ["Hello", "Hello", "Hello"]
    assert [type(e) for e in events].count(ConnectionOpened) == 1
    assert [type(e) for e in events].count(ConnectionClosed) == 1
    assert "h2.websocket-limit" not in checks(events)


def test_a_websocket_while_the_first_is_open_is_reported() -> None:
    steps = websocket_session()[:6]
    steps += [("c2s", frame(HEADERS, END_HEADERS, 3, CONNECT)), ("s2c", frame(HEADERS, END_HEADERS, 3, ACCEPTED)),
              ("c2s", frame(DATA, 0, 3, MASKED_HELLO))]
    events = run(steps)
    assert len([e for e in events if isinstance(e, HandshakeRequest)]) == 1
    assert [e.text for e in events if isinstance(e, Message)] == ["Hello", "Hello"]
    assert checks(events).count("h2.websocket-limit") == 2  # the request, and its answer


def test_an_oversized_data_frame_on_the_websocket_is_a_gap_in_it() -> None:
    steps = websocket_session()
    steps.insert(4, ("c2s", frame(DATA, 0, 1, b"z" * 20000)))
    events = run(steps)
    gaps = [(e.direction, e.missing) for e in events if isinstance(e, Gap)]
    assert gaps == [("c2s", 20000)]
    assert [e.text for e in events if isinstance(e, Message)] == ["Hello", "Hello"]
