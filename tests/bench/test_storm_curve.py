"""The reconnect storm's links-opened-per-second curve (`bench/storm.py`)."""

from __future__ import annotations

from bench.storm import per_second


def test_welcomes_are_counted_in_the_second_after_the_signal_they_fell_in() -> None:
    assert per_second([10.2, 10.9, 12.5, 13.0], 10.0) == [2, 0, 1, 1]


def test_a_welcome_reported_just_before_the_signal_counts_in_the_first_second() -> None:
    assert per_second([9.99, 10.5], 10.0) == [2]


def test_no_welcomes_is_an_empty_curve() -> None:
    assert per_second([], 10.0) == []
