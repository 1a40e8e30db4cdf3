"""Streaming pcap / pcapng reader: capture file in, numbered raw link-layer records out.

scapy's raw readers (``RawPcapReader``, ``RawPcapNgReader``, scapy 2.8.0) read the files: they recognise the format
and the byte order, parse the pcap file header, and for pcapng iterate over the blocks, parse each section header,
interface description (link type, snap length, ``if_tsresol``) and block options, and dispatch every other block to
its handler in ``blocktypes``. The classes below are those readers with the handlers that make up for what scapy
lacks, each said beside its code; packet records go through our own lean handlers (scapy's build a 9-field
namedtuple of metadata per packet, about 5 µs more per record, which was 14 % of ``read --json`` on the benchmark).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Protocol, TypeVar, cast

from scapy.error import Scapy_Exception, log_runtime
from scapy.utils import RawPcapNgReader, RawPcapReader

from wsinspect.capture.fastbuild import frozen_builder

__all__ = ["CaptureError", "CaptureFile", "RawPacket"]


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


_new_raw_packet = frozen_builder(RawPacket)

# Real records are at most a few hundred KiB (64 KiB IP packets, up to ~512 KiB with BIG TCP GSO).
# Anything claiming more is a corrupt length field, and reading it would allocate that much.
MAX_RECORD_BYTES = 16 * 1024 * 1024
# A pcapng block: a packet record and its headers and options.
_MAX_BLOCK_BYTES = MAX_RECORD_BYTES + 64
_CHUNK_BYTES = 1024 * 1024
_BUFFER_BYTES = 256 * 1024

_PCAP_MAGICS = frozenset({b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"})
# Kuznetzov's "modified pcap": 8 more bytes of record header (ifindex, protocol, packet type); as stored -> the
# standard microsecond magic of the same byte order.
_MODIFIED_PCAP_MAGICS = {b"\x34\xcd\xb2\xa1": b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xcd\x34": b"\xa1\xb2\xc3\xd4"}
_PCAPNG_SECTION_HEADER = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BYTE_ORDERS = frozenset({b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"})
# Blocks that are no packet but that Wireshark still shows as frames (and so counts in frame.number):
# systemd journal entries and custom blocks (copyable or not).
_NUMBERED_NON_PACKET_BLOCKS = frozenset({0x00000009, 0x00000BAD, 0x40000BAD})
# Interfaces described in one pcapng section. Real captures have a handful; each description is 20 bytes of file
# and ~100 bytes of memory, so a damaged or hostile file could otherwise make the list grow with its size.
MAX_INTERFACES = 65536
_OPTION_TSOFFSET = 14
# A Decryption Secrets Block (pcapng draft, 4.7) of secrets type 'TLSK' carries an NSS key log: the keys of the
# TLS sessions in the capture (``editcap --inject-secrets tls,FILE`` writes one). Their text is kept for the trace,
# up to a bound, since each block may be as large as MAX_RECORD_BYTES.
_SECRETS_TLS_KEY_LOG = 0x544C534B
MAX_TLS_KEY_LOG_BYTES = 64 * 1024 * 1024


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _GunzipStream(io.RawIOBase):
    """A gzip file's decompressed bytes, as a raw stream for io.BufferedReader.

    scapy 2.8.0 opens a gzip-compressed capture with gzip.GzipFile, which raises at a cut or damaged stream and so
    loses the bytes of that read that did decompress (the last whole records). Here a cut or damaged stream just
    ends, `problem` says why, and no read returns more than asked, whatever the ratio.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""  # compressed bytes not yet given to the decompressor
        self._ended = False
        self.compressed_position = 0  # compressed bytes read so far: close enough for progress
        self.problem: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        while not self._ended:
            if not self._input:
                self._input = self._raw.read(_CHUNK_BYTES)
                self.compressed_position += len(self._input)
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
                piece = self._decompressor.decompress(self._input, size)
            except zlib.error as error:
                self.problem = f"the compressed data is damaged ({error})"
                self._ended = True
                break
            if self._decompressor.eof:
                self._input = self._decompressor.unused_data
            else:
                self._input = self._decompressor.unconsumed_tail
            if piece:
                buffer[: len(piece)] = piece
                return len(piece)
        return 0


class _TooLong(OSError):
    """A read the file's own length fields asked for, refused: the length is damaged."""


class _CountedStream:
    """What scapy's readers read through: counts the bytes, notes where the data ran out, and bounds reads.

    scapy 2.8.0's RawPcapNgReader reads every block whole at the length the block claims (a damaged 4 GiB length
    allocates 4 GiB), and stops at a cut the same way as at the end of the file (EOFError, a logged warning). Here a
    read longer than any real block is refused (an OSError, which scapy turns into the end of the records), long
    reads are made a chunk at a time (a lying length then costs no more memory than the bytes really there), and
    the first short read is remembered, so the reader can tell a clean end from a cut.
    """

    def __init__(self, source: _Readable) -> None:
        self._read = source.read
        self.position = 0  # bytes read so far
        self.refused_length: int | None = None  # a read refused as longer than any real block
        self.read_error: str | None = None
        self.short_read_at: int | None = None  # where the first read that came back short started
        self.short_read_length = 0  # and how many bytes it got

    def read(self, size: int = -1, /) -> bytes:
        if not 0 <= size <= _CHUNK_BYTES:
            if not 0 <= size <= _MAX_BLOCK_BYTES:
                self.refused_length = size
                raise _TooLong(f"a length of {size} bytes")
            return self._read_chunks(size)
        try:
            data = self._read(size)
        except OSError as error:
            self.read_error = f"read error: {error.strerror or error}"
            raise
        self.position += len(data)
        if len(data) < size and self.short_read_at is None:
            self.short_read_at = self.position - len(data)
            self.short_read_length = len(data)
        return data

    def _read_chunks(self, size: int) -> bytes:
        parts = []
        while size > 0:
            asked = min(size, _CHUNK_BYTES)
            part = self.read(asked)
            parts.append(part)
            size -= len(part)
            if len(part) < asked:
                break
        return b"".join(parts)

    def ended_cleanly_at(self, boundary: int) -> bool:
        """The data ran out exactly at `boundary` (the end of the last whole record or block), not inside one."""
        return self.short_read_at == boundary and self.short_read_length == 0


class _Records:
    """What both readers share: the record count, why the records stopped early, the stream they read."""

    stream: _CountedStream
    number: int  # records given so far, and Wireshark's frame numbers for the pcapng blocks it counts
    record_end: int  # stream position after the last whole record or block
    problem: str | None


class _PcapRecords(RawPcapReader, _Records):
    """scapy's pcap reader: it parses the file header (byte order, µs or ns timestamps, link type, snap length)."""

    def __init__(self, filename: str, fdesc: _CountedStream, magic: bytes) -> None:
        self.stream = fdesc
        self.number = 0
        self.problem = None
        self.record_header_size = 16
        # scapy 2.8.0 knows only the four standard magics ("Not a supported capture file" for these); the modified
        # format's header is the standard one, its records 8 bytes longer.
        if magic in _MODIFIED_PCAP_MAGICS:
            magic = _MODIFIED_PCAP_MAGICS[magic]
            self.record_header_size = 24
        super().__init__(filename, cast("IO[bytes]", fdesc), magic)
        self.record_end = fdesc.position
        # scapy keeps the whole link type field; its upper bits say whether frames end in a check sequence.
        self.linktype_number: int = self.linktype & 0xFFFF
        self.units_per_second = 1e9 if self.nano else 1e6
        self.unpack_record_header = struct.Struct(self.endian + "IIII").unpack_from

    def _read_packet(self, size: int = 0) -> RawPacket:  # type: ignore[override]  # scapy's iteration passes it on
        # scapy 2.8.0's _read_packet reads at most MTU * 4 = 262,140 bytes of a record, keeps MTU = 65,535 of them
        # (unless asked for more) and skips the rest, and gives a record the file cuts short as if it were whole.
        # Records are read here instead, whole up to MAX_RECORD_BYTES, and a cut or lie stops the reading with why.
        read = self.stream.read
        header = read(self.record_header_size)
        if len(header) < self.record_header_size:
            if header:
                self.problem = f"file ends inside the header of record {self.number + 1}"
            raise EOFError
        seconds, fraction, captured, wire_length = self.unpack_record_header(header)
        if captured > MAX_RECORD_BYTES:
            self.problem = f"record {self.number + 1} claims {captured} bytes; the file is damaged there"
            raise EOFError
        data = read(captured)
        if len(data) < captured:
            self.problem = f"file ends inside record {self.number + 1} ({len(data)} of {captured} bytes present)"
            raise EOFError
        self.number += 1
        self.record_end = self.stream.position
        return _new_raw_packet(
            self.number, seconds + fraction / self.units_per_second, self.linktype_number, data, wire_length
        )


class _PcapNgRecords(RawPcapNgReader, _Records):
    """scapy's pcapng reader, its block handlers for packets, secrets and counted blocks replaced by ours.

    Each handler returns a RawPacket (scapy's return (bytes, metadata)); scapy's block loop passes it on as is.
    """

    def __init__(self, filename: str, fdesc: _CountedStream, magic: bytes) -> None:
        self.stream = fdesc
        self.number = 0
        self.problem = None
        self.record_end = 0
        self.tls_key_logs: list[bytes] = []  # CaptureFile gives its own list
        self.tls_key_log_bytes = 0
        self.last_time = 0.0
        # Per interface of this section: (link type, timestamp units per second, if_tsoffset seconds).
        self.clocks: list[tuple[int, float, int]] = []
        super().__init__(filename, cast("IO[bytes]", fdesc), magic)  # reads the first section header
        # Wireshark shows these blocks as frames; scapy 2.8.0 skips them, uncounted.
        for block_type in _NUMBERED_NON_PACKET_BLOCKS:
            self.blocktypes[block_type] = self._count_frame_block

    def _read_block(self, size: int = 0) -> RawPacket | None:  # type: ignore[override]
        record: RawPacket | None = super()._read_block(size)  # type: ignore[assignment]  # our handlers' RawPacket
        self.record_end = self.stream.position  # after a whole block: where a clean end can be
        return record

    def _read_block_shb(self) -> None:
        super()._read_block_shb()
        self.record_end = self.stream.position
        # Interface numbers count from 0 again in each section; scapy 2.8.0 keeps the previous sections' list, so
        # a second section's interface 0 would get the first section's link type.
        self.interfaces.clear()
        self.clocks = []
        self.unpack_packet_header = struct.Struct(self.endian + "IIIII").unpack_from

    def _read_block_idb(self, block: bytes, size: int) -> None:
        if len(self.interfaces) >= MAX_INTERFACES:
            self.problem = f"more than {MAX_INTERFACES} interfaces described in one section: damaged there"
            raise EOFError
        super()._read_block_idb(block, size)  # appends (link type, snap length, options with tsresol)
        linktype, _snaplen, options = self.interfaces[-1]
        # scapy 2.8.0 ignores if_tsoffset, the seconds to add to every timestamp of the interface.
        offset = self._read_options(block[8:]).get(_OPTION_TSOFFSET)
        offset_seconds = struct.unpack(self.endian + "q", offset[:8])[0] if isinstance(offset, bytes) and \
            len(offset) >= 8 else 0
        self.clocks.append((linktype, float(options["tsresol"]), offset_seconds))

    def _read_block_epb(self, block: bytes, size: int) -> RawPacket:  # type: ignore[override]
        # The hot path: one unpack, no options parsed (scapy's parses them and builds its metadata per packet).
        interface_id, high, low, captured, wire_length = self.unpack_packet_header(block)
        if captured > len(block) - 20:
            self.problem = f"record {self.number + 1} claims more bytes than its block holds"
            raise EOFError
        if interface_id >= len(self.clocks):
            # scapy 2.8.0 skips such a packet with a warning and reads on; the file is damaged there.
            self.problem = f"record {self.number + 1} names undescribed interface {interface_id}"
            raise EOFError
        linktype, units_per_second, offset_seconds = self.clocks[interface_id]
        self.last_time = ((high << 32) | low) / units_per_second + offset_seconds
        self.number += 1
        return _new_raw_packet(
            self.number, self.last_time, linktype, block[20 : 20 + captured], wire_length
        )

    def _read_block_pkt(self, block: bytes, size: int) -> RawPacket:  # type: ignore[override]
        # The obsolete packet block: a 16-bit interface number and a drops count where the EPB has a 32-bit one.
        interface_id = struct.unpack_from(self.endian + "H", block)[0]
        return self._read_block_epb(struct.pack(self.endian + "I", interface_id) + block[4:], size)

    def _read_block_spb(self, block: bytes, size: int) -> RawPacket:  # type: ignore[override]
        # scapy 2.8.0 cuts a simple packet to the interface's snap length even when that is 0, which pcapng says
        # means no limit, so it gives empty packets.
        if not self.interfaces:
            self.problem = f"record {self.number + 1} comes before any interface description"
            raise EOFError
        linktype, snaplen, _options = self.interfaces[0]
        wire_length = struct.unpack_from(self.endian + "I", block)[0]
        captured = min(wire_length, len(block) - 4)
        if snaplen:
            captured = min(captured, snaplen)
        self.number += 1
        # Simple packet blocks carry no timestamp: repeat the previous one so times stay ordered.
        return _new_raw_packet(
            self.number, self.last_time, linktype, block[4 : 4 + captured], wire_length
        )

    def _read_block_dsb(self, block: bytes, size: int) -> None:
        # scapy 2.8.0 does not hand the secrets to the caller: with its TLS layer loaded it installs a key log in its
        # global conf.tls_nss_keys (for its own dissection), otherwise it logs a warning and drops it.
        if len(block) < 8:
            return
        secrets_type, secrets_length = struct.unpack_from(self.endian + "II", block)
        if secrets_type == _SECRETS_TLS_KEY_LOG and secrets_length <= len(block) - 8 and \
                self.tls_key_log_bytes + secrets_length <= MAX_TLS_KEY_LOG_BYTES:
            self.tls_key_log_bytes += secrets_length
            self.tls_key_logs.append(block[8 : 8 + secrets_length])

    def _count_frame_block(self, block: bytes, size: int) -> None:
        self.number += 1  # keep frame numbers equal to Wireshark's; there is no packet to yield


_Reader = TypeVar("_Reader", _PcapRecords, _PcapNgRecords)


def _scapy_reader(cls: type[_Reader], stream: _CountedStream) -> _Reader:
    # scapy's reader metaclass takes the open file, reads the magic from it and calls __init__(name, file, magic).
    return cls(stream)  # type: ignore[call-arg, arg-type]


class _QuietReaders(logging.Filter):
    """Drops the warnings scapy's capture readers log (in scapy.runtime, which prints them) about a damaged file
    while a CaptureFile reads: it reports the damage itself, in one line (`problem`), not over the views."""

    def __init__(self) -> None:
        super().__init__()
        self.readings = 0  # CaptureFile iterations under way (a filter is installed once, however many)

    def __enter__(self) -> None:
        self.readings += 1
        if self.readings == 1:
            log_runtime.addFilter(self)

    def __exit__(self, *exc_info: object) -> None:
        self.readings -= 1
        if not self.readings:
            log_runtime.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Pcap: ", "PcapNg: "))


_quiet_readers = _QuietReaders()


class CaptureFile:
    """A pcap or pcapng file, read as a stream of RawPacket.

    Opening checks the header and raises CaptureError for anything that is not a capture. Iteration
    never raises for damage further in: it stops, sets `truncated`, and says why in `problem`.
    """

    format: str  # "pcap" or "pcapng"
    size: int  # file size in bytes
    position: int  # bytes consumed so far, for progress reporting
    truncated: bool  # iteration stopped early: the file ends inside a record, or a record is corrupt
    problem: str | None  # one line saying why iteration stopped early
    compressed: bool  # gzip-compressed capture (size and position then count compressed bytes)
    # Key logs from Decryption Secrets Blocks, in file order, as they are read; the trace takes them (and clears).
    tls_key_logs: list[bytes]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._raw: io.FileIO = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise CaptureError(f"cannot open {self.path}: {error.strerror or error}") from None
        self._iterated = False
        self._buffered: io.BufferedReader | None = None
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.position = 0
        self.truncated = False
        self.problem = None
        self.tls_key_logs = []
        self._raw.seek(0)
        self._gunzip: _GunzipStream | None = None
        head = self._read_head(self._raw)
        self.compressed = head[:2] == b"\x1f\x8b"
        if self.compressed:
            self._raw.seek(0)
            self._gunzip = _GunzipStream(self._raw)
            head = self._read_head(io.BufferedReader(self._gunzip))
            if not head and self._gunzip.problem:
                raise CaptureError("gzip-compressed file that does not decompress")
        if not head:
            raise CaptureError("empty file" if not self.compressed else "empty gzip-compressed file")
        magic = head[:4]
        if magic in _PCAP_MAGICS or magic in _MODIFIED_PCAP_MAGICS:
            self.format = "pcap"
            if len(head) < 24:
                raise CaptureError(f"pcap file too short for its 24-byte header ({len(head)} bytes)")
        elif magic == _PCAPNG_SECTION_HEADER:
            self.format = "pcapng"
            if len(head) < 28 or head[8:12] not in _PCAPNG_BYTE_ORDERS:
                raise CaptureError("pcapng file with a damaged section header")
        else:
            shown = " ".join(f"{byte:02x}" for byte in head[:4])
            raise CaptureError(f"not a pcap or pcapng file (starts with {shown})")
        # From the start again, for scapy, which reads the magic itself.
        self._raw.seek(0)
        if self._gunzip is not None:
            self._gunzip = _GunzipStream(self._raw)
        if self._buffered is not None:
            self._buffered.detach()  # else, once collected, it would close the file this reading goes on with
        self._buffered = io.BufferedReader(self._gunzip or self._raw, _BUFFER_BYTES)
        self._stream = _CountedStream(self._buffered)
        try:
            if self.format == "pcap":
                self._records: _Records = _scapy_reader(_PcapRecords, self._stream)
            else:
                self._records = ng_records = _scapy_reader(_PcapNgRecords, self._stream)
                ng_records.tls_key_logs = self.tls_key_logs
        except Scapy_Exception:
            # scapy refused the header: for pcapng, a first section header whose version, length or options it
            # cannot read (the checks above leave nothing for it to refuse in a pcap header).
            what = "section header" if self.format == "pcapng" else "header"
            raise CaptureError(f"{self.format} file with a damaged {what}") from None

    @staticmethod
    def _read_head(stream: IO[bytes] | io.BufferedReader) -> bytes:
        try:
            return stream.read(28) or b""
        except OSError as error:
            raise CaptureError(f"cannot read: {error.strerror or error}") from None

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
        if self._raw.closed:
            raise CaptureError(f"{self.path} is closed")
        if self._iterated:
            self._start()
        self._iterated = True
        return self._iter_records(self._records)

    def _iter_records(self, records: _Records) -> Iterator[RawPacket]:
        stream = self._stream
        gunzip = self._gunzip
        with _quiet_readers:
            try:
                # scapy's iteration (its __next__ turns the EOFError that ends the records into StopIteration).
                for packet in cast(Iterator[RawPacket], records):
                    self.position = stream.position if gunzip is None else gunzip.compressed_position
                    yield packet
                problem = self._why_stopped(records)
            except (Scapy_Exception, struct.error):
                # scapy raises these (not EOFError) for a later section header whose options run past it, and a
                # block too short for the fields its handler unpacks.
                problem = f"damaged block after record {records.number}"
            except OSError as error:  # through the pcap records, which are read here, not by scapy
                problem = stream.read_error or f"read error: {error}"
        self.position = stream.position if gunzip is None else gunzip.compressed_position
        if problem is None and gunzip is not None:
            problem = gunzip.problem
        if problem is not None:
            self.truncated = True
            self.problem = problem

    def _why_stopped(self, records: _Records) -> str | None:
        """Why the records ended: None at a clean end of the file, else one line."""
        stream = self._stream
        if records.problem is not None:
            return records.problem
        if stream.read_error is not None:
            return stream.read_error
        if stream.refused_length is not None:
            return f"block after record {records.number} claims {stream.refused_length} bytes: damaged there"
        if stream.ended_cleanly_at(records.record_end):
            return None
        if stream.short_read_at is not None:
            return f"file ends inside the block after record {records.number}"
        # scapy stopped before the end without a cut: a block length it found wrong (below 12, or not repeated at
        # the block's end), a section header it could not read, or a block too short for its fields.
        return f"damaged block after record {records.number}"
