"""Streaming pcap / pcapng reader: capture file in, numbered raw link-layer records out.

Why this reader is ours and not scapy's ``RawPcapReader`` / ``RawPcapNgReader`` (scapy 2.8.0, measured in commit
45cceb4, which read every capture through them, and undone in b3e3c9b): scapy cuts records at 65,535 bytes (a pcap
record at 262,140 at most), returns a record cut by the end of the file as if it were whole, allocates whatever a
damaged block length claims (4 GiB for 0xFFFFFFF0), ends silently at damage (a warning on stderr, nothing for the
caller), ignores ``if_tsoffset``, keeps one section's interfaces in the next, does not hand out Decryption Secrets
Blocks, and loses the records of a cut gzip stream. Making up for all that left scapy parsing only headers and
options, at 2.3x the instructions for reading, ``read --json`` 20-26 % slower in CPU time and the first line past
0.5 s (its import alone is about 0.2 s). The tests in tests/capture/test_capture_files.py hold this reader to each of
those points; scapy remains the writer (``writer.py``) and the live capture's filter compiler (``live.py``).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Protocol

from wsinspect.capture.fastbuild import frozen_builder

__all__ = ["CaptureError", "CaptureFile", "RawPacket", "Record"]


class CaptureError(Exception):
    """The file cannot be read as a capture; the message is one line meant for a person."""


@dataclass(frozen=True, slots=True)
class RawPacket:
    """One captured record, as stored in the file."""

    number: int  # Wireshark's frame.number (1-based; skips pcapng custom/journal blocks, which it counts)
    time: float  # epoch seconds
    linktype: int  # LINKTYPE_* value of the record's interface
    data: bytes  # the captured bytes
    wire_length: int  # length on the wire; larger than len(data) when the record was cut at capture time


new_raw_packet = frozen_builder(RawPacket)  # RawPacket(...) with positional fields, faster (see fastbuild)

# A record as the readers find it: (number, time, linktype, buffer, start, end, wire_length), the RawPacket fields
# with the captured bytes given as buffer[start:end] (buffer is the reader's, not to be kept).
Record = tuple[int, float, int, bytes, int, int, int]

# Real records are at most a few hundred KiB (64 KiB IP packets, up to ~512 KiB with BIG TCP GSO).
# Anything claiming more is a corrupt length field, and reading it would allocate that much.
MAX_RECORD_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
_HEAD_BYTES = 64  # enough for any capture's file header: the first read must hold it

_PCAP_MAGICS: dict[bytes, tuple[str, float, int]] = {
    # magic as stored -> (struct byte order, timestamp fraction units per second, record header size)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1e6, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1e9, 16),
    # Kuznetzov's "modified pcap": 8 more bytes of record header (ifindex, protocol, packet type).
    b"\x34\xcd\xb2\xa1": ("<", 1e6, 24),
    b"\xa1\xb2\xcd\x34": (">", 1e6, 24),
}
_PCAPNG_SECTION_HEADER = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_BLOCK_INTERFACE = 1
_BLOCK_OBSOLETE_PACKET = 2
_BLOCK_SIMPLE_PACKET = 3
_BLOCK_ENHANCED_PACKET = 6
# Blocks that are no packet but that Wireshark still shows as frames (and so counts in frame.number):
# systemd journal entries and custom blocks (copyable or not).
_NUMBERED_NON_PACKET_BLOCKS = frozenset({0x00000009, 0x00000BAD, 0x40000BAD})
# Interfaces described in one pcapng section. Real captures have a handful; each description is 20 bytes of file
# and ~100 bytes of memory, so a damaged or hostile file could otherwise make the list grow with its size.
MAX_INTERFACES = 65536
_OPTION_TSRESOL = 9
_OPTION_TSOFFSET = 14
# A Decryption Secrets Block (pcapng draft, 4.7) of secrets type 'TLSK' carries an NSS key log: the keys of the
# TLS sessions in the capture (``editcap --inject-secrets tls,FILE`` writes one). Their text is kept for the trace,
# up to a bound, since each block may be as large as MAX_RECORD_BYTES.
_BLOCK_DECRYPTION_SECRETS = 0x0000000A
_SECRETS_TLS_KEY_LOG = 0x544C534B
MAX_TLS_KEY_LOG_BYTES = 64 * 1024 * 1024


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _GunzipStream:
    """Reads a gzip file decompressed, chunk by chunk.

    Unlike gzip.GzipFile, a cut or damaged stream just reads shorter (keeping every byte that did
    decompress) and `problem` says why; and no read returns more than asked, whatever the ratio.
    """

    def __init__(self, raw: IO[bytes], already_read: bytes) -> None:
        self._raw = raw
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        # Compressed bytes not yet given to the decompressor: first those read to recognise the file (a pipe cannot
        # be read again from its start).
        self._input = already_read
        self.consumed = len(already_read)  # compressed bytes taken from ``raw``, for progress
        self._ended = False
        self.problem: str | None = None

    def read(self, size: int, /) -> bytes:
        parts = []
        have = 0
        while have < size and not self._ended:
            if not self._input:
                self._input = self._raw.read(_CHUNK_BYTES)
                self.consumed += len(self._input)
                if not self._input:
                    if not self._decompressor.eof:
                        self.problem = "the compressed data ends early"
                    self._ended = True
                    break
            if self._decompressor.eof:
                if not self._input.strip(b"\x00"):
                    self._input = b""  # zero padding after the last member
                    continue
                self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # next concatenated member
            try:
                piece = self._decompressor.decompress(self._input, size - have)
            except zlib.error as error:
                self.problem = f"the compressed data is damaged ({error})"
                self._ended = True
                break
            if self._decompressor.eof:
                self._input = self._decompressor.unused_data
            else:
                self._input = self._decompressor.unconsumed_tail
            parts.append(piece)
            have += len(piece)
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units_per_second: float
    offset_seconds: int


class CaptureFile:
    """A pcap or pcapng file, read as a stream of RawPacket.

    Opening checks the header and raises CaptureError for anything that is not a capture. Iteration
    never raises for damage further in: it stops, sets `truncated`, and says why in `problem`.

    ``packet_limit`` N stops the reading at record N, as ``tshark -c N`` does: nothing after it is read, damage
    after it included. ``stream`` reads an open binary stream (standard input: ``read -``) instead of opening
    ``path``, which then only names it; a stream that cannot seek (a pipe) can be read once.
    """

    format: str  # "pcap" or "pcapng"
    size: int  # file size in bytes
    position: int  # bytes consumed so far (updated per batch of records), for progress reporting
    truncated: bool  # iteration stopped early: the file ends inside a record, or a record is corrupt
    problem: str | None  # one line saying why iteration stopped early
    compressed: bool  # gzip-compressed capture (size and position then count compressed bytes)
    # Key logs from Decryption Secrets Blocks, in file order, as they are read; the trace takes them (and clears).
    tls_key_logs: list[bytes]
    # The link types of the interfaces described so far (a pcap file has one, known once it is open; a pcapng file
    # describes its interfaces as it goes): bounded by MAX_INTERFACES per section, and there are 65,536 link types.
    linktypes: set[int]
    packets: int  # the number of the last record handed out (Wireshark's frame.number)
    limit_reached: bool  # the reading stopped at ``packet_limit``

    def __init__(self, path: str | os.PathLike[str], *, packet_limit: int | None = None,
                 stream: IO[bytes] | None = None) -> None:
        self.path = os.fspath(path)
        self.packet_limit = packet_limit
        if stream is None:
            try:
                stream = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            except OSError as error:
                raise CaptureError(f"cannot open {self.path}: {error.strerror or error}") from None
        self._raw: IO[bytes] = stream
        self._stream: _Readable = self._raw
        self._gunzip: _GunzipStream | None = None
        self._iterated = False
        try:
            self._seekable = self._raw.seekable()
            self.size = os.fstat(self._raw.fileno()).st_size if self._seekable else 0
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.position = 0
        self.truncated = False
        self.problem = None
        self.compressed = False
        self.tls_key_logs = []
        self._tls_key_log_bytes = 0
        self.linktypes = set()
        self.packets = 0
        self.limit_reached = False
        self._stream = self._raw
        self._gunzip = None
        head = self._read_head()
        if head[:2] == b"\x1f\x8b":
            self.compressed = True
            self._stream = self._gunzip = _GunzipStream(self._raw, head)
            head = self._read_head()
            if not head and self._gunzip.problem:
                raise CaptureError("gzip-compressed file that does not decompress")
        if not head:
            raise CaptureError("empty file" if not self.compressed else "empty gzip-compressed file")
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            if len(head) < 24:
                raise CaptureError(f"pcap file too short for its 24-byte header ({len(head)} bytes)")
            self._head = head
            self.linktypes.add(_pcap_linktype(head))
        elif len(head) >= 4 and struct.unpack_from("<I", head)[0] == _PCAPNG_SECTION_HEADER:
            self.format = "pcapng"
            if len(head) < 28 or head[8:12] not in _PCAPNG_BYTE_ORDER:
                raise CaptureError("pcapng file with a damaged section header")
            self._head = head
        else:
            shown = " ".join(f"{byte:02x}" for byte in head[:4])
            raise CaptureError(f"not a pcap or pcapng file (starts with {shown})")

    def _read_head(self) -> bytes:
        """The first bytes, at least enough for any header that is there (a pipe may give fewer at a time)."""
        parts = []
        have = 0
        try:
            while have < _HEAD_BYTES:
                part = self._stream.read(_CHUNK_BYTES)
                if not part:
                    break
                parts.append(part)
                have += len(part)
        except OSError as error:
            raise CaptureError(f"cannot read: {error.strerror or error}") from None
        return b"".join(parts)

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def __iter__(self) -> Iterator[RawPacket]:
        """Read the records from the start of the file (each iteration starts over)."""
        new_packet = new_raw_packet
        return (
            new_packet(number, time, linktype, buffer[start:end], wire_length)
            for batch in self.record_batches()
            for number, time, linktype, buffer, start, end, wire_length in batch
        )

    def record_batches(self) -> Iterator[list[Record]]:
        """Like iterating, but the records as ``Record`` tuples (no RawPacket, no copy of their bytes), in lists.

        For the trace's per-packet fast path, which slices only the payload it hands on out of ``buffer``: a list per
        run of packet blocks spares a generator switch per record. A batch ends before any block that is not a packet
        is handled, so what such a block tells (a key log in ``tls_key_logs``, ``truncated``) comes after the records
        before it, as when iterating. ``position`` is updated per batch, not per record.
        """
        if self._raw.closed:
            raise CaptureError(f"{self.path} is closed")
        if self._iterated:
            if not self._seekable:
                raise CaptureError(f"{self.path} cannot be read twice (it is a pipe)")
            self._raw.seek(0)
            self._start()
        self._iterated = True
        return self._counted(self._iter_pcap() if self.format == "pcap" else self._iter_pcapng())

    def _counted(self, batches: Iterator[list[Record]]) -> Iterator[list[Record]]:
        """``packets`` kept up to date, and the reading stopped at ``packet_limit`` (per batch: no cost per record)."""
        limit = self.packet_limit
        for batch in batches:
            last = batch[-1][0]
            if limit is not None and last >= limit:
                self.packets = limit
                self.limit_reached = True
                # Whatever stopped the reader after record N (damage, a cut) is past what was asked for.
                self.truncated = False
                self.problem = None
                yield batch if last == limit else [record for record in batch if record[0] <= limit]
                return
            self.packets = last
            yield batch

    # -- reading helpers shared by both formats ------------------------------------------------------

    def _stop(self, problem: str) -> None:
        self.truncated = True
        self.problem = problem

    def _finish_reading(self, consumed: int) -> None:
        self.position = self._gunzip.consumed if self._gunzip is not None else consumed
        if self._gunzip is not None and self._gunzip.problem and not self.truncated:
            self._stop(self._gunzip.problem)

    def _read_more(self, wanted: int) -> bytes:
        """Read up to `wanted` bytes, short only at the end of the file; damage reads as the end."""
        parts = []
        try:
            while wanted > 0:
                # At most a chunk per read: a lying length field then costs no more memory than
                # the bytes that are really there.
                part = self._stream.read(_CHUNK_BYTES)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            if self._gunzip is not None:
                self.position = self._gunzip.consumed  # compressed bytes read so far: close enough for progress
        except OSError as error:
            self._stop(f"read error: {error.strerror or error}")
        return b"".join(parts)

    # -- pcap ----------------------------------------------------------------------------------------

    def _iter_pcap(self) -> Iterator[list[Record]]:
        buffer = self._head
        order, units_per_second, header_size = _PCAP_MAGICS[buffer[:4]]
        linktype = _pcap_linktype(buffer)
        unpack_record_header = struct.Struct(order + "IIII").unpack_from
        compressed = self.compressed
        buffer_start = 0  # file offset of buffer[0] (uncompressed offset when compressed)
        offset = 24
        number = 0
        batch: list[Record] = []
        while True:
            if len(buffer) - offset < header_size:
                if batch:
                    if not compressed:
                        self.position = buffer_start + offset
                    yield batch
                    batch = []
                buffer_start += offset
                buffer = buffer[offset:] + self._read_more(_CHUNK_BYTES)
                offset = 0
                if len(buffer) < header_size:
                    if buffer and not self.truncated:
                        self._stop(f"file ends inside the header of record {number + 1}")
                    break
            seconds, fraction, captured, wire_length = unpack_record_header(buffer, offset)
            start = offset + header_size
            end = start + captured
            if end > len(buffer):
                if captured > MAX_RECORD_BYTES:
                    self._stop(f"record {number + 1} claims {captured} bytes; the file is damaged there")
                    break
                if batch:
                    if not compressed:
                        self.position = buffer_start + offset
                    yield batch
                    batch = []
                buffer_start += offset
                buffer = buffer[offset:] + self._read_more(end - len(buffer))
                offset, start, end = 0, header_size, header_size + captured
                if end > len(buffer):
                    if not self.truncated:
                        self._stop(
                            f"file ends inside record {number + 1} "
                            f"({len(buffer) - header_size} of {captured} bytes present)"
                        )
                    break
            number += 1
            offset = end
            batch.append((number, seconds + fraction / units_per_second, linktype, buffer, start, end, wire_length))
        if batch:
            yield batch
        self._finish_reading(buffer_start + len(buffer))

    # -- pcapng --------------------------------------------------------------------------------------

    def _iter_pcapng(self) -> Iterator[list[Record]]:
        buffer = self._head
        compressed = self.compressed
        buffer_start = 0
        offset = 0
        number = 0
        order = "<"
        unpack_block_header = struct.Struct("<II").unpack_from
        unpack_enhanced = struct.Struct("<IIIII").unpack_from
        # An enhanced packet block's header and packet header in one unpack, for the fast path below.
        unpack_packet_block = struct.Struct("<7I").unpack_from
        interfaces: list[_Interface] = []
        last_time = 0.0
        batch: list[Record] = []
        while True:
            if offset + 28 <= len(buffer):
                # Fast path: an enhanced packet block that is whole in the buffer and sound. Anything else (other
                # blocks, damage, a block running past the buffer) goes the general way below, which decides the same.
                block_type, block_length, interface_id, high, low, captured, wire_length = unpack_packet_block(
                    buffer, offset
                )
                end = offset + block_length
                if (
                    block_type == _BLOCK_ENHANCED_PACKET
                    and end <= len(buffer)
                    and block_length >= 32
                    and not block_length % 4
                    and captured <= block_length - 32
                    and interface_id < len(interfaces)
                ):
                    interface = interfaces[interface_id]
                    last_time = ((high << 32) | low) / interface.units_per_second + interface.offset_seconds
                    number += 1
                    data_start = offset + 28
                    offset = end
                    batch.append(
                        (number, last_time, interface.linktype, buffer, data_start, data_start + captured, wire_length)
                    )
                    continue
            # Any other block: the records before it go out first.
            if batch:
                if not compressed:
                    self.position = buffer_start + offset
                yield batch
                batch = []
            if len(buffer) - offset < 12:
                buffer_start += offset
                buffer = buffer[offset:] + self._read_more(_CHUNK_BYTES)
                offset = 0
                if len(buffer) < 12:
                    if buffer and not self.truncated:
                        self._stop(f"file ends inside a block header after record {number}")
                    break
            block_type, block_length = unpack_block_header(buffer, offset)
            if block_type == _PCAPNG_SECTION_HEADER:
                # A section header sets the byte order of everything up to the next one, its own
                # length field included (the block type reads the same either way round).
                section_order = _PCAPNG_BYTE_ORDER.get(buffer[offset + 8 : offset + 12])
                if section_order is None:
                    self._stop(f"damaged section header after record {number}")
                    break
                order = section_order
                unpack_block_header = struct.Struct(order + "II").unpack_from
                unpack_enhanced = struct.Struct(order + "IIIII").unpack_from
                unpack_packet_block = struct.Struct(order + "7I").unpack_from
                interfaces = []
                block_length = unpack_block_header(buffer, offset)[1]
            if block_length < 12 or block_length % 4:
                self._stop(f"damaged block (length {block_length}) after record {number}")
                break
            end = offset + block_length
            if end > len(buffer):
                if block_length > MAX_RECORD_BYTES + 64:
                    self._stop(f"block after record {number} claims {block_length} bytes: damaged there")
                    break
                buffer_start += offset
                buffer = buffer[offset:] + self._read_more(end - len(buffer))
                offset, end = 0, block_length
                if end > len(buffer):
                    if not self.truncated:
                        self._stop(
                            f"file ends inside the block after record {number} "
                            f"({len(buffer)} of {block_length} bytes present)"
                        )
                    break
            block_start = offset
            offset = end
            if block_type in (_BLOCK_ENHANCED_PACKET, _BLOCK_OBSOLETE_PACKET):
                if block_length < 32:
                    self._stop(f"damaged packet block after record {number}")
                    break
                if block_type == _BLOCK_ENHANCED_PACKET:
                    interface_id, high, low, captured, wire_length = unpack_enhanced(buffer, block_start + 8)
                else:
                    interface_id = struct.unpack_from(order + "H", buffer, block_start + 8)[0]
                    high, low, captured, wire_length = unpack_enhanced(buffer, block_start + 12)[:4]
                data_start = block_start + 28
                if captured > block_length - 32:
                    self._stop(f"record {number + 1} claims more bytes than its block holds")
                    break
                if interface_id >= len(interfaces):
                    self._stop(f"record {number + 1} names undescribed interface {interface_id}")
                    break
                interface = interfaces[interface_id]
                last_time = ((high << 32) | low) / interface.units_per_second + interface.offset_seconds
                number += 1
                batch.append((number, last_time, interface.linktype, buffer, data_start, data_start + captured,
                              wire_length))
            elif block_type == _BLOCK_SIMPLE_PACKET:
                if not interfaces:
                    self._stop(f"record {number + 1} comes before any interface description")
                    break
                interface = interfaces[0]
                wire_length = unpack_block_header(buffer, block_start + 4)[1]
                captured = min(wire_length, block_length - 16)
                if interface.snaplen:
                    captured = min(captured, interface.snaplen)
                number += 1
                # Simple packet blocks carry no timestamp: repeat the previous one so times stay ordered.
                data_start = block_start + 12
                batch.append((number, last_time, interface.linktype, buffer, data_start, data_start + captured,
                              wire_length))
            elif block_type == _BLOCK_INTERFACE:
                if block_length < 20:
                    self._stop(f"damaged interface description after record {number}")
                    break
                if len(interfaces) >= MAX_INTERFACES:
                    self._stop(f"more than {MAX_INTERFACES} interfaces described in one section: damaged there")
                    break
                interfaces.append(_parse_interface(buffer, block_start, block_length, order))
                self.linktypes.add(interfaces[-1].linktype)
            elif block_type in _NUMBERED_NON_PACKET_BLOCKS:
                number += 1  # keep frame numbers equal to Wireshark's; there is no packet to yield
            elif block_type == _BLOCK_DECRYPTION_SECRETS and block_length >= 20:
                secrets_type, secrets_length = struct.unpack_from(order + "II", buffer, block_start + 8)
                if secrets_type == _SECRETS_TLS_KEY_LOG and secrets_length <= block_length - 20 and \
                        self._tls_key_log_bytes + secrets_length <= MAX_TLS_KEY_LOG_BYTES:
                    self._tls_key_log_bytes += secrets_length
                    self.tls_key_logs.append(buffer[block_start + 16 : block_start + 16 + secrets_length])
        if batch:
            yield batch
        self._finish_reading(buffer_start + len(buffer))

    # (other block types -- name resolution, statistics, custom -- are skipped)


def _pcap_linktype(header: bytes) -> int:
    """The link type in a pcap file header (its upper bits hold FCS information)."""
    order = _PCAP_MAGICS[header[:4]][0]
    return int(struct.unpack_from(order + "I", header, 20)[0] & 0xFFFF)


def _parse_interface(buffer: bytes, block_start: int, block_length: int, order: str) -> _Interface:
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buffer, block_start + 8)
    units_per_second = 1e6
    offset_seconds = 0
    option = block_start + 16
    options_end = block_start + block_length - 4
    while option + 4 <= options_end:
        code, length = struct.unpack_from(order + "HH", buffer, option)
        value_start = option + 4
        if code == 0 or value_start + length > options_end:
            break
        if code == _OPTION_TSRESOL and length >= 1:
            resolution = buffer[value_start]
            exponent = resolution & 0x7F
            # High bit set: a power of two; else a power of ten. Beyond 2^-64 / 10^-19 is nonsense.
            power_of_two = resolution & 0x80
            units_per_second = float(2 ** min(exponent, 64) if power_of_two else 10 ** min(exponent, 19))
        elif code == _OPTION_TSOFFSET and length >= 8:
            offset_seconds = struct.unpack_from(order + "q", buffer, value_start)[0]
        option = value_start + (length + 3) // 4 * 4
    return _Interface(linktype, snaplen, units_per_second, offset_seconds)
