"""wss:// captures decrypted with TLS key logs (issue 9, item 5).

The captures are real: ``captures/record_tls.py`` ran `websockets` client and server over TLS on loopback, under
dumpcap, with the client's ``SSLContext.keylog_filename`` writing the key log, and wrote what the clients sent and
received, as they saw it, into ``NAME.json``. Two captures come from openssl s_client (``-keylogfile``), for what
Python's ssl cannot do: KeyUpdates (``wss-tls13-keyupdate``), a HelloRetryRequest (``wss-tls13-hrr``) and a TLS 1.2
renegotiation (``wss-tls12-renegotiation``); one from headless Chromium given ``SSLKEYLOGFILE`` (``wss-chromium``),
whose manifest is what the server received and echoed.
Decrypted decoding is checked against the manifests, and frame by frame against tshark given the same key log
(``-o tls.keylog_file:...``); the session facts (version, suite, SNI, ALPN) against the manifest and tshark's
dissection of the ServerHello. Hostile key logs and records are made from the real ones: garbage lines, another
session's keys, a lying secret, a record with one byte changed, a TCP gap; a key log in a pcapng Decryption Secrets
Block is written here by the pcapng spec and read by tshark as well.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsinspect.capture.files import CaptureFile
from wsinspect.capture.keylog import MAX_PROBLEMS, KeyLog
from wsinspect.capture.packets import decode_tcp
from wsinspect.capture.reassembly import FlowData, FlowGap, TcpReassembler
from wsinspect.capture.tls import Plaintext, TlsDecryptor, TlsNote, client_random_of
from wsinspect.core.events import Close, Event, FrameEvent, Message, Notice
from wsinspect.trace import CaptureTrace

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
NAMES = ("wss-tls12", "wss-tls13", "wss-tls13-keyupdate", "wss-tls13-hrr", "wss-tls12-renegotiation", "wss-chromium")
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def place(name: str) -> Path:
    """captures/, or captures/tls/ for a capture with no WebSocket inside (see captures/record_tls.py)."""
    return CAPTURES / "tls" if name == "tls13-early-data" else CAPTURES


def capture(name: str) -> Path:
    return place(name) / f"{name}.pcapng"


def keys(name: str) -> Path:
    return place(name) / f"{name}.pcapng.keys"


def manifest(name: str) -> dict[str, Any]:
    return json.loads((place(name) / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def events_of(path: Path, keylog: KeyLog | None = None) -> list[Event]:
    return list(CaptureTrace(path, keylog=keylog))


def notices(events: list[Event], check: str) -> list[Notice]:
    return [e for e in events if isinstance(e, Notice) and e.check.id == check]


def tshark(*args: str | os.PathLike[str]) -> str:
    assert TSHARK is not None
    done = subprocess.run([TSHARK, *map(str, args)], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@functools.cache  # the shipped captures are read by several tests; tshark is the slow part of this file
def tshark_frames(path: Path, keylog: Path | None) -> tuple[tuple[int, int, int, int, bool], ...]:
    """(frame.number, tcp.stream, opcode, payload length, masked) for every WebSocket frame tshark decodes."""
    options = ["-o", f"tls.keylog_file:{keylog}"] if keylog is not None else []
    out = tshark("-r", path, *options, "-Y", "websocket", "-T", "fields", "-e", "frame.number", "-e", "tcp.stream",
                 "-e", "websocket.opcode", "-e", "websocket.payload_length", "-e", "websocket.mask")
    frames = []
    for line in out.splitlines():
        number, stream, opcodes, lengths, masks = line.split("\t")
        # Several WebSocket frames in one packet: tshark lists each field's values comma-separated.
        for opcode, length, mask in zip(opcodes.split(","), lengths.split(","), masks.split(","), strict=True):
            frames.append((int(number), int(stream), int(opcode), int(length), mask in ("1", "True")))
    return tuple(frames)


def our_frames(events: list[Event]) -> tuple[tuple[int, int, int, int, bool], ...]:
    return tuple((e.packet, e.stream, e.frame.opcode, e.frame.payload_length, e.frame.masked)
                 for e in events if isinstance(e, FrameEvent) and e.packet is not None)


def frames_sent(name: str) -> int:
    """How many WebSocket frames the recording's script made: data messages (each one frame, echoed), pings and
    their pongs, and a close each way."""
    return sum(len(c["c2s"]) + len(c["s2c"]) + sum(1 for e in c["c2s"] if e.get("kind") == "ping") + 2
               for c in manifest(name)["connections"])


def facts_notices(events: list[Event]) -> list[Notice]:
    return [n for n in notices(events, "capture.tls-decrypted") if "decrypted with the key log" in n.message]


def expected_message(entry: dict[str, Any]) -> tuple[int, bytes]:
    data = entry["text"].encode("utf-8") if entry["opcode"] == 1 else bytes.fromhex(entry["hex"])
    return entry["opcode"], data


# -- what was sent is what is decoded --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_decrypted_messages_are_what_the_peers_sent(name: str) -> None:
    events = events_of(capture(name), KeyLog.read(keys(name)))
    connections = manifest(name)["connections"]
    streams = sorted({e.stream for e in events})
    assert len(streams) == len(connections)
    assert not notices(events, "capture.tls") and not notices(events, "capture.tls-undecryptable")
    for stream, sent in zip(streams, connections, strict=True):
        mine = [e for e in events if e.stream == stream]
        for direction in ("c2s", "s2c"):
            messages = [(m.opcode, m.data) for m in mine if isinstance(m, Message) and m.direction == direction]
            expected = [expected_message(entry) for entry in sent[direction] if "opcode" in entry]
            assert messages == expected, (stream, direction)
            assert all(m.complete for m in mine if isinstance(m, Message))
        pings = [e.frame.payload for e in mine if isinstance(e, FrameEvent) and e.frame.opcode == 9]
        assert pings == [bytes.fromhex(p["hex"]) for p in sent["c2s"] if p.get("kind") == "ping"]
        closes = [(c.direction, c.code, c.reason) for c in mine if isinstance(c, Close)]
        assert closes == [("c2s", sent["close"]["code"], sent["close"]["reason"]),
                          ("s2c", sent["close"]["code"], sent["close"]["reason"])]
        compressed = [e.frame.rsv1 for e in mine if isinstance(e, FrameEvent) and e.frame.opcode in (1, 2)]
        assert all(compressed) if sent["compression"] == "deflate" else not any(compressed)


@pytest.mark.parametrize("name", NAMES)
def test_session_facts_are_in_a_notice(name: str) -> None:
    events = events_of(capture(name), KeyLog.read(keys(name)))
    facts = facts_notices(events)
    connections = manifest(name)["connections"]
    assert len(facts) == len(connections)
    for notice, sent in zip(facts, connections, strict=True):
        tls = sent["tls"]
        version = {"TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}[tls["version"]]
        assert notice.message.startswith(version + ", ")
        assert f"server name (SNI) {tls['sni']}" in notice.message and f"ALPN {tls['alpn']}" in notice.message


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_cipher_suite_named_as_tshark_names_it(name: str) -> None:
    # A HelloRetryRequest is a ServerHello with this random (RFC 8446 4.1.3); the suite to name is the real one's.
    retry = "cf:21:ad:74:e5:9a:61:11:be:1d:8c:02:1e:65:b8:91:c2:a2:11:16:7a:bb:8c:5e:07:9e:09:e2:c8:a8:33:9c"
    dissected = tshark("-r", capture(name), "-Y", f"tls.handshake.type == 2 && tls.handshake.random != {retry}", "-V")
    suites = [line.split("Cipher Suite: ")[1].split(" (")[0] for line in dissected.splitlines()
              if "Cipher Suite: " in line]
    facts = facts_notices(events_of(capture(name), KeyLog.read(keys(name))))
    assert len(suites) == len(facts) == len(manifest(name)["connections"])
    for suite, notice in zip(suites, facts, strict=True):
        assert f", {suite}, " in notice.message


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_decodes_the_same_frames(name: str) -> None:
    expected = tshark_frames(capture(name), keys(name))
    assert len(expected) == frames_sent(name)
    assert our_frames(events_of(capture(name), KeyLog.read(keys(name)))) == expected


@pytest.mark.parametrize("name", NAMES)
def test_the_command_line_decodes_with_keylog(name: str) -> None:
    done = run_read(capture(name), "--keylog", keys(name), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(1 for line in lines if line.get("type") == "message") == sum(
        1 for c in manifest(name)["connections"] for entry in c["c2s"] + c["s2c"] if "opcode" in entry)


def run_read(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wsinspect", "read", *map(str, args), "--color", "never"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"})


# -- records spanning segments ---------------------------------------------------------------------------------


def flow_items(path: Path) -> Iterator[FlowData | FlowGap]:
    reassembler = TcpReassembler()
    items: list[Any] = []
    with CaptureFile(path) as file:
        for raw in file:
            segment = decode_tcp(raw)
            if segment is not None:
                reassembler.feed_into(segment, items)
                yield from (item for item in items if isinstance(item, FlowData | FlowGap))
                items.clear()


def plaintext_by_direction(name: str, piece: int | None) -> dict[tuple[int, str], bytes]:
    """Each stream's and direction's plaintext, with the TCP data fed whole or cut into ``piece``-byte chunks."""
    keylog = KeyLog.read(keys(name))
    decryptors: dict[int, TlsDecryptor] = {}
    plaintext: dict[tuple[int, str], bytes] = {}
    for item in flow_items(capture(name)):
        assert isinstance(item, FlowData)
        if item.flow not in decryptors:
            client_random = client_random_of(item.data)
            assert client_random is not None and keylog.secrets_for(client_random) is not None
            decryptors[item.flow] = TlsDecryptor(keylog.secrets_for)
        step = piece or len(item.data)
        for start in range(0, len(item.data), step):
            for output in decryptors[item.flow].receive(item.direction, item.data[start : start + step]):
                assert not (isinstance(output, TlsNote) and output.stopped), output
                if isinstance(output, Plaintext):
                    key = (item.flow, output.direction)
                    plaintext[key] = plaintext.get(key, b"") + output.data
    return plaintext


@pytest.mark.parametrize("name", NAMES)
def test_records_cut_anywhere_decrypt_the_same(name: str) -> None:
    whole = plaintext_by_direction(name, None)
    first_path = manifest(name)["connections"][0]["path"]
    assert whole[(0, "c2s")].startswith(f"GET {first_path} HTTP/1.1\r\n".encode())
    assert whole[(0, "s2c")].startswith(b"HTTP/1.1 101 ")
    for piece in (1, 3, 7, 1000):
        assert plaintext_by_direction(name, piece) == whole, piece


# -- without keys, with the wrong keys, with garbage ------------------------------------------------------------


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_without_keylog_the_notice_names_the_client_random(name: str) -> None:
    # After a HelloRetryRequest the second ClientHello repeats the first one's random (RFC 8446 4.1.2).
    randoms = list(dict.fromkeys(tshark("-r", capture(name), "-Y", "tls.handshake.type == 1", "-T", "fields",
                                        "-e", "tls.handshake.random").split()))
    tls = notices(events_of(capture(name)), "capture.tls")
    assert len(tls) == len(randoms) == len(manifest(name)["connections"])
    for notice, client_random in zip(tls, randoms, strict=True):
        named = client_random.replace(":", "")
        assert notice.message.startswith(f"TLS; no key for this session (client random {named})")
    assert tshark_frames(capture(name), None) == ()  # tshark cannot see inside either
    done = run_read(capture(name))
    assert done.returncode == 1 and "the session keys are needed" in done.stderr


def test_a_key_log_for_other_sessions() -> None:
    events = events_of(capture("wss-tls13"), KeyLog.read(keys("wss-tls12")))
    tls = notices(events, "capture.tls")
    assert len(tls) == 2 and all("in the key log (2 sessions)" in n.message for n in tls)
    assert not [e for e in events if isinstance(e, FrameEvent)]


def test_tls13_session_with_only_a_tls12_line() -> None:
    """A key log that has the session's client random, but as a CLIENT_RANDOM (TLS 1.2) line: a notice, no crash."""
    lines = [line.split() for line in keys("wss-tls13").read_text().splitlines() if not line.startswith("#")]
    keylog = KeyLog()
    keylog.add_text("".join(f"CLIENT_RANDOM {random_hex} {'ab' * 48}\n" for _, random_hex, _ in lines).encode(),
                    source="")
    events = events_of(capture("wss-tls13"), keylog)
    stopped = notices(events, "capture.tls-undecryptable")
    assert stopped and all("lacks CLIENT_HANDSHAKE_TRAFFIC_SECRET" in n.message for n in stopped)
    assert not [e for e in events if isinstance(e, FrameEvent)]


@pytest.mark.parametrize("name", NAMES)
def test_a_lying_secret_fails_authentication(name: str) -> None:
    lying = KeyLog()
    for line in keys(name).read_text().splitlines():
        if not line.startswith("#"):
            label, client_random, secret = line.split()
            lie = bytes(b ^ 0x01 for b in bytes.fromhex(secret)).hex()  # one bit changed in every byte
            lying.add_text(f"{label} {client_random} {lie}\n".encode(), source="")
    events = events_of(capture(name), lying)
    stopped = notices(events, "capture.tls-undecryptable")
    assert stopped and all("failed authentication" in n.message for n in stopped)
    streams = range(len(manifest(name)["connections"]))
    assert {(n.stream, n.direction) for n in stopped} == {(s, d) for s in streams for d in ("c2s", "s2c")}
    assert not [e for e in events if isinstance(e, FrameEvent)]


def test_garbage_lines_are_reported_and_the_rest_used(tmp_path: Path) -> None:
    garbage = [
        "CLIENT_RANDOM zz 00",  # not hex
        "just words",  # not three fields
        "SERVER_BANANA " + "00" * 32 + " " + "00" * 32,  # unknown label
        "CLIENT_RANDOM " + "00" * 31 + " " + "00" * 48,  # client random of 31 bytes
        "CLIENT_TRAFFIC_SECRET_0 " + "00" * 32 + " " + "00" * 20,  # secret of no hash's length
        "\x1b[2J\x07 \x00\xff",  # control bytes: three fields, none of them hex
    ]
    real = keys("wss-tls13").read_text().splitlines()
    path = tmp_path / "mixed.keys"
    path.write_bytes(("\n".join(garbage[:3] + real + garbage[3:]) + "\n").encode("utf-8", "surrogateescape"))
    keylog = KeyLog.read(path)
    assert len(keylog) == 2
    assert [problem.split(":")[0] for problem in keylog.problems] == [
        "line 1", "line 2", "line 3", f"line {3 + len(real) + 1}", f"line {3 + len(real) + 2}",
        f"line {3 + len(real) + 3}"]
    events = events_of(capture("wss-tls13"), keylog)
    assert len([e for e in events if isinstance(e, Message)]) == 10
    done = run_read(capture("wss-tls13"), "--keylog", path)
    assert done.returncode == 0
    assert "line 1: the client random or the secret is not hexadecimal" in done.stderr
    assert "\x1b" not in done.stderr and "line 2: not 'LABEL CLIENT_RANDOM SECRET'" in done.stderr


def test_a_long_key_log_is_read_from_its_end(tmp_path: Path) -> None:
    """SSLKEYLOGFILE is appended to for months: past the bound, the newest sessions (at the end) are read, and line
    numbers still count from the file's first line."""
    old_sessions = "".join(f"CLIENT_RANDOM {n:064x} {'00' * 48}\n" for n in range(5000))
    newest = "not a key log line\n" + keys("wss-tls13").read_text()
    path = tmp_path / "months.keys"
    path.write_text(old_sessions + newest)
    keylog = KeyLog.read(path, max_bytes=len(newest) + 50)  # the last 50 bytes of the old part: a cut line
    assert keylog.problems[0] == f"the key log is {path.stat().st_size:,} bytes: only its last {len(newest) + 50:,} " \
                                 "(the newest sessions) are read"
    assert keylog.problems[1].startswith("line 5001: not 'LABEL CLIENT_RANDOM SECRET'")
    assert len(keylog) == 2
    assert len([e for e in events_of(capture("wss-tls13"), keylog) if isinstance(e, Message)]) == 10


def test_a_huge_or_missing_key_log(tmp_path: Path) -> None:
    junk = tmp_path / "junk.keys"
    junk.write_bytes(b"x y z\n" * 100_000)
    keylog = KeyLog.read(junk)
    assert len(keylog) == 0 and len(keylog.problems) == MAX_PROBLEMS and keylog.problem_count == 100_000
    done = run_read(capture("wss-tls13"), "--keylog", tmp_path / "absent.keys")
    assert done.returncode == 2 and "cannot read the key log" in done.stderr


# -- damaged records -------------------------------------------------------------------------------------------


def pcapng_blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(block type, whole block) for each block of a little-endian pcapng file."""
    blocks, offset = [], 0
    while offset < len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        blocks.append((block_type, data[offset : offset + length]))
        offset += length
    return blocks


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_an_altered_record_stops_its_direction_with_a_notice(name: str, tmp_path: Path) -> None:
    frames = tshark_frames(capture(name), keys(name))
    # The client's second data frame (its binary message) in stream 0: change the last byte of its packet, which is
    # in the record's authentication tag.
    target = [f for f in frames if f[1] == 0 and f[4]][1][0]
    blocks = pcapng_blocks(capture(name).read_bytes())
    packets = [i for i, (block_type, _) in enumerate(blocks) if block_type == 6]
    index = packets[target - 1]
    block = bytearray(blocks[index][1])
    captured = struct.unpack_from("<I", block, 20)[0]
    block[28 + captured - 1] ^= 0xFF
    blocks[index] = (6, bytes(block))
    altered = tmp_path / "altered.pcapng"
    altered.write_bytes(b"".join(b for _, b in blocks))

    events = events_of(altered, KeyLog.read(keys(name)))
    stopped = notices(events, "capture.tls-undecryptable")
    assert [(n.stream, n.direction, n.packet) for n in stopped] == [(0, "c2s", target)]
    assert "failed authentication" in stopped[0].message
    ours = our_frames(events)
    client_frames_before = [f for f in frames if f[1] == 0 and f[4] and f[0] < target]
    assert [f for f in ours if f[1] == 0 and f[4]] == client_frames_before
    assert [f for f in ours if f[1] == 1] == [f for f in frames if f[1] == 1]  # the other session is untouched


@pytest.mark.parametrize("name", NAMES)
def test_a_gap_stops_its_direction(name: str) -> None:
    keylog = KeyLog.read(keys(name))
    decryptor: TlsDecryptor | None = None
    outputs: list[Plaintext | TlsNote] = []
    for item in flow_items(capture(name)):
        if item.flow != 0:
            continue
        assert isinstance(item, FlowData)
        if decryptor is None:
            decryptor = TlsDecryptor(keylog.secrets_for)
        if item.direction == "s2c" and b"".join(o.data for o in outputs if isinstance(o, Plaintext)):
            outputs += decryptor.gap("s2c", 10)
            outputs += decryptor.receive("s2c", item.data[5:])
            break
        outputs += decryptor.receive(item.direction, item.data)
    stopped = [o for o in outputs if isinstance(o, TlsNote) and o.stopped]
    assert [(o.direction, "10 bytes of this direction were not captured" in o.message) for o in stopped] == [
        ("s2c", True)]


@pytest.mark.parametrize("seed", range(30))
def test_mutated_streams_never_raise(seed: int) -> None:
    """Bytes changed, dropped or repeated anywhere in a real session: notes, never an exception, nothing unbounded."""
    rng = random.Random(seed)
    name = NAMES[seed % 2]
    keylog = KeyLog.read(keys(name))
    items = [item for item in flow_items(capture(name)) if isinstance(item, FlowData) and item.flow == 0]
    decryptor = TlsDecryptor(keylog.secrets_for)
    for item in items:
        data = bytearray(item.data)
        if rng.random() < 0.3 and data:
            at = rng.randrange(len(data))
            choice = rng.randrange(3)
            if choice == 0:
                data[at] = rng.randrange(256)
            elif choice == 1:
                del data[at : at + rng.randrange(1, 40)]
            else:
                data[at:at] = data[at : at + rng.randrange(1, 40)]
        for output in decryptor.receive(item.direction, bytes(data)):
            assert isinstance(output, Plaintext | TlsNote)


# -- a key log inside the capture: pcapng Decryption Secrets Block ----------------------------------------------


def with_secrets_block(name: str, tmp_path: Path) -> Path:
    """The capture with its key log in a Decryption Secrets Block (pcapng draft 4.7), before the first packet."""
    secrets = keys(name).read_bytes()
    body = struct.pack("<II", 0x544C534B, len(secrets)) + secrets + b"\x00" * (-len(secrets) % 4)
    dsb = struct.pack("<II", 0x0000000A, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    blocks = pcapng_blocks(capture(name).read_bytes())
    first_packet = next(i for i, (block_type, _) in enumerate(blocks) if block_type == 6)
    blocks.insert(first_packet, (0x0A, dsb))
    path = tmp_path / f"{name}-dsb.pcapng"
    path.write_bytes(b"".join(block for _, block in blocks))
    return path


@needs_tshark
@pytest.mark.parametrize("name", NAMES)
def test_decryption_secrets_block(name: str, tmp_path: Path) -> None:
    path = with_secrets_block(name, tmp_path)
    expected = tshark_frames(path, None)  # tshark takes the keys from the block too
    assert expected == tshark_frames(capture(name), keys(name))
    events = events_of(path)
    assert our_frames(events) == expected
    assert len(facts_notices(events)) == len(manifest(name)["connections"])
    done = run_read(path)
    assert done.returncode == 0 and "decrypted with the key log" in " ".join(done.stdout.split())


# -- KeyUpdate ---------------------------------------------------------------------------------------------------


@needs_tshark
def test_key_updates_where_tshark_sees_them() -> None:
    """openssl s_client sent a KeyUpdate asking for one back (stream 0: both sides update) and one not asking
    (stream 1: only the client updates); decryption goes on across each, as tshark's does."""
    name = "wss-tls13-keyupdate"
    seen = tshark("-r", capture(name), "-o", f"tls.keylog_file:{keys(name)}", "-Y", "tls.handshake.type == 24",
                  "-T", "fields", "-e", "frame.number", "-e", "tcp.stream", "-e", "tcp.srcport")
    port = manifest(name)["port"]
    expected = [(int(number), int(stream), "s2c" if int(source) == port else "c2s")
                for number, stream, source in (line.split("\t") for line in seen.splitlines())]
    assert [(stream, direction) for _, stream, direction in expected] == [(0, "c2s"), (0, "s2c"), (1, "c2s")]
    events = events_of(capture(name), KeyLog.read(keys(name)))
    updates = [n for n in notices(events, "capture.tls-decrypted") if n.message.startswith("KeyUpdate")]
    assert [(n.packet, n.stream, n.direction) for n in updates] == expected
    texts = [m.text for m in events if isinstance(m, Message)]
    sent = [entry["text"] for c in manifest(name)["connections"] for entry in c["c2s"]]
    assert texts == [text for message in sent for text in (message, message)]  # each message, then its echo


def test_a_record_header_claiming_too_much_stops_at_once() -> None:
    """RFC 8446 5.2 bounds a record at 2^14 + 256 bytes (TLS 1.2: + 2048); a header claiming 65535 is not waited
    for, so a hostile stream cannot make the decryptor hold more than one record."""
    decryptor = TlsDecryptor(KeyLog.read(keys("wss-tls13")).secrets_for)
    outputs = decryptor.receive("c2s", bytes.fromhex("170303ffff") + b"\x00" * 100)
    notes = [o for o in outputs if isinstance(o, TlsNote)]
    assert [(o.direction, o.stopped) for o in notes] == [("c2s", True)] and len(outputs) == 1
    assert "no TLS record header (17 03 03 ff ff)" in notes[0].message
    assert decryptor.receive("c2s", b"\x00" * 1_000_000) == []


# -- TLS 1.2 renegotiation ---------------------------------------------------------------------------------------


@needs_tshark
def test_renegotiation_keys_come_from_the_key_log() -> None:
    """The renegotiated handshake has its own CLIENT_RANDOM line; its keys go on at each side's ChangeCipherSpec."""
    name = "wss-tls12-renegotiation"
    hellos = tshark("-r", capture(name), "-o", f"tls.keylog_file:{keys(name)}", "-Y", "tls.handshake.type == 2",
                    "-T", "fields", "-e", "frame.number").split()
    assert len(hellos) == 2  # the first handshake's ServerHello, in clear, and the renegotiation's, encrypted
    events = events_of(capture(name), KeyLog.read(keys(name)))
    renegotiated = [n for n in notices(events, "capture.tls-decrypted") if "renegotiation" in n.message]
    assert [n.packet for n in renegotiated] == [int(hellos[1])]
    assert our_frames(events) == tshark_frames(capture(name), keys(name))


def test_renegotiation_without_its_keys_stops_at_the_change_of_keys(tmp_path: Path) -> None:
    name = "wss-tls12-renegotiation"
    first_line = next(line for line in keys(name).read_text().splitlines() if line.startswith("CLIENT_RANDOM"))
    only_first = tmp_path / "first-handshake.keys"
    only_first.write_text(first_line + "\n")
    events = events_of(capture(name), KeyLog.read(only_first))
    stopped = notices(events, "capture.tls-undecryptable")
    assert sorted(n.direction for n in stopped) == ["c2s", "s2c"]
    assert all("no keys to change to" in n.message for n in stopped)
    texts = [m.text for m in events if isinstance(m, Message)]
    before = manifest(name)["connections"][0]["c2s"][0]["text"]
    assert texts == [before, before]  # the message before the renegotiation and its echo, nothing after


@needs_tshark
def test_a_cbc_suite_is_named_and_not_decrypted() -> None:
    """wss-tls12-cbc: ECDHE-ECDSA-AES128-SHA256 (CBC), which only AEAD-decrypting wsinspect leaves closed: one note
    per session naming the suite tshark reads from the ServerHello, no frames, no crash."""
    name = "wss-tls12-cbc"
    suites = tshark("-r", capture(name), "-Y", "tls.handshake.type == 2", "-T", "fields",
                    "-e", "tls.handshake.ciphersuite").split()
    events = events_of(capture(name), KeyLog.read(keys(name)))
    stopped = notices(events, "capture.tls-undecryptable")
    assert [(n.stream, f"cipher suite {suite}," in n.message) for n, suite in zip(stopped, suites, strict=True)] == [
        (0, True), (1, True)]
    assert not our_frames(events)
    assert len(tshark_frames(capture(name), keys(name))) == frames_sent(name)  # tshark decrypts CBC
    # Sessions nobody could open are TLS streams, not WebSocket conversations: nothing found, exit status 1.
    done = run_read(capture(name), "--keylog", keys(name))
    assert done.returncode == 1 and "a suite that is not decrypted" in done.stderr
    assert re.search(r"conversations +0\b", done.stdout) and re.search(r"TLS streams +2\b", done.stdout)


# -- TLS 1.3 0-RTT early data --------------------------------------------------------------------------------------


def tshark_client_bytes(path: Path, keylog: Path, stream: int, server_port: int) -> bytes:
    """What tshark decrypts of the client's side of a stream (Follow TLS Stream, raw: node 1's lines are indented;
    node 0 is whichever side tshark saw data from first, the server when that was its session ticket)."""
    out = tshark("-r", path, "-o", f"tls.keylog_file:{keylog}", "-q", "-z", f"follow,tls,raw,{stream}")
    client_indented = out.split("Node 0: ", 1)[1].split("\n", 1)[0].endswith(f":{server_port}")
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1].split("=====", 1)[0]
    return b"".join(bytes.fromhex(line.strip()) for line in body.splitlines()
                    if line and line.startswith("\t") == client_indented)


@needs_tshark
def test_early_data_accepted_is_decrypted_and_rejected_is_skipped() -> None:
    """tls13-early-data (openssl s_server -early_data): the server took stream 1's 0-RTT data and not stream 2's
    (the same ticket a second time). Stream 1's client bytes are tshark's; of stream 2's, tshark also shows the
    rejected early data, which the server never read; wsinspect leaves it out, as the server did, and says so."""
    name = "tls13-early-data"
    plaintext = plaintext_by_direction(name, None)
    notes: dict[int, list[str]] = {}
    keylog = KeyLog.read(keys(name))
    decryptors: dict[int, TlsDecryptor] = {}
    for item in flow_items(capture(name)):
        assert isinstance(item, FlowData)
        decryptor = decryptors.setdefault(item.flow, TlsDecryptor(keylog.secrets_for))
        notes.setdefault(item.flow, []).extend(o.message for o in decryptor.receive(item.direction, item.data)
                                               if isinstance(o, TlsNote))
    for stream, sent in enumerate(manifest(name)["connections"]):
        early = sent["early_data"].encode() if sent["early_data"] is not None else b""
        taken = early if sent["early_data_accepted"] else b""
        assert plaintext[(stream, "c2s")] == taken + sent["after_handshake"].encode()
        client_bytes = tshark_client_bytes(capture(name), keys(name), stream, manifest(name)["port"])
        assert client_bytes == early + sent["after_handshake"].encode()
    assert any("accepted the client's 0-RTT early data" in note for note in notes[1])
    assert any("rejected the client's 0-RTT early data" in note and "1 record(s)" in note for note in notes[2])


def test_early_data_accepted_without_its_secret() -> None:
    name = "tls13-early-data"
    lines = keys(name).read_text().splitlines()
    keylog = KeyLog()
    keylog.add_text("\n".join(line for line in lines if not line.startswith("CLIENT_EARLY")).encode(), source="")
    decryptors: dict[int, TlsDecryptor] = {}
    stopped: list[tuple[int, str]] = []
    for item in flow_items(capture(name)):
        assert isinstance(item, FlowData)
        decryptor = decryptors.setdefault(item.flow, TlsDecryptor(keylog.secrets_for))
        stopped += [(item.flow, o.message) for o in decryptor.receive(item.direction, item.data)
                    if isinstance(o, TlsNote) and o.stopped]
    assert [stream for stream, _ in stopped] == [1]
    assert "accepted 0-RTT early data and the key log has no CLIENT_EARLY_TRAFFIC_SECRET" in stopped[0][1]
