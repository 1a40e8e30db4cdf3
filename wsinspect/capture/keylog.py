"""TLS key logs: the NSS key log format (SSLKEYLOGFILE) that browsers, curl and OpenSSL write.

One secret a line, ``LABEL <client random, 64 hex digits> <secret, hex>``; ``#`` starts a comment. The labels that
decrypt a session are ``CLIENT_RANDOM`` (the TLS 1.2 master secret, 48 bytes) and, for TLS 1.3, the handshake
and first application traffic secrets of each side, and ``CLIENT_EARLY_TRAFFIC_SECRET`` for 0-RTT early data; the
others (``EXPORTER_SECRET``, ``EARLY_EXPORTER_SECRET``, OpenSSL's ``*_TRAFFIC_SECRET_N``) are read and not used.
The same text is what a pcapng Decryption Secrets Block of type ``TLSK`` carries, so both sources go through
``KeyLog.add_text``.

A key log is as untrusted as the capture: a line that does not parse is reported with its line number and the rest
is read; what is held is bounded (``MAX_KEYLOG_BYTES`` of text, ``MAX_PROBLEMS`` problems kept).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["MAX_KEYLOG_BYTES", "KeyLog", "KeyLogError", "SessionSecrets"]

# A key log line is about 180 bytes, so 64 MiB is some 350,000 secrets: far more than one capture holds sessions.
MAX_KEYLOG_BYTES = 64 * 1024 * 1024
MAX_PROBLEMS = 20  # problems kept word for word; more are counted

CLIENT_RANDOM_BYTES = 32  # RFC 8446 4.1.2, RFC 5246 7.4.1.2
MASTER_SECRET_BYTES = 48  # RFC 5246 8.1
# TLS 1.3 secrets are as long as the suite's hash (RFC 8446 7.1): 32 (SHA-256) or 48 (SHA-384).
TLS13_SECRET_BYTES = (32, 48)

TLS12_LABEL = "CLIENT_RANDOM"
TLS13_LABELS = ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0")
# OpenSSL also logs each side's secret after a KeyUpdate as CLIENT_/SERVER_TRAFFIC_SECRET_N (the N literally); the
# decryptor derives those itself (RFC 8446 7.2), so they are not needed.
# 0-RTT early data (RFC 8446 2.3) is protected with this one; a session without early data has none.
TLS13_EARLY_LABEL = "CLIENT_EARLY_TRAFFIC_SECRET"
IGNORED_LABELS = frozenset({"EXPORTER_SECRET", "EARLY_EXPORTER_SECRET",
                            "CLIENT_TRAFFIC_SECRET_N", "SERVER_TRAFFIC_SECRET_N"})


class KeyLogError(Exception):
    """The key log cannot be read at all (missing, unreadable); one line meant for a person."""


@dataclass(slots=True)
class SessionSecrets:
    """What a key log holds for one client random."""

    master_secret: bytes | None = None  # TLS 1.2
    tls13: dict[str, bytes] = field(default_factory=dict)  # label -> secret

    @property
    def has_tls13(self) -> bool:
        return all(label in self.tls13 for label in TLS13_LABELS)


class KeyLog:
    """Secrets by client random, from key log files and pcapng Decryption Secrets Blocks."""

    def __init__(self, max_bytes: int = MAX_KEYLOG_BYTES) -> None:
        self._sessions: dict[bytes, SessionSecrets] = {}
        self.problems: list[str] = []  # the first MAX_PROBLEMS, as "source line N: what is wrong"
        self.problem_count = 0
        self.max_bytes = max_bytes  # of key log text taken in, from files and capture blocks together
        self._bytes_read = 0

    @classmethod
    def read(cls, path: str | os.PathLike[str], max_bytes: int = MAX_KEYLOG_BYTES) -> KeyLog:
        """Read a key log file (raises KeyLogError when it cannot be opened).

        A key log is appended to for as long as its variable is set, so one can hold months of sessions; the
        newest, those of a capture just made, are at its end. A file longer than ``max_bytes`` is read from that
        far before its end, and its skipped lines are counted so that line numbers stay true.
        """
        keylog = cls(max_bytes)
        first_line = 1
        before = b"\n"  # the byte before the part read: a newline when that part begins a line
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > max_bytes:
                    keylog._problem(f"the key log is {size:,} bytes: only its last {max_bytes:,} (the newest "
                                    "sessions) are read")
                    while file.tell() < size - max_bytes:
                        chunk = file.read(min(2**20, size - max_bytes - file.tell()))
                        if not chunk:
                            break
                        first_line += chunk.count(b"\n")
                        before = chunk[-1:]
                text = file.read(max_bytes)
        except OSError as error:
            raise KeyLogError(f"cannot read the key log {os.fspath(path)}: {error.strerror or error}") from None
        if before != b"\n":  # the part read begins inside a line: the rest of that line is not read either
            cut = text.find(b"\n")
            text = text[cut + 1 :] if cut >= 0 else b""
            first_line += 1
        keylog.add_text(text, source="", first_line=first_line)
        return keylog

    def __len__(self) -> int:
        return len(self._sessions)

    def secrets_for(self, client_random: bytes) -> SessionSecrets | None:
        return self._sessions.get(client_random)

    def add_text(self, text: bytes, *, source: str, first_line: int = 1) -> None:
        """Add the secrets in a key log's text; ``source`` names where it came from in problems ("" for the file)."""
        room = self.max_bytes - self._bytes_read
        if len(text) > room:
            self._problem(f"{source}more than {self.max_bytes:,} bytes of key log: the rest is not read")
            text = text[:room]
            cut = text.rfind(b"\n")
            text = text[: cut + 1] if cut >= 0 else b""
        self._bytes_read += len(text)
        for number, line in enumerate(text.splitlines(), start=first_line):
            self._add_line(line, f"{source}line {number}")

    def _add_line(self, raw: bytes, where: str) -> None:
        line = raw.strip()
        if not line or line.startswith(b"#"):
            return
        parts = line.split()
        if len(parts) != 3:
            self._problem(f"{where}: not 'LABEL CLIENT_RANDOM SECRET' (found {len(parts)} fields)")
            return
        try:
            label = parts[0].decode("ascii")
            client_random = bytes.fromhex(parts[1].decode("ascii"))
            secret = bytes.fromhex(parts[2].decode("ascii"))
        except ValueError:
            self._problem(f"{where}: the client random or the secret is not hexadecimal")
            return
        if label in IGNORED_LABELS:
            return
        if label != TLS12_LABEL and label not in TLS13_LABELS and label != TLS13_EARLY_LABEL:
            self._problem(f"{where}: unknown label {label[:40]!r}")
            return
        if len(client_random) != CLIENT_RANDOM_BYTES:
            self._problem(f"{where}: the client random is {len(client_random)} bytes, not {CLIENT_RANDOM_BYTES}")
            return
        expected = (MASTER_SECRET_BYTES,) if label == TLS12_LABEL else TLS13_SECRET_BYTES
        if len(secret) not in expected:
            wanted = " or ".join(str(size) for size in expected)
            self._problem(f"{where}: a {label} secret is {len(secret)} bytes, not {wanted}")
            return
        session = self._sessions.setdefault(client_random, SessionSecrets())
        if label == TLS12_LABEL:
            session.master_secret = secret
        else:
            session.tls13[label] = secret

    def _problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
