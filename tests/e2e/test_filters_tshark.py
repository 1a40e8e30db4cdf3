"""Display filters against Wireshark's own filter engine: the same expression selects the same packets.

For every shipped capture and every case, the packet numbers of the frames wsinspect's ``compile_filter(EXPR)``
selects must be exactly those Wireshark keeps for ``websocket && (EXPR)``, as
``tshark -r F -Y 'websocket && (EXPR)' -T fields -e frame.number`` prints them. Handshakes the same way, against
``http.request && (EXPR)`` / ``http.response && (EXPR)``. Wireshark's answers come from ``sharkd`` (tshark's
filter engine behind a pipe: one start-up per capture instead of one per capture and case, 60 s less);
``test_sharkd_filters_as_tshark_does`` holds it to tshark itself.

Where wsinspect means something else than Wireshark on purpose, the case gives tshark the expression that means
what wsinspect's does, and says why:

* **bare field**: Wireshark tests that the field is present; wsinspect that it is true (``websocket.mask`` means
  "masked"; in Wireshark every frame has a mask bit, so ``websocket.mask`` is every frame). tshark gets
  ``websocket.mask == 1``.
* **websocket.payload_length** is the real length in wsinspect (as in ``--json``); Wireshark's field of that name
  is the 7-bit field (126 or 127 when an extended length follows, so a 5-byte payload written with a 16-bit length,
  as in hostile.pcapng, is 126 there). tshark gets the 7-bit field or the extended ones.
* **one frame or one packet**: a wsinspect filter looks at one frame; Wireshark's at a packet, which can carry
  several frames (budget.pcapng sends several small frames per segment). For a single positive comparison the two
  agree (a packet matches when one of its frames does); for ``A && B`` Wireshark may take A from one frame and B
  from another, and ``!=`` / ``!`` ask about all frames of the packet. So on packets with several frames, a case
  marked ``ANY`` must agree exactly, ``SOME`` (a conjunction of positive tests) must select a subset of tshark's,
  and ``OWN`` (negations) is compared on single-frame packets only.

test_tshark.py's documented tshark defects concern reassembled and inflated message contents; no case here filters
on message contents (tshark has no field for wsinspect's ``text`` or ``data``), so none of them applies.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from captures.scenarios import SCENARIOS
from wsinspect.core.events import Event, FrameEvent, HandshakeRequest, HandshakeResponse
from wsinspect.filters import compile_filter
from wsinspect.trace import CaptureTrace

from .support import capture_path, decode_as_ports

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None or shutil.which("sharkd") is None,
                                reason="tshark and sharkd (Wireshark) are not installed")

NAMES = sorted(SCENARIOS)

ANY, SOME, OWN = "any", "some", "own"  # how a case compares on packets that carry several frames (see above)

# (wsinspect expression, the tshark expression that means the same (None: the same text), on multi-frame packets)
FRAME_CASES: list[tuple[str, str | None, str]] = [
    ("websocket", None, ANY),
    ("frame", "websocket", ANY),
    ("websocket.opcode == 1", None, ANY),
    ("websocket.opcode == 2", None, ANY),
    ("websocket.opcode eq 0", None, ANY),
    ("websocket.opcode >= 8", None, ANY),
    ("websocket.opcode == 3", None, ANY),  # hostile.pcapng's reserved opcode
    ("websocket.opcode == 9 || websocket.opcode == 10", None, ANY),
    ("websocket.opcode == 0x8", None, ANY),
    ("websocket.opcode in {0, 8..10}", None, ANY),
    ("tcp.stream in {1, 3..4}", None, ANY),
    ("websocket.fin == 0", None, ANY),
    ("websocket.fin == true", None, ANY),
    ("websocket.mask", "websocket.mask == 1", ANY),  # bare field
    ("!websocket.mask", "websocket.mask == 0", ANY),
    ("websocket.rsv == 4", None, ANY),
    ("websocket.rsv > 0", None, ANY),
    ("websocket.rsv != 0", None, OWN),
    ("websocket.masking_key == 37:fa:21:3d", None, ANY),
    ('websocket.masking_key == "7\\xfa!="', None, ANY),  # a quoted string is its bytes
    ("websocket.payload_length < 126", "websocket.payload_length < 126 || websocket.payload_length_ext_16 < 126 "
     "|| websocket.payload_length_ext_64 < 126", ANY),
    ("websocket.payload_length > 100", "(websocket.payload_length > 100 && websocket.payload_length < 126) "
     "|| websocket.payload_length_ext_16 > 100 || websocket.payload_length_ext_64 > 100", OWN),
    ("websocket.payload_length == 65536", "websocket.payload_length_ext_64 == 65536", ANY),
    ("websocket.payload_length_ext_16 == 126", None, ANY),
    ("websocket.payload_length_ext_16 > 200", None, ANY),
    ("websocket.payload_length_ext_64 >= 65536", None, ANY),
    ("length_bits == 16", "websocket.payload_length_ext_16", ANY),
    ("length_bits == 64", "websocket.payload_length_ext_64", ANY),
    ("websocket.payload_length > 100 && websocket.mask", "websocket.mask == 1 && (websocket.payload_length_ext_16 "
     "> 100 || websocket.payload_length_ext_64 > 100 || (websocket.payload_length > 100 && websocket.payload_length "
     "< 126))", OWN),
    ("tcp.stream == 1", None, ANY),
    ("tcp.stream >= 5 && websocket.opcode == 8", None, SOME),
    ("frame.number > 100 && frame.number <= 400", None, SOME),
    ("frame.number le 30 or frame.number gt 1500", None, ANY),
    ("websocket.payload.close.status_code == 1000", None, ANY),
    ("websocket.payload.close.status_code >= 3000", None, ANY),
    ("websocket.payload.close.status_code == 1005", None, ANY),  # hostile.pcapng: a code that must not be sent
    ('websocket.payload.close.reason == "going away"', None, ANY),
    ('websocket.payload.close.reason contains "bye"', None, ANY),
    ('websocket.payload.close.reason matches "^INTERNAL"', None, ANY),  # case-insensitive in both
    ("websocket.opcode == 8 && !websocket.payload.close.status_code",
     "websocket.opcode == 8 && !websocket.payload.close.status_code", OWN),  # no code 0 on the wire here
    ("!(websocket.opcode == 1)", None, OWN),
    ("websocket.opcode eq 1 and not websocket.mask", "websocket.opcode == 1 && websocket.mask == 0", OWN),
    ("websocket.fin && websocket.opcode == 0", "websocket.fin == 1 && websocket.opcode == 0", SOME),
    ("websocket.mask && tcp.stream == 1", "websocket.mask == 1 && tcp.stream == 1", SOME),
    ("(websocket.opcode == 1 || websocket.opcode == 2) && !websocket.fin",
     "(websocket.opcode == 1 || websocket.opcode == 2) && websocket.fin == 0", SOME),
]

# (wsinspect expression, tshark expression (None: the same)): handshake requests and responses.
REQUEST_CASES: list[tuple[str, str | None]] = [
    ("http.request", None),
    ('http.request.method == "GET"', None),
    ('http.request.method in {"POST", "PUT"}', None),
    ('method != "GET"', 'http.request.method != "GET"'),
    ('http.request.uri contains "echo"', None),
    ('http.request.uri matches "^/FRAG"', None),
    ('target == "/close-codes/3"', 'http.request.uri == "/close-codes/3"'),
    ('http.request.version == "HTTP/1.1" && http.request.uri matches "/bad/[13]$"', None),
]
RESPONSE_CASES: list[tuple[str, str | None]] = [
    ("http.response", None),
    ("http.response.code == 101", None),
    ("status >= 400", "http.response.code >= 400"),
    ('http.response.phrase == "Switching Protocols"', None),
    ('http.response.version == "HTTP/1.1" && http.response.code != 101', None),
]


Numbers = dict[str, set[int]]  # capture name -> packet numbers


def decode_as_config(folder: Path, ports: tuple[int, ...]) -> dict[str, str]:
    """A Wireshark configuration of our own: no personal preferences, reassembly and inflation pinned on, and
    Decode As for the captures that start after their handshake (what ``-d tcp.port==P,websocket`` does)."""
    (folder / "preferences").write_text("tcp.desegment_tcp_streams: TRUE\nwebsocket.decompress: TRUE\n")
    (folder / "decode_as_entries").write_text("".join(f"decode_as_entry: tcp.port,{port},(none),WebSocket\n"
                                                      for port in ports))
    return {**os.environ, "WIRESHARK_CONFIG_DIR": str(folder), "LC_ALL": "C.UTF-8"}


def sharkd_numbers(name: str, expressions: list[str]) -> list[set[int]]:
    """Load the capture once in sharkd and ask for the frames each display filter keeps."""
    requests = [{"jsonrpc": "2.0", "id": 1, "method": "load", "params": {"file": str(capture_path(name))}}]
    requests += [{"jsonrpc": "2.0", "id": i, "method": "frames", "params": {"filter": expression}}
                 for i, expression in enumerate(expressions, 2)]
    with tempfile.TemporaryDirectory() as folder:
        env = decode_as_config(Path(folder), decode_as_ports(SCENARIOS[name]))
        done = subprocess.run(["sharkd", "-"], input="".join(json.dumps(r) + "\n" for r in requests).encode(),
                              capture_output=True, env=env, timeout=300, check=False)
    answers = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            answer = json.loads(line)
            answers[answer["id"]] = answer
    assert answers[1].get("result", {}).get("status") == "OK", answers[1]
    out = []
    for i, expression in enumerate(expressions, 2):
        assert "result" in answers[i], (expression, answers[i])
        out.append({frame["num"] for frame in answers[i]["result"]})
    return out


def tshark_numbers(name: str, expression: str) -> set[int]:
    """``tshark -r F -Y EXPR -T fields -e frame.number``, with the same configuration as sharkd's."""
    with tempfile.TemporaryDirectory() as folder:
        env = decode_as_config(Path(folder), decode_as_ports(SCENARIOS[name]))
        done = subprocess.run(["tshark", "-n", "-r", str(capture_path(name)), "-Y", expression, "-T", "fields",
                               "-e", "frame.number"], capture_output=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return {int(line) for line in done.stdout.split()}


def wireshark_expressions() -> list[str]:
    out = [f"websocket && ({theirs or mine})" for mine, theirs, _ in FRAME_CASES]
    out += [f"http.request && ({theirs or mine})" for mine, theirs in REQUEST_CASES]
    out += [f"http.response && ({theirs or mine})" for mine, theirs in RESPONSE_CASES]
    return out


@pytest.fixture(scope="module")
def wireshark() -> dict[str, Numbers]:
    """Wireshark's answer to every case on every capture: one sharkd per capture, all of them at once (a module
    fixture, so a failure is reported once rather than retried by every test)."""
    expressions = wireshark_expressions()
    # A large capture's questions are shared among several sharkd processes: its filter passes are most of the time.
    jobs = [(name, expressions[part::parts]) for name in NAMES
            for parts in [4 if capture_path(name).stat().st_size > 1_000_000 else 1] for part in range(parts)]
    answers: dict[str, Numbers] = {expression: {} for expression in expressions}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (name, asked), numbers in zip(jobs, pool.map(lambda job: sharkd_numbers(*job), jobs), strict=True):
            for expression, packets in zip(asked, numbers, strict=True):
                answers[expression][name] = packets
    return answers


@functools.cache
def ours(name: str) -> tuple[Event, ...]:
    return tuple(CaptureTrace(capture_path(name), server_ports=decode_as_ports(SCENARIOS[name])))


def multi_frame_packets(name: str) -> set[int]:
    counts = Counter(event.packet for event in ours(name) if type(event) is FrameEvent)
    return {packet for packet, count in counts.items() if count > 1 and packet is not None}


def selected(name: str, expression: str, kind: type[Event]) -> set[int]:
    test = compile_filter(expression)
    return {event.packet for event in ours(name) if type(event) is kind and event.packet is not None and test(event)}


def test_sharkd_filters_as_tshark_does(wireshark: dict[str, Numbers]) -> None:
    """sharkd is tshark's filter engine behind a pipe (one start-up per capture instead of one per expression);
    here it is held to ``tshark -Y`` on the cases that depend most on the dissection: several frames per packet,
    a non-minimal length, Decode As."""
    translated = {mine: f"websocket && ({theirs or mine})" for mine, theirs, _ in FRAME_CASES}
    for name, mine in (("budget", "websocket.rsv != 0"), ("hostile", "websocket.payload_length < 126"),
                       ("midstream", "websocket.opcode == 1")):
        expression = translated[mine]
        assert tshark_numbers(name, expression) == wireshark[expression][name]


def test_the_captures_have_every_kind_of_frame_and_packets_with_several() -> None:
    """The cases are only as good as the frames they run on: all opcodes, all length forms, several per packet."""
    frames = [event.frame for name in NAMES for event in ours(name) if isinstance(event, FrameEvent)]
    assert {frame.opcode for frame in frames} >= {0, 1, 2, 3, 8, 9, 10}
    assert {frame.length_bits for frame in frames} == {7, 16, 64}
    assert any(not frame.length_is_minimal for frame in frames)
    assert any(multi_frame_packets(name) for name in NAMES)


@pytest.mark.parametrize(("mine", "their_expression", "several"), FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_frames_selected_as_wireshark_selects_them(wireshark: dict[str, Numbers], mine: str,
                                                   their_expression: str | None, several: str) -> None:
    for name in NAMES:
        got = selected(name, mine, FrameEvent)
        expected = wireshark[f"websocket && ({their_expression or mine})"][name]
        shared = multi_frame_packets(name)
        assert got - shared == expected - shared, name
        if several == ANY:
            assert got & shared == expected & shared, name
        elif several == SOME:
            assert got & shared <= expected & shared, name


@pytest.mark.parametrize(("mine", "their_expression"), REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_requests_selected_as_wireshark_selects_them(wireshark: dict[str, Numbers], mine: str,
                                                     their_expression: str | None) -> None:
    for name in NAMES:
        expected = wireshark[f"http.request && ({their_expression or mine})"][name]
        assert selected(name, mine, HandshakeRequest) == expected, name


@pytest.mark.parametrize(("mine", "their_expression"), RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_responses_selected_as_wireshark_selects_them(wireshark: dict[str, Numbers], mine: str,
                                                      their_expression: str | None) -> None:
    for name in NAMES:
        expected = wireshark[f"http.response && ({their_expression or mine})"][name]
        assert selected(name, mine, HandshakeResponse) == expected, name


def test_every_case_selects_something_and_not_everything(wireshark: dict[str, Numbers]) -> None:
    """A case that selects nothing (or everything) in every capture cannot tell a right filter from a wrong one."""
    answers = wireshark
    everything = {"websocket": answers["websocket && (websocket)"],
                  "http.request": answers["http.request && (http.request)"],
                  "http.response": answers["http.response && (http.response)"]}
    for expression, numbers in answers.items():
        assert any(numbers.values()), expression
        kind = expression.split(" && ")[0]
        if expression != f"{kind} && ({kind})" and expression != "websocket && (websocket)":
            assert numbers != everything[kind], expression


@functools.cache
def tshark_field_names() -> dict[str, str]:
    """Wireshark's registered fields (``tshark -G fields``): name -> type."""
    done = subprocess.run(["tshark", "-G", "fields"], capture_output=True, timeout=120, check=False)
    fields = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if parts[0] == "F" and len(parts) > 3:
            fields[parts[2]] = parts[3]
    return fields


def test_every_wireshark_name_is_a_real_wireshark_field_of_the_same_kind() -> None:
    from wsinspect.filters import FIELDS

    kinds = {"integer": ("FT_UINT8", "FT_UINT16", "FT_UINT32", "FT_UINT64", "FT_FRAMENUM"), "boolean": ("FT_BOOLEAN",),
             "time": ("FT_ABSOLUTE_TIME", "FT_RELATIVE_TIME"), "string": ("FT_STRING",), "bytes": ("FT_BYTES",)}
    registered = tshark_field_names()
    named = {field.wireshark: field for field in FIELDS.values() if field.wireshark}
    assert named
    for name, field in named.items():
        assert name in registered, name
        assert registered[name] in kinds[field.type], (name, registered[name], field.type)
