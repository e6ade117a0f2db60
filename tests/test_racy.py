"""The racy-timestamp rule the archiver and the staging mirror share (fsio/racy.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cleancut.fsio.racy import COARSE_WINDOW_NS, FINE_WINDOW_NS, is_racy, window_ns

SECOND = 1_000_000_000
stamps = st.integers(min_value=10 * SECOND, max_value=2**62)


def test_nanosecond_stamps_are_settled_after_a_few_ticks() -> None:
    read = 1_700_000_000 * SECOND + 500_000_000
    assert is_racy(read - FINE_WINDOW_NS + 1, read)
    assert not is_racy(read - FINE_WINDOW_NS - 1, read)


def test_whole_second_stamps_wait_two_seconds() -> None:
    # ext3, ext4 with 128-byte inodes, FAT: a write a second after the read keeps the stamp.
    read = 1_700_000_001 * SECOND + 900_000_000
    assert is_racy(1_700_000_000 * SECOND, read)
    assert not is_racy(1_699_999_999 * SECOND, read)


@given(stamp=stamps, read=stamps)
def test_a_stamp_newer_than_the_read_is_always_racy(stamp: int, read: int) -> None:
    if stamp >= read:
        assert is_racy(stamp, read)


@given(stamp=stamps)
def test_the_window_never_undercuts_the_filesystems_resolution(stamp: int) -> None:
    resolution = SECOND if stamp % SECOND == 0 else 10_000_000  # a 100 Hz kernel's tick
    assert window_ns(stamp) >= resolution
    assert window_ns(stamp) in (FINE_WINDOW_NS, COARSE_WINDOW_NS)
