"""``wsinspect frame build`` and ``frame decode`` on RFC 6455 section 5.7's examples, byte for byte.

Every expected byte is written here as the RFC prints it (/work/shared/rfc/rfc6455.txt, section 5.7); the bit rows of
the diagram are worked out by hand from those bytes; the masking rows from the RFC's key, masked bytes and "Hello".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import byte_rows, has_no_escape, masking_rows, one_lines, run, run_process

# (what the RFC says it is, the bytes exactly as RFC 6455 5.7 prints them, the build arguments that make it)
SECTION_5_7 = [
    ("single-frame unmasked text", "0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f", ["--text", "Hello"]),
    ("single-frame masked text", "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58",
     ["--text", "Hello", "--mask", "37fa213d"]),
    ("fragmented unmasked text, first", "0x01 0x03 0x48 0x65 0x6c", ["--text", "Hel", "--no-fin"]),
    ("fragmented unmasked text, last", "0x80 0x02 0x6c 0x6f", ["--text", "lo", "--opcode", "continuation"]),
    ("unmasked ping", "0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f", ["--opcode", "ping", "--text", "Hello"]),
    ("masked pong", "0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58",
     ["--opcode", "pong", "--text", "Hello", "--mask", "37:fa:21:3d"]),
]
RFC_HEX = {name: bytes(int(token, 16) for token in text.split()) for name, text, _ in SECTION_5_7}

# RFC 6455 5.7: "256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100 [256 bytes of binary data]"
# and "64KiB binary message in a single unmasked frame: 0x82 0x7F 0x0000000000010000 [65536 bytes of binary data]".
HEADER_256 = "0x82 0x7E 0x0100"
HEADER_64K = "0x82 0x7F 0x0000000000010000"


@pytest.mark.parametrize(("name", "rfc_text", "arguments"), SECTION_5_7, ids=[case[0] for case in SECTION_5_7])
def test_build_makes_the_rfc_bytes(name: str, rfc_text: str, arguments: list[str]) -> None:
    done = run(["frame", "build", *arguments])
    assert done.code == 0, done.err
    assert one_lines(done.out) == [RFC_HEX[name]]
    assert byte_rows(done.out) == RFC_HEX[name]


@pytest.mark.parametrize(("name", "rfc_text", "arguments"), SECTION_5_7, ids=[case[0] for case in SECTION_5_7])
def test_decode_reads_the_rfc_bytes_as_printed(name: str, rfc_text: str, arguments: list[str]) -> None:
    masked = "masked" in name and "unmasked" not in name
    done = run(["frame", "decode", *rfc_text.split(), "--from-client" if masked else "--from-server"])
    if "last" in name:
        # alone, the last fragment continues nothing: RFC 6455 5.4 (the pair is decoded together below)
        assert done.code == 1
        assert "[1002] RFC 6455 5.4: A continuation frame arrived with no fragmented message open." in done.out
    else:
        assert done.code == 0, done.out
        assert "✓ every frame follows RFC 6455 section 5" in done.out
    assert one_lines(done.out) == [RFC_HEX[name]]
    payload = "lo" if "last" in name else "Hel" if "first" in name else "Hello"
    opcode = {"ping": "Ping (9)", "pong": "Pong (10)", "last": "Continuation (0)"}
    expected_opcode = next((value for key, value in opcode.items() if key in name), "Text (1)")
    assert f"Opcode: {expected_opcode}" in done.out
    assert f"Fin: {'False' if 'first' in name else 'True'}" in done.out
    assert f"Mask: {masked}" in done.out
    assert f'"{payload}"' in done.out or f"Binary: {payload.encode().hex(' ')}" in done.out


def test_decode_the_fragmented_message_whole() -> None:
    """RFC 6455 5.7's two fragments in one paste: one text message, "Hello"."""
    done = run(["frame", "decode", "0x01 0x03 0x48 0x65 0x6c", "0x80 0x02 0x6c 0x6f", "--from-server"])
    assert done.code == 0
    assert one_lines(done.out) == [RFC_HEX["fragmented unmasked text, first"],
                                   RFC_HEX["fragmented unmasked text, last"]]
    assert 'text message (2 frames, 5 B) "Hello"' in done.out
    assert 'Text: "lo"' in done.out  # the continuation is read as the text message it continues


def test_decode_ping_and_pong_without_a_direction() -> None:
    """The RFC's unmasked ping and masked pong come from two sides: without --from-*, the mask rule is not checked."""
    done = run(["frame", "decode", "0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f",
                "0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58"])
    assert done.code == 0, done.out
    assert "masking rule (RFC 6455 5.1) is not checked" in done.out
    assert len(one_lines(done.out)) == 2


@pytest.mark.parametrize(("header", "size", "arguments"), [(HEADER_256, 256, []), (HEADER_64K, 65536,
                                                                                  ["--max-bytes", "65536"])])
def test_long_lengths_build_and_decode(tmp_path: Path, header: str, size: int, arguments: list[str]) -> None:
    payload = bytes(index * 7 % 256 for index in range(size))  # "binary data": any bytes, not all equal
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    rfc_header = bytes.fromhex(header.replace("0x", "").replace(" ", ""))
    built = run(["frame", "build", "--file", str(source), *arguments])
    assert built.code == 0, built.err
    assert byte_rows(built.out) == rfc_header + payload
    # decode from the RFC's own notation for the header, followed by the payload's hex
    decoded = run(["frame", "decode", *header.split(), payload.hex(), "--from-server", *arguments])
    assert decoded.code == 0, decoded.out
    assert byte_rows(decoded.out) == rfc_header + payload
    assert f"Payload: {'256 B' if size == 256 else '64.0 KiB'}" in decoded.out


def _diagram_rows(out: str) -> list[str]:
    return [line.split(None, 2)[2] if line.lstrip().startswith("bytes") else line.split(None, 1)[1]
            for line in out.splitlines() if line.lstrip().startswith(("bytes ", "byte ")) and "|" in line]


def test_diagram_of_the_masked_example_has_its_real_bits() -> None:
    """RFC 5.2's figure for 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58, bits worked out by hand:
    81 = 1|000|0001 (FIN, RSV1-3, opcode 1); 85 = 1|0000101 (MASK, length 5); then the key and the masked payload."""
    done = run(["frame", "decode", "818537fa213d7f9f4d5158", "--from-client"])
    assert _diagram_rows(done.out) == [
        "|1|0|0|0|0 0 0 1|1|0 0 0 0 1 0 1|0 0 1 1 0 1 1 1 1 1 1 1 1 0 1 0|",  # 81 85 37 fa
        "|0 0 1 0 0 0 0 1 0 0 1 1 1 1 0 1|0 1 1 1 1 1 1 1 1 0 0 1 1 1 1 1|",  # 21 3d | 7f 9f
        "|0 1 0 0 1 1 0 1 0 1 0 1 0 0 0 1 0 1 0 1 1 0 0 0|",  # 4d 51 58
    ]
    assert "bytes 0-3" in done.out and "bytes 4-7" in done.out and "bytes 8-10" in done.out
    # the RFC's bit ruler, 0 to 31
    assert " 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1" in done.out


def test_diagram_of_a_16_bit_length() -> None:
    """0x82 0x7E 0x0100: opcode 2, length field 126 = 1111110, then 0x0100 = 256 in the next 16 bits."""
    done = run(["frame", "decode", "0x82 0x7E 0x0100", "00" * 256, "--from-server"])
    rows = _diagram_rows(done.out)
    assert rows[0] == "|1|0|0|0|0 0 1 0|0|1 1 1 1 1 1 0|0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0|"
    assert "= 256" in done.out and "2 more bytes" in done.out
    assert "Payload Data continued: 248 more bytes" in done.out  # 8 payload bytes drawn bit by bit, as the RFC's ':'


def test_diagram_of_a_64_bit_length() -> None:
    """0x82 0x7F 0x0000000000010000: length field 127 = 1111111, then 8 bytes that span three rows of the figure:
    00 00 | 00 00 00 01 | 00 00 = 65536."""
    done = run(["frame", "decode", "0x82 0x7F 0x0000000000010000", "00" * 65536, "--from-server"])
    rows = _diagram_rows(done.out)
    assert rows[:3] == ["|1|0|0|0|0 0 1 0|0|1 1 1 1 1 1 1|0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0|",
                        "|0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1|",
                        "|0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0|0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0|"]
    assert "= 65536" in done.out and "8 more bytes" in done.out


def test_masking_table_of_the_rfc_example() -> None:
    """Key 37 fa 21 3d, masked 7f 9f 4d 51 58, "Hello" = 48 65 6c 6c 6f: one row per byte, key byte i mod 4."""
    expected = [(0, 0, "7f", "37", "48"), (1, 1, "9f", "fa", "65"), (2, 2, "4d", "21", "6c"), (3, 3, "51", "3d", "6c"),
                (4, 0, "58", "37", "6f")]
    done = run(["frame", "decode", "81 85 37 fa 21 3d 7f 9f 4d 51 58", "--from-client"])
    assert masking_rows(done.out) == expected
    built = run(["frame", "build", "--text", "Hello", "--mask", "37fa213d"])
    # building, the table runs the other way: payload XOR key = the wire
    assert masking_rows(built.out) == [(i, j, p, k, w) for i, j, w, k, p in expected]


def test_mask_rule_is_checked_for_the_side_named() -> None:
    unmasked_from_client = run(["frame", "decode", "0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f", "--from-client"])
    assert unmasked_from_client.code == 1
    assert "[1002] RFC 6455 5.1: The client sent an unmasked frame." in unmasked_from_client.out
    masked_from_server = run(["frame", "decode", "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58",
                              "--from-server"])
    assert masked_from_server.code == 1
    assert "[1002] RFC 6455 5.1: The server sent a masked frame." in masked_from_server.out


def test_rfc_7692_compressed_hello() -> None:
    """RFC 7692 7.2.3.1: "Hello" compressed in one DEFLATE block is 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00."""
    rfc = bytes.fromhex("c107f248cdc9c90700")
    built = run(["frame", "build", "--text", "Hello", "--compress"])
    assert one_lines(built.out) == [rfc]
    inflated = run(["frame", "decode", rfc.hex(), "--from-server", "--deflate"])
    assert inflated.code == 0, inflated.out
    assert 'text message (5 B, 7 B compressed) "Hello"' in inflated.out
    not_negotiated = run(["frame", "decode", rfc.hex(), "--from-server"])
    assert not_negotiated.code == 1
    assert "[1002] RFC 6455 5.2:" in not_negotiated.out


def test_rfc_7692_context_takeover() -> None:
    """RFC 7692 7.2.3.2: a second "Hello" refers back to the first one: 0xc1 0x05 0xf2 0x00 0x11 0x00 0x00."""
    done = run(["frame", "decode", "c107f248cdc9c90700", "c105f200110000", "--from-server", "--deflate"])
    assert done.code == 0, done.out
    assert done.out.count('text message (5 B, ') == 2 and done.out.count('"Hello"') >= 2


def test_rule_breaking_frames_are_explained() -> None:
    fragmented_ping = run(["frame", "decode", "09 00", "--from-server"])
    assert "[1002] RFC 6455 5.5: A ping frame has FIN=0." in fragmented_ping.out
    reserved = run(["frame", "build", "--opcode", "3"])
    assert reserved.code == 0  # building a bad frame on purpose is allowed; the rule it breaks is shown
    assert "[1002] RFC 6455 5.2: Opcode 0x3 is reserved." in reserved.out


@pytest.mark.parametrize(("text", "missing"), [("81 05 48 65", "3 of its 5 payload bytes are missing"),
                                               ("81", "1 more needed for the header"),
                                               ("81 fe 00", "5 more needed for the header")])
def test_incomplete_input_says_how_much_is_missing(text: str, missing: str) -> None:
    done = run(["frame", "decode", text, "--from-server"])
    assert done.code == 1
    assert missing in done.out


@pytest.mark.parametrize("text", ["0000   81 05 48 65 6c 6c 6f                              ..Hello\n",
                                  "00000000  81 05 48 65 6c 6c 6f                              |..Hello|\n",
                                  "\\x81\\x05\\x48\\x65\\x6c\\x6c\\x6f\n", "81:05:48:65:6c:6c:6f", "8105 48656c6c6f\n"])
def test_decode_from_stdin_in_the_formats_tools_copy(text: str) -> None:
    """Wireshark's "Copy as Hex Dump", hexdump -C, "Copy as Escaped String", colons, a hex stream."""
    done = run_process(["frame", "decode", "-", "--color", "never"], stdin=text.encode())
    assert done.code == 0, done.err
    assert one_lines(done.out) == [RFC_HEX["single-frame unmasked text"]]


@pytest.mark.parametrize("bad", ["zz", "0x1", "81 0", "\x1b[2J", "\u202e81"])
def test_bad_hex_is_one_line_and_escaped(bad: str) -> None:
    done = run_process(["frame", "decode", bad])
    assert done.code == 2
    assert done.out == ""
    assert done.err.count("\n") == 1 and "Traceback" not in done.err
    assert has_no_escape(done.err) and "\u202e" not in done.err


def test_hostile_text_payload_is_shown_escaped() -> None:
    done = run_process(["frame", "build", "--text", "\x1b]0;pwned\x07\x1b[2J[bold red]x", "--color", "always"])
    assert done.code == 0
    text_lines = [line for line in done.out.splitlines() if "Text:" in line]
    assert text_lines and "\\x1b]0;pwned\\x07\\x1b[2J[bold red]x" in text_lines[0]
    assert "\x07" not in done.out and "]0;pwned" not in done.out.replace("\\x1b]0;pwned", "")


@pytest.mark.parametrize("arguments", [["--mask", "37fa21"], ["--mask", "xyz"], ["--opcode", "16"],
                                       ["--opcode", "bogus"], ["--binary", "0x1"], ["--close", "70000"]])
def test_bad_build_arguments(arguments: list[str]) -> None:
    done = run_process(["frame", "build", *arguments])
    assert done.code == 2
    assert "Traceback" not in done.err and has_no_escape(done.err)


def test_random_mask_masks_with_a_fresh_key() -> None:
    first, second = (run(["frame", "build", "--text", "Hello", "--random-mask"]) for _ in range(2))
    wire = [one_lines(done.out)[0] for done in (first, second)]
    assert all(frame[:2] == b"\x81\x85" for frame in wire)
    assert wire[0][2:6] != wire[1][2:6]  # 1 chance in 2**32 of a false failure
    for frame in wire:
        key, masked = frame[2:6], frame[6:]
        assert bytes(byte ^ key[index % 4] for index, byte in enumerate(masked)) == b"Hello"
