"""A device pushing batches the way AutoPi firmware does: each batch is retried on any
non-2xx answer or connection error until it is answered 2xx, and only then forgotten.

Run as a process of its own by the fault test (tests/integration/test_push_fault.py):

    python -m tests.integration.push_client --url URL --token T --batches N --size S
        [--workers W]

Batch ``b`` holds records ``b * S`` … ``b * S + S - 1``, each with its own timestamp, so the
records sent are exactly ``N * S`` distinct ones. Prints one JSON line at the end:
``{"batches": N, "records": N * S, "retries": R}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

START = datetime(2024, 5, 1, tzinfo=UTC)
MAX_BACKOFF_S = 0.5


def batch(index: int, size: int) -> bytes:
    """Batch ``index``: ``size`` records with timestamps of their own, a millisecond apart."""
    records = []
    for n in range(index * size, (index + 1) * size):
        stamp = (START + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
        records.append({"@t": "obd.bat", "@ts": stamp, "voltage": 12.0 + n % 10, "n": n})
    return json.dumps(records).encode()


def push_until_stored(client: httpx.Client, body: bytes, headers: dict[str, str]) -> int:
    """Post ``body`` until it is answered 2xx; the number of retries it took."""
    retries = 0
    backoff = 0.05
    while True:
        try:
            answer = client.post("/logbook/storage", content=body, headers=headers)
            if 200 <= answer.status_code < 300:
                return retries
        except httpx.HTTPError:
            pass
        retries += 1
        time.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, MAX_BACKOFF_S)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    headers = {"authorization": f"token {args.token}", "content-type": "application/json"}
    next_batch = iter(range(args.batches))
    lock = threading.Lock()
    retries = [0]

    def work() -> None:
        with httpx.Client(base_url=args.url, timeout=10) as client:
            while True:
                with lock:
                    index = next(next_batch, None)
                if index is None:
                    return
                took = push_until_stored(client, batch(index, args.size), headers)
                with lock:
                    retries[0] += took

    threads = [threading.Thread(target=work) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {"batches": args.batches, "records": args.batches * args.size, "retries": retries[0]}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
