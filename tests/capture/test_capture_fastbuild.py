"""frozen_builder makes the same frozen instances as the dataclass's own constructor, only faster."""

from __future__ import annotations

import dataclasses

import pytest

from wsinspect.capture.fastbuild import frozen_builder
from wsinspect.capture.files import RawPacket
from wsinspect.capture.packets import TcpSegment
from wsinspect.capture.reassembly import FlowClosed, FlowData, FlowGap, FlowOpened

SAMPLES = [
    RawPacket(3, 1.5, 1, b"\x00\x01", 60),
    TcpSegment(7, 2.25, "10.0.0.1", "10.0.0.2", 40000, 80, 1, 2, 0x18, b"hello", 3, False),
    FlowData(0, 3.0, 9, "c2s", b"data"),
    FlowGap(1, 4.0, 10, "s2c", 1460),
    FlowOpened(2, 5.0, 11, ("::1", 40000), ("::1", 80), "SYN", False),
    FlowClosed(2, 6.0, 12, "FIN"),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_built_instance_is_the_frozen_dataclass(sample: object) -> None:
    values = [getattr(sample, field.name) for field in dataclasses.fields(sample)]  # type: ignore[arg-type]
    built = frozen_builder(type(sample))(*values)
    assert type(built) is type(sample)
    assert built == sample and hash(built) == hash(sample) and repr(built) == repr(sample)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.time = 0.0  # type: ignore[attr-defined]


def test_refuses_a_class_that_is_not_a_plain_slotted_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithoutSlots:
        value: int

    with pytest.raises(TypeError):
        frozen_builder(WithoutSlots)
