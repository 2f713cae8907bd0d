"""The uploader's policy on its own, with a real outbox and the test answering its Uploads:
a batch the cloud cannot store holds back no other, and a cloud that stores nothing is
not stormed (docs/device-link.md, "The outbox")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from thingwire.agent.v1 import agent_pb2

from device_agent.backoff import Backoff
from device_agent.outbox import Outbox
from device_agent.uploader import Uploader

Failure = agent_pb2.UploadFailure
WELCOME = agent_pb2.Welcome(
    max_upload_bytes=1 << 20, max_upload_records=10, max_uploads_in_flight=2
)
QUICK = Backoff(base_s=0.05, cap_s=0.4)

Answer = Callable[[agent_pb2.Upload], agent_pb2.ConnectResponse]


def ack(upload: agent_pb2.Upload) -> agent_pb2.ConnectResponse:
    count = len(json.loads(upload.records))
    return agent_pb2.ConnectResponse(
        upload_ack=agent_pb2.UploadAck(batch_id=upload.batch_id, stored=count)
    )


def failed(upload: agent_pb2.Upload, retry_after_ms: int = 10) -> agent_pb2.ConnectResponse:
    return agent_pb2.ConnectResponse(
        upload_failed=agent_pb2.UploadFailed(
            batch_id=upload.batch_id,
            retry_after_ms=retry_after_ms,
            reason="the server could not store the batch",
            failure=Failure.UPLOAD_FAILURE_STORAGE,
        )
    )


class Cloud:
    """Answers each Upload with `answer`, soon after, as the server would."""

    def __init__(self, uploader: Uploader, answer: Answer) -> None:
        self.uploader = uploader
        self.answer = answer
        self.uploads: list[agent_pb2.Upload] = []

    def send(self, request: agent_pb2.ConnectRequest) -> None:
        self.uploads.append(request.upload)
        loop = asyncio.get_running_loop()
        loop.call_later(0.002, self.uploader.answer, self.answer(request.upload))


async def filled(path: Path, count: int) -> Outbox:
    outbox = Outbox.open(path)
    outbox.append(
        [{"@t": "obd.bat", "@ts": f"2026-01-01T00:00:00.{n:06d}Z", "n": n} for n in range(count)]
    )
    await outbox.flush()
    return outbox


def test_a_batch_the_cloud_cannot_store_holds_back_no_other(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, list[int]]:
        outbox = await filled(tmp_path / "outbox.db", 100)
        uploader = Uploader(outbox, batch_records=10, linger_s=0.01, backoff=QUICK)
        poison: list[str] = []

        def answer(upload: agent_pb2.Upload) -> agent_pb2.ConnectResponse:
            if not poison:
                poison.append(upload.batch_id)
            return failed(upload) if upload.batch_id == poison[0] else ack(upload)

        cloud = Cloud(uploader, answer)
        # One upload at a time: the failing batch would take every turn if it went first.
        one_at_a_time = agent_pb2.Welcome(max_upload_records=10, max_uploads_in_flight=1)
        task = asyncio.create_task(uploader.run(one_at_a_time, cloud.send))
        deadline = time.monotonic() + 10
        while uploader.acked < 9:
            assert time.monotonic() < deadline, f"{uploader.acked} batches acknowledged"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the failing batch is tried again meanwhile
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        left = await outbox.next_batch((), 100, 1 << 20, form=False)
        assert left is not None
        assert left.batch_id == poison[0]  # kept, never dropped
        await outbox.close()
        tries = sum(1 for upload in cloud.uploads if upload.batch_id == poison[0])
        return uploader.stored, tries, [item["n"] for item in json.loads(left.records)]

    stored, tries, kept = asyncio.run(scenario())
    assert stored == 90
    assert tries >= 2  # tried again, later and later
    assert kept == list(range(10))


def test_a_cloud_that_stores_nothing_is_not_stormed(tmp_path: Path) -> None:
    """Every upload fails: the backoff spaces them (without it: hundreds a second)."""

    async def scenario() -> int:
        outbox = await filled(tmp_path / "outbox.db", 100)
        uploader = Uploader(outbox, batch_records=10, linger_s=0.01, backoff=QUICK)
        cloud = Cloud(uploader, failed)
        task = asyncio.create_task(uploader.run(WELCOME, cloud.send))
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await outbox.batch_count() >= 1  # nothing lost
        await outbox.close()
        return len(cloud.uploads)

    uploads = asyncio.run(scenario())
    # Pauses of at least retry_after (10 ms), growing to the cap (0.4 s): about 10 in the
    # second. Without the pause, only each batch's own delay: 40.
    assert 2 <= uploads <= 25, uploads


def test_a_cloud_that_recovers_gets_every_batch(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        outbox = await filled(tmp_path / "outbox.db", 50)
        uploader = Uploader(outbox, batch_records=10, linger_s=0.01, backoff=QUICK)
        healthy_at = time.monotonic() + 0.5
        cloud = Cloud(uploader, lambda u: ack(u) if time.monotonic() > healthy_at else failed(u))
        task = asyncio.create_task(uploader.run(WELCOME, cloud.send))
        deadline = time.monotonic() + 20
        while uploader.acked < 5:
            assert time.monotonic() < deadline, f"{uploader.acked} batches acknowledged"
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        left = await outbox.batch_count() + outbox.unbatched
        await outbox.close()
        return uploader.stored, left

    assert asyncio.run(scenario()) == (50, 0)
