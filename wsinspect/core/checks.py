"""Every rule wsinspect checks, in one table.

Each check names the RFC section it comes from, says the rule in plain words, and carries what a conforming peer
does when the rule is broken: the close code it fails the connection with (RFC 6455 section 7.4.1), or the HTTP
status a server answers a bad opening handshake with (section 4.2.1 says "such as 400 Bad Request"; section 4.4
asks for 426 plus the versions it speaks). The validator, the frame checks, the server's error pages and the docs
all read this table, so a rule is worded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"  # a MUST broken: a conforming peer fails the connection or refuses the handshake
    WARNING = "warning"  # a SHOULD broken, or legal but likely to bite
    INFO = "info"  # worth knowing, nothing wrong


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    rfc: str  # "RFC 6455 5.2", "RFC 7692 7.2.2": where the rule is written
    rule: str  # the rule, in plain words
    severity: Severity = Severity.ERROR
    close_code: int | None = None  # what a conforming endpoint fails the connection with
    http_status: int | None = None  # what a conforming server answers the handshake with


def _table(*checks: Check) -> dict[str, Check]:
    return {check.id: check for check in checks}


CHECKS: dict[str, Check] = _table(
    # --- Opening handshake: the client's request (RFC 6455 4.1 and 4.2.1) ---
    Check("http.malformed", "RFC 6455 4.2.1",
          "The opening handshake must be a well-formed HTTP/1.1 request or response: a start line, then "
          "'Name: value' header lines, each ending in CRLF, then an empty line.", http_status=400),
    Check("http.bare-lf", "RFC 6455 4.1",
          "HTTP lines end with CRLF; this one ends with a bare LF. Many servers accept it, strict ones do not.",
          Severity.WARNING),
    Check("http.next-request-not-read", "RFC 9112 6.3",
          "After an answer that is not a 101, the same HTTP/1.1 connection may carry another request (a retry, an "
          "upgrade after a page): it is looked for once the answer's body has passed. When the answer's body has no "
          "length but the end of the connection, or its headers are not understood, the client's further bytes are "
          "not read, and this notice says why.", Severity.WARNING),
    Check("http.header-too-large", "RFC 6455 10.4",
          "The handshake's header block is larger than this endpoint's limit; implementations impose limits "
          "to protect themselves.", http_status=431),
    Check("request.method", "RFC 6455 4.2.1",
          "The opening handshake must be an HTTP GET request (item 1).", http_status=400),
    Check("request.version", "RFC 6455 4.2.1",
          "The opening handshake must be HTTP/1.1 or higher (item 1).", http_status=400),
    Check("request.host", "RFC 6455 4.2.1",
          "The request must have a Host header field with the server's authority (item 2).", http_status=400),
    Check("request.upgrade", "RFC 6455 4.2.1",
          "The request must have an Upgrade header field containing 'websocket', compared "
          "case-insensitively (item 3).", http_status=400),
    Check("request.connection", "RFC 6455 4.2.1",
          "The request must have a Connection header field that includes the token 'Upgrade', compared "
          "case-insensitively (item 4).", http_status=400),
    Check("request.key", "RFC 6455 4.2.1",
          "The request must have a Sec-WebSocket-Key header field whose value is base64 that decodes to "
          "exactly 16 bytes (item 5).", http_status=400),
    Check("request.key-repeated", "RFC 6455 11.3.1",
          "The Sec-WebSocket-Key header field must not appear more than once in a request.", http_status=400),
    Check("request.websocket-version", "RFC 6455 4.4",
          "The request must have Sec-WebSocket-Version: 13 (section 4.2.1 item 6). A server that does not "
          "speak the requested version answers 426 Upgrade Required with the versions it does speak in "
          "a Sec-WebSocket-Version header field.", http_status=426),
    Check("request.upgrade-stripped", "RFC 9110 7.6.1",
          "Upgrade and Connection are hop-by-hop header fields: a proxy removes them unless it is configured to "
          "pass the upgrade on, so the server receives a plain HTTP request and cannot switch protocols (it "
          "answers 426 Upgrade Required, 400, or serves a page with 200). The classic reverse-proxy mistake: "
          "forward Upgrade and Connection to the WebSocket backend.", Severity.WARNING, http_status=426),
    Check("request.origin", "RFC 6455 10.2",
          "This server only accepts the Origins it was told to; a server that refuses an Origin answers "
          "403 Forbidden (section 4.2.2).", http_status=403),
    Check("request.origin-missing", "RFC 6455 4.2.1",
          "No Origin header field: browsers always send one (item 7), so this is not a browser.",
          Severity.INFO),
    Check("request.protocol-syntax", "RFC 6455 4.1",
          "Sec-WebSocket-Protocol must be a comma-separated list of unique, non-empty tokens (item 10).",
          http_status=400),
    # --- Opening handshake: the server's response (RFC 6455 4.1, checked by the client) ---
    Check("response.status", "RFC 6455 4.1",
          "Only status 101 Switching Protocols opens a WebSocket; any other status is handled per HTTP and "
          "the connection is not upgraded (item 1).", Severity.WARNING),
    Check("response.upgrade", "RFC 6455 4.1",
          "The response must have an Upgrade header field equal to 'websocket', compared case-insensitively, "
          "or the client must fail the connection (item 2)."),
    Check("response.connection", "RFC 6455 4.1",
          "The response must have a Connection header field with the token 'Upgrade', compared "
          "case-insensitively, or the client must fail the connection (item 3)."),
    Check("response.accept", "RFC 6455 4.1",
          "Sec-WebSocket-Accept must be base64(SHA-1(Sec-WebSocket-Key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'))"
          ", or the client must fail the connection (item 4)."),
    Check("response.extension-not-offered", "RFC 6455 4.1",
          "The server may only accept extensions the client offered (item 5)."),
    Check("response.protocol-not-offered", "RFC 6455 4.1",
          "The server may only pick a subprotocol the client offered, and only one (item 6)."),
    Check("response.deflate-params", "RFC 7692 7.1",
          "permessage-deflate parameters in the response must be known, unrepeated and valid: "
          "server_max_window_bits 8-15, client_max_window_bits only if the client offered it."),
    Check("response.version-list", "RFC 6455 4.4",
          "A server that does not support the requested version must answer with Sec-WebSocket-Version header "
          "field(s) listing every version it is willing to use, so the client can retry with one of them."),
    # --- Framing (RFC 6455 5) ---
    Check("frame.rsv", "RFC 6455 5.2",
          "RSV1, RSV2 and RSV3 must be 0 unless a negotiated extension defines them; otherwise the receiver "
          "must fail the connection.", close_code=1002),
    Check("frame.rsv1-continuation", "RFC 7692 6.1",
          "permessage-deflate sets RSV1 on the first frame of a compressed message only, never on "
          "continuation or control frames.", close_code=1002),
    Check("frame.opcode-reserved", "RFC 6455 5.2",
          "Opcodes 0x3-0x7 and 0xB-0xF are reserved; a receiver of an unknown opcode must fail the "
          "connection.", close_code=1002),
    Check("frame.length-not-minimal", "RFC 6455 5.2",
          "The minimal number of bytes must be used to encode the payload length (126-65535 in 16 bits, "
          "more in 64 bits).", close_code=1002),
    Check("frame.length-msb", "RFC 6455 5.2",
          "With the 64-bit length form, the most significant bit must be 0.", close_code=1002),
    Check("frame.client-unmasked", "RFC 6455 5.1",
          "A client must mask every frame it sends; a server must close the connection on an unmasked "
          "frame (status 1002).", close_code=1002),
    Check("frame.server-masked", "RFC 6455 5.1",
          "A server must not mask the frames it sends; a client must close the connection on a masked "
          "frame (status 1002).", close_code=1002),
    Check("frame.too-big", "RFC 6455 10.4",
          "The frame is larger than this endpoint's limit; a receiver closes with 1009 (message too big).",
          close_code=1009),
    Check("control.fragmented", "RFC 6455 5.5",
          "Control frames (close, ping, pong) must not be fragmented: FIN must be 1.", close_code=1002),
    Check("control.too-long", "RFC 6455 5.5",
          "Control frames must have a payload length of 125 bytes or less.", close_code=1002),
    Check("fragment.unexpected-continuation", "RFC 6455 5.4",
          "A continuation frame (opcode 0x0) is only valid after a text or binary frame with FIN=0.",
          close_code=1002),
    Check("fragment.interleaved", "RFC 6455 5.4",
          "The fragments of one message must not be interleaved with another message: a new text or binary "
          "frame arrived before the previous message's final fragment.", close_code=1002),
    Check("message.invalid-utf8", "RFC 6455 8.1",
          "A text message must be valid UTF-8; a receiver of invalid UTF-8 must fail the connection "
          "(status 1007).", close_code=1007),
    Check("message.too-big", "RFC 6455 10.4",
          "The message is larger than this endpoint's limit; a receiver closes with 1009 "
          "(message too big).", close_code=1009),
    Check("message.inflate-failed", "RFC 7692 6.2",
          "A compressed message must inflate cleanly; corrupt DEFLATE data fails the connection.",
          close_code=1007),
    Check("message.inflate-context-lost", "RFC 7692 7.2.2",
          "With context takeover (RFC 7692 7.1.1; example in 7.2.3.2) a compressed message may refer back into "
          "the earlier messages of its direction. The capture does not hold them (it started mid-connection, or "
          "bytes were lost) and this message refers to them, so it cannot be decompressed; messages that refer "
          "only to what was seen are.", Severity.WARNING),
    Check("close.payload-one-byte", "RFC 6455 5.5.1",
          "A close frame's body, if any, starts with a 2-byte status code: 1 byte is invalid.",
          close_code=1002),
    Check("close.code-invalid", "RFC 6455 7.4",
          "A close frame may only carry a defined code (1000-1003, 1007-1011, plus the IANA-registered "
          "1012-1014) or one from 3000-4999; 1004, 1005, 1006, 1015 and the rest must not be sent.",
          close_code=1002),
    Check("close.reason-invalid-utf8", "RFC 6455 5.5.1",
          "The close reason must be valid UTF-8.", close_code=1007),
    Check("close.data-after-close", "RFC 6455 5.5.1",
          "After sending a close frame an endpoint must not send any more data frames.", close_code=1002),
    # --- WebSocket over HTTP/2 (RFC 8441), and the HTTP/2 connection it runs in (RFC 9113, RFC 7541) ---
    Check("h2.connection", "RFC 8441 4",
          "An HTTP/2 connection (it starts with the connection preface, RFC 9113 3.4): a WebSocket runs on a stream "
          "opened with an extended CONNECT, whose DATA frames carry its bytes; the message gives HTTP/2's own "
          "facts (the settings, the stream, END_STREAM, RST_STREAM, GOAWAY).", Severity.INFO),
    Check("h2.connect-not-enabled", "RFC 8441 4",
          "A client must not send the :protocol pseudo-header field unless the server's SETTINGS set "
          "SETTINGS_ENABLE_CONNECT_PROTOCOL to 1 (RFC 8441 3).", http_status=400),
    Check("h2.extended-connect", "RFC 8441 4",
          "An extended CONNECT carries :method CONNECT and :protocol, and also the :scheme, :path and :authority "
          "of the target URI.", http_status=400),
    Check("h2.frame", "RFC 9113 4.1",
          "An HTTP/2 frame broke the framing rules (its size, padding, stream, or a header block interrupted); a "
          "conforming peer treats it as a connection error. This direction is not decoded further, since its "
          "frame boundaries can no longer be trusted."),
    Check("h2.hpack", "RFC 9113 4.3",
          "A header block could not be decompressed (RFC 7541: a bad index, a table size update above the limit, "
          "a bad literal or Huffman code): a COMPRESSION_ERROR. The dynamic table is unknown from there on, so "
          "later header blocks of that direction are not decoded; DATA still is."),
    Check("h2.header-too-large", "RFC 9113 10.5.1",
          "A header block is larger than this decoder's limit (--max-header); it is not decoded, nor are the "
          "header blocks of that direction after it (they may refer to its dynamic table entries).",
          Severity.WARNING),
    Check("h2.websocket-limit", "RFC 8441 5",
          "One WebSocket at a time is decoded per HTTP/2 connection (a limit of wsinspect: one conversation per "
          "TCP stream); an extended CONNECT while it is still open is reported, not decoded.",
          Severity.INFO),
    # --- What the capture itself lacks (not a protocol violation; reported so nothing is mis-decoded) ---
    Check("capture.gap", "RFC 6455 5.2",
          "Bytes of this direction were never captured; decoding resumes at the next frame boundary it can "
          "trust.", Severity.WARNING),
    Check("capture.truncated-frame", "RFC 6455 5.2",
          "The stream ended inside a frame: its remaining bytes were never seen.", Severity.WARNING),
    Check("capture.unfinished-message", "RFC 6455 5.4",
          "The stream ended while a fragmented message was still open (no final fragment).", Severity.WARNING),
    Check("capture.resync", "RFC 6455 5.2",
          "The decoder did not know where a frame starts (after a gap, or a capture that starts "
          "mid-connection) and skipped bytes until headers chained consistently.", Severity.INFO),
    Check("capture.tls", "RFC 6455 11.1.2",
          "This stream is TLS (wss:// or another TLS protocol); the session keys are needed to see inside. "
          "What the client's first message (the ClientHello) says in clear is shown; nothing inside is decoded.",
          Severity.INFO),
    Check("capture.tls-decrypted", "RFC 6455 11.1.2",
          "This stream is TLS (wss://) and the key log (--keylog, or the capture's Decryption Secrets Block) holds "
          "its session's secrets: its records are decrypted and the WebSocket inside is decoded as usual.",
          Severity.INFO),
    Check("capture.tls-undecryptable", "RFC 8446 5.2",
          "From here on this direction of a decrypted TLS stream cannot be decrypted: a record failed "
          "authentication (a wrong secret, or altered bytes), bytes were not captured, or the session uses what "
          "wsinspect does not decrypt; the message says which.", Severity.WARNING),
    Check("capture.one-sided", "RFC 9293 3.4",
          "Only one direction of this connection was captured (a capture filter, or asymmetric routing); the "
          "side that was captured is decoded, the other is missing.", Severity.WARNING),
    Check("capture.retransmission-conflict", "RFC 9293 3.4",
          "The capture holds two copies of the same TCP sequence range with different bytes; one copy was "
          "used, and the message says which. Not something either peer is blamed for.", Severity.WARNING),
    Check("capture.flow-let-go", "RFC 6455 10.4",
          "The conversation was still open but idle, or more conversations were open than the limit allows: "
          "it was summarised and let go to keep memory bounded; later packets of it start a new one.",
          Severity.INFO),
    Check("capture.memory-budget", "RFC 6455 10.4",
          "Unfinished messages and frames held across all conversations reached the memory budget: the one that "
          "needed more is cut short (its bytes are no longer kept); decoding of the frames goes on.",
          Severity.WARNING),
)
