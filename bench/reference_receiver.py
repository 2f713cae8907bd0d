"""The AutoPi data guide's example receiver (Express, stores nothing), run for a benchmark.

`bench/reference/express_receiver/` holds it; its one dependency, express, is installed
there with npm on first use (node_modules is not committed). The benchmarks measure
thingwire against it side by side in one run (docs/benchmarks.md, "HTTP ingest against the
guide's receiver").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["RECEIVER_DIR", "express_receiver"]

RECEIVER_DIR = Path(__file__).parent / "reference" / "express_receiver"
START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _install() -> None:
    if (RECEIVER_DIR / "node_modules" / "express").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: the reference receiver needs Node.js and npm")
    subprocess.run(  # noqa: S603 - a fixed command in the repository's own folder
        [npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=RECEIVER_DIR, check=True
    )


@contextmanager
def express_receiver(token: str) -> Iterator[str]:
    """The receiver listening on a free loopback port, accepting ``Bearer <token>``; its URL."""
    _install()
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed: the reference receiver needs Node.js")
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "AUTH_TOKEN": token}
    process = subprocess.Popen(  # noqa: S603 - a fixed script of the repository
        [node, "index.js"],
        cwd=RECEIVER_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the reference receiver exited: {process.stderr!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the reference receiver did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
