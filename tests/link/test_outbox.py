"""The agent's outbox on its own: what survives a restart, what an ack removes, what the
disk bound drops and how it is counted (docs/device-link.md, "The outbox")."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device_agent.outbox import Outbox
from device_agent.outbox_store import OutboxStore
from device_agent.records import DROPPED_TYPE, encode

BIG = 1 << 30


def record(n: int, pad: int = 0) -> dict[str, object]:
    return {"@t": "obd.bat", "@ts": f"2026-01-01T00:00:00.{n:06d}Z", "n": n, "pad": "x" * pad}


def body(n: int, pad: int = 0) -> bytes:
    encoded = encode(record(n, pad))
    assert encoded is not None
    return encoded


def numbers(batch_records: bytes) -> list[int]:
    return [item["n"] for item in json.loads(batch_records) if item["@t"] == "obd.bat"]


def test_a_batch_keeps_its_id_and_records_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    store = OutboxStore(path, BIG)
    store.append([body(n) for n in range(10)])
    first = store.next_batch((), max_records=4, max_bytes=BIG, form=True)
    assert first is not None
    assert numbers(first.records) == [0, 1, 2, 3]
    store.close()

    again = OutboxStore(path, BIG)
    assert again.unbatched == 6
    resent = again.next_batch((), max_records=4, max_bytes=BIG, form=True)
    assert resent == first  # the same id, the same bytes: the cloud stores it once
    following = again.next_batch({first.batch_id}, max_records=100, max_bytes=BIG, form=True)
    assert following is not None
    assert following.batch_id != first.batch_id
    assert numbers(following.records) == [4, 5, 6, 7, 8, 9]
    assert again.unbatched == 0


def test_an_acknowledged_batch_is_deleted_and_its_bytes_freed(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db", BIG)
    store.append([body(n) for n in range(3)])
    batch = store.next_batch((), 100, BIG, form=True)
    assert batch is not None
    assert store.bytes == len(batch.records)
    assert store.delete(batch.batch_id) is True
    assert store.delete(batch.batch_id) is False  # a second ack (a repeat) changes nothing
    assert store.bytes == 0
    assert store.next_batch((), 100, BIG, form=True) is None
    store.close()
    assert OutboxStore(tmp_path / "outbox.db", BIG).bytes == 0


def test_no_new_batch_is_formed_unless_asked(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db", BIG)
    store.append([body(1)])
    assert store.next_batch((), 100, BIG, form=False) is None
    assert store.next_batch((), 100, BIG, form=True) is not None


def test_a_batch_respects_the_byte_limit(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db", BIG)
    bodies = [body(n, pad=100) for n in range(10)]
    store.append(bodies)
    limit = 2 + 3 * (len(bodies[0]) + 1)
    batch = store.next_batch((), 100, limit, form=True)
    assert batch is not None
    assert batch.count == 3
    assert len(batch.records) <= limit


def test_past_the_bound_the_oldest_records_are_dropped_counted_and_reported(
    tmp_path: Path,
) -> None:
    one = len(body(0, pad=1000))
    store = OutboxStore(tmp_path / "outbox.db", max_bytes=20 * one)
    store.append([body(n, pad=1000) for n in range(10)])
    oldest = store.next_batch((), 5, BIG, form=True)  # records 0..4, as a batch
    assert oldest is not None
    assert store.append([body(n, pad=1000) for n in range(10, 30)]) is not None
    assert store.bytes <= 20 * one
    left = []
    while (batch := store.next_batch((), 1000, BIG, form=True)) is not None:
        left.append(batch)
        store.delete(batch.batch_id)
    items = [item for batch in left for item in json.loads(batch.records)]
    kept = [item["n"] for item in items if item["@t"] == "obd.bat"]
    dropped = 30 - len(kept)
    assert kept == list(range(dropped, 30))  # the oldest went first: the batch, then records
    assert dropped >= 10
    reports = [item for item in items if item["@t"] == DROPPED_TYPE]
    assert reports == [
        {
            "@t": DROPPED_TYPE,
            "@ts": reports[0]["@ts"],
            "@tag": "outbox/dropped",
            "count": dropped,
            "total": dropped,
        }
    ]
    assert json.loads(left[0].records)[0] == reports[0]  # told first, in the next batch
    assert store.unreported == 0
    store.close()
    assert OutboxStore(tmp_path / "outbox.db", 20 * one).dropped_total == dropped


def test_drops_of_a_whole_outage_are_told_once_even_across_a_restart(tmp_path: Path) -> None:
    one = len(body(0, pad=1000))
    store = OutboxStore(tmp_path / "outbox.db", max_bytes=10 * one)
    for start in range(0, 60, 10):  # rounds of appends while the link is down
        store.append([body(n, pad=1000) for n in range(start, start + 10)])
    dropped = store.dropped_total
    assert dropped > 10
    store.close()

    again = OutboxStore(tmp_path / "outbox.db", max_bytes=10 * one)
    assert again.unreported == dropped  # kept across the restart
    first = again.next_batch((), 1000, BIG, form=True)
    assert first is not None
    items = json.loads(first.records)
    assert [i for i in items if i["@t"] == DROPPED_TYPE] == [items[0]]
    assert (items[0]["count"], items[0]["total"]) == (dropped, dropped)
    assert [i["n"] for i in items[1:]] == list(range(dropped, 60))
    assert again.unreported == 0
    again.delete(first.batch_id)
    again.append([body(100)])
    later = again.next_batch((), 1000, BIG, form=True)
    assert later is not None
    assert [i["@t"] for i in json.loads(later.records)] == ["obd.bat"]  # told only once


def test_a_batch_being_sent_is_not_dropped(tmp_path: Path) -> None:
    one = len(body(0, pad=1000))
    store = OutboxStore(tmp_path / "outbox.db", max_bytes=10 * one)
    store.append([body(n, pad=1000) for n in range(5)])
    sending = store.next_batch((), 5, BIG, form=True)
    assert sending is not None
    store.append([body(n, pad=1000) for n in range(5, 12)], sending={sending.batch_id})
    assert store.next_batch((), 5, BIG, form=False) == sending  # still there
    assert store.dropped_total > 0


def test_a_batch_too_large_for_the_cloud_is_split_and_an_oversized_record_dropped(
    tmp_path: Path,
) -> None:
    store = OutboxStore(tmp_path / "outbox.db", BIG)
    store.append([body(n, pad=200) for n in range(6)] + [body(6, pad=5000)])
    batch = store.next_batch((), 100, BIG, form=True)
    assert batch is not None
    pieces = store.split(batch.batch_id, max_records=2, max_bytes=2048)
    assert [numbers(p.records) for p in pieces] == [[0, 1], [2, 3], [4, 5]]
    assert all(p.batch_id != batch.batch_id for p in pieces)
    assert store.dropped_total == 1  # record 6 fits no batch of 2 KiB: it cannot block
    assert store.next_batch((), 100, BIG, form=False) == pieces[0]
    assert store.bytes == sum(len(p.records) for p in pieces)


def test_unsendable_records_are_refused_at_append(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        outbox = Outbox.open(tmp_path / "outbox.db")
        accepted = outbox.append(
            [
                record(1),
                {"@t": "x"},  # no @ts
                {"@t": "x", "@ts": "2026-01-01T00:00:00Z", "v": float("nan")},
                {"@t": "x", "@ts": "2026-01-01T00:00:00Z", "v": object()},
                {"@t": "x", "@ts": "2026-01-01T00:00:00Z", "v": "\ud800"},  # not UTF-8
                {"@t": "x", "@ts": "2026-01-01T00:00:00Z", "v": deep},
                record(2),
            ]
        )
        await outbox.close()
        return accepted, outbox.refused

    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    assert asyncio.run(scenario()) == (2, 5)


def test_appends_are_committed_in_groups_and_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> int:
        outbox = Outbox.open(tmp_path / "outbox.db", flush_interval_s=0.05)
        for n in range(500):
            outbox.append([record(n)])  # each returns at once
        assert outbox.unbatched == 0  # nothing committed yet: buffered
        await outbox.flush()
        unbatched = outbox.unbatched
        await outbox.close()
        return unbatched

    assert asyncio.run(scenario()) == 500
    assert OutboxStore(tmp_path / "outbox.db", BIG).unbatched == 500


def test_a_flush_timer_commits_without_being_asked(tmp_path: Path) -> None:
    async def scenario() -> int:
        outbox = Outbox.open(tmp_path / "outbox.db", flush_interval_s=0.05)
        outbox.append([record(1)])
        await asyncio.sleep(0.5)
        unbatched = outbox.unbatched
        await outbox.close()
        return unbatched

    assert asyncio.run(scenario()) == 1


def test_appending_while_batches_are_taken_and_deleted_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    total = 5000

    async def scenario() -> list[int]:
        outbox = Outbox.open(tmp_path / "outbox.db", flush_interval_s=0.01, flush_records=100)
        uploaded: list[int] = []

        async def source() -> None:
            for n in range(total):
                outbox.append([record(n)])
                if n % 50 == 0:
                    await asyncio.sleep(0)
            await outbox.flush()

        async def uploader() -> None:
            while len(uploaded) < total:
                batch = await outbox.next_batch(outbox.sending, 300, BIG)
                if batch is None:
                    await asyncio.sleep(0.005)
                    continue
                uploaded.extend(numbers(batch.records))
                assert await outbox.delete(batch.batch_id)

        await asyncio.wait_for(asyncio.gather(source(), uploader()), 60)
        assert await outbox.batch_count() == 0
        await outbox.close()
        return uploaded

    assert asyncio.run(scenario()) == list(range(total))


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_committed_records_survive_the_process_being_killed(tmp_path: Path, sig: int) -> None:
    """A process that flushed and was then killed (no close, no cleanup) left them all."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from pathlib import Path
        from device_agent.outbox import Outbox

        async def main():
            outbox = Outbox.open(Path({str(tmp_path / "outbox.db")!r}))
            for n in range(2000):
                ts = f"2026-01-01T00:00:{{n // 1000:02d}}.{{n % 1000:06d}}Z"
                outbox.append([{{"@t": "t", "@ts": ts}}])
            await outbox.flush()
            batch = await outbox.next_batch((), 700, 1 << 30)
            print(batch.batch_id, flush=True)
            outbox.append([{{"@t": "u", "@ts": "2026-01-01T00:00:00Z"}}])  # buffered: lost
            os.kill(os.getpid(), {int(sig)})

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -sig, done.stderr
    store = OutboxStore(tmp_path / "outbox.db", BIG)
    batch = store.next_batch((), 700, BIG, form=False)
    assert batch is not None
    assert batch.batch_id == done.stdout.strip()
    assert batch.count == 700
    assert store.unbatched == 1300
