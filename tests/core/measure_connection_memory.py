"""Memory per open WebSocket conversation through ``Connection`` alone (not a test: run it by hand).

    python tests/core/measure_connection_memory.py 100000 plain      # handshake, one text message each way
    python tests/core/measure_connection_memory.py 100000 deflate    # the same with permessage-deflate
    python tests/core/measure_connection_memory.py 100000 midstream  # joined mid-connection, compressed frames

Prints the growth of the resident set divided by the number of conversations, all of them kept open.
"""

from __future__ import annotations

import gc
import sys
import zlib

from wsinspect.core.connection import Connection
from wsinspect.core.frames import build_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    mode = sys.argv[2] if len(sys.argv) > 2 else "deflate"
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if mode != "plain" else ""
    request = (f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n").encode()
    response = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {ACCEPT}\r\n{extension}\r\n").encode()
    text = b"hello hello hello"
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = (deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
    compressed = mode != "plain"
    client_frame = build_frame(1, body if compressed else text, rsv1=compressed, masking_key=b"abcd")
    server_frame = build_frame(1, body if compressed else text, rsv1=compressed)
    gc.collect()
    before = resident_bytes()
    kept = []
    for number in range(count):
        if mode == "midstream":
            conn = Connection(number, mid_stream=True)
            conn.receive("c2s", client_frame * 2, time=0.0)  # the second header confirms the first frame
            conn.receive("s2c", server_frame * 2, time=0.0)
        else:
            conn = Connection(number)
            conn.receive("c2s", request, time=0.0)
            conn.receive("s2c", response, time=0.0)
            conn.receive("c2s", client_frame, time=0.0)
            conn.receive("s2c", server_frame, time=0.0)
        kept.append(conn)
    gc.collect()
    print(f"{mode}: {count} open conversations, {(resident_bytes() - before) / count:,.0f} bytes each")


if __name__ == "__main__":
    main()
