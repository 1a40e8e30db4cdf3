"""Display filters (``-Y EXPR``): Wireshark's filter language over wsinspect's events.

A filter chooses which events are shown; it never changes what is decoded. Field names are those of the JSON lines
schema (README, "JSON lines"), plus the Wireshark names (``tcp.stream``, ``frame.number``, ``http.request.method``...)
where Wireshark has the same field. ``docs/filters.md`` is the user's reference; ``describe_fields()`` lists the
fields for ``-Y help``.

Theory of operation. ``compile_filter()`` runs once per command: a hand-written tokenizer, then a recursive-descent
parser (precedence ``||`` < ``&&`` < ``!`` < comparison) that builds one closure per node as it parses. Everything
that can be decided before seeing an event is decided then: field names, operator/type agreement, literal values,
regular expressions, and for fields whose values are a closed set of labels (``opcode_name``, ``check``...) the set
of values that satisfy the test. So evaluating an event is a type lookup, one attribute read and one comparison:
no parsing, no dispatch on operator names, nothing that can raise. Each event class has its own reader per field;
a field an event does not carry makes every comparison on it false, as in Wireshark.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

from wsinspect.core.checks import CHECKS, Severity
from wsinspect.core.events import (
    DIRECTIONS,
    Close,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    FrameEvent,
    Gap,
    HandshakeRequest,
    HandshakeResponse,
    Message,
    Notice,
    Violation,
)
from wsinspect.core.fields import opcode_name
from wsinspect.core.frames import parse_close_payload

Filter = Callable[[Event], bool]
FieldType = Literal["integer", "boolean", "time", "string", "bytes"]
Reader = Callable[[Any], Any]  # an event of one class -> the field's value, or None when this event lacks it

MAX_NESTING = 64  # parentheses and negations: deeper input is refused rather than allowed to exhaust the stack


# ---- errors -----------------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Control characters, bidi overrides and other invisible code points as escapes, so they cannot act on a
    terminal; everything else as typed."""
    out = []
    for char in text:
        if char == "\\" or (char.isprintable() and unicodedata.category(char) not in ("Cf", "Zl", "Zp")):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class FilterError(ValueError):
    """A filter that cannot be compiled: ``column`` (0-based) is where in ``expression`` it went wrong."""

    def __init__(self, reason: str, expression: str, column: int) -> None:
        self.reason = reason
        self.expression = expression
        self.column = column
        super().__init__(f"filter error at column {column}: {reason} ({_escape(expression)})")

    def pointer(self) -> str:
        """The expression, then a caret under the column (two lines, for callers with room for them)."""
        shown = _escape(self.expression)
        return f"{shown}\n{' ' * len(_escape(self.expression[:self.column]))}^"


# ---- fields -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One name a filter can test. ``events`` are the JSON ``type`` names of the events that carry it."""

    name: str
    type: FieldType
    meaning: str
    wireshark: str | None  # the same field's name in Wireshark, when Wireshark has it
    events: tuple[str, ...]
    values: tuple[str, ...] | None = None  # a closed set of labels: compared case-insensitively, checked when compiled


@dataclass(frozen=True, slots=True)
class _Access:
    readers: dict[type[Event], Reader]
    optional: bool  # some reader may answer None (the event of that class lacks the field this time)
    on_every_event: bool = False  # an attribute of the Event base class: no need to look at the event's class


EVENT_TYPES: dict[type[Event], str] = {
    ConnectionOpened: "connection",
    HandshakeRequest: "handshake_request",
    HandshakeResponse: "handshake_response",
    FrameEvent: "frame",
    Message: "message",
    Close: "close",
    Violation: "violation",
    Notice: "notice",
    Gap: "gap",
    ConnectionClosed: "connection_closed",
}
_ALL_EVENTS = tuple(EVENT_TYPES)

#: Bare words that are true for one kind of event (the JSON ``type`` names, and Wireshark's protocol names).
EVENT_WORDS: dict[str, tuple[type[Event], ...]] = {
    **{name: (cls,) for cls, name in EVENT_TYPES.items()},
    "websocket": (FrameEvent,),
    "handshake": (HandshakeRequest, HandshakeResponse),
    "http": (HandshakeRequest, HandshakeResponse),
    "http.request": (HandshakeRequest,),
    "http.response": (HandshakeResponse,),
}

FIELDS: dict[str, Field] = {}
_ACCESS: dict[str, _Access] = {}


def _field(name: str, kind: FieldType, meaning: str, wireshark: str | None, readers: dict[type[Event], Reader],
           *, optional: bool = False, values: Iterable[str] | None = None) -> None:
    labels = tuple(values) if values is not None else None
    FIELDS[name] = Field(name, kind, meaning, wireshark, tuple(EVENT_TYPES[cls] for cls in readers), labels)
    _ACCESS[name] = _Access(readers, optional)


def _common(name: str, kind: FieldType, meaning: str, wireshark: str | None, attribute: str,
            *, optional: bool = False, values: Iterable[str] | None = None) -> None:
    """A field every event has (an attribute of ``Event`` itself)."""
    _field(name, kind, meaning, wireshark, _on(_ALL_EVENTS, attrgetter(attribute)), optional=optional, values=values)
    _ACCESS[name] = _Access(_ACCESS[name].readers, optional, on_every_event=True)


def _on(classes: Iterable[type[Event]], reader: Reader) -> dict[type[Event], Reader]:
    return dict.fromkeys(classes, reader)


def _constant(value: str) -> Reader:
    return lambda _event: value


def _close_code(event: FrameEvent) -> int | None:
    frame = event.frame
    return parse_close_payload(frame.payload).code if frame.opcode == 0x8 else None


def _close_reason(event: FrameEvent) -> str | None:
    frame = event.frame
    return parse_close_payload(frame.payload).reason if frame.opcode == 0x8 and len(frame.payload) > 2 else None


def _endpoint(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


_JUDGED = (Violation, Notice)
_HANDSHAKES = (HandshakeRequest, HandshakeResponse)

# every event
_field("type", "string", "the kind of event (the JSON type)", None,
       {cls: _constant(name) for cls, name in EVENT_TYPES.items()}, values=EVENT_TYPES.values())
_common("stream", "integer", "the connection: Wireshark's TCP stream index in a capture", "tcp.stream", "stream")
_common("tcp.stream", "integer", "the same as stream", "tcp.stream", "stream")
_common("direction", "string", "c2s (client to server) or s2c (server to client)", None, "direction",
        values=DIRECTIONS)
_common("time", "time", "when the event completed, in seconds since 1970", "frame.time_epoch", "time")
_common("frame.time_epoch", "time", "the same as time", "frame.time_epoch", "time")
_common("packet", "integer", "the capture's frame number where the event completed (absent live)", "frame.number",
        "packet", optional=True)
_common("frame.number", "integer", "the same as packet", "frame.number", "packet", optional=True)

# frames
_field("websocket.fin", "boolean", "FIN: the final frame of a message", "websocket.fin",
       {FrameEvent: attrgetter("frame.fin")})
_field("websocket.rsv", "integer", "the three reserved bits RSV1-3 as one number, 0-7 (4 is RSV1)", "websocket.rsv",
       {FrameEvent: attrgetter("frame.rsv")})
_field("websocket.opcode", "integer", "the opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong",
       "websocket.opcode", {FrameEvent: attrgetter("frame.opcode")})
_field("websocket.mask", "boolean", "MASK: the payload is masked", "websocket.mask",
       {FrameEvent: attrgetter("frame.masked")})
_field("websocket.payload_length", "integer",
       "the payload's real length (Wireshark's field of this name is the 7-bit field: 126 or 127 when the length "
       "is in an extended field)", "websocket.payload_length", {FrameEvent: attrgetter("frame.payload_length")})
_field("websocket.payload_length_ext_16", "integer", "the 16-bit extended payload length (absent otherwise)",
       "websocket.payload_length_ext_16",
       {FrameEvent: lambda event: event.frame.payload_length if event.frame.length_bits == 16 else None},
       optional=True)
_field("websocket.payload_length_ext_64", "integer", "the 64-bit extended payload length (absent otherwise)",
       "websocket.payload_length_ext_64",
       {FrameEvent: lambda event: event.frame.payload_length if event.frame.length_bits == 64 else None},
       optional=True)
_field("websocket.masking_key", "bytes", "the masking key (absent when unmasked)", "websocket.masking_key",
       {FrameEvent: attrgetter("frame.masking_key")}, optional=True)
_field("websocket.payload.close.status_code", "integer", "a close frame's status code (absent without one)",
       "websocket.payload.close.status_code", {FrameEvent: _close_code}, optional=True)
_field("websocket.payload.close.reason", "string", "a close frame's reason (absent without one)",
       "websocket.payload.close.reason", {FrameEvent: _close_reason}, optional=True)
_OPCODE_NAMES = tuple(opcode_name(code) for code in range(16))  # an opcode is 4 bits: every name, looked up once
_field("opcode_name", "string", "the opcode's name: Continuation, Text, Binary, Close, Ping, Pong, Reserved ...",
       None, {FrameEvent: lambda event: _OPCODE_NAMES[event.frame.opcode],
              Message: lambda event: _OPCODE_NAMES[event.opcode]},
       values=_OPCODE_NAMES)
_field("length_bits", "integer", "the form the length was written in: 7, 16 or 64 bits", None,
       {FrameEvent: attrgetter("frame.length_bits")})
_field("offset", "integer", "where it starts in its direction's byte stream", None,
       {FrameEvent: attrgetter("frame.offset"), Violation: attrgetter("offset"), Notice: attrgetter("offset"),
        Gap: attrgetter("offset")}, optional=True)
_field("header_length", "integer", "the frame header's size in bytes (2 to 14)", None,
       {FrameEvent: lambda event: len(event.frame.header)})
_field("payload", "bytes", "the frame's payload, unmasked (still compressed if RSV1 is set)", None,
       {FrameEvent: attrgetter("frame.payload")})
_field("payload_missing", "integer", "payload bytes not kept (never captured, or over the size limit)", None,
       {FrameEvent: attrgetter("frame.missing")})

# messages
_field("opcode", "integer", "the message's opcode: 1 text, 2 binary", None, {Message: attrgetter("opcode")})
_field("length", "integer", "the message's length as the application sees it (inflated)", None,
       {Message: lambda event: len(event.data)})
_field("frames", "integer", "how many frames carried the message", None, {Message: attrgetter("frames")})
_field("compressed", "boolean", "the message was compressed (permessage-deflate)", None,
       {Message: attrgetter("compressed")})
_field("wire_length", "integer", "payload bytes on the wire, summed over the frames", None,
       {Message: attrgetter("wire_length")})
_field("complete", "boolean", "the whole message was decoded (false when a limit or a gap cut it short)", None,
       {Message: attrgetter("complete")})
_field("first_packet", "integer", "the frame number of the message's first frame", None,
       {Message: attrgetter("first_packet")}, optional=True)
_field("data", "bytes", "the message, reassembled and inflated", None, {Message: attrgetter("data")})
_field("text", "string", "a text message's text (absent when it is not valid UTF-8)", None,
       {Message: attrgetter("text")}, optional=True)

# closes
_field("code", "integer", "the close status code (absent when the close frame had none)", None,
       {Close: attrgetter("code")}, optional=True)
_field("reason", "string", "the close reason; the HTTP reason phrase; why the connection ended", None,
       {Close: attrgetter("reason"), HandshakeResponse: attrgetter("response.reason"),
        ConnectionClosed: attrgetter("reason")})
_field("initiator", "boolean", "this close began the closing handshake (false for the answer)", None,
       {Close: attrgetter("initiator")})

# violations and notices
_field("check", "string", "the rule's id, e.g. frame.client-unmasked", None,
       _on(_JUDGED, attrgetter("check.id")), values=CHECKS)
_field("rfc", "string", "where the rule is written, e.g. RFC 6455 5.1", None, _on(_JUDGED, attrgetter("check.rfc")))
_field("severity", "string", "error, warning or info", None, _on(_JUDGED, attrgetter("check.severity.value")),
       values=(severity.value for severity in Severity))
_field("close_code", "integer", "the close code a conforming peer fails the connection with", None,
       _on(_JUDGED, attrgetter("check.close_code")), optional=True)
_field("message", "string", "what was wrong, in words (as a bare word, `message` means a message event)", None,
       _on(_JUDGED, attrgetter("message")))

# connections
_field("client", "string", "the client's ip:port", None, {ConnectionOpened: lambda event: _endpoint(event.client)})
_field("server", "string", "the server's ip:port", None, {ConnectionOpened: lambda event: _endpoint(event.server)})
_field("how", "string", "how the client side was told apart", None, {ConnectionOpened: attrgetter("how")})
_field("mid_stream", "boolean", "decoding started after the handshake", None,
       {ConnectionOpened: attrgetter("mid_stream")})
_field("clean", "boolean", "both sides sent a close frame before the connection ended", None,
       {ConnectionClosed: attrgetter("clean")})

# handshakes
_field("method", "string", "the request's method", "http.request.method",
       {HandshakeRequest: attrgetter("request.method")})
_field("http.request.method", "string", "the same as method", "http.request.method",
       {HandshakeRequest: attrgetter("request.method")})
_field("target", "string", "the request's target (path and query)", "http.request.uri",
       {HandshakeRequest: attrgetter("request.target")})
_field("http.request.uri", "string", "the same as target", "http.request.uri",
       {HandshakeRequest: attrgetter("request.target")})
_field("version", "string", "the HTTP version, e.g. HTTP/1.1", None,
       {HandshakeRequest: attrgetter("request.version"), HandshakeResponse: attrgetter("response.version")})
_field("http.request.version", "string", "the request's HTTP version", "http.request.version",
       {HandshakeRequest: attrgetter("request.version")})
_field("http.response.version", "string", "the response's HTTP version", "http.response.version",
       {HandshakeResponse: attrgetter("response.version")})
_field("status", "integer", "the response's status code", "http.response.code",
       {HandshakeResponse: attrgetter("response.status")})
_field("http.response.code", "integer", "the same as status", "http.response.code",
       {HandshakeResponse: attrgetter("response.status")})
_field("http.response.phrase", "string", "the response's reason phrase", "http.response.phrase",
       {HandshakeResponse: attrgetter("response.reason")})
_field("upgraded", "boolean", "the server answered 101: frames follow", None,
       {HandshakeResponse: attrgetter("upgraded")})
_field("subprotocol", "string", "the subprotocol the server chose (absent when none)", None,
       {HandshakeResponse: attrgetter("subprotocol")}, optional=True)

# gaps
_field("missing", "integer", "bytes that were never captured", None, {Gap: attrgetter("missing")})


def describe_fields() -> str:
    """A plain-text table of every field (for ``-Y help``), then the bare event words."""
    rows = [("field", "type", "events", "Wireshark", "meaning")]
    rows += [(f.name, f.type, ",".join(f.events) if len(f.events) < len(EVENT_TYPES) else "all",
              f.wireshark or "-", f.meaning) for f in FIELDS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]
    words = ", ".join(EVENT_WORDS)
    lines += ["", f"event words (true for that kind of event): {words}",
              "operators: == != < <= > >= contains matches (eq ne lt le gt ge), in {a, b, low..high}, "
              "&& || ! (and or not), ( )"]
    return "\n".join(lines)


# ---- tokens -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "op" (a comparison), "in", "and", "or", "not", "(", ")", "{", "}", ",", "end"
    text: str  # as written (the operator's canonical spelling for "op")
    column: int
    data: bytes = b""  # a string's value, escapes applied
    columns: tuple[int, ...] = ()  # for a string: the source column of each byte of ``data``


_WORD = re.compile(r"[A-Za-z0-9_.:/-]+")
_SYMBOLS = {"&&": ("and", "&&"), "||": ("or", "||"), "==": ("op", "=="), "!=": ("op", "!="), "<=": ("op", "<="),
            ">=": ("op", ">="), "<": ("op", "<"), ">": ("op", ">"), "!": ("not", "!"), "(": ("(", "("),
            ")": (")", ")"), "{": ("{", "{"), "}": ("}", "}"), ",": (",", ",")}
_KEYWORDS = {"and": ("and", "&&"), "or": ("or", "||"), "not": ("not", "!"), "eq": ("op", "=="), "ne": ("op", "!="),
             "lt": ("op", "<"), "le": ("op", "<="), "gt": ("op", ">"), "ge": ("op", ">="),
             "contains": ("op", "contains"), "matches": ("op", "matches"), "in": ("in", "in")}
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")


def _tokens(expression: str) -> list[_Token]:
    out: list[_Token] = []
    i, size = 0, len(expression)
    while i < size:
        char = expression[i]
        if char.isspace():
            i += 1
        elif char == '"' or expression.startswith('r"', i):
            token, i = _string(expression, i)
            out.append(token)
        elif expression[i:i + 2] in _SYMBOLS:
            kind, text = _SYMBOLS[expression[i:i + 2]]
            out.append(_Token(kind, text, i))
            i += 2
        elif char in _SYMBOLS:
            kind, text = _SYMBOLS[char]
            out.append(_Token(kind, text, i))
            i += 1
        elif (match := _WORD.match(expression, i)) is not None:
            kind, text = _KEYWORDS.get(match.group(), ("word", match.group()))
            out.append(_Token(kind, text, i))
            i = match.end()
        else:
            hint = {"=": " (did you mean '=='?)", "&": " (did you mean '&&'?)", "|": " (did you mean '||'?)",
                    "'": " (strings are in double quotes)"}.get(char, "")
            raise FilterError(f"unexpected character '{_escape(char)}'{hint}", expression, i)
    out.append(_Token("end", "the end", size))
    return out


def _string(expression: str, start: int) -> tuple[_Token, int]:
    """A quoted string with Wireshark's escapes, or a raw string ``r"..."``: its bytes, each byte's column, and the
    index just past the closing quote."""
    raw = expression[start] == "r"
    i = start + (2 if raw else 1)
    data = bytearray()
    columns: list[int] = []
    size = len(expression)
    while i < size and expression[i] != '"':
        if expression[i] == "\\" and i + 1 < size:
            # In a raw string a backslash stands for itself, but still keeps the quote after it in the string.
            if raw:
                value, length = _char_bytes(expression, i) + _char_bytes(expression, i + 1), 2
            else:
                value, length = _escape_value(expression, i)
        else:
            value, length = _char_bytes(expression, i), 1
        data += value
        columns += [i] * len(value)
        i += length
    if i >= size:
        raise FilterError("this string is not closed (a '\"' is missing)", expression, start)
    return _Token("string", expression[start:i + 1], start, bytes(data), tuple(columns)), i + 1


def _char_bytes(expression: str, at: int) -> bytes:
    """One character's UTF-8 bytes. A byte that was not UTF-8 on the command line arrives as a surrogate escape:
    it is given back; any other lone surrogate is not a character."""
    try:
        return expression[at].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise FilterError("this is not a character", expression, at) from None


def _escape_value(expression: str, at: int) -> tuple[bytes, int]:
    """The bytes of the escape sequence at ``at`` (a backslash) and how many characters it spans."""
    letter = expression[at + 1]
    if letter in _SIMPLE_ESCAPES:
        return bytes((_SIMPLE_ESCAPES[letter],)), 2
    if letter == "x":
        digits = expression[at + 2:at + 4]
        if len(digits) == 2 and set(digits) <= _HEX:
            return bytes((int(digits, 16),)), 4
        raise FilterError("\\x needs two hex digits", expression, at)
    if letter in _OCTAL:
        end = at + 2
        while end < at + 4 and end < len(expression) and expression[end] in _OCTAL:
            end += 1
        value = int(expression[at + 1:end], 8)
        if value > 0xFF:
            raise FilterError(f"\\{expression[at + 1:end]} is more than one byte", expression, at)
        return bytes((value,)), end - at
    if letter in "uU":
        count = 4 if letter == "u" else 8
        digits = expression[at + 2:at + 2 + count]
        if len(digits) == count and set(digits) <= _HEX:
            code = int(digits, 16)
            if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code).encode("utf-8"), 2 + count
        raise FilterError(f"\\{letter} needs {count} hex digits naming a Unicode character", expression, at)
    shown = _escape(letter)
    raise FilterError(f"\\{shown} is not a valid escape (write \\\\{shown}, or use a raw string r\"...\")",
                      expression, at)


# ---- values -----------------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_BYTE_STRING = re.compile(r"[0-9a-fA-F]{2}(?:([:.-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2})*)?")
_LOOKS_NUMERIC = re.compile(r"[0-9.][0-9a-fA-FxX.]*")
_ARTICLES: dict[FieldType, str] = {"integer": "a number", "boolean": "a boolean", "time": "a time in seconds",
                                   "string": "a string", "bytes": "bytes"}

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

#: Wireshark names that have no field here, and what to write instead.
_INSTEAD = {
    "websocket.payload": "payload (a frame's bytes)",
    "websocket.payload.text": "text (a message's text)",
    "websocket.pmc": "websocket.rsv == 4",
    "ip.addr": "tcp.stream for a conversation, or client/server (\"ip:port\") on its connection event",
    "tcp.port": "tcp.stream for a conversation, or client/server (\"ip:port\") on its connection event",
}


# ---- the parser -------------------------------------------------------------------------------------------------


def compile_filter(expression: str) -> Filter:
    """A function telling whether an event is shown. Raises FilterError (one line, with its column) when the
    expression is not a valid filter; the function it returns never raises."""
    return _Parser(expression).parse()


class _Parser:
    """Recursive descent over the tokens; each rule returns the compiled test for what it parsed.

    filter      := disjunction END
    disjunction := conjunction ( ("||" | "or") conjunction )*
    conjunction := negation ( ("&&" | "and") negation )*
    negation    := ("!" | "not") negation | primary
    primary     := "(" disjunction ")" | WORD [ OPERATOR value | "in" "{" member ( "," member )* "}" ]
    member      := value | WORD of the form LOW..HIGH
    value       := STRING | WORD
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.position = 0
        self.depth = 0

    def error(self, reason: str, column: int) -> FilterError:
        return FilterError(reason, self.expression, column)

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind != "end":
            self.position += 1
        return token

    def after(self) -> str:
        """Where the parser is, for "expected ..." messages: after the token just taken."""
        return f"after '{_escape(self.tokens[self.position - 1].text)}'" if self.position else "at the start"

    def parse(self) -> Filter:
        if self.peek().kind == "end":
            raise self.error("the filter is empty", 0)
        test = self.disjunction()
        token = self.peek()
        if token.kind != "end":
            if token.kind == ")":
                raise self.error("this ')' closes nothing", token.column)
            raise self.error(f"expected '&&', '||' or the end, not '{_escape(token.text)}'", token.column)
        return test

    def disjunction(self) -> Filter:
        terms = [self.conjunction()]
        while self.peek().kind == "or":
            self.take()
            terms.append(self.conjunction())
        return _any_of(terms)

    def conjunction(self) -> Filter:
        terms = [self.negation()]
        while self.peek().kind == "and":
            self.take()
            terms.append(self.negation())
        return _all_of(terms)

    def negation(self) -> Filter:
        token = self.peek()
        if token.kind != "not":
            return self.primary()
        self.take()
        self.nest(token)
        inner = self.negation()
        self.depth -= 1
        return lambda event: not inner(event)

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"nested more than {MAX_NESTING} deep", token.column)

    def primary(self) -> Filter:
        where = self.after()
        token = self.take()
        if token.kind == "(":
            self.nest(token)
            inner = self.disjunction()
            closing = self.take()
            if closing.kind != ")":
                raise self.error(f"expected ')' to close the '(' at column {token.column}", closing.column)
            self.depth -= 1
            return inner
        if token.kind == "word":
            return self.test(token)
        if token.kind == "end":
            raise self.error(f"expected a field, an event word or '(' {where}", token.column)
        raise self.error(f"expected a field, an event word or '(', not '{_escape(token.text)}'", token.column)

    def test(self, word: _Token) -> Filter:
        name = word.text
        if self.peek().kind not in ("op", "in"):
            if name in EVENT_WORDS:
                return _is_event(EVENT_WORDS[name])
            if name in FIELDS:
                return _has(FIELDS[name])
            raise self.unknown(word)
        op = self.take()
        if name not in FIELDS:
            if name in EVENT_WORDS:
                raise self.error(f"'{name}' is an event word, not a field: it takes no '{op.text}' (alone it "
                                 f"selects those events)", op.column)
            raise self.unknown(word)
        field = FIELDS[name]
        if op.kind == "in":
            return self.membership(field)
        value = self.take()
        if value.kind not in ("word", "string"):
            raise self.error(f"expected a value after '{op.text}'", value.column)
        return self.comparison(field, op, value)

    def membership(self, field: Field) -> Filter:
        """``field in {a, b, low..high}`` (Wireshark 4.0's sets): equal to a member, or within a range."""
        opening = self.take()
        if opening.kind != "{":
            raise self.error("expected '{' after 'in'", opening.column)
        singles: list[Any] = []
        ranges: list[tuple[Any, Any]] = []
        while True:
            where = self.after()
            member = self.take()
            if member.kind not in ("word", "string"):
                raise self.error(f"expected a value {where}", member.column)
            low, dots, high = member.text.partition("..") if member.kind == "word" else (member.text, "", "")
            if not dots:
                singles.append(self.member(field, member))
            elif field.type not in ("integer", "time"):
                raise self.error(f"a range needs numbers, and {field.name} is {_ARTICLES[field.type]}", member.column)
            else:
                bounds = (_Token("word", low, member.column), _Token("word", high, member.column + len(low) + 2))
                ranges.append((self.literal(field, bounds[0]), self.literal(field, bounds[1])))
            separator = self.take()
            if separator.kind == "}":
                break
            if separator.kind != ",":
                raise self.error(f"expected ',' or '}}' to close the '{{' at column {opening.column}",
                                 separator.column)
        if field.values is not None:  # labels: lowered, like every label comparison (ranges need numbers)
            return _label_test(field, frozenset(single.lower() for single in singles).__contains__)
        members = frozenset(singles)
        if not ranges:
            return _field_test(_ACCESS[field.name], members.__contains__)
        if len(ranges) == 1:  # the usual set, and a generator per event costs more than the comparison itself
            ((low, high),) = ranges
            return _field_test(_ACCESS[field.name], lambda value: value in members or low <= value <= high)
        return _field_test(_ACCESS[field.name],
                           lambda value: value in members or any(low <= value <= high for low, high in ranges))

    def member(self, field: Field, token: _Token) -> Any:
        value = self.literal(field, token)
        if field.values is not None:
            self.check_label(field, "==", token, value)
        return value

    def unknown(self, word: _Token) -> FilterError:
        name = word.text
        if name in _INSTEAD:
            return self.error(f"no field '{name}': use {_INSTEAD[name]}", word.column)
        close = difflib.get_close_matches(name, [*FIELDS, *EVENT_WORDS], n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else " (wsinspect read -Y help lists the fields)"
        return self.error(f"unknown field '{_escape(name)}'{hint}", word.column)

    def comparison(self, field: Field, op: _Token, value: _Token) -> Filter:
        if op.text in ("contains", "matches") and field.type not in ("string", "bytes"):
            raise self.error(f"{field.name} is {_ARTICLES[field.type]}: '{op.text}' needs a string or bytes field",
                             op.column)
        if op.text == "matches":
            predicate = self.regex(field, value)
        else:
            literal = self.literal(field, value)
            if field.values is not None:
                self.check_label(field, op.text, value, literal)
                literal = literal.lower()  # labels compare case-insensitively: both sides lowered
            if op.text == "contains":
                predicate = _contains(literal)
            elif field.values is None:
                return _comparison(_ACCESS[field.name], _COMPARISONS[op.text], literal)
            else:
                predicate = functools.partial(_compare_label, _COMPARISONS[op.text], literal)
        if field.values is not None:
            return _label_test(field, predicate)
        return _field_test(_ACCESS[field.name], predicate)

    def literal(self, field: Field, token: _Token) -> Any:
        kind, text = field.type, token.text
        if kind == "string":
            if token.kind == "string":
                return self.text_of(token)
            if _LOOKS_NUMERIC.fullmatch(text):
                raise self.error(f"{field.name} is a string: a number never equals it (quote it: \"{text}\")",
                                 token.column)
            return text  # an unquoted word is taken literally, as in Wireshark
        if kind == "bytes":
            if token.kind == "string":
                return token.data
            if _BYTE_STRING.fullmatch(text):
                return bytes.fromhex(re.sub("[:.-]", "", text))
            raise self.error(f"'{_escape(text)}' is not bytes: write 01:02:03 or a quoted string", token.column)
        if token.kind == "string":
            raise self.error(f"{field.name} is {_ARTICLES[kind]}, not a string: write the value without quotes",
                             token.column)
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if _INTEGER.fullmatch(text):
            try:
                return int(text, 8) if text.startswith("0") and text[1:].isdigit() else int(text, 0)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                raise self.error(f"{field.name} is never that large", token.column) from None
        if kind == "time" and _DECIMAL.fullmatch(text):
            return float(text)
        raise self.error(f"'{_escape(text)}' is not {_ARTICLES[kind]} (the type of {field.name})", token.column)

    def text_of(self, token: _Token) -> str:
        try:
            return token.data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self.error("this string is not valid UTF-8 (a \\x escape made a byte that is not text)",
                             token.columns[error.start]) from None

    def regex(self, field: Field, token: _Token) -> Callable[[Any], bool]:
        if token.kind != "string" and field.type == "bytes" and _BYTE_STRING.fullmatch(token.text):
            raise self.error("'matches' needs a regular expression in quotes", token.column)
        pattern: str | bytes
        if field.type == "bytes":
            pattern = token.data if token.kind == "string" else token.text.encode("ascii")
        else:
            pattern = self.text_of(token) if token.kind == "string" else token.text
        try:  # case-insensitive, as in Wireshark; (?-i:...) makes a part of the pattern case-sensitive
            search = re.compile(pattern, re.IGNORECASE).search
        except re.error as error:
            column = self.regex_column(token, pattern, error.pos)
            raise self.error(f"bad regular expression: {error.msg}", column) from None
        return lambda value: search(value) is not None

    def regex_column(self, token: _Token, pattern: str | bytes, position: int | None) -> int:
        if position is None:
            return token.column
        if token.kind == "word":
            return token.column + position
        offset = position if isinstance(pattern, bytes) else len(pattern[:position].encode("utf-8"))
        return token.columns[offset] if offset < len(token.columns) else token.column + len(token.text) - 1

    def check_label(self, field: Field, op: str, value: _Token, wanted: str) -> None:
        """``==``/``!=`` against a value the field never has is a typo: say so, with the nearest values."""
        if op not in ("==", "!=") or field.values is None:
            return
        if any(wanted.lower() == known.lower() for known in field.values):
            return
        close = difflib.get_close_matches(wanted, field.values, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"it is one of {', '.join(field.values[:8])}"
        hint += "" if close or len(field.values) <= 8 else ", ..."
        raise self.error(f"{field.name} is never \"{_escape(wanted)}\" ({hint})", value.column)


# ---- compiled tests ---------------------------------------------------------------------------------------------


def _comparison(access: _Access, compare: Callable[[Any, Any], bool], literal: Any) -> Filter:
    """``field OP literal``. The common shapes (a field every event has, or one class's field that is always there)
    call the operator directly: this runs on every event of a capture, and each call saved is measurable."""
    readers = access.readers
    if not access.optional and (access.on_every_event or len(readers) == 1):
        cls, read = next(iter(readers.items()))  # with on_every_event, any class's reader is the same one
        if access.on_every_event:
            return lambda event: compare(read(event), literal)
        return lambda event: type(event) is cls and compare(read(event), literal)
    return _field_test(access, lambda value: compare(value, literal))


def _compare_label(compare: Callable[[str, str], bool], literal: str, value: str) -> bool:
    return compare(value, literal)


def _contains(literal: str | bytes) -> Callable[[Any], bool]:
    return lambda value: literal in value


def _is_event(classes: tuple[type[Event], ...]) -> Filter:
    if len(classes) == 1:
        (cls,) = classes
        return lambda event: type(event) is cls
    kinds = frozenset(classes)
    return lambda event: type(event) in kinds


def _has(field: Field) -> Filter:
    """A bare field: present and true. Booleans are themselves, numbers are non-zero, and a string or bytes is
    true whenever it is there (even empty: `text` means "has valid text", and "" is valid text)."""
    if field.type in ("string", "bytes"):
        return _field_test(_ACCESS[field.name], lambda _value: True)
    return _field_test(_ACCESS[field.name], bool)


def _field_test(access: _Access, predicate: Callable[[Any], bool]) -> Filter:
    """``predicate(value)`` for the events that carry the field, False for the others (and when it is absent)."""
    readers = access.readers
    if access.on_every_event:
        read = next(iter(readers.values()))
        if not access.optional:
            return lambda event: predicate(read(event))
        return lambda event: (value := read(event)) is not None and predicate(value)
    if len(readers) == 1:
        ((cls, read),) = readers.items()
        if not access.optional:
            return lambda event: type(event) is cls and predicate(read(event))

        def one_optional(event: Event) -> bool:
            if type(event) is not cls:
                return False
            value = read(event)
            return value is not None and predicate(value)

        return one_optional

    def several(event: Event) -> bool:
        read = readers.get(type(event))
        if read is None:
            return False
        value = read(event)
        return value is not None and predicate(value)

    return several


def _label_test(field: Field, predicate: Callable[[Any], bool]) -> Filter:
    """Labels compare case-insensitively, and there are few of them: decide every label now, keep the set that
    passes, and test membership per event."""
    assert field.values is not None
    passing = frozenset(value for value in field.values if predicate(value.lower()))
    return _field_test(_ACCESS[field.name], passing.__contains__)


def _all_of(tests: list[Filter]) -> Filter:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda event: first(event) and second(event)
    chain = tuple(tests)
    return lambda event: all(test(event) for test in chain)


def _any_of(tests: list[Filter]) -> Filter:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda event: first(event) or second(event)
    chain = tuple(tests)
    return lambda event: any(test(event) for test in chain)
