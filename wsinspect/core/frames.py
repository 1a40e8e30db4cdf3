"""WebSocket frames: an incremental parser that keeps every wire fact, and a builder (RFC 6455 section 5.2).

Theory of operation. One ``FrameParser`` reads one direction of one connection. ``feed()`` takes bytes as they
arrive, in chunks of any size, and returns the frames they complete, so the same bytes give the same frames however
they were split. Each ``Frame`` keeps its header bytes, its unmasked payload and its offset in the direction's byte
stream, so a view can show every field and colour every byte without parsing again.

The parser is an inspector's parser: it never refuses a frame. Judging a frame (reserved opcode, wrong mask bit,
non-minimal length...) is the connection's job; the parser only needs the length to find the next frame. Three
things take it off the normal path, each bounded:

* a payload larger than ``max_payload`` is not kept: the frame is returned at once with ``missing`` set, and its
  payload bytes are skipped as they arrive, so memory stays bounded and the stream stays in sync;
* ``gap(n)`` says n bytes were never captured. If the gap falls inside a frame's payload the next boundary is still
  known; otherwise the parser loses sync;
* out of sync (after such a gap, or when a capture starts mid-connection) it scans for an offset where a plausible
  header starts and the frame it announces ends exactly where another plausible header starts (or where the data
  seen so far ends), and reports the bytes it skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from wsinspect.core.construct import fast_constructor
from wsinspect.core.fields import (
    EXTENDED_LENGTH_16,
    EXTENDED_LENGTH_64,
    FIN,
    MASK,
    MASKING_KEY,
    OPCODE,
    PAYLOAD,
    PAYLOAD_LENGTH,
    RSV1,
    RSV2,
    RSV3,
    FieldSpan,
    is_known_opcode,
)

MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
RESYNC_WINDOW = 1024 * 1024  # bytes held while looking for a frame boundary before giving up on a candidate


# XOR with one byte value is a byte-to-byte translation: one 256-byte table per key byte value.
_XOR_TABLES = tuple(bytes(value ^ key_byte for value in range(256)) for key_byte in range(256))
_LANES_FROM = 2048  # measured crossover: below it one big-integer XOR is faster, above it the four lanes are


def apply_mask(data: bytes | memoryview, key: bytes) -> bytes:
    """XOR data with the 4-byte masking key repeated (RFC 6455 5.3): masking and unmasking are the same.

    No per-byte Python loop: small payloads go through one big-integer XOR; larger ones are split into four byte
    lanes (every 4th byte meets the same key byte), each lane translated through a table in C and written back.
    """
    size = len(data)
    if size == 0:
        return b""
    if size < _LANES_FROM:
        repeated = key * (size // 4 + 1)
        masked = int.from_bytes(data, "little") ^ int.from_bytes(repeated[:size], "little")
        return masked.to_bytes(size, "little")
    out = bytearray(data)
    for lane in range(4):
        out[lane::4] = out[lane::4].translate(_XOR_TABLES[key[lane]])
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as it was on the wire, payload unmasked."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload_length: int  # what the length field says
    length_bits: int  # 7, 16 or 64: the form the length was written in
    masking_key: bytes | None
    header: bytes  # the header exactly as on the wire (2 to 14 bytes)
    payload: bytes  # unmasked; still compressed if RSV1 says so; may be short, see ``missing``
    offset: int  # where the header starts in this direction's byte stream
    missing: int = 0  # payload bytes not kept: past the size limit, or never captured

    @property
    def rsv(self) -> int:
        """The three reserved bits as one number, as Wireshark's ``websocket.rsv`` shows them."""
        return self.rsv1 << 2 | self.rsv2 << 1 | self.rsv3

    @property
    def is_control(self) -> bool:
        return self.opcode >= 0x8

    @property
    def size(self) -> int:
        """Bytes the frame takes on the wire as its header claims them (header + payload length field); of these,
        ``missing`` payload bytes were not kept (never captured, never sent, or over the limit)."""
        return len(self.header) + self.payload_length

    @property
    def complete(self) -> bool:
        return self.missing == 0

    @property
    def length_is_minimal(self) -> bool:
        return minimal_length_bits(self.payload_length) == self.length_bits

    @property
    def wire_payload(self) -> bytes:
        """The payload as it was on the wire (masked, if it was)."""
        return apply_mask(self.payload, self.masking_key) if self.masking_key else self.payload

    def spans(self) -> Iterator[FieldSpan]:
        """Every field with its byte span within the frame and its value, in wire order."""
        first, second = self.header[0], self.header[1]
        for field in (FIN, RSV1, RSV2, RSV3):
            assert field.bitmask is not None
            yield FieldSpan(field, 0, 1, bool(first & field.bitmask))
        yield FieldSpan(OPCODE, 0, 1, self.opcode)
        yield FieldSpan(MASK, 1, 2, self.masked)
        yield FieldSpan(PAYLOAD_LENGTH, 1, 2, second & 0x7F)
        key_start = 2
        if self.length_bits == 16:
            yield FieldSpan(EXTENDED_LENGTH_16, 2, 4, self.payload_length)
            key_start = 4
        elif self.length_bits == 64:
            yield FieldSpan(EXTENDED_LENGTH_64, 2, 10, self.payload_length)
            key_start = 10
        if self.masking_key is not None:
            yield FieldSpan(MASKING_KEY, key_start, key_start + 4, self.masking_key)
        yield FieldSpan(PAYLOAD, len(self.header), len(self.header) + len(self.payload), self.payload)


_new_frame = fast_constructor(Frame)


def minimal_length_bits(length: int) -> int:
    if length <= 125:
        return 7
    return 16 if length <= 0xFFFF else 64


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    masking_key: bytes | None = None,
    length_bits: int | None = None,
) -> bytes:
    """Encode one frame. ``length_bits`` forces a length form (for demos and tests of non-minimal lengths)."""
    first = fin << 7 | rsv1 << 6 | rsv2 << 5 | rsv3 << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if masking_key is not None else 0
    size = len(payload)
    form = length_bits or minimal_length_bits(size)
    if form == 7:
        header = bytes((first, mask_bit | size))
    elif form == 16:
        header = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if masking_key is None:
        return header + payload
    return header + masking_key + apply_mask(payload, masking_key)


@dataclass(frozen=True, slots=True)
class ClosePayload:
    """A close frame's body (RFC 6455 5.5.1): an optional 2-byte status code, then a UTF-8 reason."""

    code: int | None
    reason: str  # undecodable bytes replaced, so it is always printable as text
    one_byte: bool  # a 1-byte body, which has no valid reading
    reason_is_utf8: bool


_new_close_payload = fast_constructor(ClosePayload)  # once per close frame


def parse_close_payload(payload: bytes) -> ClosePayload:
    if len(payload) < 2:
        return _new_close_payload(None, "", len(payload) == 1, True)
    code = int.from_bytes(payload[:2], "big")
    try:
        return _new_close_payload(code, payload[2:].decode("utf-8"), False, True)
    except UnicodeDecodeError:
        return _new_close_payload(code, payload[2:].decode("utf-8", "replace"), False, False)


@dataclass(frozen=True, slots=True)
class Resynced:
    """The parser skipped ``skipped`` bytes to find the frame boundary at ``offset``."""

    offset: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Unsynced:
    """The stream ended while the parser was still looking for a frame boundary: ``count`` bytes never decoded."""

    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Truncated:
    """A frame was cut short (by a gap or by the end of the stream) before its header was complete."""

    offset: int
    have: int  # bytes of it that were seen


ParseItem = Frame | Resynced | Truncated | Unsynced


class FrameParser:
    """Incremental parser for one direction. See the module docstring."""

    # One per direction of every open connection: no per-instance dict.
    __slots__ = ("_buffer", "_discarded", "_in_sync", "_offset", "_scan_from", "_skip", "_wanted", "expect_masked",
                 "max_payload", "rsv1_allowed")

    def __init__(
        self,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        in_sync: bool = True,
        expect_masked: bool | None = None,
        offset: int = 0,
    ) -> None:
        self.max_payload = max_payload
        # What a plausible header looks like when hunting for a boundary: the mask bit this direction must use.
        self.expect_masked = expect_masked
        self.rsv1_allowed = False  # set once permessage-deflate is negotiated
        self._buffer = bytearray()
        self._offset = offset  # stream offset of _buffer[0]
        self._skip = 0  # payload bytes of an oversized or cut frame still to discard
        self._in_sync = in_sync
        self._scan_from = 0  # while out of sync: first buffer index not yet ruled out
        self._discarded = 0  # bytes thrown away since sync was lost (not counting never-captured ones)
        # Size of the frame at the start of _buffer while in sync and its header is in; 0 otherwise (an empty or
        # out-of-sync buffer, an unfinished header). Lets feed() append the next piece of a large frame without
        # reading its header again.
        self._wanted = 0

    @property
    def offset(self) -> int:
        """Stream offset of the next byte to be fed."""
        return self._offset + len(self._buffer) + self._skip

    @offset.setter
    def offset(self, value: int) -> None:
        """Where the frames start in the direction's byte stream (after a handshake): set before feeding."""
        assert not self._buffer and not self._skip
        self._offset = value

    @property
    def still_to_skip(self) -> int:
        """Payload bytes of a frame already returned (oversized, or let go) that are still to stream past."""
        return self._skip

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[ParseItem]:
        buffer = self._buffer
        if len(buffer) + len(data) < self._wanted:
            # Another piece of the frame being collected, which it does not complete: nothing to parse yet.
            buffer += data
            return []
        items: list[ParseItem] = []
        if self._skip:
            used = min(self._skip, len(data))
            self._skip -= used
            self._offset += used
            data = data[used:]
            if not data:
                return items
        if self._in_sync and not buffer:
            # The common case: frames straight from the chunk, only an unfinished tail is copied into the buffer.
            pos = self._parse_frames(data, 0, items)
            if self._skip:
                self._offset += len(data)
            else:
                self._offset += pos
                if pos < len(data):
                    buffer += memoryview(data)[pos:]
            return items
        buffer += data
        self._parse(items)
        return items

    def gap(self, missing: int) -> list[ParseItem]:
        """``missing`` bytes of the stream were never seen."""
        items: list[ParseItem] = []
        if self._skip:
            absorbed = min(self._skip, missing)
            self._skip -= absorbed
            self._offset += absorbed
            missing -= absorbed
            if not missing:
                return items
        if self._in_sync and self._buffer:
            header = self._read_header(0)
            if header is not None:
                header_length, payload_length, _ = header
                remaining = header_length + payload_length - len(self._buffer)
                if missing <= remaining:
                    # The gap lies inside this frame's payload: return what there is, and stay in sync.
                    items.append(self._make_frame(0, header_length, payload_length, len(self._buffer) - header_length))
                    self._offset += len(self._buffer) + missing
                    self._buffer.clear()
                    self._wanted = 0
                    self._skip = remaining - missing
                    return items
            items.append(Truncated(self._offset, len(self._buffer)))
        elif not self._in_sync:
            self._discarded += len(self._buffer)
        self._offset += len(self._buffer) + missing
        self._buffer.clear()
        self._wanted = 0
        self._in_sync = False
        self._scan_from = 0
        return items

    def let_go(self) -> list[ParseItem]:
        """Stop keeping the payload of the frame being collected (to bound memory): return it now with what has
        arrived, ``missing`` the rest, and skip the rest as it streams past, staying in sync."""
        if not self._in_sync or not self._buffer:
            return []
        header = self._read_header(0)
        if header is None:
            return []
        header_length, payload_length, _ = header
        kept = len(self._buffer) - header_length
        frame = self._make_frame(0, header_length, payload_length, kept)
        self._offset += len(self._buffer)
        self._buffer.clear()
        self._wanted = 0
        self._skip = payload_length - kept
        return [frame]

    def finish(self) -> list[ParseItem]:
        """The stream ended: report a frame it cut short."""
        items: list[ParseItem] = []
        if not self._in_sync and self._buffer:
            # At the very end, a candidate frame that ends exactly where the stream ends is the best evidence left.
            found = self._hunt(at_end=True)
            if found is not None:
                if self._discarded + found:
                    items.append(Resynced(self._offset + found, self._discarded + found))
                del self._buffer[:found]
                self._offset += found
                self._in_sync = True
                self._parse(items)
        if not self._buffer:
            return items
        if not self._in_sync:
            items.append(Unsynced(self._offset, self._discarded + len(self._buffer)))
        else:
            header = self._read_header(0)
            if header is not None:
                header_length, payload_length, _ = header
                items.append(self._make_frame(0, header_length, payload_length, len(self._buffer) - header_length))
            else:
                items.append(Truncated(self._offset, len(self._buffer)))
        self._offset += len(self._buffer)
        self._buffer.clear()
        self._wanted = 0
        return items

    # -- internals ---------------------------------------------------------------------------------------------

    def _read_header(self, pos: int, buf: bytes | bytearray | None = None) -> tuple[int, int, int] | None:
        """(header length, payload length, length bits) of the header at ``pos``, or None if it is incomplete."""
        if buf is None:
            buf = self._buffer
        available = len(buf) - pos
        if available < 2:
            return None
        second = buf[pos + 1]
        length = second & 0x7F
        header_length = 6 if second & 0x80 else 2
        bits = 7
        if length == 126:
            header_length += 2
            if available < 4:
                return None
            length = buf[pos + 2] << 8 | buf[pos + 3]
            bits = 16
        elif length == 127:
            header_length += 8
            if available < 10:
                return None
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            bits = 64
        if available < header_length:
            return None
        return header_length, length, bits

    def _make_frame(self, pos: int, header_length: int, payload_length: int, kept: int,
                    buf: bytes | bytearray | None = None) -> Frame:
        if buf is None:
            buf = self._buffer
        first, second = buf[pos], buf[pos + 1]
        masked = bool(second & 0x80)
        header = bytes(buf[pos : pos + header_length])
        start = pos + header_length
        payload_view = memoryview(buf)[start : start + kept]
        key = header[-4:] if masked else None
        payload = apply_mask(payload_view, key) if key is not None and kept else bytes(payload_view)
        length_field = second & 0x7F
        return _new_frame(
            bool(first & 0x80), bool(first & 0x40), bool(first & 0x20), bool(first & 0x10), first & 0x0F, masked,
            payload_length, 7 if length_field < 126 else (16 if length_field == 126 else 64), key, header, payload,
            self._offset + pos, payload_length - kept,
        )

    def _parse_frames(self, buf: bytes | bytearray, pos: int, items: list[ParseItem]) -> int:
        """Parse whole frames from ``buf[pos:]`` while in sync; return where the first unfinished one starts.

        The header reading and frame building of ``_read_header`` and ``_make_frame`` are written out here (this
        loop runs once per frame of every capture); a frame over ``max_payload`` still goes through them."""
        end = len(buf)
        max_payload = self.max_payload
        offset = self._offset
        self._wanted = 0
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            header_length = 6 if second & 0x80 else 2
            if length < 126:
                bits = 7
            elif length == 126:
                header_length += 2
                if end - pos < header_length:
                    break
                length = buf[pos + 2] << 8 | buf[pos + 3]
                bits = 16
            else:
                header_length += 8
                if end - pos < header_length:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                bits = 64
            if end - pos < header_length:
                break
            if length > max_payload:
                # Keep the header, drop the payload as it streams past: bounded memory, still in sync.
                items.append(self._make_frame(pos, header_length, length, 0, buf))
                available = end - pos - header_length
                if available >= length:
                    pos += header_length + length
                    continue
                self._skip = length - available
                return end
            start = pos + header_length
            frame_end = start + length
            if frame_end > end:
                self._wanted = frame_end - pos
                break
            header = bytes(buf[pos:start])
            key: bytes | None = None
            if second & 0x80:
                key = masking_key = header[-4:]
                if length < _LANES_FROM:  # apply_mask's small case, inline
                    repeated = masking_key * (length // 4 + 1)
                    payload = (int.from_bytes(buf[start:frame_end], "little")
                               ^ int.from_bytes(repeated[:length], "little")).to_bytes(length, "little")
                else:
                    payload = apply_mask(memoryview(buf)[start:frame_end], masking_key)
            else:
                # One copy: a bytes slice as it is, a bytearray's through a view (slicing it would copy twice).
                payload = bytes(buf[start:frame_end] if type(buf) is bytes else memoryview(buf)[start:frame_end])
            items.append(_new_frame(bool(first & 0x80), bool(first & 0x40), bool(first & 0x20), bool(first & 0x10),
                                    first & 0x0F, key is not None, length, bits, key, header, payload,
                                    offset + pos, 0))
            pos = frame_end
        return pos

    def _parse(self, items: list[ParseItem]) -> None:
        buf = self._buffer
        pos = 0
        if not self._in_sync:
            found = self._hunt()
            if found is None:
                if self._scan_from > RESYNC_WINDOW:
                    # Nothing before the scan point can start a frame: let it go, but count it.
                    del buf[: self._scan_from]
                    self._offset += self._scan_from
                    self._discarded += self._scan_from
                    self._scan_from = 0
                return
            pos = found
            skipped = self._discarded + pos
            if skipped:
                items.append(Resynced(self._offset + pos, skipped))
            self._in_sync = True
            self._discarded = 0
        end = len(buf)
        pos = self._parse_frames(buf, pos, items)
        if self._skip and pos == end:
            self._offset += end
            buf.clear()
            return
        if pos:
            del buf[:pos]
            self._offset += pos

    def _plausible(self, pos: int) -> tuple[int, int] | bool | None:
        """Could a frame start at ``pos``? (header length, payload length) if so, False if not, None if unknown yet."""
        buf = self._buffer
        if len(buf) - pos < 2:
            return None
        first, second = buf[pos], buf[pos + 1]
        opcode = first & 0x0F
        if not is_known_opcode(opcode) or first & 0x30:
            return False
        if first & 0x40 and not (self.rsv1_allowed and opcode in (0x1, 0x2)):
            return False
        if self.expect_masked is not None and bool(second & 0x80) != self.expect_masked:
            return False
        if opcode >= 0x8 and (not first & 0x80 or (second & 0x7F) > MAX_CONTROL_PAYLOAD):
            return False
        header = self._read_header(pos)
        if header is None:
            return None
        header_length, payload_length, bits = header
        if minimal_length_bits(payload_length) != bits or payload_length > min(self.max_payload, RESYNC_WINDOW):
            return False
        return header_length, payload_length

    def _hunt(self, *, at_end: bool = False) -> int | None:
        """Find the first offset from which frames chain plausibly; None to wait for more data.

        A candidate is accepted only when the frame it announces is followed by another plausible header, so the
        verdict depends on the bytes alone, never on how they were chunked. Only at the end of the stream may a
        frame that ends exactly at the last byte stand on its own.
        """
        buf = self._buffer
        pos = self._scan_from
        while pos < len(buf):
            verdict = self._plausible(pos)
            if verdict is None and at_end:
                verdict = False
            if verdict and buf[pos] == 0 and not buf[pos + 1] & 0x7F:
                # An empty non-final continuation carries nothing, so starting there gains nothing, while zero
                # runs inside payloads (compressed ones especially) look exactly like one: not a place to start.
                verdict = False
            if verdict is False:
                pos += 1
                continue
            if verdict is None:
                break
            assert not isinstance(verdict, bool)
            header_length, payload_length = verdict
            frame_end = pos + header_length + payload_length
            if frame_end > len(buf):
                if at_end:
                    pos += 1
                    continue
                break
            if frame_end == len(buf):
                following: tuple[int, int] | bool | None = True if at_end else None
            else:
                following = self._plausible(frame_end)
                if following is None and at_end:
                    following = False
            if following is None:
                break
            if following is not False:
                return pos
            pos += 1
        if not at_end:
            self._scan_from = pos
        return None
