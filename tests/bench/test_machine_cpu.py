"""The machine's CPU account of a benchmark window: busy processes and finished children seen."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.machine_cpu import FINISHED_CHILDREN, MachineCpu

SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_child_that_ended_in_the_window_is_counted() -> None:
    with MachineCpu() as cpu:
        subprocess.run([sys.executable, "-c", SPIN], check=True)
    # 0.3 s of its own CPU, whatever else the machine did meanwhile.
    assert cpu.cores[FINISHED_CHILDREN] * cpu.seconds >= 0.28
    assert cpu.per_event_us(3)[FINISHED_CHILDREN] >= 0.28e6 / 3


def test_a_busy_process_shows_and_idle_cores_stay_in_range() -> None:
    with MachineCpu() as cpu:
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
    assert cpu.cores["other"] * cpu.seconds >= 0.25  # this test's process among "other"
    assert 0.0 <= cpu.idle_cores <= (os.cpu_count() or 1)
