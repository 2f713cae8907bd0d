"""Reconnect delays: exponential, full jitter, capped."""

from __future__ import annotations

from device_agent.backoff import Backoff


def test_the_bound_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0)
    assert [backoff.bound(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.bound(10_000) == 10.0  # no overflow however long the outage


def test_full_jitter_draws_between_zero_and_the_bound() -> None:
    assert Backoff(base_s=1.0, cap_s=8.0, rng=lambda: 0.0).delay(3) == 0.0
    assert Backoff(base_s=1.0, cap_s=8.0, rng=lambda: 0.5).delay(3) == 4.0
    assert Backoff(base_s=1.0, cap_s=8.0, rng=lambda: 0.999).delay(5) < 8.0
