"""The packet list paints its rows as it lays them out (``describe.fit_painted``, ``PacketList._info``, the message
rows' painted lead, ``PaintedHandshakes``). Each of those fast paths must print exactly what the general path
(pieces from ``frame_info``/``message_info``/``handshake_lines``, cut by ``fit``, folded and painted by ``Output``)
prints, for every shape of text: ASCII, ellipses, wide and combining characters, controls, escapes of hostile
bytes, and every width. The general path is the reference here; the captures' golden output checks it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from wsinspect.core.events import FrameEvent, HandshakeRequest, HandshakeResponse, Message
from wsinspect.core.frames import Frame
from wsinspect.core.handshake import accept_key, parse_request, parse_response, validate_request, validate_response
from wsinspect.trace import CaptureTrace
from wsinspect.views import handshake, packetlist
from wsinspect.views.describe import (
    _cells_to_chars,
    _one_cell_each,
    fit,
    fit_painted,
    fit_pair_painted,
    frame_body,
    frame_body_painted,
    frame_info,
    message_details,
    message_details_painted,
    message_info,
    width_of,
    width_of_pieces,
    wrap,
)
from wsinspect.views.explain import Explainer
from wsinspect.views.handshake import PaintedHandshakes, handshake_lines
from wsinspect.views.output import Output
from wsinspect.views.packetlist import PacketList
from wsinspect.views.palette import Palette

CAPTURES = Path(__file__).resolve().parents[2] / "captures"

# Characters of every width class, the view's own marks, and what hostile peers send.
ALPHABET = "ab Z9\"\\…→↳─✓é漢字😀\u0301\u200b\x1b\x07\t"
ROLES = ["plain", "muted", "text", "binary", "opcode", "warning"]


def palette(colour: bool, theme: str = "dark") -> Palette:
    console = Console(file=io.StringIO(), force_terminal=colour, no_color=not colour, width=100)
    return Palette(console, theme)


PALETTES = [palette(True), palette(False), palette(True, "mono"), palette(True, "light")]


def reference_width(text: str) -> int:
    """What a row was measured with before the fast paths: ``len`` for ASCII, else cell by cell."""
    return len(text) if text.isascii() else sum(cell_len(char) for char in text)


pieces_strategy = st.lists(st.tuples(st.sampled_from(ROLES), st.text(ALPHABET, max_size=12)), max_size=6)


@settings(max_examples=400, deadline=None)
@given(pieces=pieces_strategy, width=st.integers(0, 40), which=st.integers(0, len(PALETTES) - 1))
def test_fit_painted_is_fit_then_paint(pieces: list[tuple[str, str]], width: int, which: int) -> None:
    chosen = PALETTES[which]
    assert fit_painted(pieces, width, chosen.role_codes) == chosen.paint(fit(pieces, width))


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(st.text(ALPHABET, max_size=12), max_size=6))
def test_widths_measured_piece_by_piece_are_the_whole_lines(texts: list[str]) -> None:
    joined = "".join(texts)
    assert width_of(joined) == reference_width(joined)
    assert width_of(joined) == reference_width(joined)  # the second time from what was kept
    assert width_of_pieces(texts) == reference_width(joined)


@settings(max_examples=400, deadline=None)
@given(text=st.text(ALPHABET, max_size=16))
def test_one_cell_each_means_cut_by_slicing(text: str) -> None:
    if _one_cell_each(text):
        assert width_of(text) == len(text)
        for cells in range(len(text) + 2):
            assert _cells_to_chars(text, cells) == min(cells, len(text))


# ---- frame rows -----------------------------------------------------------------------------------------------

PAYLOADS = [b"", b"hello", b"x" * 300, "h\u00e9llo \u6f22\u5b57 \U0001f600".encode(), b"\x1b[2J\x1b]0;title\x07",
            b"[bold red]markup[/]", b"\xff\xfe\x00binary", "a\u0301\u200b".encode() * 40, "…".encode() * 70]
CLOSE_PAYLOADS = [b"", b"\x03", b"\x03\xe8", b"\x03\xe8bye", b"\x03\xe9" + b"going away now " * 8,
                  b"\x0f\xa0\x1b[31mred\x1b[0m", b"\x03\xea\xff\xfe", "\x03\xe8\u6f22\u5b57 reason".encode()]


def frame_event(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, rsv2: bool = False,
                masked: bool = True, missing: int = 0) -> FrameEvent:
    header = bytes((fin << 7 | rsv1 << 6 | rsv2 << 5 | opcode, masked << 7 | min(len(payload), 125)))
    frame = Frame(fin, rsv1, rsv2, False, opcode, masked, len(payload) + missing, 7, b"\x01\x02\x03\x04" if masked
                  else None, header, payload, 0, missing)
    return FrameEvent(stream=0, direction="c2s", time=1.0, packet=7, frame=frame)


def frame_events() -> list[FrameEvent]:
    events = []
    for opcode in (0, 1, 2, 3, 9, 10, 11):
        for payload in PAYLOADS:
            for rsv1 in (False, True):
                events.append(frame_event(opcode, payload, rsv1=rsv1, fin=opcode != 0, rsv2=opcode == 3))
    for payload in CLOSE_PAYLOADS:
        for masked in (False, True):
            events.append(frame_event(8, payload, masked=masked))
    events += [frame_event(1, b"cut short", missing=5000), frame_event(8, b"\x03\xe8bye", missing=3)]
    return events


@pytest.mark.parametrize("which", range(len(PALETTES)))
def test_frame_info_painted_is_frame_info(which: int) -> None:
    chosen = PALETTES[which]
    console = Console(file=io.StringIO(), width=100)
    view = PacketList(Output(console, chosen))
    for event in frame_events():
        for continues in (None, (1, True), (1, False), (2, False)):
            for deflate in (True, False):
                for room in range(-2, 90):
                    expected = chosen.paint(frame_info(event, continues=continues, width=room, deflate=deflate))
                    assert view._info(event, continues, room, deflate) == expected, (event, continues, room)


# ---- message rows ---------------------------------------------------------------------------------------------


def message_events() -> list[Message]:
    messages = []
    for opcode in (1, 2):
        for data in PAYLOADS:
            for frames, compressed, complete in ((1, True, True), (3, False, True), (2, True, False)):
                messages.append(Message(stream=3, direction="s2c", time=2.0, packet=9, opcode=opcode, data=data,
                                        text=None, frames=frames, wire_length=len(data) // 2,
                                        compressed=compressed, complete=complete))
    return messages


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize("width", [20, 21, 24, 30, 40, 59, 60, 80, 99, 100, 160])
def test_message_rows_are_message_info_cut_to_the_width(live: bool, width: int) -> None:
    for chosen in PALETTES[:2]:
        buffer = io.StringIO()
        console = Console(file=buffer, width=width)
        output = Output(console, chosen, width=width)
        view = PacketList(output, live=live)
        expected = []
        for message in message_events():
            view._message(message, view._open.setdefault(3, _conversation(view)))
            indent = view._note_indent(message)
            expected.append(chosen.paint(fit([*indent, ("muted", "↳ "), *message_info(message)], view.width - 1)))
        output.flush()
        assert buffer.getvalue().split("\n")[:-1] == expected


def _conversation(view: PacketList):  # type: ignore[no-untyped-def]
    from wsinspect.views.packetlist import _Conversation

    conv = _Conversation(3)
    conv.titled = True  # no title line between the rows
    return conv


# ---- handshake tables -----------------------------------------------------------------------------------------


def shipped_handshakes() -> list[tuple[HandshakeRequest | None, HandshakeResponse | None]]:
    pairs: list[tuple[HandshakeRequest | None, HandshakeResponse | None]] = []
    for capture in sorted(CAPTURES.glob("*.pcapng")):
        requests: dict[int, HandshakeRequest] = {}
        for event in CaptureTrace(capture):
            if isinstance(event, HandshakeRequest):
                requests[event.stream] = event
                pairs.append((event, None))
            elif isinstance(event, HandshakeResponse):
                pairs.append((requests.get(event.stream), event))
    return pairs


def hostile_handshakes() -> list[tuple[HandshakeRequest | None, HandshakeResponse | None]]:
    pairs: list[tuple[HandshakeRequest | None, HandshakeResponse | None]] = []
    values = ["websocket", "\x1b[2J\x1b]0;pwned\x07", "[bold red]x[/bold red]", "漢字" * 30, "v" * 300,
              "a b " * 60, "\u202eevil", "é\u0301" * 50]
    for value in values:
        raw = (f"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"X-{value[:10]}: {value}\r\nCookie: {value}\r\n\r\n").encode("utf-8", "surrogateescape")
        request = parse_request(raw)
        request_event = HandshakeRequest(stream=1, direction="c2s", time=0.0, request=request,
                                         findings=tuple(validate_request(request)))
        for accept in ("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", value):
            raw_response = (f"HTTP/1.1 101 {value[:20]}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode("utf-8", "surrogateescape")
            response = parse_response(raw_response, body=value.encode()[:50])
            findings = tuple(validate_response(response, request))
            pairs.append((request_event, HandshakeResponse(stream=1, direction="s2c", time=0.1, response=response,
                                                           findings=findings, upgraded=response.status == 101)))
    return pairs


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 160])
def test_painted_handshakes_are_handshake_lines_painted(width: int) -> None:
    pairs = shipped_handshakes() + hostile_handshakes()
    assert len(pairs) > 20
    for chosen in PALETTES[:2]:
        output = Output(Console(file=io.StringIO(), width=width), chosen, width=width)
        painted = PaintedHandshakes(output.painted_lines, max(width, 20))
        for _ in range(2):  # the second time, from what was kept
            for request, response in pairs:
                for show_body in (True, False):
                    expected = [text for line in handshake_lines(request, response, width=max(width, 20),
                                                                 show_body=show_body)
                                for text in output.painted_lines(line)]
                    assert painted.lines(request, response, show_body=show_body) == expected


def test_painted_handshakes_explain_each_header_once_as_handshake_lines_do() -> None:
    pairs = shipped_handshakes()
    chosen = PALETTES[0]
    output = Output(Console(file=io.StringIO(), width=100), chosen, width=100)
    painted = PaintedHandshakes(output.painted_lines, 100)
    general, fast = Explainer(), Explainer()
    for request, response in pairs:
        expected = [text for line in handshake_lines(request, response, width=100, explainer=general)
                    for text in output.painted_lines(line)]
        assert painted.lines(request, response, explainer=fast) == expected


# ---- folding ------------------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(pieces=pieces_strategy, width=st.integers(1, 30), indent=st.integers(0, 35))
def test_folding_ends_and_keeps_every_character(pieces: list[tuple[str, str]], width: int, indent: int) -> None:
    """Even where nothing fits beside the indent (an indent as wide as the terminal, a wide character in the last
    cell), which once folded the same line for ever."""
    folded = wrap(pieces, width, " " * indent)
    assert len(folded) <= 2 * sum(len(text) for _, text in pieces) + 2
    kept = "".join(text for line in folded for _, text in line).replace(" ", "")
    assert kept == "".join(text for _, text in pieces).replace(" ", "")


def test_a_table_folds_on_a_terminal_narrower_than_its_name_column() -> None:
    output = Output(Console(file=io.StringIO(), width=20), PALETTES[1], width=20)
    # a 300-character header value under a long header name
    request, response = next(pair for pair in hostile_handshakes() if "v" * 300 in pair[1].response.raw.decode())
    lines = PaintedHandshakes(output.painted_lines, 20).lines(request, response)
    assert "v" * 10 in "".join(lines)


# ---- rows cut without a list of pieces ------------------------------------------------------------------------

ONE_CELL = "ab Z9\"\\…→─.,()"  # printable, one cell a character: what the pair painter is for
one_cell_text = st.text(ONE_CELL, max_size=14)


@settings(max_examples=600, deadline=None)
@given(first=st.tuples(st.sampled_from(ROLES), one_cell_text), second=st.tuples(st.sampled_from(ROLES), one_cell_text),
       width=st.integers(-2, 40), which=st.integers(0, len(PALETTES) - 1))
def test_fit_pair_painted_is_fit_painted(first: tuple[str, str], second: tuple[str, str], width: int,
                                         which: int) -> None:
    codes = PALETTES[which].role_codes
    assert fit_pair_painted(first, second, width, codes) == fit_painted([first, second], width, codes)


HOSTILE_TEXTS = ["hello", "x" * 70, "h\u00e9llo \u6f22\u5b57 \U0001f600", "\x1b[2J\x1b]0;title\x07", "[bold red]x[/]",
                 "a\u0301\u200b" * 30, "…" * 70, "\u202eevil", "back\\slash", "tab\there"]
payload_bytes = st.one_of(st.binary(max_size=300), st.sampled_from(HOSTILE_TEXTS).map(str.encode),
                          st.text(ALPHABET, max_size=90).map(lambda text: text.encode("utf-8", "surrogatepass")))


@settings(max_examples=600, deadline=None)
@given(opcode=st.sampled_from([0, 1, 2, 3, 9, 10]), payload=payload_bytes, rsv1=st.booleans(),
       missing=st.sampled_from([0, 0, 0, 7, 5000]), deflate=st.booleans(),
       continues=st.sampled_from([None, (1, True), (1, False), (2, False)]), width=st.integers(-2, 160),
       which=st.integers(0, len(PALETTES) - 1))
def test_frame_body_painted_is_frame_body_cut(opcode: int, payload: bytes, rsv1: bool, missing: int,
                                              continues: tuple[int, bool] | None, deflate: bool, width: int,
                                              which: int) -> None:
    frame = frame_event(opcode, payload, rsv1=rsv1, missing=missing).frame
    codes = PALETTES[which].role_codes
    expected = fit_painted(frame_body(frame, continues, deflate), width, codes)
    assert frame_body_painted(frame, continues, deflate, width, codes) == expected


@settings(max_examples=600, deadline=None)
@given(opcode=st.sampled_from([1, 2]), data=payload_bytes, frames=st.integers(1, 3), compressed=st.booleans(),
       complete=st.booleans(), width=st.integers(-2, 160), which=st.integers(0, len(PALETTES) - 1))
def test_message_details_painted_is_message_details_cut(opcode: int, data: bytes, frames: int, compressed: bool,
                                                        complete: bool, width: int, which: int) -> None:
    message = Message(stream=3, direction="s2c", time=2.0, packet=9, opcode=opcode, data=data, text=None,
                      frames=frames, wire_length=len(data) // 2, compressed=compressed, complete=complete)
    codes = PALETTES[which].role_codes
    assert message_details_painted(message, width, codes) == fit_painted(message_details(message), width, codes)


def test_close_infos_and_length_cells_kept_are_bounded() -> None:
    view = PacketList(Output(Console(file=io.StringIO(), width=100), PALETTES[0]))
    for number in range(3 * packetlist._CLOSE_INFOS_KEPT):
        event = frame_event(8, b"\x03\xe8" + str(number).encode())
        assert view._info(event, None, 60, True) == PALETTES[0].paint(frame_info(event, width=60))
    assert 0 < len(view._close_infos) <= packetlist._CLOSE_INFOS_KEPT
    conv = _conversation(view)
    for size in range(0, 3 * packetlist._LENGTHS_KEPT, 7):
        event = frame_event(2, bytes(size))
        painted, cells = view._prefix(event, conv)
        assert painted.endswith(PALETTES[0].wrap("muted", f"{event.frame.size:>7} "))
        assert cells == len(Text.from_ansi(painted).plain)
    assert 0 < len(view._lengths) <= packetlist._LENGTHS_KEPT


# ---- the key's and the accept's rows and the walkthrough, laid out once per length of key ----------------------

BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def handshake_pair(key: str, answer: str = "right") -> tuple[HandshakeRequest, HandshakeResponse | None]:
    """A request with ``key`` and its answer: the right accept, a wrong one, none, a refusal or no response."""
    raw = (f"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode("utf-8", "surrogateescape")
    request = parse_request(raw)
    request_event = HandshakeRequest(stream=1, direction="c2s", time=0.0, request=request,
                                     findings=tuple(validate_request(request)))
    if answer == "no response":
        return request_event, None
    right = accept_key(request.headers.get("Sec-WebSocket-Key") or "")
    accept = {"wrong": "x" * len(right), "none": None}.get(answer, right)
    accept_line = "" if accept is None else f"Sec-WebSocket-Accept: {accept}\r\n"
    status = 400 if answer == "refused" else 101
    raw_response = (f"HTTP/1.1 {status} Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"{accept_line}\r\n").encode("utf-8", "surrogateescape")
    response = parse_response(raw_response)
    return request_event, HandshakeResponse(stream=1, direction="s2c", time=0.1, response=response,
                                            findings=tuple(validate_response(response, request)),
                                            upgraded=status == 101)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.one_of(st.text(BASE64, max_size=90), st.sampled_from([*HOSTILE_TEXTS, "~~|", "a b"])),
                     min_size=1, max_size=4),
       answer=st.sampled_from(["right", "wrong", "none", "refused", "no response"]), width=st.integers(20, 160),
       which=st.integers(0, 1))
def test_painted_keys_accepts_and_walkthrough_are_handshake_lines_painted(keys: list[str], answer: str, width: int,
                                                        which: int) -> None:
    output = Output(Console(file=io.StringIO(), width=width), PALETTES[which], width=width)
    painted = PaintedHandshakes(output.painted_lines, width)
    for key in [*keys, *keys]:  # the second time, from the layout kept
        request, response = handshake_pair(key, answer)
        expected = [text for line in handshake_lines(request, response, width=width)
                    for text in output.painted_lines(line)]
        assert painted.lines(request, response) == expected


def test_layouts_of_keys_and_accepts_kept_are_bounded() -> None:
    output = Output(Console(file=io.StringIO(), width=80), PALETTES[0], width=80)
    painted = PaintedHandshakes(output.painted_lines, 80)
    for length in range(1, 3 * handshake._TEMPLATES_KEPT):
        request, response = handshake_pair("A" * length)
        painted.lines(request, response)
    assert 0 < len(painted._templates) <= handshake._TEMPLATES_KEPT


# ---- values, names and walkthroughs folded -------------------------------------------------------------------

# Header values and names that fold: offers and dates with spaces and separators, and what hostile peers send
# (escapes, rich markup, wide characters, combining marks, zero-width characters, tokens longer than any column).
FOLDING_TOKENS = ["permessage-deflate;", "client_max_window_bits=12", "Tue, 24 Nov 2026", "Mozilla/5.0 (X11;",
                  "\x1b[2J\x1b]0;pwned\x07", "[bold]x[/bold]", "漢字漢字漢字", "😀😀", "e\u0301\u0301", "a\u200bb",
                  "back\\slash", "v" * 70, "漢" * 30, "x-y_z.w:v&u", "~~||", "dGhlIHNhbXBsZSBub25jZQ=="]
folding_values = st.lists(st.tuples(st.sampled_from(FOLDING_TOKENS), st.sampled_from([" ", "; ", ", ", "  ", ""])),
                          min_size=1, max_size=6).map(lambda parts: "".join(t + j for t, j in parts).strip(" "))
folding_names = st.one_of(st.sampled_from(["Sec-WebSocket-Extensions", "X-A-Very-Long-Header-Name-Indeed-Longer",
                                           "Sec-WebSocket-Key", "Sec-WebSocket-Accept"]),
                          st.text("AbZ-_9漢😀\u0301\x1b[]~|", min_size=1, max_size=36))


def folding_pair(headers: list[tuple[str, str]], key: str,
                 status: str) -> tuple[HandshakeRequest, HandshakeResponse]:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    raw = (f"GET /chat?{status} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode("utf-8", "surrogateescape")
    request = parse_request(raw)
    request_event = HandshakeRequest(stream=1, direction="c2s", time=0.0, request=request,
                                     findings=tuple(validate_request(request)))
    raw_response = (f"HTTP/1.1 101 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_key(request.headers.get('Sec-WebSocket-Key') or '')}\r\n"
                    f"{extra}\r\n").encode("utf-8", "surrogateescape")
    response = parse_response(raw_response, body=status.encode())
    return request_event, HandshakeResponse(stream=1, direction="s2c", time=0.1, response=response,
                                            findings=tuple(validate_response(response, request)), upgraded=True)


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(folding_names, folding_values), min_size=1, max_size=3),
       key=st.one_of(st.text(BASE64, min_size=1, max_size=40), st.sampled_from(FOLDING_TOKENS)),
       status=folding_values, width=st.integers(20, 200), which=st.integers(0, 1), explain=st.booleans())
def test_painted_handshakes_fold_values_as_handshake_lines(headers: list[tuple[str, str]], key: str, status: str,
                                                           width: int, which: int, explain: bool) -> None:
    """Folded values, names and walkthroughs at every width from 20 to 200, in the side-by-side and the narrow
    layout, painted by ``PaintedHandshakes`` (the second time from what it kept) as by ``handshake_lines``."""
    output = Output(Console(file=io.StringIO(), width=width), PALETTES[which], width=width)
    painted = PaintedHandshakes(output.painted_lines, width)
    general, fast = (Explainer(), Explainer()) if explain else (None, None)
    request, response = folding_pair(headers, key, status)
    for _ in range(2):
        expected = [text for line in handshake_lines(request, response, width=width, explainer=general)
                    for text in output.painted_lines(line)]
        assert painted.lines(request, response, explainer=fast) == expected
        assert painted.lines(request, None, explainer=fast) == [
            text for line in handshake_lines(request, None, width=width, explainer=general)
            for text in output.painted_lines(line)]
