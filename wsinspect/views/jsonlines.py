"""One JSON object per event, per line. The schema is documented in the README and kept stable.

Frame objects use Wireshark's field names (``websocket.fin``, ``websocket.opcode``...) so a line can be checked
against ``tshark -T json``; values are native JSON types (tshark prints them as strings).
"""

from __future__ import annotations

import json
from binascii import hexlify
from collections.abc import Callable
from typing import Any, TextIO

from wsinspect.core.events import (
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
from wsinspect.core.handshake import Finding, Headers


def _findings(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    return [{"check": f.check.id, "rfc": f.check.rfc, "severity": f.severity.value, "message": f.message,
             "expected": f.expected, "got": f.got} for f in findings]


def _headers(headers: Headers) -> list[list[str]]:
    return [[name, value] for name, value in headers]


def _opened(e: ConnectionOpened) -> dict[str, Any]:
    return {"client": f"{e.client[0]}:{e.client[1]}", "server": f"{e.server[0]}:{e.server[1]}", "how": e.how,
            "mid_stream": e.mid_stream}


def _request(e: HandshakeRequest) -> dict[str, Any]:
    r = e.request
    return {"method": r.method, "target": r.target, "version": r.version, "headers": _headers(r.headers),
            "findings": _findings(e.findings)}


def _response(e: HandshakeResponse) -> dict[str, Any]:
    r = e.response
    return {"status": r.status, "reason": r.reason, "version": r.version, "headers": _headers(r.headers),
            "upgraded": e.upgraded, "subprotocol": e.subprotocol, "extensions": [str(x) for x in e.extensions],
            "body": r.body.decode("utf-8", "replace"), "findings": _findings(e.findings)}


def _frame(e: FrameEvent) -> dict[str, Any]:
    f = e.frame
    out: dict[str, Any] = {
        "websocket.fin": f.fin,
        "websocket.rsv": f.rsv,
        "websocket.opcode": f.opcode,
        "websocket.mask": f.masked,
        "websocket.payload_length": f.payload_length,
        "websocket.masking_key": f.masking_key.hex(":") if f.masking_key else None,
        "opcode_name": opcode_name(f.opcode),
        "length_bits": f.length_bits,
        "offset": f.offset,
        "header_length": len(f.header),
        "payload": f.payload.hex(),
    }
    if f.missing:
        out["payload_missing"] = f.missing
    return out


def _message(e: Message) -> dict[str, Any]:
    return {"opcode": e.opcode, "opcode_name": opcode_name(e.opcode), "length": len(e.data), "frames": e.frames,
            "compressed": e.compressed, "wire_length": e.wire_length, "complete": e.complete,
            "first_packet": e.first_packet, "data": e.data.hex(), "text": e.text}


def _close(e: Close) -> dict[str, Any]:
    return {"code": e.code, "reason": e.reason, "initiator": e.initiator}


def _judgement(e: Violation | Notice) -> dict[str, Any]:
    return {"check": e.check.id, "rfc": e.check.rfc, "severity": e.check.severity.value,
            "close_code": e.check.close_code, "message": e.message, "offset": e.offset}


def _gap(e: Gap) -> dict[str, Any]:
    return {"missing": e.missing, "offset": e.offset}


def _closed(e: ConnectionClosed) -> dict[str, Any]:
    return {"reason": e.reason, "clean": e.clean}


_ENCODERS: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    ConnectionOpened: ("connection", _opened),
    HandshakeRequest: ("handshake_request", _request),
    HandshakeResponse: ("handshake_response", _response),
    FrameEvent: ("frame", _frame),
    Message: ("message", _message),
    Close: ("close", _close),
    Violation: ("violation", _judgement),
    Notice: ("notice", _judgement),
    Gap: ("gap", _gap),
    ConnectionClosed: ("connection_closed", _closed),
}


def to_json(event: Event) -> dict[str, Any]:
    kind, encode = _ENCODERS[type(event)]
    out: dict[str, Any] = {"type": kind, "stream": event.stream, "direction": event.direction,
                           "time": event.time, "packet": event.packet}
    out.update(encode(event))
    return out


# -- the hot path -------------------------------------------------------------------------------------------------
# Frames and messages are nearly every line of a large capture. Their values are numbers, booleans, hex and (for
# text) one string, so they are written straight into the line, as bytes: the payload's hex (most of the output) is
# made as bytes by binascii and joined once, never copied through a str and encoded again. ``to_json`` stays the
# reference, and a test checks that both give the same bytes for every event of the shipped captures.

_JSON_STRING = json.encoder.encode_basestring_ascii  # the C escaper json.dumps(ensure_ascii=True) uses
_OPCODE_NAMES = {code: json.dumps(opcode_name(code)) for code in range(16)}


def _literal(value: bool | int | None) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _common(kind: str, event: Event) -> str:
    return (f'{{"type":"{kind}","stream":{event.stream},"direction":"{event.direction}","time":{event.time!r},'
            f'"packet":{_literal(event.packet)}')


def frame_line(event: FrameEvent, payload_hex: bytes | None = None) -> bytes:
    """The frame's JSON line as written, newline included (``payload_hex``: its payload's hex, if made already)."""
    f = event.frame
    key = f'"{f.masking_key.hex(":")}"' if f.masking_key else "null"
    missing = f',"payload_missing":{f.missing}' if f.missing else ""
    head = (f'{_common("frame", event)},"websocket.fin":{_literal(f.fin)},"websocket.rsv":{f.rsv},'
            f'"websocket.opcode":{f.opcode},"websocket.mask":{_literal(f.masked)},'
            f'"websocket.payload_length":{f.payload_length},"websocket.masking_key":{key},'
            f'"opcode_name":{_OPCODE_NAMES[f.opcode]},"length_bits":{f.length_bits},"offset":{f.offset},'
            f'"header_length":{len(f.header)},"payload":"')
    return b"".join((head.encode(), hexlify(f.payload) if payload_hex is None else payload_hex,
                     f'"{missing}}}\n'.encode()))


def message_line(event: Message, data_hex: bytes | None = None) -> bytes:
    """The message's JSON line as written, newline included (``data_hex``: its data's hex, if made already)."""
    text = "null" if event.text is None else _JSON_STRING(event.text)  # ASCII: every other character escaped
    head = (f'{_common("message", event)},"opcode":{event.opcode},"opcode_name":{_OPCODE_NAMES[event.opcode]},'
            f'"length":{len(event.data)},"frames":{event.frames},"compressed":{_literal(event.compressed)},'
            f'"wire_length":{event.wire_length},"complete":{_literal(event.complete)},'
            f'"first_packet":{_literal(event.first_packet)},"data":"')
    return b"".join((head.encode(), hexlify(event.data) if data_hex is None else data_hex,
                     f'","text":{text}}}\n'.encode()))


class JsonLinesView:
    """Writes one line per event. ``ensure_ascii`` keeps the output 7-bit: no raw control bytes reach a terminal.

    Lines are bytes, written to the text stream's binary buffer beneath it (a stream without one, such as a
    StringIO, gets them decoded). A line-buffered stream (a terminal, or ``--json FILE`` followed live with
    ``tail -f``) is flushed after every line, as its text layer would have been.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        out.flush()  # anything written as text before: ahead of the first line written beneath it
        binary = getattr(out, "buffer", None)
        self._write: Callable[[bytes], object] = (
            binary.write if binary is not None else lambda line: out.write(line.decode("ascii")))
        self._flush: Callable[[], object] | None = binary.flush if binary is not None and out.line_buffering \
            else None
        self._last_payload: bytes | None = None
        self._last_hex = b""
        self._dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

    def handle(self, event: Event) -> None:
        kind = type(event)
        if kind is FrameEvent:
            payload = event.frame.payload  # type: ignore[attr-defined]
            self._last_payload, self._last_hex = payload, hexlify(payload)
            line = frame_line(event, self._last_hex)  # type: ignore[arg-type]
        elif kind is Message:
            # A message carried whole by one uncompressed frame is that frame's payload object: hex it once.
            data = event.data  # type: ignore[attr-defined]
            line = message_line(event, self._last_hex if data is self._last_payload else None)  # type: ignore[arg-type]
        else:
            line = (self._dumps(to_json(event)) + "\n").encode()
        self._write(line)
        if self._flush is not None:
            self._flush()

    def close(self) -> None:
        self.out.flush()
