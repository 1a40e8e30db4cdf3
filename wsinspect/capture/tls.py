"""One captured TLS connection, decrypted with its session's secrets from a key log (sans-I/O).

``TlsDecryptor.receive(direction, data)`` takes each direction's reassembled TCP bytes from the very first one (the
ClientHello) and returns what came out: the application data of that direction in order (an HTTP upgrade and
WebSocket frames, for the same decoder as plain ws://), and notes (the session's facts once the server's handshake
is read; why a direction can no longer be decrypted).

Theory of operation, per direction:

1. Records (RFC 8446 5.1, RFC 5246 6.2.1) are cut from the byte stream; one may span many TCP segments, and what is
   held is at most one record (``MAX_RECORD``).
2. Until that direction's keys are on, records are in clear: handshake messages (which may span records) are read
   for the client random (ClientHello), the server random, version and cipher suite (ServerHello) and, in TLS 1.2,
   the ALPN protocol the server chose.
3. Keys go on
   * TLS 1.2: after that direction's ChangeCipherSpec (RFC 5246 7.1); keys from the master secret (``CLIENT_RANDOM``)
     and the key block of the TLS 1.2 PRF (RFC 5246 5 and 6.3). A renegotiation's hellos come under the current
     keys; its own keys (its own client random's line) go on at the next ChangeCipherSpec of each side;
   * TLS 1.3: right after the ServerHello (not a HelloRetryRequest), with the handshake traffic secrets; after that
     direction's Finished, with its application traffic secret 0; after each KeyUpdate it sends, with the next
     secret (RFC 8446 7.2). Keys and IVs come from HKDF-Expand-Label (RFC 8446 7.1, 7.3; HKDF is RFC 5869).
     0-RTT early data (the client's records after a ClientHello that offers it) waits for the server's
     EncryptedExtensions: accepted, it is decrypted with the client's early traffic secret up to EndOfEarlyData;
     rejected, it is skipped, as the server skips it (RFC 8446 4.2.10).
4. An encrypted record is opened with its AEAD (AES-GCM: RFC 5288 for TLS 1.2; ChaCha20-Poly1305: RFC 7905 for
   TLS 1.2; both for TLS 1.3, RFC 8446 5.2-5.3). Its application data is returned; handshake messages are read as
   in step 2 (Finished and KeyUpdate drive step 3); alerts other than close_notify become notes.

Anything that goes wrong (a record that fails authentication, a TCP gap, bytes that are no TLS record) stops that
direction, and what concerns the session (a suite that is not AEAD, a version before TLS 1.2, missing secrets) stops
both, with one note saying why; nothing raises, and nothing more is held for what stopped.

What is used from where: the AEAD ciphers are ``cryptography``'s. The TLS 1.2 PRF and HKDF-Expand-Label are scapy's
(``scapy.layers.tls.crypto.prf.PRF``, ``scapy.layers.tls.crypto.hkdf.TLS13_HKDF``), imported when a session is first
keyed (they cost 0.2 s to import). Scapy's TLS session layer itself does not serve here: it dissects one packet at a
time against global settings (``conf.tls_session_enable``, ``conf.tls_nss_filename``), while records here come out
of our own TCP reassembly and may span segments; its key log parser gives up on the first bad line; and hostile
records must end in a note, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from wsinspect.capture.keylog import TLS13_EARLY_LABEL, TLS13_LABELS, SessionSecrets
from wsinspect.core.events import DIRECTIONS, Direction

__all__ = ["CIPHER_SUITES", "MAX_RECORD", "CipherSuite", "Plaintext", "TlsDecryptor", "TlsNote", "client_random_of"]

RECORD_HEADER = 5
# RFC 8446 5.2: a TLSCiphertext fragment is at most 2^14 + 256 bytes; TLS 1.2 allows 2^14 + 2048 (RFC 5246 6.2.3).
MAX_RECORD = RECORD_HEADER + 2**14 + 2048
# Handshake message bodies kept to be read (ClientHello, ServerHello, EncryptedExtensions, KeyUpdate are small;
# Finished is only counted): longer ones of these types are not believed. Certificates are skipped, not held.
MAX_HANDSHAKE_BODY = 64 * 1024

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
HEARTBEAT = 24  # RFC 6520: opened like any record (it takes a sequence number), then not read
CLIENT_HELLO, SERVER_HELLO, END_OF_EARLY_DATA, ENCRYPTED_EXTENSIONS, FINISHED, KEY_UPDATE = 1, 2, 5, 8, 20, 24
_READ_BODIES = frozenset({CLIENT_HELLO, SERVER_HELLO, ENCRYPTED_EXTENSIONS, KEY_UPDATE})
EXTENSION_SERVER_NAME, EXTENSION_ALPN, EXTENSION_EARLY_DATA, EXTENSION_SUPPORTED_VERSIONS = 0, 16, 42, 43
# 0-RTT records held until the server says whether it took them (OpenSSL's max_early_data is 16 KiB).
MAX_EARLY_DATA_HELD = 256 * 1024
TLS12, TLS13 = 0x0303, 0x0304
# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest: the real ServerHello follows.
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
AEAD_TAG = 16  # both AES-GCM and ChaCha20-Poly1305 (RFC 5116 5.1, RFC 8439 2.8)

_ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
           42: "bad_certificate", 48: "unknown_ca", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
           80: "internal_error", 90: "user_canceled", 109: "missing_extension", 112: "unrecognized_name",
           116: "certificate_required", 120: "no_application_protocol"}  # RFC 8446 6


@dataclass(frozen=True, slots=True)
class CipherSuite:
    name: str
    aead: str  # "AES-GCM" or "ChaCha20-Poly1305"
    key_bytes: int
    hash_name: str  # the PRF's (TLS 1.2) or HKDF's (TLS 1.3) hash: "sha256" or "sha384"
    tls13: bool


def _suite(name: str, hash_name: str, *, tls13: bool = False) -> CipherSuite:
    if "CHACHA20" in name:
        return CipherSuite(name, "ChaCha20-Poly1305", 32, hash_name, tls13)
    return CipherSuite(name, "AES-GCM", 16 if "AES_128" in name else 32, hash_name, tls13)


# The AEAD suites (IANA TLS Cipher Suites registry): RFC 5288 and 5289 (AES-GCM), RFC 7905 (ChaCha20-Poly1305),
# RFC 8446 B.4 (TLS 1.3). CBC, CCM and stream suites are not decrypted; a note names the suite.
CIPHER_SUITES: dict[int, CipherSuite] = {
    0x009C: _suite("TLS_RSA_WITH_AES_128_GCM_SHA256", "sha256"),
    0x009D: _suite("TLS_RSA_WITH_AES_256_GCM_SHA384", "sha384"),
    0x009E: _suite("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "sha256"),
    0x009F: _suite("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "sha384"),
    0xC02B: _suite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "sha256"),
    0xC02C: _suite("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "sha384"),
    0xC02F: _suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "sha256"),
    0xC030: _suite("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "sha384"),
    0xCCA8: _suite("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "sha256"),
    0xCCA9: _suite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "sha256"),
    0xCCAA: _suite("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "sha256"),
    0x1301: _suite("TLS_AES_128_GCM_SHA256", "sha256", tls13=True),
    0x1302: _suite("TLS_AES_256_GCM_SHA384", "sha384", tls13=True),
    0x1303: _suite("TLS_CHACHA20_POLY1305_SHA256", "sha256", tls13=True),
}


@dataclass(frozen=True, slots=True)
class Plaintext:
    """Application data of one direction, decrypted, in order."""

    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class TlsNote:
    """A fact about the TLS session. ``stopped``: this direction is not decrypted from here on."""

    direction: Direction
    message: str
    stopped: bool = False


TlsOutput = Plaintext | TlsNote


def client_random_of(first_bytes: bytes) -> bytes | None:
    """The client random of the ClientHello that starts a client's byte stream (RFC 8446 4.1.2), if it is there."""
    # record header (5), handshake type and length (4), legacy_version (2), then the random (32)
    if len(first_bytes) < 43 or first_bytes[0] != HANDSHAKE or first_bytes[5] != CLIENT_HELLO:
        return None
    return first_bytes[11:43]


class _Reader:
    """Bounds-checked reading of a handshake message body: every read past the end gives None."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes | None:
        if self.pos + size > len(self.data):
            return None
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int) -> int | None:
        raw = self.take(size)
        return int.from_bytes(raw, "big") if raw is not None else None

    def sized(self, length_bytes: int) -> bytes | None:
        length = self.number(length_bytes)
        return self.take(length) if length is not None else None


def _extensions(block: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    reader = _Reader(block)
    while True:
        kind = reader.number(2)
        body = reader.sized(2)
        if kind is None or body is None:
            return found
        found.setdefault(kind, body)


def _printable(raw: bytes) -> str:
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


class _HandshakeReader:
    """Handshake messages (type, 3-byte length, body; RFC 8446 4) out of a stream of handshake record payloads.

    Messages may span records and records may hold several. Only the bodies of ``_READ_BODIES`` types up to
    ``MAX_HANDSHAKE_BODY`` are kept; the rest (certificates, above all) are counted past.
    """

    def __init__(self) -> None:
        self._header = bytearray()
        self._type = -1
        self._remaining = 0
        self._body: bytearray | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        messages: list[tuple[int, bytes]] = []
        view = memoryview(data)
        while view:
            if self._type < 0:
                need = 4 - len(self._header)
                self._header += view[:need]
                view = view[need:]
                if len(self._header) < 4:
                    break
                self._type = self._header[0]
                self._remaining = int.from_bytes(self._header[1:4], "big")
                self._header.clear()
                keep = self._type in _READ_BODIES and self._remaining <= MAX_HANDSHAKE_BODY
                self._body = bytearray() if keep else None
            take = min(self._remaining, len(view))
            if self._body is not None:
                self._body += view[:take]
            view = view[take:]
            self._remaining -= take
            if self._remaining == 0:
                messages.append((self._type, bytes(self._body) if self._body is not None else b""))
                self._type = -1
                self._body = None
        return messages


class _RecordCipher:
    """One direction's record protection under one key: an AEAD, its fixed IV and the record sequence number."""

    def __init__(self, suite: CipherSuite, key: bytes, iv: bytes, *, tls13: bool) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        self.aead: AESGCM | ChaCha20Poly1305 = AESGCM(key) if suite.aead == "AES-GCM" else ChaCha20Poly1305(key)
        self.iv = iv
        self.tls13 = tls13
        # TLS 1.2 AES-GCM: a 4-byte salt here, the other 8 bytes of the nonce sent in each record (RFC 5288 3).
        self.explicit_nonce = 8 if not tls13 and suite.aead == "AES-GCM" else 0
        self.sequence = 0

    def open(self, header: bytes, fragment: bytes) -> bytes | None:
        """The record's plaintext, or None when it does not authenticate (wrong key, altered record)."""
        from cryptography.exceptions import InvalidTag

        sequence = self.sequence
        if len(fragment) < self.explicit_nonce + AEAD_TAG:
            return None
        if self.explicit_nonce:
            nonce = self.iv + fragment[:8]
            ciphertext = fragment[8:]
        else:
            # RFC 8446 5.3 and RFC 7905 2: the 64-bit sequence number, left-padded, XORed into the 12-byte IV.
            nonce = (int.from_bytes(self.iv, "big") ^ sequence).to_bytes(12, "big")
            ciphertext = fragment
        if self.tls13:
            additional = header  # RFC 8446 5.2: the record header is the additional data
        else:
            # RFC 5246 6.2.3.3: seq_num + type + version + the plaintext's length
            additional = sequence.to_bytes(8, "big") + header[:3] + (len(ciphertext) - AEAD_TAG).to_bytes(2, "big")
        try:
            plaintext = self.aead.decrypt(nonce, ciphertext, additional)
        except InvalidTag:
            return None  # the sequence number stays: a record the peer skipped too (rejected 0-RTT) took none
        self.sequence += 1
        return plaintext


def _hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, length: int) -> bytes:
    """RFC 8446 7.1 HKDF-Expand-Label(secret, label, "", length), with scapy's implementation."""
    from scapy.layers.tls.crypto.hkdf import TLS13_HKDF

    hkdf = TLS13_HKDF(hash_name)  # type: ignore[no-untyped-call]  # scapy is not typed
    return bytes(hkdf.expand_label(secret, label, b"", length))  # type: ignore[no-untyped-call]


def _tls13_cipher(suite: CipherSuite, secret: bytes) -> _RecordCipher:
    """RFC 8446 7.3: the traffic key and IV of a traffic secret."""
    key = _hkdf_expand_label(suite.hash_name, secret, b"key", suite.key_bytes)
    iv = _hkdf_expand_label(suite.hash_name, secret, b"iv", 12)
    return _RecordCipher(suite, key, iv, tls13=True)


@dataclass(slots=True)
class _Side:
    """What is known and held for one direction."""

    buffer: bytearray
    handshake: _HandshakeReader
    cipher: _RecordCipher | None = None
    pending_cipher: _RecordCipher | None = None  # TLS 1.2: keys that go on at this side's ChangeCipherSpec
    secret: bytes | None = None  # TLS 1.3: the current traffic secret (for KeyUpdate)
    records: int = 0
    stopped: bool = False


class TlsDecryptor:
    """Decrypts one TLS connection seen from the outside, both directions, with the key log's secrets for it."""

    def __init__(self, secrets_for: Callable[[bytes], SessionSecrets | None]) -> None:
        self._secrets_for = secrets_for  # the key log's lookup by client random
        self._secrets: SessionSecrets | None = None  # the current handshake's, once its ClientHello is read
        self._sides: dict[Direction, _Side] = {d: _Side(bytearray(), _HandshakeReader()) for d in DIRECTIONS}
        self.client_random: bytes | None = None
        self.server_name: str | None = None
        self.version: int | None = None
        self.suite: CipherSuite | None = None
        self.alpn: str | None = None
        # TLS 1.3 0-RTT early data (RFC 8446 2.3, 4.2.10): offered in the ClientHello; the server's
        # EncryptedExtensions say whether it was accepted (then decrypted) or rejected (then skipped, as the server
        # skips it); until then the client's encrypted records wait in _early_records.
        self._early_data: Literal["not offered", "offered", "accepted", "rejected"] = "not offered"
        self._early_records: list[tuple[bytes, bytes]] = []
        self._early_bytes = 0
        self._early_skipped = 0
        self._out: list[TlsOutput] = []

    def receive(self, direction: Direction, data: bytes) -> list[TlsOutput]:
        side = self._sides[direction]
        if side.stopped:
            return []
        out = self._out = []
        side.buffer += data
        buffer = side.buffer
        start = 0
        while not side.stopped and len(buffer) - start >= RECORD_HEADER:
            kind, length = buffer[start], int.from_bytes(buffer[start + 3 : start + 5], "big")
            if not CHANGE_CIPHER_SPEC <= kind <= HEARTBEAT or buffer[start + 1] != 3 or \
                    RECORD_HEADER + length > MAX_RECORD:
                self._stop(direction, f"after record {side.records} the bytes are no TLS record header "
                                      f"({bytes(buffer[start : start + 5]).hex(' ')})")
                break
            end = start + RECORD_HEADER + length
            if end > len(buffer):
                break
            side.records += 1
            self._record(direction, side, bytes(buffer[start : start + RECORD_HEADER]),
                         bytes(buffer[start + RECORD_HEADER : end]))
            start = end
        if side.stopped:
            buffer.clear()
        else:
            del buffer[:start]
        return out

    def gap(self, direction: Direction, missing: int) -> list[TlsOutput]:
        """Bytes of this direction were never captured: the record boundaries and the sequence numbers are lost."""
        out = self._out = []
        if not self._sides[direction].stopped:
            self._stop(direction, f"{missing} bytes of this direction were not captured: TLS records cannot be "
                                  "found again, nor their sequence numbers")
        return out

    # -- records -----------------------------------------------------------------------------------------------

    def _record(self, direction: Direction, side: _Side, header: bytes, fragment: bytes) -> None:
        kind = header[0]
        if kind == CHANGE_CIPHER_SPEC and self.version != TLS12:
            # RFC 8446 5: TLS 1.3's is only for middleboxes (D.4), never protected, changes nothing; one before the
            # ServerHello is TLS 1.3's too (after a ClientHello with early data), as TLS 1.2's comes after it.
            return
        if kind == APPLICATION_DATA and direction == "c2s" and self._early_data == "offered":
            self._early_bytes += len(fragment)
            if self._early_bytes > MAX_EARLY_DATA_HELD:
                self._stop(direction, f"more than {MAX_EARLY_DATA_HELD:,} bytes of 0-RTT early data before the "
                                      "server said whether it takes it")
                return
            self._early_records.append((header, fragment))
            return
        cipher = side.cipher
        if cipher is not None:
            opened = cipher.open(header, fragment)
            if opened is None and direction == "c2s" and self._early_data == "rejected":
                self._early_skipped += 1  # RFC 8446 4.2.10: rejected early data, skipped by the server too
                return
            if opened is not None and direction == "c2s" and self._early_data == "rejected":
                self._early_data = "not offered"
                self._out.append(TlsNote(direction, f"the server rejected the client's 0-RTT early data (RFC 8446 "
                                                    f"4.2.10): its {self._early_skipped} record(s) were skipped, as "
                                                    "the server skipped them"))
            if opened is None:
                self._stop(direction, f"record {side.records} ({len(fragment)} bytes) failed authentication: "
                                      "the key log's secret is not this session's, or the record was altered",
                           rfc="RFC 8446 5.2" if cipher.tls13 else "RFC 5246 6.2.3.3")
                return
            if cipher.tls13:
                # RFC 8446 5.4: the real content type is the last non-zero byte; zeros after it are padding.
                content = opened.rstrip(b"\x00")
                if not content:
                    self._stop(direction, f"record {side.records} decrypts to padding only (no content type)")
                    return
                kind, fragment = content[-1], content[:-1]
            else:
                fragment = opened
        elif kind == APPLICATION_DATA:
            self._stop(direction, f"record {side.records} is encrypted but no keys are on yet (0-RTT early data, "
                                  "or a handshake that was not captured)")
            return
        if kind == CHANGE_CIPHER_SPEC:
            # RFC 5246 7.1: what this side sends next is protected with the keys just negotiated (after a
            # renegotiation, this record itself was protected with the previous ones).
            if side.pending_cipher is None:
                self._stop(direction, "ChangeCipherSpec, and no keys to change to (no ServerHello was read, or the "
                                      "key log has no CLIENT_RANDOM line for this handshake)")
                return
            side.cipher, side.pending_cipher = side.pending_cipher, None
        elif kind == APPLICATION_DATA:
            if fragment:
                self._out.append(Plaintext(direction, fragment))
        elif kind == HANDSHAKE:
            for message_type, body in side.handshake.feed(fragment):
                self._handshake(direction, side, message_type, body, encrypted=cipher is not None)
                if side.stopped:
                    return
        elif kind == ALERT and len(fragment) >= 2 and fragment[1] != 0:  # close_notify (0) is the normal end
            level = "fatal" if fragment[0] == 2 else "warning"
            name = _ALERTS.get(fragment[1], f"alert {fragment[1]}")
            self._out.append(TlsNote(direction, f"TLS alert ({level}): {name}"))

    # -- handshake messages ------------------------------------------------------------------------------------

    def _handshake(self, direction: Direction, side: _Side, message_type: int, body: bytes, *,
                   encrypted: bool) -> None:
        # In clear for the first handshake; under the current keys for a TLS 1.2 renegotiation (RFC 5246 7.4.1.2).
        hello = not encrypted or self.version == TLS12
        if message_type == CLIENT_HELLO and hello and direction == "c2s":
            self._client_hello(body)
        elif message_type == SERVER_HELLO and hello and direction == "s2c":
            self._server_hello(body, renegotiation=encrypted)
        elif message_type == ENCRYPTED_EXTENSIONS and direction == "s2c" and self.version == TLS13:
            extensions = _extensions(_Reader(body).sized(2) or b"")
            self.alpn = _alpn(extensions)
            self._facts()
            if self._early_data == "offered":
                self._resolve_early_data(accepted=EXTENSION_EARLY_DATA in extensions)
        elif message_type == END_OF_EARLY_DATA and direction == "c2s" and self._early_data == "accepted" and \
                self.suite is not None and self._secrets is not None:
            # RFC 8446 4.5: the client's early data ends; its next records are under its handshake secret.
            self._early_data = "not offered"
            side.secret = self._secrets.tls13["CLIENT_HANDSHAKE_TRAFFIC_SECRET"]
            side.cipher = _tls13_cipher(self.suite, side.secret)
        elif message_type == FINISHED and encrypted and self.version == TLS13 and self.suite is not None and \
                self._secrets is not None:
            # RFC 8446 7.1: after its Finished, a side protects what it sends with application traffic secret 0.
            # Handshake messages never span a key change (RFC 8446 5.1), so the next record uses it.
            label = "CLIENT_TRAFFIC_SECRET_0" if direction == "c2s" else "SERVER_TRAFFIC_SECRET_0"
            side.secret = self._secrets.tls13[label]
            side.cipher = _tls13_cipher(self.suite, side.secret)
        elif message_type == KEY_UPDATE and encrypted and self.version == TLS13 and self.suite is not None and \
                side.secret is not None:
            # RFC 8446 7.2: the sender's next secret is HKDF-Expand-Label(secret, "traffic upd", "", Hash.length).
            size = 48 if self.suite.hash_name == "sha384" else 32
            side.secret = _hkdf_expand_label(self.suite.hash_name, side.secret, b"traffic upd", size)
            side.cipher = _tls13_cipher(self.suite, side.secret)
            self._out.append(TlsNote(direction, "KeyUpdate: this side's keys changed (RFC 8446 4.6.3); the next "
                                                "secret was derived and decryption goes on"))

    def _client_hello(self, body: bytes) -> None:
        reader = _Reader(body)
        reader.take(2)  # legacy_version
        self.client_random = reader.take(32)
        # Each handshake has its own secrets in the key log, under its own client random (a renegotiation's too;
        # after a HelloRetryRequest the second ClientHello repeats the first one's random, RFC 8446 4.1.2).
        self._secrets = self._secrets_for(self.client_random) if self.client_random is not None else None
        if reader.sized(1) is None or reader.sized(2) is None or reader.sized(1) is None:
            return
        extensions = _extensions(reader.sized(2) or b"")
        if EXTENSION_EARLY_DATA in extensions and self._early_data == "not offered":
            self._early_data = "offered"
        server_name = extensions.get(EXTENSION_SERVER_NAME, b"")
        name_reader = _Reader(server_name)
        name_reader.take(2)  # server_name_list length
        if name_reader.number(1) == 0:  # host_name (RFC 6066 3)
            host = name_reader.sized(2)
            if host is not None:
                self.server_name = _printable(host)

    def _server_hello(self, body: bytes, *, renegotiation: bool) -> None:
        reader = _Reader(body)
        legacy_version = reader.number(2)
        server_random = reader.take(32)
        session_id = reader.sized(1)
        suite_number = reader.number(2)
        reader.take(1)  # legacy_compression_method
        if legacy_version is None or server_random is None or session_id is None or suite_number is None:
            self._stop_both("the ServerHello is cut short")
            return
        if server_random == HELLO_RETRY_RANDOM:
            # A HelloRetryRequest (RFC 8446 4.1.4): a second ClientHello, then the real ServerHello, follow. Only
            # TLS 1.3 has one, so the client's ChangeCipherSpec before its second ClientHello changes nothing (D.4).
            self.version = TLS13
            return
        extensions = _extensions(reader.sized(2) or b"")
        chosen = extensions.get(EXTENSION_SUPPORTED_VERSIONS, b"")
        version = int.from_bytes(chosen, "big") if len(chosen) == 2 else legacy_version
        self.version = version
        suite = CIPHER_SUITES.get(suite_number)
        if version not in (TLS12, TLS13):
            self._stop_both(f"the server chose {_version_name(version)}: only TLS 1.2 and TLS 1.3 are decrypted")
            return
        if suite is None or suite.tls13 != (version == TLS13):
            self._stop_both(f"the server chose cipher suite 0x{suite_number:04x}, which wsinspect does not decrypt "
                            "(AEAD suites only: AES-GCM and ChaCha20-Poly1305)")
            return
        self.suite = suite
        if version == TLS12:
            # A TLS 1.2 server knows no early data: what a client sent as such was never read, by anyone.
            self._early_data, self._early_records = "not offered", []
            self.alpn = _alpn(extensions)
            self._start_tls12(suite, server_random, renegotiation=renegotiation)
        else:
            self._start_tls13(suite)

    def _start_tls12(self, suite: CipherSuite, server_random: bytes, *, renegotiation: bool) -> None:
        """RFC 5246 6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random), cut into
        the client and server write keys and IVs (AEAD suites have no MAC keys: RFC 5288 3, RFC 7905 2). They go
        on at each side's ChangeCipherSpec."""
        from scapy.layers.tls.crypto.prf import PRF

        master_secret = self._secrets.master_secret if self._secrets is not None else None
        if master_secret is None or self.client_random is None:
            if not renegotiation:
                self._stop_both("TLS 1.2 was negotiated and the key log has no CLIENT_RANDOM line (master secret) "
                                "for this session")
            # else: the current keys stay on until each side's ChangeCipherSpec, which stops it with a note
            return
        iv_bytes = 12 if suite.aead == "ChaCha20-Poly1305" else 4
        prf = PRF(suite.hash_name, TLS12)  # type: ignore[no-untyped-call]  # scapy is not typed
        block = bytes(prf.derive_key_block(master_secret, server_random,  # type: ignore[no-untyped-call]
                                           self.client_random, 2 * (suite.key_bytes + iv_bytes)))
        key_end = 2 * suite.key_bytes
        client_key, server_key = block[: suite.key_bytes], block[suite.key_bytes : key_end]
        client_iv, server_iv = block[key_end : key_end + iv_bytes], block[key_end + iv_bytes :]
        self._sides["c2s"].pending_cipher = _RecordCipher(suite, client_key, client_iv, tls13=False)
        self._sides["s2c"].pending_cipher = _RecordCipher(suite, server_key, server_iv, tls13=False)
        if renegotiation:
            self._out.append(TlsNote("s2c", f"TLS 1.2 renegotiation (RFC 5246 7.4.1): {self.describe()}; its keys "
                                            "come from the key log too"))
        else:
            self._facts()

    def _start_tls13(self, suite: CipherSuite) -> None:
        """RFC 8446 7.1: after the ServerHello, each side protects its handshake with its handshake traffic
        secret."""
        secrets = self._secrets
        if secrets is None or not secrets.has_tls13:
            missing = ", ".join(label for label in TLS13_LABELS if secrets is None or label not in secrets.tls13)
            self._stop_both(f"TLS 1.3 was negotiated and the key log lacks {missing} for this session")
            return
        hash_bytes = 48 if suite.hash_name == "sha384" else 32
        if any(len(secrets.tls13[label]) != hash_bytes for label in TLS13_LABELS):
            self._stop_both(f"the key log's TLS 1.3 secrets are not {hash_bytes} bytes, as {suite.name} needs")
            return
        handshake_secrets: tuple[tuple[Direction, str], ...] = (("c2s", "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
                                                                 ("s2c", "SERVER_HANDSHAKE_TRAFFIC_SECRET"))
        for direction, label in handshake_secrets:
            side = self._sides[direction]
            side.secret = secrets.tls13[label]
            side.cipher = _tls13_cipher(suite, side.secret)

    def _resolve_early_data(self, *, accepted: bool) -> None:
        """The server's EncryptedExtensions said whether it took the 0-RTT early data (RFC 8446 4.2.10): decrypt the
        client's held records with the early traffic secret, or skip the ones that were early data."""
        side = self._sides["c2s"]
        if accepted:
            secret = self._secrets.tls13.get(TLS13_EARLY_LABEL) if self._secrets is not None else None
            if secret is None or self.suite is None:
                self._stop("c2s", f"the server accepted 0-RTT early data and the key log has no {TLS13_EARLY_LABEL} "
                                  "for this session")
                return
            # Early data is under the PSK's suite, which a server that accepts it must have chosen (RFC 8446 4.2.10).
            side.cipher = _tls13_cipher(self.suite, secret)
            self._early_data = "accepted"
            self._out.append(TlsNote("c2s", "the server accepted the client's 0-RTT early data (RFC 8446 4.2.10): "
                                            f"decrypted with {TLS13_EARLY_LABEL}"))
        else:
            self._early_data = "rejected"
        held, self._early_records = self._early_records, []
        for header, fragment in held:
            if side.stopped:
                break
            self._record("c2s", side, header, fragment)

    # -- notes -------------------------------------------------------------------------------------------------

    def describe(self) -> str:
        """The session in one line: version, cipher suite, server name, ALPN."""
        parts = [_version_name(self.version) if self.version is not None else "TLS (no ServerHello read)"]
        if self.suite is not None:
            parts.append(self.suite.name)
        if self.server_name is not None:
            parts.append(f"server name (SNI) {self.server_name}")
        parts.append(f"ALPN {self.alpn}" if self.alpn is not None else "no ALPN")
        return ", ".join(parts)

    def _facts(self) -> None:
        self._out.append(TlsNote("s2c", f"{self.describe()}: decrypted with the key log's secrets"))

    def _stop(self, direction: Direction, why: str, *, rfc: str | None = None) -> None:
        side = self._sides[direction]
        if side.stopped:
            return
        side.stopped = True
        side.cipher = side.pending_cipher = None
        cite = f" ({rfc})" if rfc else ""
        self._out.append(TlsNote(direction, f"TLS: {why}{cite}; this direction is not decrypted from here on",
                                 stopped=True))

    def _stop_both(self, why: str) -> None:
        """Something about the whole session (its version, suite or secrets): one note, both directions stop."""
        for side in self._sides.values():
            side.stopped = True
            side.cipher = side.pending_cipher = None
        self._out.append(TlsNote("s2c", f"TLS: {why}; this session is not decrypted", stopped=True))


def _alpn(extensions: dict[int, bytes]) -> str | None:
    """The one protocol a server's ALPN extension names (RFC 7301 3.1)."""
    reader = _Reader(extensions.get(EXTENSION_ALPN, b""))
    reader.take(2)
    name = reader.sized(1)
    return _printable(name) if name else None


def _version_name(version: int) -> str:
    names = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", TLS12: "TLS 1.2", TLS13: "TLS 1.3"}
    return names.get(version, f"version 0x{version:04x}")
