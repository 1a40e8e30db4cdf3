"""The opening handshake's Header / Value table at every terminal width: values fold at spaces (then after a
separator), a token is cut only when it is longer than the value column, the text shown is the escaped value, and
where a value column of 20 cells does not fit beside the names, each name has its own line and its value goes under
it. No line is wider than the terminal and none inside the table is blank."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from wsinspect.core.events import HandshakeRequest, HandshakeResponse
from wsinspect.core.handshake import accept_key, parse_request, parse_response
from wsinspect.views.handshake import Line, _Layout, handshake_lines, header_row_lines
from wsinspect.views.safe import visible

SEPARATORS = ",;-_.:&"  # where a line may end when no space is within reach
# Tokens as they come (extension offers, user agents, dates, cookies) and as hostile peers send them: escapes,
# rich markup, wide characters, combining marks, zero-width characters and tokens longer than any column.
TOKENS = ["permessage-deflate", "client_max_window_bits=12", "server_no_context_takeover", "Mozilla/5.0", "(X11;",
          "Tue,", "06:43:36", "GMT", "id=0123456789abcdef0123456789abcdef", "\x1b[2J\x1b]0;pwned\x07", "[bold]x[/bold]",
          "漢字漢字漢字", "😀😀", "e\u0301\u0301", "a\u200bb", "\u202eevil", "back\\slash", "v" * 70, "漢" * 30,
          "x-y_z.w:v&u", "\u0301"]
JOINS = [" ", "; ", ", ", "  ", ";", ",", "\t"]
ALPHABET = "ab Z9;,-_.:&=/+\"\\[]…漢字😀é\u0301\u200b\x1b\x07\t"

tokens = st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from(JOINS)), min_size=1, max_size=8).map(
    lambda parts: "".join(token + join for token, join in parts))
# Header values as the parser gives them: without spaces or tabs around them.
values = st.one_of(tokens, st.text(ALPHABET, min_size=1, max_size=120)).map(lambda value: value.strip(" \t"))
names = st.one_of(st.sampled_from(["Host", "Sec-WebSocket-Extensions", "Sec-WebSocket-Version", "User-Agent",
                                   "X-A-Very-Long-Header-Name-Indeed-Longer-Than-The-Column"]),
                  st.text("AbZ-_9漢😀\u0301\x1b[]", min_size=1, max_size=40))


def text_of(line: Line) -> str:
    return "".join(text for _, text in line)


def escape_insides(shown: str) -> set[int]:
    """The positions of ``shown`` (a visible text) that are inside an escape, not at its start."""
    inside: set[int] = set()
    index = 0
    while index < len(shown):
        if shown[index] == "\\":
            length = {"x": 4, "u": 6, "U": 10}.get(shown[index + 1 : index + 2], 2)
            inside.update(range(index + 1, index + length))
            index += length
        else:
            index += 1
    return inside


def value_parts(lines: list[Line], layout: _Layout) -> list[str]:
    """The value's text on each line of a row: after the name on the name's line, after the value column's indent
    on a line of its own."""
    parts = []
    for line in lines:
        if line[0][0] == "plain":  # a line of the value alone
            assert line[0][1].startswith(layout.pad)
            parts.append(line[0][1][len(layout.pad):])
        elif len(line) > 1:
            parts.append(line[1][1])
    return parts


def name_parts(lines: list[Line]) -> list[str]:
    return [line[0][1][1:].rstrip(" ") for line in lines if line[0][0] == "c2s"]


def starts_with_a_mark(shown: str, index: int) -> bool:
    """Whether a line starting at ``index`` (past the spaces there) would start with a combining mark."""
    while index < len(shown) and shown[index] == " ":
        index += 1
    return index < len(shown) and cell_len(shown[index]) == 0


def check_folded(shown: str, parts: list[str], column: int) -> None:
    """``parts`` are ``shown`` folded to ``column`` cells: every character in order but the spaces where a line
    ends at a space, each break at a space where one is within reach, else after a separator, else as late as
    fits (before an escape that would be split)."""
    inside = escape_insides(shown)
    position = 0
    for number, part in enumerate(parts):
        assert part and not part.isspace()
        assert shown.startswith(part, position), (shown, parts)
        assert cell_len(part) <= column
        if number == len(parts) - 1:
            assert position + len(part) == len(shown)
            break
        assert shown[position + len(part)] == " " or not part.endswith(" ")
        reach = 0  # how many characters of the rest fit in the column
        while position + reach < len(shown) and cell_len(shown[position : position + reach + 1]) <= column:
            reach += 1
        within = shown[position : position + reach + 1]
        end = position + len(part)
        resume = end  # where the next line starts: past the spaces there, unless it shows them
        while resume < len(shown) and shown[resume] == " " and not parts[number + 1].startswith(" "):
            resume += 1
        assert cell_len(shown[resume]) > 0  # no line starts with a combining mark
        spaces = [index for index in range(1, len(within)) if within[index] == " "
                  and not within[:index].isspace() and not starts_with_a_mark(shown, position + index)]
        separators = [index for index in range(len(within) - 1) if within[index] in SEPARATORS
                      and not starts_with_a_mark(shown, position + index + 1)]
        if spaces:
            assert resume > end, (shown, parts, number)  # at a space, and the spaces there are not shown
        elif separators:
            assert part[-1] in SEPARATORS and resume == end, (shown, parts, number)
        else:  # a token longer than the column, cut as late as fits
            assert resume == end and end not in inside
            assert shown[end] == "\\" or cell_len(shown[position : end + 1]) > column, (shown, parts, number)
        position = resume


@settings(max_examples=500, deadline=None)
@given(name=names.filter(lambda name: " " not in name), value=values, name_width=st.integers(8, 28),
       width=st.integers(20, 200))
def test_a_value_shows_every_character_folded_at_spaces_first(name: str, value: str, name_width: int,
                                                                width: int) -> None:
    layout = _Layout(name_width, width)
    lines = header_row_lines("c2s", name, value, name_width, width)
    assert all(cell_len(text_of(line)) <= width - 1 for line in lines)
    assert all(text_of(line).strip() for line in lines)
    shown = visible(value)
    parts = value_parts(lines, layout)
    name_shown = visible(name)
    if layout.side_by_side and cell_len(name_shown) > name_width and len(lines) == 1:  # pushed right, as it fits
        assert parts == [shown]
        return
    if shown:
        check_folded(shown, parts, layout.value_width)
    else:  # an empty value: the name alone
        assert parts in ([], [""])
    names_shown = name_parts(lines)
    assert "".join(names_shown) == name_shown
    if len(names_shown) > 1:  # a name wider than the terminal: folded after a dash where it can be
        check_folded(name_shown, names_shown, width - 2)


def pair(headers: list[tuple[str, str]], key: str = "dGhlIHNhbXBsZSBub25jZQ==",
         status: str = "101 Switching Protocols") -> tuple[HandshakeRequest, HandshakeResponse]:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    raw = (f"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode("utf-8", "surrogateescape")
    request = HandshakeRequest(stream=1, direction="c2s", time=0.0, request=parse_request(raw), findings=())
    raw_response = (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept_key(key)}\r\n{extra}\r\n").encode("utf-8", "surrogateescape")
    response = HandshakeResponse(stream=1, direction="s2c", time=0.1, response=parse_response(raw_response, body=b""),
                                 findings=(), upgraded=False)  # no findings and no tick: the table and walkthrough
    return request, response


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(names, values), min_size=1, max_size=4), width=st.integers(20, 200),
       status=st.sampled_from(["101 Switching Protocols", "101 " + "漢字 " * 20, "101 [bold]x[/bold] \x1b[2J"]))
def test_no_line_is_wider_than_the_terminal_nor_blank(headers: list[tuple[str, str]], width: int,
                                                       status: str) -> None:
    request, response = pair(headers, status=status)
    lines = [text_of(line) for line in handshake_lines(request, response, width=width)]
    walkthrough = next(index for index, text in enumerate(lines) if not text.startswith(" "))  # the table's do
    assert all(cell_len(text) <= width - 1 for text in lines[:walkthrough])  # the table keeps a margin
    assert all(cell_len(text) <= width for text in lines[walkthrough:])  # as Output folds lines
    assert all(text.strip() for text in lines)


# ---- examples, written out by hand -------------------------------------------------------------------------------

OFFER = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def rows(name: str, value: str, name_width: int, width: int) -> list[str]:
    return [text_of(line) for line in header_row_lines("s2c", name, value, name_width, width)]


def test_an_offer_folds_after_its_semicolons_at_80_and_60_columns() -> None:
    assert rows("Sec-WebSocket-Extensions", OFFER, 24, 80) == [
        " Sec-WebSocket-Extensions permessage-deflate; server_max_window_bits=12;",
        "                          client_max_window_bits=12",
    ]
    assert rows("Sec-WebSocket-Extensions", OFFER, 24, 60) == [
        " Sec-WebSocket-Extensions permessage-deflate;",
        "                          server_max_window_bits=12;",
        "                          client_max_window_bits=12",
    ]


def test_at_40_columns_the_value_goes_under_its_name() -> None:
    assert rows("Sec-WebSocket-Extensions", OFFER, 24, 40) == [
        " Sec-WebSocket-Extensions",
        "   permessage-deflate;",
        "   server_max_window_bits=12;",
        "   client_max_window_bits=12",
    ]
    assert rows("Upgrade", "websocket", 24, 40) == [" Upgrade", "   websocket"]


def test_a_token_longer_than_the_column_is_cut_and_the_rest_folds_at_its_space() -> None:
    # 29 cells of value beside an 8-cell name column: the cookie's value has no space nor separator in reach.
    assert rows("Cookie", "id=0123456789abcdef0123456789abcdef; theme=dark", 8, 40) == [
        " Cookie   id=0123456789abcdef0123456789",
        "          abcdef; theme=dark",
    ]


def test_the_spaces_where_a_line_breaks_are_not_shown() -> None:
    assert rows("X-Spaced", "x" * 25 + "   " + "y" * 10, 8, 40) == [
        " X-Spaced " + "x" * 25,
        "          " + "y" * 10,
    ]


def test_a_name_wider_than_the_terminal_folds_after_a_dash() -> None:
    assert rows("Sec-WebSocket-Version", "13", 24, 20) == [" Sec-WebSocket-", " Version", "   13"]


def test_the_narrow_table_head_and_the_walkthrough_at_40_columns() -> None:
    request, response = pair([], key="oZmDfWGXe4Tk1geWxEk4Mw==")
    lines = [text_of(line) for line in handshake_lines(request, response, width=40)]
    assert lines[:3] == [" Header", "   Value", " " + "─" * 38]
    assert lines[lines.index(" request") + 1] == "   GET /chat HTTP/1.1"
    walkthrough = lines.index("Sec-WebSocket-Accept = base64(SHA-1(")
    assert lines[walkthrough:] == [
        "Sec-WebSocket-Accept = base64(SHA-1(",
        '  "oZmDfWGXe4Tk1geWxEk4Mw==" +',
        '  "258EAFA5-E914-47DA-95CA-',
        '  C5AB0DC85B11")) =',
        "  YXT9ik2PmHWX1umgiqMzLA7OfmI=  ✓ the",
        "  server's answer matches",
    ]


def test_an_escape_is_not_split() -> None:
    # 16 cells of value under the name at 20 columns: "\x1b" would start at the 15th.
    assert rows("X", "abcdefghijklmn\x1b[2J", 8, 20) == [" X", "   abcdefghijklmn", "   \\x1b[2J"]
