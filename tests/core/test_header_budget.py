"""Header blocks still arriving count in the memory budget (review finding 14): a capture of many connections each
part-way into a long request header must not hold more than ``--max-memory`` for them."""

from __future__ import annotations

from wsinspect.core.connection import HEAD_LET_GO_FROM, Connection, MemoryBudget
from wsinspect.core.events import HandshakeRequest, Notice

from .helpers import request_bytes, response_bytes

PARTIAL = b"GET /chat HTTP/1.1\r\nHost: h\r\n" + b"X-Pad: " + b"a" * 6000 + b"\r\n"  # no blank line yet


def test_a_partial_header_block_is_charged_and_given_back_when_complete() -> None:
    budget = MemoryBudget(1 << 20)
    connection = Connection(1, budget=budget)
    connection.receive("c2s", PARTIAL, time=0.0)
    assert budget.held == len(PARTIAL)
    events = connection.receive("c2s", b"\r\n", time=0.1)
    assert [type(event) for event in events] == [HandshakeRequest] and budget.held == 0


def test_past_the_budget_a_large_partial_header_block_is_let_go_with_a_notice() -> None:
    budget = MemoryBudget(10_000)
    first, second = Connection(1, budget=budget), Connection(2, budget=budget)
    assert first.receive("c2s", PARTIAL, time=0.0) == []
    events = second.receive("c2s", PARTIAL, time=0.0)
    assert [event.check.id for event in events if isinstance(event, Notice)] == ["capture.memory-budget"]
    assert budget.held == len(PARTIAL) and second.phase.value == "refused"
    assert second.receive("c2s", b"\r\n", time=0.1) == []  # the rest of that connection is not decoded
    first.end(time=1.0)
    assert budget.held == 0  # what an ended connection held goes back


def test_small_partial_headers_are_kept_past_the_budget() -> None:
    budget = MemoryBudget(0)
    connection = Connection(1, budget=budget)
    half = request_bytes()[: len(request_bytes()) // 2]
    assert len(half) < HEAD_LET_GO_FROM
    assert connection.receive("c2s", half, time=0.0) == []
    events = connection.receive("c2s", request_bytes()[len(half):], time=0.1)
    events += connection.receive("s2c", response_bytes(), time=0.2)
    assert connection.phase.value == "open" and not [event for event in events if isinstance(event, Notice)]
