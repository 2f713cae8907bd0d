"""Failed Local API logins are throttled per client address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from device_agent.local_throttle import (
    FIRST_LOCK_SECONDS,
    FREE_FAILURES,
    MAX_LOCK_SECONDS,
    LoginThrottle,
)
from tests.local_api.conftest import PASSWORD, start
from tests.support import LoopThread


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_lock_the_address_and_the_lock_doubles() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(FREE_FAILURES - 1):
        throttle.failed("10.0.0.2")
    assert throttle.retry_after("10.0.0.2") is None
    throttle.failed("10.0.0.2")
    assert throttle.retry_after("10.0.0.2") == FIRST_LOCK_SECONDS
    assert throttle.retry_after("10.0.0.3") is None  # a neighbour is not affected
    clock.now += FIRST_LOCK_SECONDS
    assert throttle.retry_after("10.0.0.2") is None
    throttle.failed("10.0.0.2")
    assert throttle.retry_after("10.0.0.2") == 2 * FIRST_LOCK_SECONDS
    for _ in range(40):
        throttle.failed("10.0.0.2")
    assert throttle.retry_after("10.0.0.2") == MAX_LOCK_SECONDS


def test_a_right_password_clears_the_address() -> None:
    throttle = LoginThrottle(Clock())
    for _ in range(FREE_FAILURES - 1):
        throttle.failed("10.0.0.2")
    throttle.succeeded("10.0.0.2")
    throttle.failed("10.0.0.2")
    assert throttle.retry_after("10.0.0.2") is None


@pytest.mark.integration
def test_guessing_through_the_gateway_meets_429(loop_thread: LoopThread, tmp_path: Path) -> None:
    api, running = start(loop_thread, tmp_path, PASSWORD)
    try:
        with httpx.Client(base_url=running.base_url, timeout=15) as http:
            for _ in range(FREE_FAILURES):
                assert http.post("/auth/login/", json={"password": "guess"}).status_code == 401
            refused = http.post("/auth/login/", json={"password": PASSWORD})
            assert refused.status_code == 429, refused.text
            assert refused.json() == {"error": refused.json()["error"]}
            assert "too many failed logins" in refused.json()["error"]
            assert 0 < int(refused.headers["retry-after"]) <= FIRST_LOCK_SECONDS
    finally:
        loop_thread.run(api.stop())
