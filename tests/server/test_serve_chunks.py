"""What one turn of the event loop decodes: at most --read-chunk bytes of a connection, and a tail too short to make
a chunk of its own (under ``MIN_CHUNK``) goes with it; a chunk that only adds to a frame still being collected is
not charged to the turn.

The connection is driven directly (``ServerConnection`` on a transport that records what happens), so the test
sees each turn: what was written, and whether reading was paused.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any

from wsinspect.core.fields import Opcode
from wsinspect.core.frames import build_frame
from wsinspect.server.endpoint import ServerConfig
from wsinspect.server.run import MIN_CHUNK, ServeOptions, ServerConnection, WebSocketServer

READ_CHUNK = 16 * 1024
REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
MASK = b"\x01\x02\x03\x04"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.paused = False
        self.pauses = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8765)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def echoes(transport: RecordingTransport, payload: bytes) -> int:
    frame = build_frame(Opcode.BINARY, payload)
    return sum(chunk.count(frame) for chunk in transport.written)


def open_connection(compression: bool = False) -> tuple[ServerConnection, RecordingTransport]:
    server = WebSocketServer(ServeOptions(port=0, read_chunk=READ_CHUNK), ServerConfig(compression=compression), [])
    connection = ServerConnection(server)
    transport = RecordingTransport()
    connection.connection_made(transport)
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if compression else b""
    connection.data_received(REQUEST[:-2] + offer + b"\r\n")
    assert transport.written and transport.written[0].startswith(b"HTTP/1.1 101")
    return connection, transport


def test_a_frame_a_few_bytes_over_the_chunk_is_decoded_in_one_turn() -> None:
    # A 16 KiB payload's frame is 16,392 bytes: 8 past a 16 KiB chunk. Those 8 go with the chunk, so the echo is
    # written in the same turn and reading never pauses.
    payload = bytes(range(256)) * (READ_CHUNK // 256)

    async def main() -> None:
        connection, transport = open_connection()
        frame = build_frame(Opcode.BINARY, payload, masking_key=MASK)
        assert READ_CHUNK < len(frame) < READ_CHUNK + MIN_CHUNK
        connection.data_received(frame)
        assert echoes(transport, payload) == 1
        assert transport.pauses == 0

    asyncio.run(main())


def test_a_read_of_three_such_frames_still_takes_two_turns() -> None:
    # The bound holds. Of 49,176 bytes, the first chunk ends 8 bytes short of the first frame's end: it completes
    # nothing and is not charged. The second completes the first frame, which ends the turn with reading paused;
    # the rest (16,408 bytes, more than a tail) is decoded on the next turn.
    payload = bytes(range(256)) * (READ_CHUNK // 256)

    async def main() -> None:
        connection, transport = open_connection()
        frame = build_frame(Opcode.BINARY, payload, masking_key=MASK)
        connection.data_received(frame * 3)
        assert echoes(transport, payload) == 1
        assert transport.paused
        for _ in range(3):
            await asyncio.sleep(0)
        assert echoes(transport, payload) == 3
        assert not transport.paused

    asyncio.run(main())


def test_a_large_compressed_frame_is_decoded_in_one_turn_and_tiny_frames_still_a_chunk_per_turn() -> None:
    # On a compressed connection a turn decodes 1/16 of --read-chunk (1 KiB). A 16 KiB compressed frame, inflated in
    # the chunk that completes it, took 16 turns (a pause and a resume of reading each); the chunks that only collect
    # it are not charged, so it takes one. A read of tiny frames still takes a chunk per turn.
    deflater = zlib.compressobj(wbits=-15)
    payload = random.Random(7692).randbytes(16 * 1024)
    compressed = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]  # RFC 7692 7.2.1
    assert len(compressed) > 16 * 1024

    async def main() -> None:
        connection, transport = open_connection(compression=True)
        connection.data_received(build_frame(Opcode.BINARY, compressed, rsv1=True, masking_key=MASK))
        assert len(transport.written) == 2  # the 101, then the echo, in data_received's own turn
        assert transport.pauses == 0

        connection, transport = open_connection(compression=True)
        tiny = b"".join(build_frame(Opcode.TEXT, b"tiny frame %d" % i, masking_key=MASK) for i in range(400))
        assert len(tiny) > 4 * 1024
        connection.data_received(tiny)
        assert transport.paused  # about 1 KiB of frames decoded, the rest waits for the next turns
        turns = 0
        while transport.paused:
            await asyncio.sleep(0)
            turns += 1
        assert turns >= 4  # and reading resumed: everything received was decoded

    asyncio.run(main())
