"""Each fuzz target's contract on one raw byte string: for atheris (scripts/fuzz.py) and for regression tests.

The hypothesis tests draw structured inputs; a coverage-guided fuzzer and a saved crash give bytes. These functions
read the bytes the way scripts/fuzz.py's seeds are laid out and call the same checks as the hypothesis tests.
"""

from __future__ import annotations

from test_fuzz_capture import check_capture
from test_fuzz_connection import Session, made_handshake, normal, run
from test_fuzz_frames import MAX_PAYLOADS, Stream, check_items, feed_all
from test_fuzz_handshake import check_handshake

from wsinspect.core.connection import DEFAULT_MEMORY_BUDGET, Limits
from wsinspect.core.handshake import find_header_end

DIRECTION_SEPARATOR = b"\xff\xff\xff\xff"  # between the c2s and s2c frame bytes of a connection input


def check_handshake_bytes(data: bytes) -> None:
    """A request header block, then the response's (split after the first blank line)."""
    end = find_header_end(data)
    request, response = (data[:end], data[end:]) if end >= 0 else (data, b"")
    check_handshake(request, response, b"")


def check_frames_bytes(data: bytes) -> None:
    """First byte: max_payload (low 3 bits), in sync (bit 3), expect_masked (bits 4-5); then the stream."""
    if not data:
        return
    options, frames = data[0], data[1:]
    stream = Stream(data=frames, max_payload=MAX_PAYLOADS[options % len(MAX_PAYLOADS)], in_sync=not options & 8,
                    expect_masked=(None, True, False, None)[options >> 4 & 3], rsv1_allowed=bool(options & 64))
    whole = feed_all(stream, [frames])
    check_items(whole, stream, len(frames))
    assert feed_all(stream, [frames[i : i + 7] for i in range(0, len(frames), 7)]) == whole


def check_connection_bytes(data: bytes) -> None:
    """First byte: handshake (bits 0-1: deflate, plain, mid-stream) and small limits (bit 2); then the c2s frame
    bytes, DIRECTION_SEPARATOR, the s2c frame bytes."""
    if not data:
        return
    options = data[0]
    c2s, _, s2c = data[1:].partition(DIRECTION_SEPARATOR)
    how = options & 3
    heads = (made_handshake("permessage-deflate", "permessage-deflate") if how == 0 else
             made_handshake(None, None) if how == 1 else (b"", b""))
    limits = Limits(max_frame=50, max_message=100) if options & 4 else Limits()
    session = Session(heads[0] + c2s, heads[1] + s2c, limits, DEFAULT_MEMORY_BUDGET, mid_stream=how >= 2)
    whole = normal(run(session, [("c2s", session.c2s), ("s2c", session.s2c)]))
    pieces = [("c2s", session.c2s[i : i + 5]) for i in range(0, len(session.c2s), 5)]
    pieces += [("s2c", session.s2c[i : i + 5]) for i in range(0, len(session.s2c), 5)]
    assert normal(run(session, pieces)) == whole  # type: ignore[arg-type]


def check_capture_bytes(data: bytes) -> None:
    check_capture(data)
