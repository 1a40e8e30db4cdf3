"""``--detail``'s hex dump on narrow terminals: rows of 16 bytes at 80 columns and more (unchanged), 8 or 4 below,
every row within the width, and the same bytes in the same order whatever the width."""

from __future__ import annotations

import io
import re
from itertools import pairwise

import pytest
from rich.console import Console

from tests.e2e.support import capture_path
from wsinspect.core.events import FrameEvent
from wsinspect.trace import CaptureTrace
from wsinspect.views.detail import hex_dump
from wsinspect.views.palette import Palette

_SGR = re.compile("\x1b\\[[0-9;]*m")
_ROW = re.compile(r"^ {8}([0-9a-f]{4})  ")


def frames(name: str) -> list[FrameEvent]:
    return [event for event in CaptureTrace(capture_path(name)) if isinstance(event, FrameEvent)]


def dumped_bytes(lines: list[str], row_bytes: int) -> list[tuple[int, bytes, str]]:
    """(offset, bytes, ASCII column) of every hex row, read back from the text at the layout's fixed columns: the
    hex from column 14, the ASCII column after the hex of a full row and two spaces."""
    hex_cells = 3 * row_bytes - 1 + (row_bytes > 8)
    rows = []
    for line in lines:
        plain = _SGR.sub("", line)
        match = _ROW.match(plain)
        if match:
            hex_text = plain[14 : 14 + hex_cells]
            assert plain[14 + hex_cells : 16 + hex_cells] == "  ", plain
            rows.append((int(match.group(1), 16), bytes.fromhex(hex_text), plain[16 + hex_cells :]))
    return rows


@pytest.mark.parametrize("name", ["echo", "large", "fragmentation"])
def test_hex_dump_fits_the_width_and_keeps_every_byte(name: str) -> None:
    palette = Palette(Console(file=io.StringIO(), force_terminal=True, color_system="standard"), "dark")
    for event in frames(name)[:40]:
        wide = hex_dump(event, palette)
        assert hex_dump(event, palette, width=80) == wide == hex_dump(event, palette, width=200)
        expected = dumped_bytes(wide, 16)
        for width, row_bytes in ((79, 8), (47, 8), (46, 4), (40, 4)):
            narrow = hex_dump(event, palette, width=width)
            assert all(len(_SGR.sub("", line)) <= width for line in narrow), width
            rows = dumped_bytes(narrow, row_bytes)
            assert b"".join(chunk for _, chunk, _ in rows) == b"".join(chunk for _, chunk, _ in expected)
            assert "".join(text for _, _, text in rows) == "".join(text for _, _, text in expected)
            assert all(len(chunk) == len(text) <= row_bytes for _, chunk, text in rows)
            # Each dump's offsets go up by the row size from its first (the unmasked payload's starts after the
            # header).
            firsts = {offset for offset, _, _ in expected if offset % 16}
            for (offset, chunk, _), (following, _, _) in pairwise(rows):
                assert following == offset + len(chunk) or following in firsts or following == 0
