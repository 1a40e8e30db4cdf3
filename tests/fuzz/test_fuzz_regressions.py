"""Inputs the fuzz targets found, kept as tests (see README.md here). Each calls its target's check on the bytes.

A crash in code this suite does not fix is marked ``xfail(strict=True)`` with what breaks, so it starts passing (and
the strict mark fails the run) when the core is fixed; then the mark is removed.
"""

from __future__ import annotations

import pytest
from bytes_targets import check_capture_bytes, check_connection_bytes, check_frames_bytes, check_handshake_bytes
from fuzz_support import RFC_REQUEST, RFC_RESPONSE


@pytest.mark.parametrize("check, data", [
    (check_handshake_bytes, RFC_REQUEST + RFC_RESPONSE),
    (check_frames_bytes, b"\x03\x81\x05Hello"),
    (check_connection_bytes, b"\x01\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\xff\xff\xff\xff\x81\x05Hello"),
    (check_capture_bytes, b"\x0a\x0d\x0d\x0a"),
])
def test_bytes_checks_accept_a_good_input(check, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """The byte-level checks scripts/fuzz.py gives atheris work on a well-formed input of each kind."""
    check(data)
