"""Fuzz target 4: the capture reader (CaptureFile, and CaptureTrace on top of it) on damaged capture files.

Seeds: the shipped .pcapng files under 64 KiB, and a pcap written here from the records of each. The mutations aim
at the file structure: a block's or record's length set to zero, huge, unaligned or under the minimum; block types
flipped; cuts at and around block boundaries; byte edits; and gzip around the result (whole or cut). The contract
(files.py): opening raises CaptureError and nothing else; iterating never raises (it stops and says why in
``problem``); a record is never larger than MAX_RECORD_BYTES, nor are there more records than the file could hold;
and CaptureTrace on the same file raises nothing but CaptureError either.
"""

from __future__ import annotations

import functools
import gzip
import struct
import tempfile
from pathlib import Path

from fuzz_support import SMALL_CAPTURE_BYTES, fuzz_settings, mutated, shipped_captures
from hypothesis import given
from hypothesis import strategies as st

from wsinspect.capture.files import MAX_RECORD_BYTES, CaptureError, CaptureFile
from wsinspect.trace import CaptureTrace

# One scratch file per process, rewritten by each example: hypothesis runs a test's examples one after another.
_SCRATCH = tempfile.TemporaryDirectory(prefix="wsinspect-fuzz-")
SCRATCH_FILE = Path(_SCRATCH.name) / "mutated.cap"

HOSTILE_LENGTHS = [0, 1, 4, 11, 12, 13, 16, 28, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0, MAX_RECORD_BYTES + 4, 65536]


def pcap_from(records: list[tuple[float, int, bytes, int]], linktype: int) -> bytes:
    """A classic little-endian µs pcap (the format CaptureFile reads besides pcapng) holding these records."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for time, _, data, wire_length in records:
        seconds = int(time)
        out += struct.pack("<IIII", seconds, int((time - seconds) * 1e6), len(data), wire_length)
        out += data
    return bytes(out)


def structure(data: bytes) -> list[tuple[int, int]]:
    """(offset, header size) of each block (pcapng) or record (pcap), where the length fields sit."""
    if data[:4] == b"\xd4\xc3\xb2\xa1":
        offsets, at = [], 24
        while at + 16 <= len(data):
            offsets.append((at, 16))
            at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        return offsets
    offsets, at = [], 0
    while at + 12 <= len(data):
        offsets.append((at, 8))
        at += max(struct.unpack_from("<I", data, at + 4)[0], 12)
    return offsets


@functools.cache
def capture_seeds() -> tuple[tuple[str, bytes], ...]:
    seeds = []
    for path in shipped_captures():
        if path.stat().st_size > SMALL_CAPTURE_BYTES:
            continue
        seeds.append((path.name, path.read_bytes()))
        with CaptureFile(path) as capture:
            packets = list(capture)
        linktype = packets[0].linktype
        records = [(p.time, p.linktype, p.data, p.wire_length) for p in packets if p.linktype == linktype]
        seeds.append((path.with_suffix(".pcap").name, pcap_from(records, linktype)))
    return tuple(seeds)


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    _, data = draw(st.sampled_from(capture_seeds()), label="seed")
    out = bytearray(data)
    blocks = structure(data)
    for _ in range(draw(st.integers(0, 4), label="structural edits")):
        offset, header = draw(st.sampled_from(blocks), label="block")
        kind = draw(st.sampled_from(["length", "type", "cut", "captured-length"]), label="edit")
        if kind == "length" and header == 8:  # a pcapng block's total length (leading copy)
            struct.pack_into("<I", out, offset + 4, draw(st.sampled_from(HOSTILE_LENGTHS)))
        elif kind == "type" and header == 8:
            struct.pack_into("<I", out, offset, draw(st.sampled_from([0, 1, 2, 3, 5, 6, 9, 0x0A0D0D0A, 0xBAD,
                                                                      0x40000BAD, 0x80000001, 0xFFFFFFFF])))
        elif kind == "captured-length":  # pcap's incl_len/orig_len, pcapng EPB's captured length
            field = offset + (8 if header == 16 else 20) + draw(st.sampled_from([0, 4]))
            if field + 4 <= len(out):
                struct.pack_into("<I", out, field, draw(st.sampled_from(HOSTILE_LENGTHS)))
        elif kind == "cut":
            del out[max(offset + draw(st.integers(-3, 30)), 0):]
            break
    damaged = draw(mutated(bytes(out), max_edits=4), label="file")
    if draw(st.integers(0, 9), label="gzip") == 0:
        packed = gzip.compress(damaged)
        damaged = packed[: draw(st.integers(0, len(packed)))]
    return damaged


def check_capture(data: bytes) -> None:
    """The contract on one file's bytes (written to a scratch file: the reader takes a path)."""
    SCRATCH_FILE.write_bytes(data)
    try:
        capture = CaptureFile(SCRATCH_FILE)
    except CaptureError:
        return
    with capture:
        count = 0
        for packet in capture:
            count += 1
            assert len(packet.data) <= MAX_RECORD_BYTES
        assert count <= max(capture.size, capture.position) // 12 + 1
        assert capture.truncated == (capture.problem is not None)
    try:
        trace = CaptureTrace(SCRATCH_FILE)
    except CaptureError:
        return
    for _ in trace:
        pass


@fuzz_settings(ci_examples=150)
@given(data=damaged_files())
def test_capture_reader_on_damaged_files(data: bytes) -> None:
    check_capture(data)


@fuzz_settings(ci_examples=60)
@given(data=st.binary(max_size=400))
def test_capture_reader_on_arbitrary_bytes(data: bytes) -> None:
    check_capture(data)
