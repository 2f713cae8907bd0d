"""The whole machine's CPU over a window, by process name, from /proc.

A benchmark on this 2-core machine shares the cores between the load generator, Envoy, the
server and the database; a rate alone does not say whether the machine was full or one
process was the limit. `MachineCpu` reads every process's CPU time and the machine's idle
time before and after a run, so a figure can be divided by what every part spent on it
(docs/benchmarks.md, "What the machine can give a post").

    with MachineCpu() as cpu:
        run_the_load()
    cpu.cores["envoy"], cpu.idle_cores
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

__all__ = ["MachineCpu"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Process names (as /proc shows them) grouped under the names a table prints.
GROUPS = {"thingwire": "server", "envoy": "Envoy", "postgres": "PostgreSQL"}
#: The group of the benchmark's own children that ended in the window (the load generator,
#: wrk): /proc no longer shows them, the kernel's account of waited-for children does.
FINISHED_CHILDREN = "generator"


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_ticks() -> Counter[tuple[int, str]]:
    """CPU ticks (user + system) of every process, keyed by (pid, group or name)."""
    ticks: Counter[tuple[int, str]] = Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[(int(entry.name), GROUPS.get(name, "other"))] = int(fields[11]) + int(fields[12])
    return ticks


def _machine_ticks() -> tuple[int, int]:
    """(all ticks, idle + iowait ticks) of every CPU since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values), values[3] + values[4]


class MachineCpu:
    """Cores used per process group, and cores idle, between ``__enter__`` and ``__exit__``."""

    def __init__(self) -> None:
        self.cores: dict[str, float] = {}
        self.idle_cores = 0.0
        self.seconds = 0.0

    def __enter__(self) -> MachineCpu:
        self._processes = _process_ticks()
        self._machine = _machine_ticks()
        self._children = _children_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        after = _process_ticks()
        all_after, idle_after = _machine_ticks()
        self.seconds = time.monotonic() - self._started
        spent: Counter[str] = Counter()
        for (pid, group), ticks in after.items():
            spent[group] += ticks - self._processes.get((pid, group), 0)
        self.cores = {group: ticks / CLOCK_TICKS / self.seconds for group, ticks in spent.items()}
        self.cores[FINISHED_CHILDREN] = (_children_seconds() - self._children) / self.seconds
        all_ticks = all_after - self._machine[0]
        self.idle_cores = (os.cpu_count() or 1) * (idle_after - self._machine[1]) / all_ticks

    def per_event_us(self, events: float) -> dict[str, float]:
        """CPU µs per event (a post, say) of each group, over the window."""
        return {group: cores * self.seconds * 1e6 / events for group, cores in self.cores.items()}
